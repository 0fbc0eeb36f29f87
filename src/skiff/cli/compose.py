"""``skiff compose``: the group, its project flags, and how a command gets its project.

Flags as ``docker compose``: ``-f`` (several, merged in order; else ``COMPOSE_FILE`` or
the discovered compose.yaml...), ``-p`` (else ``COMPOSE_PROJECT_NAME``, else the
directory's name), ``--project-directory``, ``--profile`` (or ``COMPOSE_PROFILES``),
``--env-file``, ``--progress``, ``--ansi``. Commands that only act on what the labels
find (``down``, ``ps``, ``logs``, ``stop``...) also work with ``-p`` and no file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from skiff.cli.context import CliContext, pass_cli
from skiff.compose.handle import ProjectHandle
from skiff.compose.model import Project
from skiff.compose.progress import NoProgress, ProgressPrinter
from skiff.errors import InvalidArgument, NotFound

_GROUP = {"help_option_names": ["--help"]}


@dataclass
class ComposeContext:
    """The compose group's flags, and the project once loaded."""

    cli: CliContext
    files: tuple[str, ...] = ()
    project_name: str | None = None
    project_directory: str | None = None
    profiles: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    progress_mode: str = "auto"
    ansi: str = "auto"
    _project: Project | None = field(default=None, repr=False)

    def project(self, services: tuple[str, ...] = ()) -> Project:
        """Load the project (once); services named explicitly are enabled despite profiles."""
        if self._project is None:
            from skiff.compose.loader import load_project

            profiles = list(self.profiles)
            if not profiles and os.environ.get("COMPOSE_PROFILES"):
                profiles = [p for p in os.environ["COMPOSE_PROFILES"].split(",") if p]
            # --env-file files replace .env (the loader reads them, with compose's grammar);
            # services named on the command line are enabled whatever their profiles.
            self._project = load_project(
                [Path(f) for f in self.files] or None,
                Path(self.project_directory) if self.project_directory else None,
                self.project_name,
                dict(os.environ),
                profiles,
                env_files=[Path(f) for f in self.env_files] or None,
                services=list(services),
            )
            for warning in self._project.warnings:
                click.echo(f"WARN[0000] {warning}", err=True)
        if services:
            self._project.enable(list(services))
        return self._project

    def handle(
        self, services: tuple[str, ...] = (), *, file_optional: bool = False, title: str = "Running"
    ) -> ProjectHandle:
        """A handle on the project; with ``file_optional`` a ``-p`` alone will do."""
        client = self.cli.client
        progress = ProgressPrinter(self.progress_mode, title=title) if self.progress_mode != "quiet" else None
        try:
            project = self.project(services)
        except (NotFound, InvalidArgument) as exc:
            name = self.project_name or os.environ.get("COMPOSE_PROJECT_NAME")
            if (
                not file_optional
                or not name
                or self.files
                or "no configuration file" not in exc.message.lower()
            ):
                raise
            return ProjectHandle.bare(client, name, progress or NoProgress())
        return ProjectHandle.from_project(client, project, progress or NoProgress())

    def color(self, stream: object = None) -> bool:
        """Colour log prefixes? (``--ansi``; auto: when stdout is a terminal)."""
        if self.ansi == "never" or os.environ.get("NO_COLOR"):
            return False
        if self.ansi == "always":
            return True
        return bool(getattr(stream or sys.stdout, "isatty", lambda: False)())


pass_compose = click.make_pass_decorator(ComposeContext)


@contextmanager
def shown(h: ProjectHandle) -> Iterator[ProjectHandle]:
    """Run with the handle's progress display live (drawn to the end even on errors)."""
    printer = h.progress if isinstance(h.progress, ProgressPrinter) else None
    if printer is None:
        yield h
        return
    with printer:
        yield h


def parse_scale(values: tuple[str, ...]) -> dict[str, int]:
    """``--scale web=3`` (repeatable)."""
    out: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not name or not count.isdigit():
            raise click.BadParameter(
                f"invalid scale specifier {value!r}: use SERVICE=NUM", param_hint="--scale"
            )
        out[name] = int(count)
    return out


@click.group("compose", context_settings=_GROUP)
@click.option("-f", "--file", "files", multiple=True, metavar="FILE", help="Compose configuration files")
@click.option("-p", "--project-name", help="Project name")
@click.option(
    "--project-directory", metavar="DIR", help="Alternate working directory (default: the first file's)"
)
@click.option("--profile", "profiles", multiple=True, help="Specify a profile to enable")
@click.option(
    "--env-file", "env_files", multiple=True, metavar="FILE", help="Specify an alternate environment file"
)
@click.option(
    "--progress",
    "progress_mode",
    type=click.Choice(["auto", "tty", "plain", "quiet"]),
    default="auto",
    help="Set type of progress output",
)
@click.option(
    "--ansi",
    type=click.Choice(["never", "always", "auto"]),
    default="auto",
    help="Control when to print ANSI control characters",
)
@pass_cli
@click.pass_context
def compose(
    ctx: click.Context,
    obj: CliContext,
    files: tuple[str, ...],
    project_name: str | None,
    project_directory: str | None,
    profiles: tuple[str, ...],
    env_files: tuple[str, ...],
    progress_mode: str,
    ansi: str,
) -> None:
    """Define and run multi-container applications (Docker Compose)."""
    ctx.obj = ComposeContext(
        obj, files, project_name, project_directory, profiles, env_files, progress_mode, ansi
    )


def _register() -> None:
    import importlib

    # Imported by name at registration: the command modules import this one (a cycle).
    for module in ("compose_up", "compose_run", "compose_manage", "compose_query", "compose_config"):
        try:
            mod = importlib.import_module(f"skiff.cli.{module}")
        except ModuleNotFoundError as exc:
            if module == "compose_config" and exc.name == "skiff.cli.compose_config":
                continue  # the loader's ``config`` command, when present
            raise
        mod.register(compose)


def register(group: click.Group) -> None:
    """Add ``compose`` to the top-level group."""
    _register()
    group.add_command(compose)
