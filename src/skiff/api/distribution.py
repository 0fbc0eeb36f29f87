"""Registry routes: pulls (``POST /images/create?fromImage=``), ``POST /images/{name}/push``,
``POST /auth`` and ``GET /distribution/{name}/json``.

Pull and push answer as dockerd does: nothing is written until the first progress line, so an
error before it (an unknown manifest, denied access, no such local image) keeps its real
status (404 "manifest for x not found: ..."); later errors arrive in the 200 stream as
``{"errorDetail": {"message": ..}, "error": ..}``. A client that hangs up cancels the
operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from skiff.api.app import Routes, engine_of, read_json
from skiff.api.images import progress_bar
from skiff.api.streams import JsonLines
from skiff.engine.distribution import Event, pull_spec, push_spec
from skiff.errors import SkiffError
from skiff.registry.auth import auth_from_json, decode_registry_auth
from skiff.registry.client_endpoints import RegistryConfig, validate_mirror
from skiff.registry.client_events import PushedTag

log = logging.getLogger("skiff.api")


def registry_info(config: RegistryConfig) -> dict[str, Any]:
    """``RegistryConfig`` of ``GET /info``, as dockerd reports it (mirrors with a trailing slash)."""
    mirrors = [validate_mirror(m) + "/" for m in config.mirrors]
    indexes: dict[str, Any] = {
        "docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True, "Official": True}
    }
    cidrs = ["127.0.0.0/8", "::1/128"]
    for entry in config.insecure:
        if "/" in entry:
            cidrs.append(entry)
        else:
            indexes[entry] = {"Name": entry, "Mirrors": [], "Secure": False, "Official": False}
    return {
        "AllowNondistributableArtifactsCIDRs": None,
        "AllowNondistributableArtifactsHostnames": None,
        "IndexConfigs": indexes,
        "InsecureRegistryCIDRs": cidrs,
        "Mirrors": mirrors,
    }


def messages(event: Event) -> list[dict[str, Any]]:
    """Docker's JSON progress lines for one event (key order as dockerd writes them)."""
    if isinstance(event, PushedTag):
        return [
            {"status": f"{event.tag}: digest: {event.digest} size: {event.size}"},
            {"progressDetail": {}, "aux": {"Tag": event.tag, "Digest": event.digest, "Size": event.size}},
        ]
    msg: dict[str, Any] = {"status": event.status}
    if event.current is not None:
        total = event.total or 0
        msg["progressDetail"] = (
            {"current": event.current, "total": total} if total else {"current": event.current}
        )
        msg["progress"] = progress_bar(event.current, total)
    elif event.layer:
        msg["progressDetail"] = {}
    if event.id:
        msg["id"] = event.id
    return [msg]


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def stream_events(request: web.Request, events: AsyncGenerator[Event, None]) -> web.StreamResponse:
    """Write ``events`` as JSON lines; errors before the first line keep their HTTP status.

    A download can be silent for long (a stalled registry): the connection is checked once a
    second, and a client that left cancels the operation (as dockerd's context does).
    """
    out: JsonLines | None = None

    async def pump() -> None:
        nonlocal out
        try:
            async for event in events:
                if out is None:
                    out = await JsonLines.open(request)
                for m in messages(event):
                    await out.send(m)
        finally:
            await events.aclose()  # a write that failed (client gone) cancels the operation

    task = asyncio.create_task(pump())
    while not task.done():
        await asyncio.wait({task}, timeout=1.0)
        if not task.done() and _client_gone(request):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            return out.response if out is not None else web.Response(status=204)
    try:
        task.result()
    except SkiffError as exc:
        if out is None:
            raise  # nothing written yet: the error keeps its status
        await out.error(exc.message)
    except (ConnectionResetError, BrokenPipeError):
        return out.response if out is not None else web.Response(status=204)
    except Exception as exc:
        if out is None:
            raise
        log.exception("%s %s: internal error", request.method, request.path)
        await out.error(f"internal error: {exc}")  # the stream has begun: the error goes into it
    if out is None:
        out = await JsonLines.open(request)
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        await out.close()
    return out.response


async def pull(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=&tag=[&platform=]`` with ``X-Registry-Auth``."""
    spec = pull_spec(
        request.query.get("fromImage", ""), request.query.get("tag", ""), request.query.get("platform", "")
    )
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth"))
    return await stream_events(request, engine_of(request).distribution.pull(spec, auth))


async def push(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push?tag=`` with ``X-Registry-Auth``."""
    ref = push_spec(request.match_info["name"], request.query.get("tag", ""))
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth"))
    return await stream_events(request, engine_of(request).distribution.push(ref, auth))


async def login(request: web.Request) -> web.Response:
    """``POST /auth``: ``{"Status": "Login Succeeded"}`` or 401 with the registry's answer."""
    auth = auth_from_json(await read_json(request, default={}))
    token = await engine_of(request).distribution.login(auth)
    return web.json_response({"IdentityToken": token, "Status": "Login Succeeded"})


async def inspect(request: web.Request) -> web.Response:
    """``GET /distribution/{name}/json``: the registry's descriptor of the image and its platforms."""
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth"))
    return web.json_response(await engine_of(request).distribution.inspect(request.match_info["name"], auth))


def register(routes: Routes) -> None:
    routes.add("POST", "/auth", login)
    routes.add("GET", "/distribution/{name:.+}/json", inspect)
    routes.add("POST", "/images/{name:.+}/push", push)
