"""Exec routes: /containers/{id}/exec and /exec/*."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from skiff.api.app import Routes, engine_of, qint, read_json
from skiff.api.containers import ProcessStream, pump
from skiff.api.convert import _bool, _str, _strs, console_size
from skiff.api.streams import STDERR, STDOUT, EscapeProxy, frame, hijack, parse_detach_keys
from skiff.engine.model import ExecConfig
from skiff.errors import InvalidArgument, SkiffError


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the request body must be a JSON object")
    parse_detach_keys(_str(body.get("DetachKeys", body.get("detachKeys")), "DetachKeys"))  # 400 when invalid
    config = ExecConfig(
        id="",
        container_id="",
        cmd=_strs(body.get("Cmd"), "Cmd"),
        tty=_bool(body.get("Tty")),
        attach_stdin=_bool(body.get("AttachStdin")),
        attach_stdout=_bool(body.get("AttachStdout", True)),
        attach_stderr=_bool(body.get("AttachStderr", True)),
        env=_strs(body.get("Env"), "Env"),
        user=_str(body.get("User"), "User"),
        working_dir=_str(body.get("WorkingDir"), "WorkingDir"),
        privileged=_bool(body.get("Privileged")),
        detach_keys=_str(body.get("DetachKeys", body.get("detachKeys")), "DetachKeys"),
        console_size=console_size(body.get("ConsoleSize")),
    )
    created = engine_of(request).execs.create(request.match_info["id"], config)
    return web.json_response({"Id": created.id}, status=201)


async def start(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    body = await read_json(request, default={}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the request body must be a JSON object")
    state = engine.execs.get(request.match_info["id"])
    detach = _bool(body.get("Detach"))
    # Framing follows the start request's Tty, as in dockerd (docker-py asks for frames from an
    # exec created with a TTY); the process gets a TTY when it was created with one.
    tty = _bool(body.get("Tty"))
    if detach:
        await engine.execs.start(state.config.id, detach=True)
        return web.Response(status=200)
    # Check what can fail with a proper status first; the process starts only after the
    # upgrade, as in dockerd: output queued before the 101 head could share its read and
    # vanish into the client's header buffer (docker-py then misses it).
    engine.execs.check_startable(state.config.id)
    response, raw = await hijack(request, multiplexed=not tty)
    cfg = state.config

    async def send(stream: int, data: bytes) -> bool:
        if (stream == STDOUT and not cfg.attach_stdout) or (stream == STDERR and not cfg.attach_stderr):
            return True
        return await raw.write(data if tty else frame(stream, data))

    try:
        process = await engine.execs.start(state.config.id, tty=cfg.tty, detach=False)
        escape = EscapeProxy(parse_detach_keys(cfg.detach_keys)) if cfg.tty else None
        if await pump(raw, process, send, cfg.attach_stdin, escape=escape):
            # Detached: the process runs on; its output is drained so it never blocks on a full pty.
            task = asyncio.get_running_loop().create_task(_drain(process))
            _DRAINING.add(task)
            task.add_done_callback(_DRAINING.discard)
            return response
        process.close()
        await engine.execs.wait(cfg.id)
    except SkiffError as exc:
        await raw.write(exc.message.encode() if tty else frame(3, exc.message.encode()))
    finally:
        raw.close()
    return response


_DRAINING: set[asyncio.Task[None]] = set()


async def _drain(process: ProcessStream) -> None:
    with contextlib.suppress(Exception):
        while await process.read() is not None:
            pass
    with contextlib.suppress(Exception):
        process.close()


async def inspect(request: web.Request) -> web.Response:
    engine = engine_of(request)
    state = engine.execs.get(request.match_info["id"])
    cfg = state.config
    c = engine.containers.get(cfg.container_id)
    return web.json_response(
        {
            "ID": cfg.id,
            "Running": state.running,
            "ExitCode": state.exit_code,
            "ProcessConfig": {
                "tty": cfg.tty,
                "entrypoint": cfg.cmd[0] if cfg.cmd else "",
                "arguments": list(cfg.cmd[1:]),
                "privileged": cfg.privileged,
                "user": cfg.user,
            },
            "OpenStdin": cfg.attach_stdin,
            "OpenStderr": cfg.attach_stderr,
            "OpenStdout": cfg.attach_stdout,
            "CanRemove": False,
            "ContainerID": c.id,
            "DetachKeys": cfg.detach_keys,
            "Pid": state.pid,
        }
    )


async def resize(request: web.Request) -> web.Response:
    await engine_of(request).execs.resize(
        request.match_info["id"], qint(request, "h", 0) or 0, qint(request, "w", 0) or 0
    )
    return web.Response(status=201)


def register(routes: Routes) -> None:
    routes.add("POST", "/containers/{id}/exec", create)
    routes.add("POST", "/exec/{id}/start", start)
    routes.add("POST", "/exec/{id}/resize", resize)
    routes.add("GET", "/exec/{id}/json", inspect)
