"""Manifest routes (by tag or digest), tag listing and the referrers API."""

from __future__ import annotations

import json

from aiohttp import web

from skiff.registry import media
from skiff.registry.server import auth
from skiff.registry.server.context import authorize, registry_of, repo_name
from skiff.registry.server.errors import RegistryError, manifest_unknown, name_unknown
from skiff.registry.server.grammar import (
    check_digest,
    check_tag,
    is_digest,
    is_tag,
    next_link,
    paginate,
    parse_page_size,
)
from skiff.registry.server.manifests import MAX_MANIFEST, parse_manifest


async def _missing(request: web.Request, name: str, reference: str) -> RegistryError:
    reg = registry_of(request)
    if not await reg.db(reg.store.repo_exists, name):
        return name_unknown(name)
    return manifest_unknown(reference)


async def get_manifest(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    reference = request.match_info["reference"]
    if is_digest(reference):
        check_digest(reference)
    await authorize(request, [auth.pull(name)])
    reg = registry_of(request)
    found = (
        await reg.db(reg.store.manifest, name, reference)
        if is_digest(reference) or is_tag(reference)
        else None
    )
    content = await reg.db(reg.store.manifest_content, found.digest) if found is not None else None
    if found is None or content is None:
        raise await _missing(request, name, reference)
    # What was pushed, whatever Accept says: every current client accepts all four types.
    return web.Response(
        body=content,
        headers={
            "Content-Type": found.media_type,
            "Docker-Content-Digest": found.digest,
            "ETag": f'"{found.digest}"',
        },
    )


async def _read_manifest(request: web.Request) -> bytes:
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > MAX_MANIFEST:
            raise RegistryError(
                "SIZE_INVALID", f"manifest too large: the limit is {MAX_MANIFEST} bytes", status=413
            )
    return bytes(body)


async def put_manifest(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    reference = request.match_info["reference"]
    by_digest = is_digest(reference)
    if by_digest:
        check_digest(reference)
        tags = [check_tag(t) for t in request.query.getall("tag", [])]
    else:
        tags = [check_tag(reference)]
    await authorize(request, [auth.push(name)])
    manifest = parse_manifest(await _read_manifest(request), request.headers.get("Content-Type"))
    if by_digest and manifest.digest != reference:
        raise RegistryError(
            "DIGEST_INVALID",
            f"manifest digest {manifest.digest} does not match the reference {reference}",
            detail={"expected": reference, "actual": manifest.digest},
        )
    reg = registry_of(request)
    await reg.db(reg.store.put_manifest, name, manifest, tags)
    response = web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/manifests/{manifest.digest}",
            "Docker-Content-Digest": manifest.digest,
            "Content-Length": "0",
        },
    )
    if manifest.subject:
        response.headers["OCI-Subject"] = manifest.subject
    if by_digest:
        for tag in tags:
            response.headers.add("OCI-Tag", tag)
    return response


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    reference = request.match_info["reference"]
    if is_digest(reference):
        check_digest(reference)
    await authorize(request, [auth.delete(name)])
    reg = registry_of(request)
    if is_digest(reference):
        gone = await reg.db(reg.store.delete_manifest, name, reference)
    else:
        gone = is_tag(reference) and await reg.db(reg.store.delete_tag, name, reference)
    if not gone:
        raise await _missing(request, name, reference)
    return web.Response(status=202, headers={"Content-Length": "0"})


async def list_tags(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    await authorize(request, [auth.pull(name)])
    n = parse_page_size(request.query.get("n"))
    reg = registry_of(request)
    tags = await reg.db(reg.store.tags, name)
    if tags is None:
        raise name_unknown(name)
    page = paginate(tags, n, request.query.get("last"))
    response = web.json_response({"name": name, "tags": page.items})
    if page.next_last is not None and n is not None:
        response.headers["Link"] = next_link(f"/v2/{name}/tags/list", n, page.next_last)
    return response


async def list_referrers(request: web.Request) -> web.StreamResponse:
    name = repo_name(request)
    digest = check_digest(request.match_info["digest"])
    await authorize(request, [auth.pull(name)])
    reg = registry_of(request)
    found = await reg.db(reg.store.referrers, name, digest)
    headers = {}
    artifact_type = request.query.get("artifactType")
    if artifact_type is not None:
        found = [d for d in found if d.artifact_type == artifact_type]
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [d.to_json() for d in found]}
    # The spec asks for exactly this Content-Type, with no charset parameter.
    return web.Response(body=json.dumps(body).encode(), headers={"Content-Type": media.OCI_INDEX, **headers})


def add_routes(app: web.Application) -> None:
    r = app.router
    manifest = "/v2/{name:.+}/manifests/{reference}"
    r.add_route("GET", manifest, get_manifest)
    r.add_route("HEAD", manifest, get_manifest)
    r.add_route("PUT", manifest, put_manifest)
    r.add_route("DELETE", manifest, delete_manifest)
    r.add_route("GET", "/v2/{name:.+}/tags/list", list_tags)
    r.add_route("GET", "/v2/{name:.+}/referrers/{digest}", list_referrers)
