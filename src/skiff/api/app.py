"""The aiohttp application: routing (versioned and unversioned), errors -> HTTP in one place."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from skiff import __version__
from skiff.engine.engine import Engine
from skiff.errors import InvalidArgument, NotModified, SkiffError

log = logging.getLogger("skiff.api")

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE_KEY = web.AppKey("engine", Engine)
_VERSION_RE = re.compile(r"^/v(\d+)\.(\d+)/")


def engine_of(request: web.Request) -> Engine:
    return request.app[ENGINE_KEY]


def error_response(status: int, message: str) -> web.Response:
    # Exactly "application/json" (no charset): the docker CLI decodes {"message"} only then,
    # and otherwise prints the raw JSON after "Error response from daemon:".
    body = json.dumps({"message": message}).encode()
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = _VERSION_RE.match(request.path)
    if match:
        asked = (int(match.group(1)), int(match.group(2)))
        top = tuple(int(x) for x in API_VERSION.split("."))
        low = tuple(int(x) for x in MIN_API_VERSION.split("."))
        if asked > top:
            return error_response(
                400,
                f"client version {asked[0]}.{asked[1]} is too new. Maximum supported API version is {API_VERSION}",
            )
        if asked < low:
            return error_response(
                400,
                f"client version {asked[0]}.{asked[1]} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version",
            )
    try:
        return await handler(request)
    except NotModified:
        return web.Response(status=304)
    except SkiffError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        if request.get(_PREPARED):
            log.warning("%s %s failed after its response began: %s", request.method, request.path, exc)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=exc.status)  # never written: the connection is closed
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status == 404 and exc.text and exc.text.startswith("404"):
            return error_response(404, "page not found")
        if exc.status == 405:
            return error_response(404, "page not found")
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return error_response(400, f"invalid JSON: {exc}")
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as exc:
        log.exception("internal error on %s %s", request.method, request.path)
        if request.get(_PREPARED):
            # Headers are out: another response would land inside the body. End the stream.
            if request.transport is not None:
                request.transport.close()
            raise
        return error_response(500, f"internal error: {exc}")


_PREPARED = web.RequestKey("skiff.prepared", bool)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    request[_PREPARED] = True
    response.headers.setdefault("Api-Version", API_VERSION)
    response.headers.setdefault("Docker-Experimental", "false")
    response.headers.setdefault("Ostype", "linux")
    response.headers.setdefault("Server", f"skiff/{__version__} (linux)")


class Routes:
    """Registers each route both unversioned and under ``/v{major}.{minor}``."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, r"/v{version:\d+\.\d+}" + path, handler)


async def read_json(request: web.Request, *, default: Any = None) -> Any:
    body = await request.read()
    if not body.strip():
        return default
    return json.loads(body)


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() not in ("0", "false", "no", "")


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r} is not an integer") from None


def clamp_ns(value: int) -> int:
    """A nanosecond timestamp kept inside int64 (what SQLite and Go's time can hold)."""
    return max(-(2**63), min(value, 2**63 - 1))


def timestamp_ns(value: str | None) -> int | None:
    """Docker's since/until for logs and events: Unix seconds (fractional) or RFC 3339, in ns."""
    if not value:
        return None
    try:
        return clamp_ns(int(float(value) * 1e9))
    except (ValueError, OverflowError):
        pass
    from skiff.api.render import parse_time

    try:
        return clamp_ns(int(parse_time(value) * 1e9))
    except (ValueError, OverflowError):
        raise InvalidArgument(f"invalid timestamp {value!r}: use Unix seconds or RFC 3339") from None


def qfilters(request: web.Request) -> dict[str, list[str]]:
    """Docker's ``filters`` query: {"key": ["v"]} or the old {"key": {"v": true}}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidArgument("invalid filter: the filters parameter must be JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def create_app(engine: Engine) -> web.Application:
    from skiff.api import build, containers, ctrfs, distribution, execs, images, networks, system, volumes

    app = web.Application(middlewares=[errors_middleware], client_max_size=1024**4)
    app[ENGINE_KEY] = engine
    app.on_response_prepare.append(_add_headers)
    routes = Routes(app)
    for module in (system, containers, ctrfs, images, distribution, build, execs, networks, volumes):
        module.register(routes)
    from skiff.api import cluster, swarm

    swarm.register(routes)
    cluster.register(routes)
    return app
