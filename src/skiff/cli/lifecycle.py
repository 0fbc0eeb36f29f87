"""stop, restart, kill, rm, pause, unpause, wait, rename, update, port, top."""

from __future__ import annotations

import re
from typing import Any

import click

from skiff.cli.context import CliContext, ExitCode, error_text, for_each, pass_cli, usage_errors
from skiff.cli.format.table import tabwrite
from skiff.cli.options.body import Flags, resources
from skiff.cli.options.flags import RESOURCE_OPTIONS, apply
from skiff.cli.options.values import parse_restart
from skiff.errors import InvalidArgument, SkiffError

_REFS = click.argument("containers", nargs=-1, required=True)


@click.command()
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container")
@click.option("-s", "--signal", help="Signal to send to the container")
@_REFS
@pass_cli
def stop(obj: CliContext, timeout: int | None, signal: str | None, containers: tuple[str, ...]) -> None:
    """Stop one or more running containers."""
    for_each(containers, lambda ref: obj.client.stop(ref, timeout, signal))


@click.command()
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container")
@click.option("-s", "--signal", help="Signal to send to the container")
@_REFS
@pass_cli
def restart(obj: CliContext, timeout: int | None, signal: str | None, containers: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    for_each(containers, lambda ref: obj.client.restart(ref, timeout, signal))


@click.command()
@click.option("-s", "--signal", default=None, help="Signal to send to the container (default KILL)")
@_REFS
@pass_cli
def kill(obj: CliContext, signal: str | None, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    for_each(containers, lambda ref: obj.client.kill(ref, signal))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container")
@click.option("-l", "--link", is_flag=True, help="Remove the specified link (accepted)")
@_REFS
@pass_cli
def rm(obj: CliContext, force: bool, volumes: bool, link: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    for_each(containers, lambda ref: obj.client.remove_container(ref, force=force, volumes=volumes))


@click.command()
@_REFS
@pass_cli
def pause(obj: CliContext, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    for_each(containers, obj.client.pause)


@click.command()
@_REFS
@pass_cli
def unpause(obj: CliContext, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    for_each(containers, obj.client.unpause)


@click.command()
@_REFS
@pass_cli
def wait(obj: CliContext, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""

    def one(ref: str) -> None:
        click.echo(obj.client.wait(ref).result().get("StatusCode", 0))

    for_each(containers, one, echo=False)


@click.command()
@click.argument("container")
@click.argument("new_name")
@pass_cli
def rename(obj: CliContext, container: str, new_name: str) -> None:
    """Rename a container."""
    obj.client.rename(container, new_name)


@click.command()
@apply(RESOURCE_OPTIONS)
@_REFS
@pass_cli
def update(obj: CliContext, /, containers: tuple[str, ...], **params: Any) -> None:
    """Update configuration (resources, restart policy) of one or more containers."""
    with usage_errors():
        body = resources(Flags(params))
        if params.get("restart"):
            body["RestartPolicy"] = parse_restart(str(params["restart"]))
        if not body:
            raise InvalidArgument("you must provide one or more flags when using this command")
    for_each(containers, lambda ref: _update_one(obj, ref, body))


def _update_one(obj: CliContext, ref: str, body: dict[str, Any]) -> None:
    for warning in obj.client.update(ref, body).get("Warnings") or []:
        click.echo(f"WARNING: {warning}", err=True)


@click.command()
@click.argument("container")
@click.argument("private_port", metavar="[PRIVATE_PORT[/PROTO]]", required=False)
@pass_cli
def port(obj: CliContext, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    ports = obj.client.inspect_container(container).get("NetworkSettings", {}).get("Ports") or {}
    out: list[str] = []
    if private_port:
        number, _, proto = private_port.partition("/")
        if not number.isdigit() or int(number) > 65535:
            raise SkiffError(f"Error: invalid port ({number})")
        bindings = ports.get(f"{number}/{proto or 'tcp'}") or []
        if not bindings:
            raise SkiffError(f"Error: No public port '{private_port}' published for {container}")
        out = [_join_host_port(b) for b in bindings]
    else:
        out = [f"{key} -> {_join_host_port(b)}" for key, bindings in ports.items() for b in bindings or []]
    if out:
        click.echo("\n".join(sorted(out, key=_natural_key)))


def _join_host_port(binding: dict[str, Any]) -> str:
    ip, port_ = str(binding.get("HostIp") or ""), binding.get("HostPort")
    return f"[{ip}]:{port_}" if ":" in ip else f"{ip}:{port_}"


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    """docker's sortorder.NaturalLess: digit runs compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part]


@click.command(context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def top(obj: CliContext, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container.

    Usage: skiff top CONTAINER [ps OPTIONS]
    """
    try:
        result = obj.client.top(container, " ".join(ps_args) or None)
    except SkiffError as exc:
        click.echo(error_text(exc), err=True)
        raise ExitCode(1) from exc
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(str(c) for c in row) for row in result.get("Processes") or []]
    click.echo(tabwrite("\n".join(lines), minwidth=1))


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for command in (stop, restart, kill, rm, pause, unpause, wait, rename, update, port, top):
        group.add_command(command)
