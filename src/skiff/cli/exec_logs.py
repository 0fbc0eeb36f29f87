"""``exec`` and ``logs``: running a process in a container, reading what it wrote."""

from __future__ import annotations

import sys
from typing import Any

import click

from skiff.cli.context import CliContext, ExitCode, fail, pass_cli, usage_errors
from skiff.cli.options.values import parse_env, read_kv_file
from skiff.cli.streamio import console_size, copy_output, pump
from skiff.errors import SkiffError


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command")
@click.option("--detach-keys", help="Override the key sequence for detaching a container (accepted)")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_cli
def exec_(obj: CliContext, /, container: str, command: tuple[str, ...], **opts: Any) -> None:
    """Execute a command in a running container.

    Usage: skiff exec [OPTIONS] CONTAINER COMMAND [ARG...]
    """
    with usage_errors():
        env = [line for path in opts["env_file"] for line in read_kv_file(path, env_lookup=True)]
        env += [e for e in (parse_env(v) for v in opts["env"]) if e]
    detach, tty, interactive = bool(opts["detach"]), bool(opts["tty"]), bool(opts["interactive"])
    body = {
        "User": opts["user"] or "",
        "Privileged": bool(opts["privileged"]),
        "Tty": tty,
        "AttachStdin": interactive and not detach,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Detach": detach,
        "Env": env or None,
        "WorkingDir": opts["workdir"] or "",
        "Cmd": list(command),
    }
    if tty and (size := console_size()):
        body["ConsoleSize"] = size
    client = obj.client
    try:
        exec_id = client.exec_create(container, body)
        stream = client.exec_start(exec_id, tty=tty, detach=detach)
    except SkiffError as exc:
        fail(exc, 126 if "executable" in exc.message else 1)
    if stream is None:
        return
    pump(
        stream, tty, sys.stdin.buffer if interactive else None, lambda h, w: client.exec_resize(exec_id, h, w)
    )
    raise ExitCode(int(client.exec_inspect(exec_id).get("ExitCode") or 0))


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help='Number of lines to show from the end ("all")')
@click.option("--since", help="Show logs since timestamp or relative (e.g. 42m)")
@click.option("--until", help="Show logs before a timestamp or relative (e.g. 42m)")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--details", is_flag=True, help="Show extra details provided to logs")
@click.argument("container")
@pass_cli
def logs(
    obj: CliContext,
    follow: bool,
    tail: str,
    since: str | None,
    until: str | None,
    timestamps: bool,
    details: bool,
    container: str,
) -> None:
    """Fetch the logs of a container."""
    client = obj.client
    info = client.inspect_container(container)
    tty = bool(info.get("Config", {}).get("Tty"))
    params: dict[str, Any] = {"stdout": 1, "stderr": 1, "tail": tail, "follow": int(follow)}
    params.update({k: v for k, v in (("since", since), ("until", until)) if v})
    if timestamps:
        params["timestamps"] = 1
    if details:
        params["details"] = 1
    try:
        copy_output(
            client.logs(str(info.get("Id", container)), params), tty, sys.stdout.buffer, sys.stderr.buffer
        )
    except KeyboardInterrupt:
        return


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(exec_)
    group.add_command(logs)
