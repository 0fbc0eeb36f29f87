"""Container routes: /containers/*."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from skiff.api.app import Routes, engine_of, qbool, qfilters, qint, read_json, timestamp_ns
from skiff.api.convert import spec_from_create, update_host_config
from skiff.api.filters import check_container_filters, container_matches
from skiff.api.render import container_inspect, container_summary
from skiff.api.stats import stats_json
from skiff.api.streams import STDERR, STDOUT, EscapeProxy, RawConnection, frame, hijack, parse_detach_keys
from skiff.errors import Conflict, InvalidArgument, NotFound, SkiffError
from skiff.runtime.cgroups import list_pids, top
from skiff.runtime.logs import follow_log, iter_log


async def list_containers(request: web.Request) -> web.Response:
    engine = engine_of(request)
    filters = qfilters(request)
    check_container_filters(filters)
    show_all = qbool(request, "all")
    limit = qint(request, "limit", -1) or -1
    containers = engine.containers.list()
    if ancestors := filters.get("ancestor"):
        wanted = set()
        for ref in ancestors:
            with contextlib.suppress(SkiffError):
                wanted.add(engine.images.get(ref).id)
        containers = [c for c in containers if c.image_id in wanted or c.spec.image in ancestors]
    for key in ("before", "since"):
        if refs := filters.get(key):
            pivot = engine.containers.get(refs[0])
            if key == "before":
                containers = [c for c in containers if c.created < pivot.created]
            else:
                containers = [c for c in containers if c.created > pivot.created]
    if not show_all and limit <= 0 and "status" not in filters:
        containers = [c for c in containers if c.state.status in ("running", "paused", "restarting")]
    networks = {n.name: n for n in engine.networks.list()}
    network_ids = {name: n.id for name, n in networks.items()}
    containers = [c for c in containers if container_matches(c, filters, network_ids=network_ids)]
    if limit > 0:
        containers = containers[:limit]
    now = time.time()
    with_size = qbool(request, "size")
    # dockerd lists a legacy link's target under "/parent/alias" too
    link_names: dict[str, list[str]] = {}
    for parent in engine.containers.list():
        for link in parent.spec.host.links:
            target, _, alias = link.partition(":")
            link_names.setdefault(target, []).append(f"/{parent.name}/{alias}")
    out = []
    for c in containers:
        item = container_summary(c, now, _size(request, c.id) if with_size else None, networks)
        item["Names"] += sorted(link_names.get(c.name, ()))
        out.append(item)
    return web.json_response(out)


def _size(request: web.Request, cid: str) -> tuple[int, int]:
    engine = engine_of(request)
    c = engine.containers.get(cid)
    rw = engine.snapshotter.usage(cid)
    try:
        base = engine.images.get(c.image_id).size
    except SkiffError:
        base = 0
    return rw, rw + base


async def create(request: web.Request) -> web.Response:
    engine = engine_of(request)
    body = await read_json(request, default={})
    spec = spec_from_create(body)
    container = await engine.containers.create(spec, request.query.get("name") or None)
    return web.json_response({"Id": container.id, "Warnings": []}, status=201)


async def inspect(request: web.Request) -> web.Response:
    engine = engine_of(request)
    c = engine.containers.get(request.match_info["id"])
    size = _size(request, c.id) if qbool(request, "size") else None
    networks = {n.name: n for n in engine.networks.list()}
    return web.json_response(container_inspect(c, str(engine.config.root), size, networks))


async def start(request: web.Request) -> web.Response:
    await engine_of(request).containers.start(request.match_info["id"])
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    await engine_of(request).containers.stop(
        request.match_info["id"], qint(request, "t"), request.query.get("signal") or None
    )
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await engine_of(request).containers.restart(request.match_info["id"], qint(request, "t"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await engine_of(request).containers.kill(
        request.match_info["id"], request.query.get("signal") or "SIGKILL"
    )
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await engine_of(request).containers.pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await engine_of(request).containers.unpause(request.match_info["id"])
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    await engine_of(request).containers.remove(
        request.match_info["id"], force=qbool(request, "force"), volumes=qbool(request, "v")
    )
    return web.Response(status=204)


async def remove_link(request: web.Request) -> web.Response:
    """``DELETE /containers/PARENT/ALIAS?link=1``: the legacy link's name has a slash."""
    if not qbool(request, "link"):
        raise NotFound(f"No such container: {request.match_info['id']}/{request.match_info['alias']}")
    await engine_of(request).containers.remove_link(request.match_info["id"], request.match_info["alias"])
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise InvalidArgument("Neither old nor new names may be empty")
    await engine_of(request).containers.rename(request.match_info["id"], name)
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    engine = engine_of(request)
    c = engine.containers.get(request.match_info["id"])
    body = await read_json(request, default={})
    warnings = await engine.containers.update(c.id, update_host_config(c.spec.host, body))
    return web.json_response({"Warnings": warnings})


async def wait(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    fut = engine.containers.wait_future(
        request.match_info["id"], request.query.get("condition", "not-running")
    )
    # Headers go out at once: the docker CLI waits for them before it calls start.
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    code = await fut
    await response.write(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
    await response.write_eof()
    return response


def _log_since(value: str | None) -> int | None:
    return None if value == "0" else timestamp_ns(value)


async def logs(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    c = engine.containers.get(request.match_info["id"])
    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_raw = request.query.get("tail", "all")
    tail = None if tail_raw in ("all", "") else int(tail_raw) if tail_raw.lstrip("-").isdigit() else None
    if tail is not None and (tail < 0 or tail > 2**31):  # dockerd: a negative tail means all
        tail = None
    since, until = _log_since(request.query.get("since")), _log_since(request.query.get("until"))
    stamps = qbool(request, "timestamps")
    follow = qbool(request, "follow")
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/vnd.docker.raw-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    path = engine.containers.log_path(c.id)

    async def emit(stream: str, data: bytes, time_nano: int) -> None:
        if (stream == "stdout" and not want_out) or (stream == "stderr" and not want_err):
            return
        if stamps:
            secs, nanos = divmod(time_nano, 1_000_000_000)
            data = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)).encode()
                + f".{nanos:09d}Z ".encode()
                + data
            )
        await response.write(data if c.spec.tty else frame(STDERR if stream == "stderr" else STDOUT, data))

    if follow and c.running:
        stop = asyncio.Event()
        exit_fut = engine.containers.wait_future(c.id, "not-running")
        exit_fut.add_done_callback(lambda _f: stop.set())
        async for line in follow_log(path, stop, since_nano=since, until_nano=until, tail=tail):
            await emit(line.stream, line.data, line.time_nano)
    elif path.exists():
        for line in await asyncio.to_thread(
            lambda: list(iter_log(path, since_nano=since, until_nano=until, tail=tail))
        ):
            await emit(line.stream, line.data, line.time_nano)
    await response.write_eof()
    return response


async def top_route(request: web.Request) -> web.Response:
    engine = engine_of(request)
    c = engine.containers.get(request.match_info["id"])
    if c.state.status not in ("running", "paused"):
        raise Conflict(f"Container {c.id} is not running")
    pids = list_pids(c.cgroups_path)
    titles, rows = await top(pids, request.query.get("ps_args") or "-ef")
    return web.json_response({"Titles": titles, "Processes": rows})


async def stats(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    c = engine.containers.get(request.match_info["id"])
    stream = qbool(request, "stream", True) and not qbool(request, "one-shot")
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    previous = None
    if not stream:
        # Docker's non-streaming stats carry a real precpu sample taken ~1 s apart only
        # when one-shot is false; a short sample keeps `stats --no-stream` meaningful.
        previous = stats_json(c, engine.containers.get(c.id).running)
        await asyncio.sleep(0.1 if qbool(request, "one-shot") else 1.0)
    while True:
        c = engine.containers.get(c.id)
        current = stats_json(c, c.running, previous)
        await response.write(json.dumps(current).encode() + b"\n")
        if not stream or not c.running:
            break
        previous = current
        await asyncio.sleep(1.0)
    await response.write_eof()
    return response


async def resize(request: web.Request) -> web.Response:
    height, width = qint(request, "h", 0) or 0, qint(request, "w", 0) or 0
    await engine_of(request).containers.resize(request.match_info["id"], height, width)
    return web.Response(status=200)


_HEAD_GAP = 0.02  # seconds between a hijack's 101 head and bytes that are ready at once


async def attach(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    c = engine.containers.get(request.match_info["id"])
    want_stdin = qbool(request, "stdin")
    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    tty = c.spec.tty
    escape = EscapeProxy(parse_detach_keys(request.query.get("detachKeys", ""))) if tty else None
    response, raw = await hijack(request, multiplexed=not tty)

    async def send(stream: int, data: bytes) -> bool:
        if (stream == STDOUT and not want_out) or (stream == STDERR and not want_err):
            return True
        return await raw.write(data if tty else frame(stream, data))

    try:
        if qbool(request, "logs"):
            path = engine.containers.log_path(c.id)
            if path.exists():
                lines = await asyncio.to_thread(lambda: list(iter_log(path)))
                if lines:
                    # Clients read the 101 head through a buffered reader and then switch to
                    # the raw socket (docker-py): bytes already queued behind the head vanish
                    # into that buffer. Let the head be read on its own before the replay.
                    await asyncio.sleep(_HEAD_GAP)
                for line in lines:
                    await send(STDERR if line.stream == "stderr" else STDOUT, line.data)
        if qbool(request, "stream"):
            attached = await engine.containers.attach(c.id)
            try:
                await pump(raw, attached, send, want_stdin, close_stdin=c.spec.stdin_once, escape=escape)
            finally:
                with contextlib.suppress(SkiffError, OSError):
                    attached.close()
    except SkiffError as exc:
        await raw.write(exc.message.encode() if tty else frame(3, exc.message.encode()))
    finally:
        raw.close()
    return response


class ProcessStream(Protocol):
    """What attach and exec streams from the runtime offer."""

    async def read(self) -> tuple[int, bytes] | None: ...
    async def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def close(self) -> None: ...


async def pump(
    raw: RawConnection,
    attached: ProcessStream,
    send: Callable[[int, bytes], Awaitable[bool]],
    want_stdin: bool,
    close_stdin: bool = True,
    escape: EscapeProxy | None = None,
) -> bool:
    """Copy output to the client and the client's input to the process until output ends.

    With ``escape`` (TTY sessions), the client's detach sequence ends the session early:
    returns True then, and the caller decides what happens to the process's output.
    """
    detached = asyncio.Event()

    async def client_to_process() -> None:
        while True:
            data = await raw.read()
            if data is None:
                if close_stdin:
                    with contextlib.suppress(SkiffError, OSError):
                        attached.close_stdin()
                return
            if not want_stdin:
                continue
            hit = False
            if escape is not None:
                data, hit = escape.feed(data)
            if data:
                with contextlib.suppress(SkiffError, OSError):
                    await attached.write(data)
            if hit:
                detached.set()
                return

    async def process_to_client() -> None:
        while True:
            item = await attached.read()
            if item is None:
                return
            stream, data = item
            if not await send(stream, data):
                return

    reader = asyncio.create_task(client_to_process())
    writer = asyncio.create_task(process_to_client())
    detach_wait = asyncio.create_task(detached.wait())
    try:
        await asyncio.wait({writer, detach_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer, detach_wait):
            task.cancel()
        for task in (reader, writer, detach_wait):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return detached.is_set()


async def prune(request: web.Request) -> web.Response:
    engine = engine_of(request)
    deleted, reclaimed = [], 0
    for c in engine.containers.list():
        if c.state.status in ("exited", "created", "dead"):
            rw = engine.snapshotter.usage(c.id)
            with contextlib.suppress(SkiffError):
                await engine.containers.remove(c.id)
                deleted.append(c.id)
                reclaimed += rw
    return web.json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def register(routes: Routes) -> None:
    routes.add("GET", "/containers/json", list_containers)
    routes.add("POST", "/containers/create", create)
    routes.add("POST", "/containers/prune", prune)
    routes.add("GET", "/containers/{id}/json", inspect)
    routes.add("GET", "/containers/{id}/top", top_route)
    routes.add("GET", "/containers/{id}/logs", logs)
    routes.add("GET", "/containers/{id}/stats", stats)
    routes.add("POST", "/containers/{id}/resize", resize)
    routes.add("POST", "/containers/{id}/start", start)
    routes.add("POST", "/containers/{id}/stop", stop)
    routes.add("POST", "/containers/{id}/restart", restart)
    routes.add("POST", "/containers/{id}/kill", kill)
    routes.add("POST", "/containers/{id}/pause", pause)
    routes.add("POST", "/containers/{id}/unpause", unpause)
    routes.add("POST", "/containers/{id}/update", update)
    routes.add("POST", "/containers/{id}/rename", rename)
    routes.add("POST", "/containers/{id}/wait", wait)
    routes.add("POST", "/containers/{id}/attach", attach)
    routes.add("DELETE", "/containers/{id}", remove)
    routes.add("DELETE", "/containers/{id}/{alias}", remove_link)
