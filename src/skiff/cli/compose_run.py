"""``compose run`` (a one-off container of a service) and ``compose exec``."""

from __future__ import annotations

import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from skiff.cli.compose import ComposeContext, pass_compose, shown
from skiff.cli.context import ExitCode, fail
from skiff.cli.options.values import parse_env
from skiff.cli.streamio import console_size, pump
from skiff.compose import labels as L
from skiff.compose import ops
from skiff.compose.convert import Peer, container_request
from skiff.compose.executor import Executor
from skiff.compose.handle import ProjectHandle
from skiff.compose.images import ensure_images
from skiff.compose.observed import list_containers
from skiff.errors import InvalidArgument, SkiffError

_ARGS = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def _short_volume(value: str, working_dir: str) -> dict[str, Any]:
    """``-v src:dst[:ro]`` in long form (a path source is a bind, a name a volume)."""
    parts = value.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    read_only = len(parts) > 2 and "ro" in parts[2].split(",")
    if source.startswith((".", "/", "~")):
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = Path(working_dir or ".") / path
        return {
            "type": "bind",
            "source": str(path.resolve()),
            "target": target,
            "read_only": read_only,
            "bind": {"create_host_path": True},
        }
    return {"type": "volume", "source": source, "target": target, "read_only": read_only}


def _short_port(value: str) -> dict[str, Any]:
    """``-p [ip:]host:container[/proto]`` in long form."""
    spec, _, proto = value.partition("/")
    parts = spec.rsplit(":", 2)
    if len(parts) == 1:
        return {"target": int(parts[0]), "protocol": proto or "tcp"}
    if len(parts) == 2:
        return {"published": parts[0], "target": int(parts[1]), "protocol": proto or "tcp"}
    return {"host_ip": parts[0], "published": parts[1], "target": int(parts[2]), "protocol": proto or "tcp"}


def _one_off(h: ProjectHandle, service: str, command: tuple[str, ...], o: dict[str, Any]) -> dict[str, Any]:
    svc = ops.one_off_defaults(h.services[service])
    if not o["service_ports"]:
        svc.pop("ports", None)
    else:
        svc["ports"] = h.services[service].get("ports")
    if command:
        svc["command"] = list(command)
    if o["entrypoint"] is not None:
        svc["entrypoint"] = shlex.split(o["entrypoint"])
    env = dict(svc.get("environment") or {})
    for e in o["env"]:
        text = parse_env(e)
        if text:
            key, sep, val = text.partition("=")
            env[key] = val if sep else None
    if env:
        svc["environment"] = env
    for key, flag in (("user", "user"), ("working_dir", "workdir")):
        if o[flag]:
            svc[key] = o[flag]
    labels = dict(svc.get("labels") or {})
    for item in o["label"]:
        k, _, v = item.partition("=")
        labels[k] = v
    if labels:
        svc["labels"] = labels
    if o["volume"]:
        svc["volumes"] = [
            *(svc.get("volumes") or []),
            *(_short_volume(v, h.info.working_dir) for v in o["volume"]),
        ]
    if o["publish"]:
        svc["ports"] = [*(svc.get("ports") or []), *(_short_port(p) for p in o["publish"])]
    for key, flag in (("cap_add", "cap_add"), ("cap_drop", "cap_drop")):
        if o[flag]:
            svc[key] = [*(svc.get(key) or []), *o[flag]]
    tty = not o["no_tty"] and sys.stdin.isatty() and not o["detach"]
    svc["tty"] = tty
    svc["stdin_open"] = bool(o["interactive"]) and not o["detach"]
    return svc


@click.command("run", context_settings=_ARGS)
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
@click.option("--rm", is_flag=True, help="Automatically remove the container when it exits")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("-l", "--label", multiple=True, help="Add or override a label")
@click.option("--entrypoint", help="Override the entrypoint of the image")
@click.option("-u", "--user", help="Run as specified username or uid")
@click.option("-w", "--workdir", help="Working directory inside the container")
@click.option("--name", help="Assign a name to the container")
@click.option(
    "-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation (default: auto-detected)"
)
@click.option(
    "-i", "--interactive/--no-interactive", default=True, help="Keep STDIN open even if not attached"
)
@click.option("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host")
@click.option(
    "-P",
    "--service-ports",
    is_flag=True,
    help="Run command with all service's ports enabled and mapped to the host",
)
@click.option(
    "--use-aliases",
    is_flag=True,
    help="Use the service's network aliases in the network(s) the container connects to",
)
@click.option("-v", "--volume", multiple=True, help="Bind mount a volume")
@click.option("--no-deps", is_flag=True, help="Don't start linked services")
@click.option("--build", is_flag=True, help="Build image before starting container")
@click.option(
    "--remove-orphans", is_flag=True, help="Remove containers for services not defined in the Compose file"
)
@click.option("--cap-add", multiple=True, help="Add Linux capabilities")
@click.option("--cap-drop", multiple=True, help="Drop Linux capabilities")
@click.option("--quiet-pull", is_flag=True, help="Pull without printing progress information")
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_compose
def run(c: ComposeContext, /, service: str, command: tuple[str, ...], **o: Any) -> None:
    """Run a one-off command on a service."""
    h = c.handle((service,))
    if service not in h.services:
        raise InvalidArgument(f"no such service: {service}")
    deps = [d for d in h.select((service,)) if d != service]
    with shown(h):
        if deps and not o["no_deps"]:
            ops.up(h, ops.UpOptions(services=tuple(deps), remove_orphans=bool(o["remove_orphans"])), _stderr)
        ids = ensure_images(
            h.client,
            h.name,
            {service: h.services[service]},
            h.progress,
            _stderr,
            build="always" if o["build"] else "auto",
        )
    svc = _one_off(h, service, command, o)
    slug = secrets.token_hex(32)
    name = o["name"] or f"{h.name}-{service}-run-{slug[:12]}"
    peers: dict[str, list[Peer]] = {}
    for x in list_containers(h.client, h.name):
        peers.setdefault(x.service, []).append(Peer(x.name, x.id))
    req = container_request(
        h.info,
        service,
        svc,
        None,
        peers=peers,
        image_id=ids.get(service),
        name=name,
        oneoff=True,
        service_alias=bool(o["use_aliases"]),
    )
    req.body["Labels"][L.SLUG] = slug
    interactive = bool(svc["stdin_open"])
    host = req.body["HostConfig"]
    if o["rm"]:
        host["AutoRemove"] = True
    if interactive:
        req.body.update({"AttachStdin": True, "OpenStdin": True, "StdinOnce": True})
    if svc["tty"] and (size := console_size()):
        host["ConsoleSize"] = size
    ex = Executor(h)
    try:
        cid = ex.create_from(req, name)
    except SkiffError as exc:
        fail(exc, 1)
    client = h.client
    if o["detach"]:
        client.start(cid)
        click.echo(name)
        return
    tty = bool(svc["tty"])
    try:
        stream = client.attach(cid, stdin=interactive)
        waiter = client.wait(cid, "removed" if o["rm"] else "next-exit")
        client.start(cid)
    except SkiffError as exc:
        fail(exc, 1)
    resize = (lambda hh, w: client.resize(cid, hh, w)) if tty else None
    pump(stream, tty, sys.stdin.buffer if interactive else None, resize)
    result = waiter.result()
    raise ExitCode(int(result.get("StatusCode", 0)))


def _stderr(line: str) -> None:
    sys.stderr.write(line)
    sys.stderr.flush()


@click.command("exec", context_settings=_ARGS)
@click.option("-d", "--detach", is_flag=True, help="Detached mode: Run command in the background")
@click.option("-e", "--env", multiple=True, help="Set environment variables")
@click.option("-u", "--user", help="Run the command as this user")
@click.option("-w", "--workdir", help="Path to workdir directory for this command")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the process")
@click.option(
    "-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation (default: auto-detected)"
)
@click.option(
    "-i", "--interactive/--no-interactive", default=True, help="Keep STDIN open even if not attached"
)
@click.option("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_compose
def exec_(c: ComposeContext, /, service: str, command: tuple[str, ...], **o: Any) -> None:
    """Execute a command in a running container."""
    h = c.handle((service,), file_optional=True)
    target = ops.find_container(h, service, int(o["index"]))
    if not target.running:
        raise InvalidArgument(f"service {service!r} is not running")
    detach = bool(o["detach"])
    tty = not o["no_tty"] and sys.stdin.isatty() and not detach
    interactive = bool(o["interactive"]) and not detach
    env = [e for e in (parse_env(v) for v in o["env"]) if e]
    body = {
        "User": o["user"] or "",
        "Privileged": bool(o["privileged"]),
        "Tty": tty,
        "AttachStdin": interactive,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Detach": detach,
        "Env": env or None,
        "WorkingDir": o["workdir"] or "",
        "Cmd": list(command),
    }
    if tty and (size := console_size()):
        body["ConsoleSize"] = size
    client = h.client
    try:
        exec_id = client.exec_create(target.id, body)
        stream = client.exec_start(exec_id, tty=tty, detach=detach)
    except SkiffError as exc:
        fail(exc, 126 if "executable" in exc.message else 1)
    if stream is None:
        return
    pump(
        stream,
        tty,
        sys.stdin.buffer if interactive else None,
        lambda hh, w: client.exec_resize(exec_id, hh, w),
    )
    raise ExitCode(int(client.exec_inspect(exec_id).get("ExitCode") or 0))


def register(group: click.Group) -> None:
    group.add_command(run)
    group.add_command(exec_)
