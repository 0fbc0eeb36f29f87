"""``ps`` and ``inspect``: reading container (and image) state."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from skiff.cli.context import CliContext, ExitCode, error_text, pass_cli
from skiff.cli.filters import parse_filters
from skiff.cli.format.rows import PS_TABLE, PS_TABLE_SIZE, PS_TITLES, ContainerRow
from skiff.cli.format.table import render_rows, single
from skiff.errors import NotFound, SkiffError

Inspector = Callable[[str], dict[str, Any]]


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option(
    "-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)"
)
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states)")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@pass_cli
def ps(
    obj: CliContext,
    all_: bool,
    quiet: bool,
    last: int,
    latest: bool,
    size: bool,
    filters: tuple[str, ...],
    fmt: str,
    no_trunc: bool,
) -> None:
    """List containers."""
    limit = 1 if latest else last
    raw = obj.client.containers(
        all=all_ or limit > 0, limit=limit, size=size, filters=parse_filters(filters) or None
    )
    rows = [ContainerRow(c, trunc=not no_trunc) for c in raw]
    if quiet:
        fmt = "{{.ID}}"
    text = render_rows(fmt, rows, PS_TITLES, PS_TABLE_SIZE if size else PS_TABLE)
    if text:
        click.echo(text)


def print_inspected(items: list[tuple[str, Inspector]], fmt: str) -> None:
    """docker's inspect output: a JSON array (indented), or the template once per object."""
    found: list[dict[str, Any]] = []
    failed = False
    for ref, inspect_one in items:
        try:
            found.append(inspect_one(ref))
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    if fmt:
        for obj in found:
            click.echo(single(fmt, obj))
    else:
        click.echo(json.dumps(found, indent=4, ensure_ascii=False))
    if failed:
        raise ExitCode(1)


@click.command()
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@click.option(
    "--type", "kind", type=click.Choice(["container", "image"]), help="Return JSON for specified type"
)
@click.option("-s", "--size", is_flag=True, help="Display total file sizes if the type is container")
@click.argument("names", nargs=-1, required=True)
@pass_cli
def inspect(obj: CliContext, fmt: str, kind: str | None, size: bool, names: tuple[str, ...]) -> None:
    """Return low-level information on skiff objects (containers, then images)."""
    client = obj.client

    def any_object(ref: str) -> dict[str, Any]:
        if kind == "image":
            return client.inspect_image(ref)
        try:
            return client.inspect_container(ref, size=size)
        except NotFound:
            if kind == "container":
                raise
        try:
            return client.inspect_image(ref)
        except NotFound:
            raise NotFound(f"No such object: {ref}") from None

    print_inspected([(name, any_object) for name in names], fmt)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(ps)
    group.add_command(inspect)
