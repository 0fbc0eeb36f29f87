"""``HttpEngine`` against a small fake Engine API on a unix socket: requests as the Engine API
wants them (a pull without a tag names ``latest``, label filters, stop timeouts), errors by
status with the daemon's message, a failed pull's error line, framed logs split into lines."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from skiff import errors
from skiff.client.aio import HttpEngine

Calls = list[tuple[str, str, dict[str, str]]]


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def fake_api(calls: Calls) -> web.Application:
    async def record(request: web.Request) -> None:
        calls.append((request.method, request.path, dict(request.query)))

    async def pull(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"status":"Pulling from library/busybox"}\r\n')
        if request.query["fromImage"].startswith("bad"):
            await resp.write(b'{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}\r\n')
        await resp.write_eof()
        return resp

    async def create(request: web.Request) -> web.Response:
        await record(request)
        body = await request.json()
        if request.query.get("name") == "taken":
            return web.json_response(
                {"message": 'Conflict. The container name "/taken" is already in use'}, status=409
            )
        assert body["Image"] == "busybox"
        return web.json_response({"Id": "c" * 64, "Warnings": []}, status=201)

    async def inspect(request: web.Request) -> web.Response:
        await record(request)
        cid = request.match_info["id"]
        if cid != "c" * 64:
            return web.json_response({"message": f"No such container: {cid}"}, status=404)
        return web.json_response({"Id": cid, "Config": {"Tty": False}, "State": {"Status": "running"}})

    async def stop(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=304)

    async def listing(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response([{"Id": "c" * 64, "Labels": {"a": "b"}}])

    async def logs(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
        await resp.prepare(request)
        await resp.write(frame(1, b"one\ntw"))
        await resp.write(frame(2, b"err\n"))
        await resp.write(frame(1, b"o\nlast"))
        await resp.write_eof()
        return resp

    async def events(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(
            json.dumps({"Type": "container", "Action": "die", "Actor": {"ID": "x"}}).encode() + b"\n"
        )
        await resp.write_eof()
        return resp

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"NCPU": 4, "MemTotal": 1 << 30})

    async def image(request: web.Request) -> web.Response:
        await record(request)
        if request.match_info["name"] == "busybox":
            return web.json_response({"Id": "sha256:" + "a" * 64})
        return web.json_response({"message": "No such image"}, status=404)

    app = web.Application()
    app.router.add_post("/images/create", pull)
    app.router.add_get("/images/{name:.+}/json", image)
    app.router.add_post("/containers/create", create)
    app.router.add_get("/containers/json", listing)
    app.router.add_get("/containers/{id}/json", inspect)
    app.router.add_post("/containers/{id}/stop", stop)
    app.router.add_get("/containers/{id}/logs", logs)
    app.router.add_get("/events", events)
    app.router.add_get("/info", info)
    return app


def with_engine(tmp_path: Path, body: Callable[[HttpEngine, Calls], Awaitable[None]]) -> None:
    async def main() -> None:
        calls: Calls = []
        runner = web.AppRunner(fake_api(calls))
        await runner.setup()
        sock = tmp_path / "engine.sock"
        await web.UnixSite(runner, str(sock)).start()
        engine = HttpEngine(f"unix://{sock}")
        try:
            await body(engine, calls)
        finally:
            await engine.close()
            await runner.cleanup()

    asyncio.run(main())


def test_pull_names_latest_and_reports_error_lines(tmp_path: Path) -> None:
    async def body(engine: HttpEngine, calls: Calls) -> None:
        await engine.pull("busybox")
        await engine.pull("example.com:5000/team/app:1.2")
        assert [c[2] for c in calls] == [
            {"fromImage": "busybox", "tag": "latest"},
            {"fromImage": "example.com:5000/team/app:1.2"},
        ]
        with pytest.raises(errors.NotFound, match="manifest unknown"):
            await engine.pull("bad/image:1")
        with pytest.raises(errors.InvalidArgument):
            await engine.pull("not a reference")

    with_engine(tmp_path, body)


def test_containers_and_errors(tmp_path: Path) -> None:
    async def body(engine: HttpEngine, calls: Calls) -> None:
        assert await engine.info() == {"NCPU": 4, "MemTotal": 1 << 30}
        assert await engine.image_exists("busybox") and not await engine.image_exists("nginx")
        cid = await engine.create("web.1.x", {"Image": "busybox"})
        assert cid == "c" * 64 and calls[-1][2] == {"name": "web.1.x"}
        with pytest.raises(errors.Conflict, match="already in use"):
            await engine.create("taken", {"Image": "busybox"})
        info = await engine.inspect(cid)
        assert info is not None and info["State"]["Status"] == "running"
        assert await engine.inspect("nosuch") is None
        await engine.stop(cid, timeout=7)  # 304: already stopped is fine
        assert calls[-1][2] == {"t": "7"}
        found = await engine.list_containers({"a": "b", "c": "d"})
        assert found[0]["Id"] == cid
        assert calls[-1][2]["all"] == "1"
        assert json.loads(calls[-1][2]["filters"]) == {"label": ["a=b", "c=d"]}

    with_engine(tmp_path, body)


def test_logs_demultiplexed_into_lines(tmp_path: Path) -> None:
    async def body(engine: HttpEngine, calls: Calls) -> None:
        got = [x async for x in engine.logs("c" * 64, tail="10")]
        assert got == [("stdout", b"one\n"), ("stderr", b"err\n"), ("stdout", b"two\n"), ("stdout", b"last")]
        assert calls[-1][2]["tail"] == "10" and calls[-1][2]["follow"] == "0"

    with_engine(tmp_path, body)


def test_events_stream(tmp_path: Path) -> None:
    async def body(engine: HttpEngine, calls: Calls) -> None:
        got = [e async for e in _take(engine.events({"type": ["container"]}, since=12.5))]
        assert got[0]["Action"] == "die"
        assert json.loads(calls[-1][2]["filters"]) == {"type": ["container"]}
        assert float(calls[-1][2]["since"]) == 12.5

    with_engine(tmp_path, body)


async def _take(it: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for e in it:
        yield e


def test_unreachable_engine(tmp_path: Path) -> None:
    async def main() -> None:
        engine = HttpEngine(f"unix://{tmp_path / 'nothing.sock'}")
        try:
            with pytest.raises(errors.Unavailable, match="cannot reach the engine"):
                await engine.info()
        finally:
            await engine.close()

    asyncio.run(main())
    with pytest.raises(errors.InvalidArgument):
        HttpEngine("ftp://x")
