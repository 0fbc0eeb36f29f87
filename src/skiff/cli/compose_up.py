"""``compose up``, ``create``, ``down``, ``build``, ``pull``, ``push``."""

from __future__ import annotations

import sys
from typing import Any

import click

from skiff.cli.compose import ComposeContext, parse_scale, pass_compose, shown
from skiff.cli.context import ExitCode
from skiff.cli.options.flags import apply
from skiff.compose import ops
from skiff.compose.attach import AttachedSession
from skiff.compose.convert import image_name
from skiff.compose.images import build_service, pull_image, push_image
from skiff.compose.logs import LogPrinter
from skiff.compose.plan import DIVERGED, FORCE, NEVER
from skiff.errors import InvalidArgument, SkiffError


def _build_output(line: str) -> None:
    sys.stderr.write(line)
    sys.stderr.flush()


def _recreate_flags(force: bool, no_recreate: bool, always_deps: bool = False) -> tuple[str, str]:
    if force and no_recreate:
        raise click.UsageError("--force-recreate and --no-recreate are incompatible")
    policy = FORCE if force else NEVER if no_recreate else DIVERGED
    return policy, FORCE if always_deps else DIVERGED


def _build_mode(build: bool, no_build: bool) -> str:
    if build and no_build:
        raise click.UsageError("--build and --no-build are incompatible")
    return "always" if build else "never" if no_build else "auto"


_UP_OPTIONS = [
    click.option("--build", is_flag=True, help="Build images before starting containers"),
    click.option("--no-build", is_flag=True, help="Don't build an image, even if it's missing"),
    click.option(
        "--force-recreate",
        is_flag=True,
        help="Recreate containers even if their configuration hasn't changed",
    ),
    click.option("--no-recreate", is_flag=True, help="If containers already exist, don't recreate them"),
    click.option("--always-recreate-deps", is_flag=True, help="Recreate dependent containers"),
    click.option("--no-deps", is_flag=True, help="Don't start linked services"),
    click.option(
        "--remove-orphans",
        is_flag=True,
        help="Remove containers for services not defined in the Compose file",
    ),
    click.option("--scale", multiple=True, metavar="SERVICE=NUM", help="Scale SERVICE to NUM instances"),
    click.option(
        "--pull",
        type=click.Choice(["always", "missing", "never"]),
        default="missing",
        help="Pull image before running",
    ),
    click.option(
        "-V", "--renew-anon-volumes", is_flag=True, help="Recreate anonymous volumes instead of reusing them"
    ),
]


@click.command("up")
@apply(_UP_OPTIONS)
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run containers in the background")
@click.option("--wait", is_flag=True, help="Wait for services to be running|healthy (implies --detach)")
@click.option(
    "--abort-on-container-exit", is_flag=True, help="Stop all containers if any container was stopped"
)
@click.option(
    "--exit-code-from", metavar="SERVICE", help="Return the exit code of the selected service container"
)
@click.option(
    "--attach",
    "attach_to",
    multiple=True,
    metavar="SERVICE",
    help="Restrict attaching to the specified services",
)
@click.option("--no-start", is_flag=True, help="Don't start the services after creating them")
@click.option("--no-color", is_flag=True, help="Produce monochrome output")
@click.option("--no-log-prefix", is_flag=True, help="Don't print prefix in logs")
@click.option("-t", "--timeout", type=int, help="Shutdown timeout in seconds")
@click.argument("services", nargs=-1)
@pass_compose
def up(c: ComposeContext, /, services: tuple[str, ...], **o: Any) -> None:
    """Create and start containers."""
    detach = bool(o["detach"]) or bool(o["wait"]) or bool(o["no_start"])
    exit_code_from = o["exit_code_from"]
    abort = bool(o["abort_on_container_exit"]) or exit_code_from is not None
    if detach and abort:
        raise click.UsageError(
            "--abort-on-container-exit and --exit-code-from cannot be combined with --detach"
        )
    recreate, recreate_deps = _recreate_flags(
        bool(o["force_recreate"]), bool(o["no_recreate"]), bool(o["always_recreate_deps"])
    )
    opts = ops.UpOptions(
        services=services,
        no_deps=bool(o["no_deps"]),
        recreate=recreate,
        recreate_deps=recreate_deps,
        build=_build_mode(bool(o["build"]), bool(o["no_build"])),
        pull=str(o["pull"]),
        scale=parse_scale(o["scale"]),
        remove_orphans=bool(o["remove_orphans"]),
        timeout=o["timeout"],
        renew_anon_volumes=bool(o["renew_anon_volumes"]),
        start=not o["no_start"],
        wait=bool(o["wait"]),
    )
    h = c.handle(services)
    if exit_code_from is not None and exit_code_from not in h.services:
        raise InvalidArgument(f"no such service: {exit_code_from}")
    if detach:
        with shown(h):
            ops.up(h, opts, _build_output)
        return
    printer = LogPrinter(sys.stdout, color=c.color() and not o["no_color"], prefix=not o["no_log_prefix"])
    attach_to = set(o["attach_to"]) if o["attach_to"] else None
    session = AttachedSession(h.client, h.name, h.services, printer, attach_to=attach_to)
    printer.hold()
    try:
        with shown(h):
            _, ex = ops.up(h, opts, _build_output, before_start=session.hook)
        names = [session.short(n.name, h.name) for svc in ex.peers.values() for n in svc]
        printer.register(sorted(names))
        click.echo(f"Attaching to {', '.join(sorted(names))}")
    finally:
        printer.release()
    session.watch_events()
    aborted = False
    try:
        code, aborted = session.wait(abort, exit_code_from)
    except KeyboardInterrupt:
        session.stopping.set()
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        ops.stop(c.handle(services, title="Stopping"), services, opts.timeout)
        raise ExitCode(130) from None
    if aborted:
        session.stopping.set()
        click.echo("Aborting on container exit...", err=True)
        stopper = c.handle(services, title="Stopping")
        with shown(stopper):
            ops.stop(stopper, services, opts.timeout)
    raise ExitCode(code)


@click.command("create")
@apply(_UP_OPTIONS)
@click.argument("services", nargs=-1)
@pass_compose
def create(c: ComposeContext, /, services: tuple[str, ...], **o: Any) -> None:
    """Creates containers for a service."""
    recreate, recreate_deps = _recreate_flags(
        bool(o["force_recreate"]), bool(o["no_recreate"]), bool(o["always_recreate_deps"])
    )
    opts = ops.UpOptions(
        services=services,
        no_deps=bool(o["no_deps"]),
        recreate=recreate,
        recreate_deps=recreate_deps,
        build=_build_mode(bool(o["build"]), bool(o["no_build"])),
        pull=str(o["pull"]),
        scale=parse_scale(o["scale"]),
        remove_orphans=bool(o["remove_orphans"]),
        renew_anon_volumes=bool(o["renew_anon_volumes"]),
        start=False,
    )
    h = c.handle(services)
    with shown(h):
        ops.up(h, opts, _build_output)


@click.command("down")
@click.option(
    "--remove-orphans", is_flag=True, help="Remove containers for services not defined in the Compose file"
)
@click.option(
    "-v",
    "--volumes",
    is_flag=True,
    help="Remove named volumes declared in the volumes section and anonymous volumes",
)
@click.option("--rmi", type=click.Choice(["local", "all"]), help="Remove images used by services")
@click.option("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
@pass_compose
def down(
    c: ComposeContext, remove_orphans: bool, volumes: bool, rmi: str | None, timeout: int | None
) -> None:
    """Stop and remove containers, networks."""
    h = c.handle(file_optional=True)
    with shown(h):
        ops.down(h, ops.DownOptions(remove_orphans, volumes, rmi, timeout))


@click.command("build")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the image")
@click.option("-q", "--quiet", is_flag=True, help="Don't print anything to STDOUT")
@click.argument("services", nargs=-1)
@pass_compose
def build(c: ComposeContext, no_cache: bool, pull: bool, quiet: bool, services: tuple[str, ...]) -> None:
    """Build or rebuild services."""
    h = c.handle(services)
    chosen = h.select(services, deps=False)
    output = (lambda _line: None) if quiet else _build_output
    for name, svc in sorted(chosen.items()):
        if not svc.get("build"):
            continue
        if not quiet:
            click.echo(f"Building {name}", err=True)
        build_service(h.client, h.name, name, svc, output, no_cache=no_cache, pull=pull)


@click.command("pull")
@click.option("-q", "--quiet", is_flag=True, help="Pull without printing progress information")
@click.option("--ignore-buildable", is_flag=True, help="Ignore images that can be built")
@click.option(
    "--ignore-pull-failures", is_flag=True, help="Pull what it can and ignores images with pull failures"
)
@click.argument("services", nargs=-1)
@pass_compose
def pull(
    c: ComposeContext,
    quiet: bool,
    ignore_buildable: bool,
    ignore_pull_failures: bool,
    services: tuple[str, ...],
) -> None:
    """Pull service images."""
    h = c.handle(services, title="Pulling")
    chosen = h.select(services, deps=False)
    failed = False
    with shown(h):
        for name, svc in sorted(chosen.items()):
            if not svc.get("image") or (ignore_buildable and svc.get("build")):
                continue
            try:
                pull_image(h.client, str(svc["image"]), h.progress, name)
            except SkiffError:
                if svc.get("build"):
                    continue  # Compose: a buildable image that cannot be pulled is built later
                if not ignore_pull_failures:
                    failed = True
    if failed:
        raise ExitCode(1)


@click.command("push")
@click.option(
    "--ignore-push-failures", is_flag=True, help="Push what it can and ignores images with push failures"
)
@click.option("-q", "--quiet", is_flag=True, help="Push without printing progress information")
@click.argument("services", nargs=-1)
@pass_compose
def push(c: ComposeContext, ignore_push_failures: bool, quiet: bool, services: tuple[str, ...]) -> None:
    """Push service images."""
    h = c.handle(services, title="Pushing")
    chosen = h.select(services, deps=False)
    with shown(h):
        for name, svc in sorted(chosen.items()):
            if not svc.get("image") and not svc.get("build"):
                continue
            try:
                push_image(h.client, image_name(h.name, name, svc), h.progress)
            except SkiffError:
                if not ignore_push_failures:
                    raise


def register(group: click.Group) -> None:
    for cmd in (up, create, down, build, pull, push):
        group.add_command(cmd)
