"""Image routes: /images/*, plus skiff's /skiff/images/bootstrap."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import tempfile
from typing import IO, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from skiff.api.app import Routes, engine_of, qbool, qfilters
from skiff.api.filters import image_matches
from skiff.api.render import image_history, image_inspect, image_summary
from skiff.api.streams import JsonLines
from skiff.errors import InvalidArgument, SkiffError
from skiff.images.archive_load import ImageLoaded, LayerProgress
from skiff.units import human_size

log = logging.getLogger("skiff.api")


async def list_images(request: web.Request) -> web.Response:
    engine = engine_of(request)
    filters = qfilters(request)
    every = engine.images.list()
    images = [i for i in every if image_matches(i, filters)]
    if not qbool(request, "all"):
        # As dockerd: untagged images under another image (a build's steps) only with all=1.
        parents = {i.parent for i in every if i.parent}
        images = [i for i in images if i.repo_tags or i.repo_digests or i.id not in parents]
    counts: dict[str, int] = {}
    for c in engine.containers.list():
        counts[c.image_id] = counts.get(c.image_id, 0) + 1
    images.sort(key=lambda i: i.created, reverse=True)
    return web.json_response([image_summary(i, counts.get(i.id, 0)) for i in images])


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(image_inspect(engine_of(request).images.get(request.match_info["name"])))


async def history(request: web.Request) -> web.Response:
    return web.json_response(image_history(engine_of(request).images.history(request.match_info["name"])))


async def tag(request: web.Request) -> web.Response:
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    engine_of(request).images.tag(request.match_info["name"], repo, request.query.get("tag", ""))
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    result = engine_of(request).images.remove(
        request.match_info["name"], force=qbool(request, "force"), prune=not qbool(request, "noprune")
    )
    return web.json_response(result)


async def prune(request: web.Request) -> web.Response:
    filters = qfilters(request)
    dangling = filters.get("dangling", ["true"])[0].lower() in ("true", "1")
    deleted, reclaimed = engine_of(request).images.prune(dangling_only=dangling)
    return web.json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


async def _spool(request: web.Request) -> tempfile.SpooledTemporaryFile[bytes]:
    """The request body in a temp file (import bodies can be large; never all in memory)."""
    spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    async for chunk in request.content.iter_chunked(1024 * 1024):
        spool.write(chunk)
    spool.seek(0)
    return spool


async def create(request: web.Request) -> web.StreamResponse:
    """``POST /images/create``: a pull (fromImage=, see api/distribution.py) or an import (fromSrc=)."""
    engine = engine_of(request)
    src = request.query.get("fromSrc")
    if src is None:
        from skiff.api.distribution import pull

        return await pull(request)
    repo = request.query.get("repo", "")
    tag_name = request.query.get("tag", "")
    repo_tag = (f"{repo}:{tag_name}" if tag_name else repo) or None
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "")
    url = None if src == "-" else await _loopback_url(src)
    spool: IO[bytes] = await _spool(request) if url is None else engine.images.spool()
    out = await JsonLines.open(request)
    try:
        if url is not None:
            await out.send({"status": f"Downloading from {src}"})
            await _download(url, spool, out)
        image = await engine.images.import_image(
            spool,  # type: ignore[arg-type]  # a binary file
            repo_tag=repo_tag,
            changes=changes,
            message=message,
        )
        await out.send({"status": image.id})
    except SkiffError as exc:
        await out.error(exc.message)
    finally:
        spool.close()
    await out.close()
    return out.response


async def _loopback_url(src: str) -> tuple[str, str]:
    """``fromSrc=http://host:port/path``: (URL with the host's loopback address, Host header).

    Only loopback sources are fetched: skiffd must not become a way to reach other hosts. The
    URL is rewritten to the address checked here, so a second DNS answer cannot redirect it.
    """
    parts = urlsplit(src if "://" in src else f"http://{src}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(
            f"invalid import source {src!r}: expected - (the request body) or an http(s) URL"
        )
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or 80, type=socket.SOCK_STREAM
        )
    except OSError as e:
        raise InvalidArgument(f"cannot resolve {parts.hostname!r}: {e.strerror or e}") from None
    addrs = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addrs or not all(a.is_loopback for a in addrs):
        raise InvalidArgument(
            f"importing from {src!r} is refused: skiffd fetches import URLs only from loopback addresses"
        )
    host = f"[{addrs[0]}]" if addrs[0].version == 6 else str(addrs[0])
    netloc = f"{host}:{parts.port}" if parts.port else host
    target = parts._replace(netloc=netloc).geturl()
    return target, parts.netloc.rpartition("@")[2]


async def _download(url: tuple[str, str], spool: IO[bytes], out: JsonLines) -> None:
    target, host = url
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(target, headers={"Host": host}, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                raise InvalidArgument(f"Get {target}: {resp.status} {resp.reason}")
            total = resp.content_length or 0
            current = reported = 0
            async for chunk in resp.content.iter_chunked(1024 * 1024):
                spool.write(chunk)
                current += len(chunk)
                if current - reported >= 512 * 1024:
                    reported = current
                    detail = {"current": current, "total": total} if total else {"current": current}
                    await out.send(
                        {
                            "status": "Importing",
                            "progressDetail": detail,
                            "progress": progress_bar(current, total),
                        }
                    )
    except aiohttp.ClientError as e:
        raise InvalidArgument(f"Get {target}: {e}") from None
    spool.seek(0)


# -- save / load -----------------------------------------------------------------------------------


def progress_bar(current: int, total: int) -> str:
    """Docker's ``progress`` text (jsonmessage.JSONProgress without a terminal): ``[==>   ] 1MB/2MB``."""
    if total <= 0:
        return f"{human_size(current, 4):>8}"
    half = min(int(current / total * 100) // 2, 50)
    bar = "[" + "=" * half + ">" + " " * (50 - half) + "] "
    return f"{bar}{human_size(current, 4):>8}/{human_size(total, 4)}"


async def save(request: web.Request) -> web.StreamResponse:
    """``GET /images/get?names=a&names=b`` and ``GET /images/{name}/get``: a tar of the images.

    skiff-only ``format=oci`` writes a plain OCI layout (no manifest.json).
    """
    engine = engine_of(request)
    name = request.match_info.get("name")
    names = [name] if name else request.query.getall("names", [])
    plan = await engine.images.plan_save(names, request.query.get("format", "docker"))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        async for chunk in engine.images.save(plan):
            await resp.write(chunk)
    except Exception as exc:
        # Half a tar is out: the only honest signal left is to cut the connection, so the
        # client sees an unexpected EOF instead of a short archive it might trust.
        log.warning("save %s: %s (stream cut)", ",".join(names), exc)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError(str(exc)) from None
    await resp.write_eof()
    return resp


async def _spool_to(request: web.Request, spool: IO[bytes]) -> None:
    async for chunk in request.content.iter_chunked(1024 * 1024):
        spool.write(chunk)
    spool.seek(0)


async def load(request: web.Request) -> web.StreamResponse:
    """``POST /images/load[?quiet=1]``: a docker-archive or OCI layout tar (may be gzipped) in the body.

    Always 200 with JSON lines, as dockerd: errors come as ``errorDetail`` lines (docker-py's
    ``images.load`` turns those into ImageLoadError).
    """
    engine = engine_of(request)
    quiet = qbool(request, "quiet")
    with engine.images.spool() as spool:
        await _spool_to(request, spool)
        out = await JsonLines.open(request)
        try:
            async for event in engine.images.load(spool):  # type: ignore[arg-type]  # a binary file
                if isinstance(event, LayerProgress):
                    if not quiet:
                        await out.send(_layer_progress(event))
                elif isinstance(event, ImageLoaded):
                    for line in _loaded_lines(event):
                        await out.send({"stream": line})
        except SkiffError as exc:
            await out.error(exc.message)
        except Exception as exc:  # the stream has begun: the error can only go into it
            log.exception("load: internal error")
            await out.error(f"internal error: {exc}")
    await out.close()
    return out.response


def _layer_progress(event: LayerProgress) -> dict[str, Any]:
    return {
        "status": "Loading layer",
        "progressDetail": {"current": event.current, "total": event.total},
        "progress": progress_bar(event.current, event.total),
        "id": event.diff_id.split(":", 1)[-1][:12],
    }


def _loaded_lines(event: ImageLoaded) -> list[str]:
    lines = [
        f"The image {tag} already exists, renaming the old one with ID {old} to empty string\n"
        for tag, old in event.replaced
    ]
    lines += [f"Loaded image: {tag}\n" for tag in event.tags]
    if not event.tags:
        lines.append(f"Loaded image ID: {event.id}\n")
    return lines


async def bootstrap(request: web.Request) -> web.StreamResponse:
    """skiff-only: build busybox:latest or debian:bookworm from the host's Debian packages."""
    engine = engine_of(request)
    name = request.query.get("name", "")
    if name not in ("busybox", "debian"):
        raise InvalidArgument(f"unknown bootstrap recipe {name!r}: choose busybox or debian")
    tag = request.query.get("tag") or None
    out = await JsonLines.open(request)
    await out.send({"status": f"Bootstrapping {name}", "id": name})
    task = asyncio.create_task(engine.images.bootstrap(name, tag))
    while not task.done():
        await asyncio.wait({task}, timeout=2.0)
        if not task.done():
            await out.send({"status": "Working", "id": name, "progressDetail": {}})
    try:
        image = task.result()
        for t in image.repo_tags:
            await out.send({"status": f"Tagged {t}"})
        await out.send({"aux": {"ID": image.id}})
    except SkiffError as exc:
        await out.error(exc.message)
    await out.close()
    return out.response


def register(routes: Routes) -> None:
    routes.add("GET", "/images/json", list_images)
    routes.add("POST", "/images/create", create)
    routes.add("POST", "/images/prune", prune)
    # Fixed paths before the greedy /images/{name:.+}/... routes.
    routes.add("GET", "/images/get", save)
    routes.add("POST", "/images/load", load)
    routes.add("GET", "/images/{name:.+}/get", save)
    routes.add("GET", "/images/{name:.+}/json", inspect)
    routes.add("GET", "/images/{name:.+}/history", history)
    routes.add("POST", "/images/{name:.+}/tag", tag)
    routes.add("DELETE", "/images/{name:.+}", remove)
    routes.add("POST", "/skiff/images/bootstrap", bootstrap)
