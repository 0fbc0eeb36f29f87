"""``version``, ``info``, ``events``, ``system df``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from skiff import __version__
from skiff.cli.context import CliContext, pass_cli
from skiff.cli.filters import parse_filters
from skiff.cli.format.table import single, tabwrite
from skiff.errors import SkiffError
from skiff.units import human_size


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@pass_cli
def version(obj: CliContext, fmt: str) -> None:
    """Show the skiff version information."""
    client_info = {"Version": __version__, "ApiVersion": "1.41", "Os": "linux", "Arch": "amd64"}
    server: dict[str, Any] | None = None
    error: SkiffError | None = None
    try:
        server = obj.client.version()
    except SkiffError as exc:
        error = exc
    if fmt:
        click.echo(single(fmt, {"Client": client_info, "Server": server}))
    else:
        click.echo("Client:")
        for key in ("Version", "ApiVersion", "Os", "Arch"):
            click.echo(f" {key + ':':<16}{client_info[key]}")
        if server is not None:
            click.echo("\nServer:")
            for key in ("Version", "ApiVersion", "MinAPIVersion", "Os", "Arch", "KernelVersion", "GoVersion"):
                if key in server:
                    click.echo(f" {key + ':':<16}{server[key]}")
    if error is not None:
        raise error


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@pass_cli
def info(obj: CliContext, fmt: str) -> None:
    """Display system-wide information."""
    data = obj.client.info()
    if fmt:
        click.echo(single(fmt, data))
        return
    keys = (
        ("Containers", "Containers"),
        (" Running", "ContainersRunning"),
        (" Paused", "ContainersPaused"),
        (" Stopped", "ContainersStopped"),
        ("Images", "Images"),
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Default Runtime", "DefaultRuntime"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
        ("Total Memory", "MemTotal"),
        ("Name", "Name"),
        ("ID", "ID"),
        ("Docker Root Dir", "DockerRootDir"),
    )
    click.echo("Server:")
    for label, key in keys:
        if key in data:
            value = human_size(int(data[key])) if key == "MemTotal" else data[key]
            click.echo(f" {label}: {value}")


def format_event(event: dict[str, Any]) -> str:
    """docker's default events line: ``<time> <type> <action> <id> (k=v, ...)``."""
    nanos = int(event.get("timeNano") or int(event.get("time") or 0) * 10**9)
    stamp = datetime.fromtimestamp(nanos // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    stamp += f".{nanos % 10**9:09d}Z"
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    attr_text = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    line = f"{stamp} {event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}"
    return f"{line} ({attr_text})" if attr_text else line


@click.command()
@click.option("--since", help="Show all events created since timestamp")
@click.option("--until", help="Stream events until this timestamp")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help="Format output using a Go template or 'json'")
@pass_cli
def events(obj: CliContext, since: str | None, until: str | None, filters: tuple[str, ...], fmt: str) -> None:
    """Get real time events from the server."""
    try:
        for event in obj.client.events(since, until, parse_filters(filters) or None):
            if fmt == "json":
                click.echo(json.dumps(event, separators=(",", ":")))
            elif fmt:
                click.echo(single(fmt, event))
            else:
                click.echo(format_event(event))
    except KeyboardInterrupt:
        return


@click.group("system")
def system_group() -> None:
    """Manage skiff."""


@click.command("df")
@pass_cli
def df(obj: CliContext) -> None:
    """Show skiff disk usage."""
    data = obj.client.df()
    images = data.get("Images") or []
    containers = data.get("Containers") or []
    volumes = data.get("Volumes") or []
    rows = ["TYPE\tTOTAL\tACTIVE\tSIZE"]
    rows.append(
        f"Images\t{len(images)}\t{sum(1 for i in images if i.get('Containers', 0) > 0)}\t"
        f"{human_size(int(data.get('LayersSize') or 0))}"
    )
    rows.append(
        f"Containers\t{len(containers)}\t{sum(1 for c in containers if c.get('State') == 'running')}\t"
        f"{human_size(sum(int(c.get('SizeRw') or 0) for c in containers))}"
    )
    vol_size = sum(int((v.get("UsageData") or {}).get("Size") or 0) for v in volumes)
    vol_active = sum(1 for v in volumes if int((v.get("UsageData") or {}).get("RefCount") or 0) > 0)
    rows.append(f"Local Volumes\t{len(volumes)}\t{vol_active}\t{human_size(max(vol_size, 0))}")
    click.echo(tabwrite("\n".join(rows)))


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for command in (version, info, events):
        group.add_command(command)
    system_group.add_command(df)
    system_group.add_command(info, "info")
    system_group.add_command(events, "events")
    group.add_command(system_group)
