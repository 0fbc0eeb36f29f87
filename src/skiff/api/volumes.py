"""Volume routes: /volumes (list, create, inspect, remove, prune), shaped as dockerd answers.

The work is the engine's ``VolumeService`` (``engine.volumes``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from skiff.api.app import API_VERSION, Routes, engine_of, qbool, qfilters, read_json
from skiff.engine.volumes import VolumeService
from skiff.errors import InvalidArgument
from skiff.types.volume import VolumeRecord
from skiff.volumes.filters import LIST_FILTERS, PRUNE_FILTERS, bool_filter, check_filters

JSON = dict[str, Any]
# API 1.42 made ``volume prune`` remove only anonymous volumes unless ``all=true``; older
# clients (and the docker CLI talking 1.41) get the old behaviour: every unused volume.
_PRUNE_ANONYMOUS_SINCE = (1, 42)


def _text(body: JSON, key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid value for {key}: expected a string")
    return value


def _map(body: JSON, key: str) -> dict[str, str] | None:
    """A string map; None when absent (Docker shows it as null then)."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"invalid value for {key}: expected an object of strings")
    return dict(value)


def volume_json(service: VolumeService, rec: VolumeRecord, usage: tuple[int, int] | None = None) -> JSON:
    """Docker's ``Volume`` object; ``usage`` (size, references) only for ``system df``."""
    out: JSON = {
        "CreatedAt": rec.created_at,
        "Driver": rec.driver,
        "Labels": rec.labels,
        "Mountpoint": service.mountpoint(rec.name),
        "Name": rec.name,
        "Options": rec.options,
        "Scope": "local",
    }
    if usage is not None:
        out["UsageData"] = {"Size": usage[0], "RefCount": usage[1]}
    return out


async def volumes_usage(service: VolumeService) -> list[JSON]:
    """Every volume with its size and reference count (``system df``)."""
    out = []
    for rec in service.list():
        size = await asyncio.to_thread(service.size, rec.name)
        out.append(volume_json(service, rec, (size, len(service.users(rec.name)))))
    return out


async def list_volumes(request: web.Request) -> web.Response:
    service = engine_of(request).volumes
    filters = qfilters(request)
    check_filters(filters, LIST_FILTERS)
    volumes = [volume_json(service, v) for v in service.list() if service.matches(v, filters)]
    return web.json_response({"Volumes": volumes, "Warnings": []})


async def create(request: web.Request) -> web.Response:
    service = engine_of(request).volumes
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the request body must be a JSON object")
    rec = service.create(
        name=_text(body, "Name"),
        driver=_text(body, "Driver"),
        options=_map(body, "DriverOpts"),
        labels=_map(body, "Labels"),
    )
    return web.json_response(volume_json(service, rec), status=201)


async def inspect(request: web.Request) -> web.Response:
    service = engine_of(request).volumes
    return web.json_response(volume_json(service, service.get(request.match_info["name"])))


async def remove(request: web.Request) -> web.Response:
    service = engine_of(request).volumes
    await service.remove(request.match_info["name"], force=qbool(request, "force"))
    return web.Response(status=204)


def _api_version(request: web.Request) -> tuple[int, int]:
    version = request.match_info.get("version") or API_VERSION
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


async def prune(request: web.Request) -> web.Response:
    service = engine_of(request).volumes
    filters = qfilters(request)
    check_filters(filters, PRUNE_FILTERS)
    if "all" in filters:
        all_volumes = bool_filter("all", filters["all"][-1])
    else:
        all_volumes = _api_version(request) < _PRUNE_ANONYMOUS_SINCE
    selection = {k: v for k, v in filters.items() if k != "all"}
    deleted, reclaimed = await service.prune(selection, all_volumes)
    return web.json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def register(routes: Routes) -> None:
    routes.add("GET", "/volumes", list_volumes)
    routes.add("POST", "/volumes/create", create)
    routes.add("POST", "/volumes/prune", prune)
    routes.add("GET", "/volumes/{name}", inspect)
    routes.add("DELETE", "/volumes/{name}", remove)
