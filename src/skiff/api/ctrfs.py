"""A container's files: ``/containers/{id}/archive`` (docker cp), ``/changes``, ``/export``, ``/commit``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from skiff.api import convert
from skiff.api.app import Routes, engine_of, qbool, read_json
from skiff.engine.ctrfs import CommitRequest
from skiff.errors import InvalidArgument, SkiffError
from skiff.types import ImageConfig

log = logging.getLogger("skiff.api")

STAT_HEADER = "X-Docker-Container-Path-Stat"


class BodyReader:
    """A request body as a blocking file object, for the worker thread that extracts it.

    Each ``read`` runs the body's coroutine on the event loop and waits for it: the body is
    streamed into the container, never held in memory or spooled to disk.
    """

    _FETCH = 1 << 20  # tarfile reads 10 KiB at a time: one hop to the loop per MiB, not per read

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop
        self._buf = bytearray()
        self._eof = False

    def _fetch(self) -> None:
        coro = self._content.read(self._FETCH)
        data = asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        if data:
            self._buf += data
        else:
            self._eof = True

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n is None or n < 0 or len(self._buf) < n):
            self._fetch()
        if n is None or n < 0:
            n = len(self._buf)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    if "\x00" in path:
        raise InvalidArgument("invalid path: it contains a NUL byte")
    return path


async def archive_head(request: web.Request) -> web.StreamResponse:
    """``HEAD /containers/{id}/archive?path=``: the stat header only."""
    ref = request.match_info["id"]
    info = await engine_of(request).ctrfs.stat(ref, _path(request))
    return web.Response(status=200, headers={STAT_HEADER: info.header()})


async def archive_get(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/archive?path=``: a tar of the path, its stat in the header."""
    ref = request.match_info["id"]
    async with engine_of(request).ctrfs.archive(ref, _path(request)) as (info, chunks):
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "application/x-tar", STAT_HEADER: info.header()}
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await _send(request, resp, chunks, f"archive of {ref}")
    return resp


async def _send(request: web.Request, resp: web.StreamResponse, chunks: Any, what: str) -> None:
    try:
        async for chunk in chunks:
            await resp.write(chunk)
    except SkiffError as exc:
        # The 200 is out: cutting the connection is the only way left to say the tar is short.
        log.warning("%s: %s (stream cut)", what, exc)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError(str(exc)) from None
    await resp.write_eof()


async def archive_put(request: web.Request) -> web.Response:
    """``PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=``: extract a tar there."""
    ref = request.match_info["id"]
    body = BodyReader(request, asyncio.get_running_loop())
    await engine_of(request).ctrfs.extract(
        ref,
        _path(request),
        body,  # type: ignore[arg-type]  # a readable binary file as far as tarfile cares
        no_overwrite_dir_non_dir=qbool(request, "noOverwriteDirNonDir"),
        copy_uid_gid=qbool(request, "copyUIDGID"),
    )
    return web.Response(status=200)


async def changes(request: web.Request) -> web.Response:
    found = await engine_of(request).ctrfs.changes(request.match_info["id"])
    return web.json_response([{"Path": c.path, "Kind": c.kind} for c in found])


async def export(request: web.Request) -> web.StreamResponse:
    ref = request.match_info["id"]
    async with engine_of(request).ctrfs.export(ref) as chunks:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await _send(request, resp, chunks, f"export of {ref}")
    return resp


def commit_config_from_json(body: Any) -> ImageConfig:
    """A commit body: a container ``Config`` whose fields override the container's own."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the commit body must be a JSON object (a container config)")
    entrypoint, cmd, shell = body.get("Entrypoint"), body.get("Cmd"), body.get("Shell")
    ports = []
    for port in convert._obj(body.get("ExposedPorts"), "ExposedPorts"):
        ports.append(port if "/" in port else f"{port}/tcp")
    return ImageConfig(
        user=convert._str(body.get("User"), "User"),
        env=convert._strs(body.get("Env"), "Env"),
        entrypoint=None if entrypoint is None else convert._strs(entrypoint, "Entrypoint"),
        cmd=None if cmd is None else convert._strs(cmd, "Cmd"),
        working_dir=convert._str(body.get("WorkingDir"), "WorkingDir"),
        exposed_ports=tuple(ports),
        volumes=tuple(convert._obj(body.get("Volumes"), "Volumes")),
        labels=convert._map(body.get("Labels"), "Labels"),
        stop_signal=convert._str(body.get("StopSignal"), "StopSignal"),
        healthcheck=convert.health_from_json(body.get("Healthcheck")),
        shell=None if shell is None else convert._strs(shell, "Shell"),
        on_build=convert._strs(body.get("OnBuild"), "OnBuild"),
    )


async def commit(request: web.Request) -> web.Response:
    """``POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`` (body: a config)."""
    ref = request.query.get("container", "")
    if not ref:
        raise InvalidArgument("No container name or ID supplied")
    body = await read_json(request, default=None)
    req = CommitRequest(
        repo=request.query.get("repo", ""),
        tag=request.query.get("tag", ""),
        comment=request.query.get("comment", ""),
        author=request.query.get("author", ""),
        pause=qbool(request, "pause", True),
        changes=tuple(request.query.getall("changes", [])),
        config=None if body is None else commit_config_from_json(body),
    )
    record = await engine_of(request).ctrfs.commit(ref, req)
    return web.json_response({"Id": record.id}, status=201)


def register(routes: Routes) -> None:
    routes.add("HEAD", "/containers/{id}/archive", archive_head)
    routes.add("GET", "/containers/{id}/archive", archive_get)
    routes.add("PUT", "/containers/{id}/archive", archive_put)
    routes.add("GET", "/containers/{id}/changes", changes)
    routes.add("GET", "/containers/{id}/export", export)
    routes.add("POST", "/commit", commit)
