"""Blob routes: fetch (with Range), delete, and every way of uploading (monolithic, streamed,
chunked, resumed, cancelled, cross-repository mount)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from aiohttp import web

from skiff.registry.server import auth
from skiff.registry.server.context import authorize, registry_of, repo_name
from skiff.registry.server.errors import RegistryError, blob_unknown
from skiff.registry.server.grammar import check_digest, check_name, parse_chunk_range, upload_range
from skiff.registry.server.uploads import Session

OCTET = "application/octet-stream"


def _blob_location(name: str, digest: str) -> str:
    return f"/v2/{name}/blobs/{digest}"


def _upload_headers(name: str, s: Session) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{s.id}",
        "Range": upload_range(s.size),
        "Docker-Upload-UUID": s.id,
    }


def _created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": _blob_location(name, digest),
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    digest = check_digest(request.match_info["digest"])
    await authorize(request, [auth.pull(name)])
    reg = registry_of(request)
    info = await reg.db(reg.store.blob, name, digest)
    if info is None:
        raise blob_unknown(digest)
    # aiohttp's FileResponse: sendfile, HEAD, single Range requests (206, Content-Range; 416 for
    # a range past the end), If-Range and conditional requests, as RFC 9110 asks.
    return web.FileResponse(
        reg.store.blob_path(digest),
        headers={"Docker-Content-Digest": digest, "Content-Type": OCTET, "Cache-Control": "max-age=31536000"},
    )


async def delete_blob(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    digest = check_digest(request.match_info["digest"])
    await authorize(request, [auth.delete(name)])
    reg = registry_of(request)
    if not await reg.db(reg.store.unlink_blob, name, digest):
        raise blob_unknown(digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": digest, "Content-Length": "0"})


def _body(request: web.Request) -> AsyncIterator[bytes]:
    return request.content.iter_any()


async def _append(request: web.Request, name: str, s: Session) -> None:
    """Append the request body to ``s``, honouring a Content-Range (416 when out of order)."""
    reg = registry_of(request)
    header = request.headers.get("Content-Range")
    if header is None:
        await reg.uploads.append(s, _body(request))
        return
    chunk = parse_chunk_range(header)
    if chunk.start != s.size:
        raise RegistryError(
            "BLOB_UPLOAD_INVALID",
            f"chunk out of order: it starts at {chunk.start}, the upload holds {s.size} bytes "
            f"(continue at {s.size})",
            status=416,
            headers=_upload_headers(name, s),
        )
    length = request.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) != chunk.length:
        raise RegistryError(
            "SIZE_INVALID",
            f"Content-Length {length} does not match Content-Range {header} ({chunk.length} bytes)",
        )
    got = await reg.uploads.append(s, _body(request))
    if got != chunk.length:
        raise RegistryError(
            "SIZE_INVALID",
            f"the chunk held {got} bytes, its Content-Range {header} says {chunk.length}; "
            f"the upload now holds {s.size} bytes",
            headers=_upload_headers(name, s),
        )


async def _finish(request: web.Request, name: str, s: Session, digest: str) -> web.Response:
    """Check the upload against ``digest`` and commit it as a blob of ``name`` (201)."""
    reg = registry_of(request)
    actual = await reg.uploads.digest(s)
    if actual != digest:
        reg.uploads.forget(s)
        raise RegistryError(
            "DIGEST_INVALID",
            f"provided digest did not match uploaded content: expected {digest}, got {actual} "
            f"({s.size} bytes); the upload was discarded",
            detail={"expected": digest, "actual": actual},
        )
    # Flush the data outside the database thread: the commit's own fsync then finds it clean.
    await asyncio.to_thread(_fsync, s)
    await reg.db(reg.store.commit_upload, name, s.data, digest, s.size)
    reg.uploads.forget(s)
    return _created(name, digest)


def _fsync(s: Session) -> None:
    fd = os.open(s.data, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def start_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    grant = await authorize(request, [auth.push(name)])
    reg = registry_of(request)
    q = request.query
    algorithm = q.get("digest-algorithm")
    if algorithm is not None and algorithm != "sha256":
        raise RegistryError(
            "DIGEST_INVALID", f"unsupported digest algorithm {algorithm!r}: this registry stores sha256 only"
        )
    mount = q.get("mount")
    if mount is not None:
        digest = check_digest(mount)
        source = q.get("from")
        # Without "from", or without pull rights on it, this is a plain upload (202), as the
        # spec allows: a blob is never mounted from a repository the caller cannot read.
        if source and source != name:
            check_name(source)
            if grant.allows(auth.pull(source)):
                mounted = await reg.db(reg.store.mount, name, source, digest)
                if mounted is not None:
                    return _created(name, digest)
    digest_param = q.get("digest")
    s = reg.uploads.create(name)
    if digest_param is None:
        return web.Response(status=202, headers={**_upload_headers(name, s), "Content-Length": "0"})
    try:
        digest = check_digest(digest_param)
        async with s.lock:
            await reg.uploads.append(s, _body(request))
            return await _finish(request, name, s, digest)
    except BaseException:
        reg.uploads.forget(s)
        raise


async def upload_status(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await authorize(request, [auth.push(name)])
    reg = registry_of(request)
    s = reg.uploads.get(name, request.match_info["upload"])
    async with s.lock:
        await reg.uploads.digest(s)  # after a restart: find the size the hash covers
        return web.Response(status=204, headers=_upload_headers(name, s))


async def patch_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await authorize(request, [auth.push(name)])
    reg = registry_of(request)
    s = reg.uploads.get(name, request.match_info["upload"])
    async with s.lock:
        await _append(request, name, s)
        return web.Response(status=202, headers={**_upload_headers(name, s), "Content-Length": "0"})


async def put_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await authorize(request, [auth.push(name)])
    reg = registry_of(request)
    s = reg.uploads.get(name, request.match_info["upload"])
    digest_param = request.query.get("digest")
    if digest_param is None:
        raise RegistryError(
            "DIGEST_INVALID", "the closing PUT of an upload needs ?digest=<digest of the whole blob>"
        )
    digest = check_digest(digest_param)
    async with s.lock:
        await _append(request, name, s)
        return await _finish(request, name, s, digest)


async def cancel_upload(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await authorize(request, [auth.push(name)])
    reg = registry_of(request)
    s = reg.uploads.get(name, request.match_info["upload"])
    async with s.lock:
        reg.uploads.forget(s)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    for path in ("/v2/{name:.+}/blobs/uploads/", "/v2/{name:.+}/blobs/uploads"):
        r.add_route("POST", path, start_upload)
    upload = "/v2/{name:.+}/blobs/uploads/{upload}"
    r.add_route("GET", upload, upload_status)
    r.add_route("PATCH", upload, patch_upload)
    r.add_route("PUT", upload, put_upload)
    r.add_route("DELETE", upload, cancel_upload)
    blob = "/v2/{name:.+}/blobs/{digest}"
    r.add_route("GET", blob, get_blob)
    r.add_route("HEAD", blob, get_blob)
    r.add_route("DELETE", blob, delete_blob)
