"""Image routes: /images/*, plus skiff's /skiff/images/bootstrap."""

from __future__ import annotations

import asyncio
import tempfile

from aiohttp import web

from skiff.api.app import Routes, engine_of, qbool, qfilters
from skiff.api.filters import image_matches
from skiff.api.render import image_history, image_inspect, image_summary
from skiff.api.streams import JsonLines
from skiff.errors import InvalidArgument, NotFound, SkiffError


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
    return web.json_response(image_history(engine_of(request).images.get(request.match_info["name"])))


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
    """``POST /images/create``: import from the body (fromSrc=-); pulls come with the registry work."""
    engine = engine_of(request)
    src = request.query.get("fromSrc")
    if src is None:
        from_image = request.query.get("fromImage", "")
        tag = request.query.get("tag", "")
        ref = f"{from_image}:{tag}" if tag and not tag.startswith("sha256:") else from_image
        raise NotFound(
            f"pull access denied for {from_image}: skiff cannot pull from registries yet; "
            f"use 'skiff image bootstrap' or 'skiff import' to create {ref or 'the image'} locally"
        )
    if src != "-":
        raise InvalidArgument("importing from a URL is not supported: pass the archive in the request body")
    repo = request.query.get("repo", "")
    tag_name = request.query.get("tag", "")
    repo_tag = (f"{repo}:{tag_name}" if tag_name else repo) or None
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "")
    spool = await _spool(request)
    out = await JsonLines.open(request)
    try:
        image = await engine.images.import_image(
            spool,  # type: ignore[arg-type]  # SpooledTemporaryFile is a binary file
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
    routes.add("GET", "/images/{name:.+}/json", inspect)
    routes.add("GET", "/images/{name:.+}/history", history)
    routes.add("POST", "/images/{name:.+}/tag", tag)
    routes.add("DELETE", "/images/{name:.+}", remove)
    routes.add("POST", "/skiff/images/bootstrap", bootstrap)
