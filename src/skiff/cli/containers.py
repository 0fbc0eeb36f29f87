"""``run``, ``create``, ``start``, ``attach``: making containers and talking to them."""

from __future__ import annotations

import sys
from typing import Any

import click

from skiff.cli.context import CliContext, ExitCode, fail, pass_cli, usage_errors
from skiff.cli.options.body import CreateRequest, build_create_request
from skiff.cli.options.flags import CONTAINER_OPTIONS, apply
from skiff.cli.progress import show_progress
from skiff.cli.streamio import console_size, pump
from skiff.client import Client
from skiff.client.credentials import registry_auth_header
from skiff.client.errors import DaemonError
from skiff.errors import NotFound, SkiffError
from skiff.images.reference import parse_reference

RUN_FAILED = 125  # docker: the daemon or the CLI failed before the command ran
CANNOT_INVOKE = 126
NOT_FOUND = 127
_ARGS = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def start_failure_code(message: str) -> int:
    """docker run's exit code for a failed start: 127 not found, 126 not executable, else 125."""
    text = message.lower()
    if "executable file not found" in text or "no such file" in text or "not found in $path" in text:
        return NOT_FOUND
    if "permission denied" in text:
        return CANNOT_INVOKE
    return RUN_FAILED


def _full_reference(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in image else image + ":latest"


def _pull(client: Client, image: str, quiet: bool) -> None:
    ref = parse_reference(image)
    header = registry_auth_header(ref.domain)
    show_progress(client.pull(ref.name(), ref.digest or ref.tag, registry_auth=header), quiet=quiet, err=True)


def create_container(client: Client, req: CreateRequest, pull: str, quiet: bool) -> str:
    """Create; on "No such image" pull once and retry, like docker. Returns the id."""
    image = str(req.body["Image"])
    if pull == "always":
        _pull(client, image, quiet)
    try:
        result = client.create_container(req.body, req.name)
    except NotFound as exc:
        if pull == "never" or "image" not in exc.message.lower():
            raise
        click.echo(f"Unable to find image '{_full_reference(image)}' locally", err=True)
        _pull(client, image, quiet)
        result = client.create_container(req.body, req.name)
    for warning in result.get("Warnings") or []:
        click.echo(f"WARNING: {warning}", err=True)
    cid = str(result["Id"])
    return cid


def _create_from_flags(obj: CliContext, params: dict[str, Any], image: str, command: tuple[str, ...]) -> str:
    with usage_errors():
        req = build_create_request(params, image, command)
    size = console_size() if req.body.get("Tty") else None
    if size:
        # The tty has the terminal's size from the first instruction (no 0x0 until a resize).
        req.body["HostConfig"]["ConsoleSize"] = size
    try:
        cid = create_container(
            obj.client, req, str(params.get("pull") or "missing"), bool(params.get("quiet"))
        )
    except SkiffError as exc:
        fail(exc, RUN_FAILED)
    if params.get("cidfile"):
        with open(str(params["cidfile"]), "x", encoding="utf-8") as fh:
            fh.write(cid)
    return cid


@click.command(context_settings=_ARGS)
@apply(CONTAINER_OPTIONS)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def run(obj: CliContext, /, image: str, command: tuple[str, ...], **params: Any) -> None:
    """Create and run a new container from an image.

    Usage: skiff run [OPTIONS] IMAGE [COMMAND] [ARG...]
    """
    if params["tty"] and not params["detach"] and params["interactive"] and not sys.stdin.isatty():
        fail(SkiffError("the input device is not a TTY"), 1)
    cid = _create_from_flags(obj, params, image, command)
    client = obj.client
    if params["detach"]:
        try:
            client.start(cid)
        except SkiffError as exc:
            fail(exc, start_failure_code(exc.message) if isinstance(exc, DaemonError) else RUN_FAILED)
        click.echo(cid)
        return
    raise ExitCode(_run_attached(client, cid, params))


def _run_attached(client: Client, cid: str, params: dict[str, Any]) -> int:
    tty, interactive = bool(params["tty"]), bool(params["interactive"])
    try:
        stream = client.attach(cid, stdin=interactive)
        # Wait is sent before start so a container that exits at once is not missed.
        waiter = client.wait(cid, "removed" if params["rm"] else "next-exit")
        client.start(cid)
    except SkiffError as exc:
        fail(exc, start_failure_code(exc.message) if isinstance(exc, DaemonError) else RUN_FAILED)
    resize = (lambda h, w: client.resize(cid, h, w)) if tty else None
    pump(stream, tty, sys.stdin.buffer if interactive else None, resize)
    try:
        result = waiter.result()
    except SkiffError as exc:
        fail(exc, RUN_FAILED)
    error = result.get("Error") or {}
    if isinstance(error, dict) and error.get("Message"):
        click.echo(f"Error response from daemon: {error['Message']}", err=True)
    return int(result.get("StatusCode", 0))


@click.command(context_settings=_ARGS)
@apply(CONTAINER_OPTIONS)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def create(obj: CliContext, /, image: str, command: tuple[str, ...], **params: Any) -> None:
    """Create a new container.

    Usage: skiff create [OPTIONS] IMAGE [COMMAND] [ARG...]
    """
    # create never attaches: the flags only shape Attach*/StdinOnce like docker's.
    click.echo(_create_from_flags(obj, params, image, command))


@click.command()
@click.option("-a", "--attach", "attach_", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@click.option("--detach-keys", help="Override the key sequence for detaching a container (accepted)")
@click.argument("containers", nargs=-1, required=True)
@pass_cli
def start(
    obj: CliContext, attach_: bool, interactive: bool, detach_keys: str | None, containers: tuple[str, ...]
) -> None:
    """Start one or more stopped containers."""
    client = obj.client
    if not (attach_ or interactive):
        from skiff.cli.context import for_each

        for_each(containers, client.start)
        return
    if len(containers) > 1:
        raise click.UsageError("you cannot start and attach multiple containers at once")
    ref = containers[0]
    try:
        info = client.inspect_container(ref)
        tty = bool(info.get("Config", {}).get("Tty"))
        stream = client.attach(ref, stdin=interactive)
        waiter = client.wait(ref, "next-exit")
        client.start(ref)
    except SkiffError as exc:
        fail(exc, 1)
    pump(stream, tty, sys.stdin.buffer if interactive else None, lambda h, w: client.resize(ref, h, w))
    raise ExitCode(int(waiter.result().get("StatusCode", 0)))


@click.command()
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process")
@click.option("--detach-keys", help="Override the key sequence for detaching a container (accepted)")
@click.argument("container")
@pass_cli
def attach(obj: CliContext, no_stdin: bool, sig_proxy: bool, detach_keys: str | None, container: str) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    client = obj.client
    try:
        info = client.inspect_container(container)
        if info.get("State", {}).get("Status") != "running":
            fail(SkiffError("You cannot attach to a stopped container, start it first"), 1)
        config = info.get("Config", {})
        tty = bool(config.get("Tty"))
        with_stdin = bool(config.get("OpenStdin")) and not no_stdin
        stream = client.attach(container, stdin=with_stdin)
        waiter = client.wait(container, "next-exit")
    except SkiffError as exc:
        fail(exc, 1)
    pump(stream, tty, sys.stdin.buffer if with_stdin else None, lambda h, w: client.resize(container, h, w))
    raise ExitCode(int(waiter.result().get("StatusCode", 0)))


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for command in (run, create, start, attach):
        group.add_command(command)
