"""``volume create|ls|inspect|rm|prune``, with docker's flags and output."""

from __future__ import annotations

import re
from typing import Any

import click

from skiff.cli.context import CliContext, for_each, pass_cli, usage_errors
from skiff.cli.filters import parse_filters
from skiff.cli.format.rows import ObjectRow
from skiff.cli.format.table import render_rows
from skiff.errors import InvalidArgument
from skiff.units import human_size

VOLUME_TABLE = "table {{.Driver}}\t{{.Name}}"
VOLUME_TITLES = {"Name": "VOLUME NAME"}
_VOLUME_FIELDS = (
    "Availability",
    "Driver",
    "Group",
    "Labels",
    "Links",
    "Mountpoint",
    "Name",
    "Scope",
    "Size",
    "Status",
)


class VolumeRow(ObjectRow):
    """One volume as docker's volume formatter sees it (``.Name``, ``.Driver``, ``.Label "k"``...)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def to_json(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in _VOLUME_FIELDS}

    @property
    def Mountpoint(self) -> str:
        return str(self.raw.get("Mountpoint", ""))

    @property
    def Links(self) -> str:
        usage = self.raw.get("UsageData")
        return "N/A" if usage is None else str(usage.get("RefCount", 0))

    @property
    def Size(self) -> str:
        usage = self.raw.get("UsageData")
        return "N/A" if usage is None else human_size(int(usage.get("Size") or 0))

    # Cluster (CSI) volumes only: docker prints N/A for local ones.
    @property
    def Group(self) -> str:
        return "N/A"

    @property
    def Availability(self) -> str:
        return "N/A"

    @property
    def Status(self) -> str:
        return "N/A"


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p]


def _kv_map(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not key or (what == "opt" and not sep):
            raise InvalidArgument(f"invalid {what} {value!r}: use key=value")
        out[key] = val
    return out


@click.group("volume")
def volume() -> None:
    """Manage volumes."""


@volume.command("create")
@click.option("-d", "--driver", default="local", show_default=True, help="Specify volume driver name")
@click.option("--label", multiple=True, help="Set metadata for a volume")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options (type, device, o)")
@click.option("--name", "name_flag", hidden=True, help="Specify volume name")
@click.argument("name", required=False)
@pass_cli
def create(
    obj: CliContext,
    driver: str,
    label: tuple[str, ...],
    opt: tuple[str, ...],
    name_flag: str | None,
    name: str | None,
) -> None:
    """Create a volume (a random name when none is given)."""
    with usage_errors():
        if name_flag and name and name_flag != name:
            raise InvalidArgument(
                "conflicting options: either specify --name or provide positional arg, not both"
            )
        body = {
            "Name": name or name_flag or "",
            "Driver": driver,
            "DriverOpts": _kv_map(opt, "opt"),
            "Labels": _kv_map(label, "label"),
        }
    click.echo(obj.client.create_volume(body)["Name"])


@volume.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. 'dangling=true')")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names")
@pass_cli
def ls(obj: CliContext, filters: tuple[str, ...], fmt: str, quiet: bool) -> None:
    """List volumes."""
    with usage_errors():
        parsed = parse_filters(filters)
    raw = obj.client.volumes(parsed or None).get("Volumes") or []
    raw = sorted(raw, key=lambda v: _natural_key(str(v.get("Name", ""))))
    if quiet:
        fmt = "{{.Name}}"
    text = render_rows(fmt, [VolumeRow(v) for v in raw], VOLUME_TITLES, VOLUME_TABLE)
    if text:
        click.echo(text)


@volume.command("inspect")
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@click.argument("volumes", metavar="VOLUME...", nargs=-1, required=True)
@pass_cli
def inspect(obj: CliContext, fmt: str, volumes: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    from skiff.cli.query import print_inspected

    print_inspected([(name, obj.client.inspect_volume) for name in volumes], fmt)


@volume.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@click.argument("volumes", metavar="VOLUME...", nargs=-1, required=True)
@pass_cli
def rm(obj: CliContext, force: bool, volumes: tuple[str, ...]) -> None:
    """Remove one or more volumes. You cannot remove a volume that is in use by a container."""
    for_each(volumes, lambda name: obj.client.remove_volume(name, force=force))


@volume.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (e.g. 'label=<label>')")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@pass_cli
def prune(obj: CliContext, all_: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove unused local volumes (anonymous ones unless --all)."""
    with usage_errors():
        parsed = parse_filters(filters)
        if all_ and "all" in parsed:
            raise InvalidArgument("conflicting options: cannot specify both --all and --filter all=1")
    if "all" not in parsed:
        # Explicit either way: the daemon's default depends on the API version.
        parsed["all"] = ["true" if all_ else "false"]
    if not force:
        what = "all local volumes" if all_ else "anonymous local volumes"
        click.confirm(
            f"WARNING! This will remove {what} not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    report = obj.client.prune_volumes(parsed)
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        click.echo("Deleted Volumes:")
        click.echo("\n".join(deleted) + "\n")
    click.echo(f"Total reclaimed space: {human_size(int(report.get('SpaceReclaimed') or 0))}")


def register(group: click.Group) -> None:
    """Add ``skiff volume`` to ``group``."""
    group.add_command(volume)
