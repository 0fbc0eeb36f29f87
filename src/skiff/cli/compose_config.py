"""``compose config``: load, validate and print the normalized project (loader only, no daemon).

``-q`` validates only; ``--services``/``--volumes``/``--profiles``/``--images`` list
names; ``--format json``; ``-o FILE`` writes the output atomically (temp + rename);
service names limit the output to those services and what they depend on. Loading
warnings go to stderr as compose logs them (``WARN[0000] ...``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from skiff.cli.compose import ComposeContext, pass_compose
from skiff.compose.loader_config import config_output
from skiff.compose.model import Project
from skiff.errors import InvalidArgument


def _only(project: Project, names: tuple[str, ...]) -> None:
    """Keep the named services and their dependencies (as ``config svc`` does)."""
    for name in names:
        if name not in project.services:
            raise InvalidArgument(f"no such service: {name}")
    keep: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in keep or name not in project.services:
            continue
        keep.add(name)
        todo.extend((project.services[name].get("depends_on") or {}).keys())
    project.services = {k: v for k, v in project.services.items() if k in keep}


def _write(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@click.command("config")
@click.option("-q", "--quiet", is_flag=True, help="Only validate the configuration, don't print anything")
@click.option("--services", is_flag=True, help="Print the service names, one per line")
@click.option("--volumes", is_flag=True, help="Print the volume names, one per line")
@click.option("--profiles", is_flag=True, help="Print the profile names, one per line")
@click.option("--images", is_flag=True, help="Print the image names, one per line")
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", help="Format the output"
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save to file (default: stdout)")
@click.argument("service_names", nargs=-1)
@pass_compose
def config(
    c: ComposeContext,
    quiet: bool,
    services: bool,
    volumes: bool,
    profiles: bool,
    images: bool,
    fmt: str,
    output: str | None,
    service_names: tuple[str, ...],
) -> None:
    """Parse, resolve and render the compose file in canonical format."""
    project = c.project(service_names)
    if service_names:
        _only(project, service_names)
    text = config_output(
        project, services=services, volumes=volumes, profiles=profiles, images=images, fmt=fmt, quiet=quiet
    )
    if output and not quiet:
        _write(Path(output), text)
    else:
        click.echo(text, nl=False)


def register(group: click.Group) -> None:
    """Add ``config`` to the compose group."""
    group.add_command(config)
