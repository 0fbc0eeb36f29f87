"""``compose start|stop|restart|kill|rm|pause|unpause``: lifecycle of existing containers."""

from __future__ import annotations

import click

from skiff.cli.compose import ComposeContext, pass_compose, shown
from skiff.compose import ops


@click.command("start")
@click.argument("services", nargs=-1)
@pass_compose
def start(c: ComposeContext, services: tuple[str, ...]) -> None:
    """Start services."""
    h = c.handle(services, file_optional=True)
    with shown(h):
        ops.start(h, services)


@click.command("stop")
@click.option("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
@click.argument("services", nargs=-1)
@pass_compose
def stop(c: ComposeContext, timeout: int | None, services: tuple[str, ...]) -> None:
    """Stop services."""
    h = c.handle(services, file_optional=True, title="Stopping")
    with shown(h):
        ops.stop(h, services, timeout)


@click.command("restart")
@click.option("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
@click.option("--no-deps", is_flag=True, help="Don't restart dependent services")
@click.argument("services", nargs=-1)
@pass_compose
def restart(c: ComposeContext, timeout: int | None, no_deps: bool, services: tuple[str, ...]) -> None:
    """Restart service containers."""
    h = c.handle(services, file_optional=True, title="Restarting")
    with shown(h):
        ops.restart(h, services, timeout)


@click.command("kill")
@click.option("-s", "--signal", default="SIGKILL", help="SIGNAL to send to the container")
@click.option(
    "--remove-orphans", is_flag=True, help="Remove containers for services not defined in the Compose file"
)
@click.argument("services", nargs=-1)
@pass_compose
def kill(c: ComposeContext, signal: str, remove_orphans: bool, services: tuple[str, ...]) -> None:
    """Force stop service containers."""
    h = c.handle(services, file_optional=True, title="Killing")
    with shown(h):
        ops.kill(h, services, signal)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Don't ask to confirm removal")
@click.option("-s", "--stop", "stop_", is_flag=True, help="Stop the containers, if required, before removing")
@click.option("-v", "--volumes", is_flag=True, help="Remove any anonymous volumes attached to containers")
@click.argument("services", nargs=-1)
@pass_compose
def rm(c: ComposeContext, force: bool, stop_: bool, volumes: bool, services: tuple[str, ...]) -> None:
    """Removes stopped service containers."""
    h = c.handle(services, file_optional=True, title="Removing")
    found = ops.removable(h, services, stopped_too=stop_)
    if not found:
        click.echo("No stopped containers", err=True)
        return
    if not force:
        click.echo(f"Going to remove {', '.join(x.name for x in found)}", err=True)
        if not click.confirm("Are you sure?", default=False, err=True):
            return
    with shown(h):
        ops.rm(h, found, volumes)


@click.command("pause")
@click.argument("services", nargs=-1)
@pass_compose
def pause(c: ComposeContext, services: tuple[str, ...]) -> None:
    """Pause services."""
    h = c.handle(services, file_optional=True, title="Pausing")
    with shown(h):
        ops.pause(h, services)


@click.command("unpause")
@click.argument("services", nargs=-1)
@pass_compose
def unpause(c: ComposeContext, services: tuple[str, ...]) -> None:
    """Unpause services."""
    h = c.handle(services, file_optional=True, title="Unpausing")
    with shown(h):
        ops.unpause(h, services)


def register(group: click.Group) -> None:
    for cmd in (start, stop, restart, kill, rm, pause, unpause):
        group.add_command(cmd)
