"""The registry's aiohttp application: routes, the token endpoint, errors -> HTTP in one place."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from skiff.errors import SkiffError
from skiff.registry.server import auth, routes_blobs, routes_manifests
from skiff.registry.server.context import REGISTRY_KEY, Registry, authorize, registry_of
from skiff.registry.server.errors import RegistryError
from skiff.registry.server.grammar import next_link, paginate, parse_page_size

log = logging.getLogger("skiff.registry")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# SkiffErrors from lower layers (store, content) by HTTP status -> the spec's code.
_CODE_OF_STATUS = {400: "UNSUPPORTED", 403: "DENIED", 404: "NAME_UNKNOWN"}


def error_response(exc: RegistryError) -> web.Response:
    return web.Response(
        status=exc.status, body=exc.body(), headers={**exc.headers, "Content-Type": "application/json"}
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(
                RegistryError("UNSUPPORTED", f"no such endpoint: {request.path}", status=404)
            )
        if exc.status == 405:
            return error_response(
                RegistryError("UNSUPPORTED", f"{request.method} is not supported on {request.path}")
            )
        if exc.status == 413:
            return error_response(RegistryError("SIZE_INVALID", "request body too large", status=413))
        raise
    except SkiffError as exc:
        code = _CODE_OF_STATUS.get(exc.status, "UNKNOWN")
        if code == "UNKNOWN":
            log.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(RegistryError(code, exc.message, status=exc.status))
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as exc:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(RegistryError("UNKNOWN", f"internal error: {exc}"))


async def _api_version(request: web.Request, response: web.StreamResponse) -> None:
    # Docker clients look for this header on /v2/ (and on errors) to recognise a v2 registry.
    response.headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")


async def base(request: web.Request) -> web.StreamResponse:
    await authorize(request, [])
    return web.json_response({})


async def catalog(request: web.Request) -> web.StreamResponse:
    await authorize(request, [auth.CATALOG])
    n = parse_page_size(request.query.get("n"))
    reg = registry_of(request)
    page = paginate(await reg.db(reg.store.repositories), n, request.query.get("last"))
    response = web.json_response({"repositories": page.items})
    if page.next_last is not None and n is not None:
        response.headers["Link"] = next_link("/v2/_catalog", n, page.next_last)
    return response


async def token(request: web.Request) -> web.StreamResponse:
    """``GET /token?service=&scope=`` with basic credentials (or none), as Docker clients ask;
    ``POST /token`` with an OAuth2 password grant, as containerd-based clients try first."""
    tokens = registry_of(request).tokens
    if tokens is None:
        raise RegistryError("UNSUPPORTED", "this registry does not issue tokens", status=404)
    if request.method == "POST":
        form = await request.post()
        if form.get("grant_type") != "password":
            raise RegistryError(
                "UNSUPPORTED", "only grant_type=password is supported; use GET with basic auth", status=400
            )
        creds: tuple[str, str] | None = (str(form.get("username", "")), str(form.get("password", "")))
        scopes_text = [str(form.get("scope", ""))]
        service = str(form.get("service", ""))
    else:
        creds = auth.parse_basic(request.headers.get("Authorization"))
        scopes_text = request.query.getall("scope", [])
        service = request.query.get("service", "")
    if service and service != tokens.issuer.service:
        raise RegistryError(
            "DENIED", f"unknown service {service!r}: this token server is for {tokens.issuer.service!r}"
        )
    account = await tokens.account(creds)
    scopes = [a for text in scopes_text for a in auth.parse_scope(text)]
    return web.json_response(tokens.token(account, scopes))


def create_app(registry: Registry) -> web.Application:
    """The registry as an aiohttp app (``registry`` is closed with it)."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 20)
    app[REGISTRY_KEY] = registry
    app.on_response_prepare.append(_api_version)
    r = app.router
    r.add_route("GET", "/v2/", base)
    r.add_route("HEAD", "/v2/", base)
    r.add_route("GET", "/v2", base)
    r.add_route("GET", "/v2/_catalog", catalog)
    r.add_route("GET", "/token", token)
    r.add_route("POST", "/token", token)
    routes_blobs.add_routes(app)
    routes_manifests.add_routes(app)

    async def close(app: web.Application) -> None:
        registry.close()

    app.on_cleanup.append(close)
    return app
