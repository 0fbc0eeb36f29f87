"""skiff's cluster API on skiffd's normal sockets: ``/skiff/cluster/...`` (and ``/v1.x/...``).

Every handler hands over to the ``ClusterRuntime`` (``cluster/manager.py``), which answers
plain dicts: ``to_plain`` of the cluster model's dataclasses plus computed keys. Errors are the
runtime's ``skiff.errors`` (400 bad input, 404 no such, 409 conflict, 503 not a manager).
Endpoints are listed in docs/architecture.md ("Cluster runtime").
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from skiff.api.app import Routes, qbool, qint, read_json
from skiff.cluster.manager import NOT_IN_CLUSTER, ClusterRuntime
from skiff.errors import InvalidArgument, Unavailable

CLUSTER_KEY = web.AppKey("cluster", ClusterRuntime)
BASE = "/skiff/cluster"


def runtime_of(request: web.Request) -> ClusterRuntime:
    runtime = request.app.get(CLUSTER_KEY)
    if runtime is None:
        raise Unavailable(NOT_IN_CLUSTER)
    return runtime


def _ok(body: Any = None, status: int = 200) -> web.Response:
    if body is None:
        return web.Response(status=204 if status == 200 else status)
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string")
    return value


async def init(request: web.Request) -> web.Response:
    body = await _body(request)
    out = await runtime_of(request).init(
        advertise_addr=_str(body, "AdvertiseAddr"),
        listen_addr=_str(body, "ListenAddr") or "0.0.0.0:2377",
        store=_str(body, "Store"),
        etcd_local=bool(body.get("EtcdLocal")),
    )
    return _ok(out)


async def join(request: web.Request) -> web.Response:
    body = await _body(request)
    remotes = body.get("RemoteAddrs") or []
    if not isinstance(remotes, list) or not all(isinstance(a, str) for a in remotes):
        raise InvalidArgument("RemoteAddrs must be a list of host:port strings")
    token = _str(body, "JoinToken")
    if not token:
        raise InvalidArgument("JoinToken is required")
    out = await runtime_of(request).join(
        remotes,
        token,
        advertise_addr=_str(body, "AdvertiseAddr"),
        listen_addr=_str(body, "ListenAddr") or "0.0.0.0:2377",
    )
    return _ok(out)


async def leave(request: web.Request) -> web.Response:
    await runtime_of(request).leave(force=qbool(request, "force"))
    return _ok()


async def inspect(request: web.Request) -> web.Response:
    return _ok(await runtime_of(request).inspect())


async def join_token(request: web.Request) -> web.Response:
    role = request.query.get("role", "worker")
    rotate = request.method == "POST" and qbool(request, "rotate", True)
    token = await runtime_of(request).join_token(role, rotate=rotate)
    return _ok({"Role": role, "Token": token})


async def nodes(request: web.Request) -> web.Response:
    return _ok(await runtime_of(request).nodes())


async def node_inspect(request: web.Request) -> web.Response:
    return _ok(await runtime_of(request).node_inspect(request.match_info["ref"]))


async def node_update(request: web.Request) -> web.Response:
    body = await _body(request)
    add = body.get("LabelsAdd") or {}
    rm = body.get("LabelsRm") or []
    if not isinstance(add, dict) or not all(isinstance(v, str) for v in add.values()):
        raise InvalidArgument("LabelsAdd must be an object of strings")
    if not isinstance(rm, list) or not all(isinstance(v, str) for v in rm):
        raise InvalidArgument("LabelsRm must be a list of strings")
    await runtime_of(request).node_update(
        request.match_info["ref"],
        labels_add={str(k): v for k, v in add.items()},
        labels_rm=rm,
        availability=_str(body, "Availability"),
        role=_str(body, "Role"),
    )
    return _ok()


async def node_rm(request: web.Request) -> web.Response:
    await runtime_of(request).node_rm(request.match_info["ref"], force=qbool(request, "force"))
    return _ok()


async def services(request: web.Request) -> web.Response:
    return _ok(await runtime_of(request).services())


async def service_create(request: web.Request) -> web.Response:
    spec = await read_json(request, default=None)
    return _ok(await runtime_of(request).service_create(spec), 201)


async def service_inspect(request: web.Request) -> web.Response:
    return _ok(await runtime_of(request).service_inspect(request.match_info["ref"]))


async def service_update(request: web.Request) -> web.Response:
    spec = await read_json(request, default=None)
    await runtime_of(request).service_update(
        request.match_info["ref"],
        spec,
        rollback=qbool(request, "rollback"),
        force=qbool(request, "force"),
        version=qint(request, "version", 0) or 0,
    )
    return _ok()


async def service_rm(request: web.Request) -> web.Response:
    await runtime_of(request).service_rm(request.match_info["ref"])
    return _ok()


async def tasks(request: web.Request) -> web.Response:
    out = await runtime_of(request).tasks(
        service=request.query.get("service") or None, node=request.query.get("node") or None
    )
    return _ok(out)


async def service_logs(request: web.Request) -> web.StreamResponse:
    runtime = runtime_of(request)
    lines = runtime.service_logs(
        request.match_info["ref"],
        follow=qbool(request, "follow"),
        tail=request.query.get("tail", "all"),
        timestamps=qbool(request, "timestamps"),
    )
    first = None
    try:
        first = await anext(lines)  # errors (no such service) before the response begins
    except StopAsyncIteration:
        pass
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    try:
        if first is not None:
            await resp.write(_log_line(first))
            async for item in lines:
                await resp.write(_log_line(item))
    finally:
        await lines.aclose()
    return resp


def _log_line(item: tuple[str, bytes]) -> bytes:
    label, data = item
    return json.dumps({"Task": label, "Data": base64.b64encode(data).decode()}).encode() + b"\n"


def register(routes: Routes) -> None:
    routes.add("POST", BASE + "/init", init)
    routes.add("POST", BASE + "/join", join)
    routes.add("POST", BASE + "/leave", leave)
    routes.add("GET", BASE, inspect)
    routes.add("GET", BASE + "/join-token", join_token)
    routes.add("POST", BASE + "/join-token", join_token)
    routes.add("GET", BASE + "/nodes", nodes)
    routes.add("GET", BASE + "/nodes/{ref}", node_inspect)
    routes.add("POST", BASE + "/nodes/{ref}/update", node_update)
    routes.add("DELETE", BASE + "/nodes/{ref}", node_rm)
    routes.add("GET", BASE + "/services", services)
    routes.add("POST", BASE + "/services", service_create)
    routes.add("GET", BASE + "/services/{ref}", service_inspect)
    routes.add("POST", BASE + "/services/{ref}/update", service_update)
    routes.add("DELETE", BASE + "/services/{ref}", service_rm)
    routes.add("GET", BASE + "/services/{ref}/logs", service_logs)
    routes.add("GET", BASE + "/tasks", tasks)
