"""The store gateway: a manager serves its ``Store`` over HTTP on the cluster port.

Why: the default store is SQLite inside one manager's process, so every other node (workers,
and the manager's own agent through the same code path if it wished) reaches the store through
that manager. With etcd every manager serves the same store; ``RemoteStore`` fails over between
them. Routes, all ``POST`` with a JSON body, under ``/skiff/cluster/store/``:

``get`` ``range`` ``put`` ``delete`` ``txn`` ``revision`` ``compact`` ``info``
``lease/grant`` ``lease/keepalive`` ``lease/revoke`` and ``watch`` (a JSON-lines stream: first
``{"start": revision}``, then ``{"events": [...]}`` per batch, ``{}`` as a heartbeat every few
seconds so both ends notice a dead peer, and ``{"error": ...}`` as the last line on failure).

Every request carries ``Authorization: Bearer <token>``; ``authorize`` (the cluster runtime's)
decides. A node that holds no store answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from skiff.cluster.state.base import Store
from skiff.cluster.state.wire import (
    compare_in,
    error_out,
    event_out,
    kv_out,
    op_in,
    unb64,
)
from skiff.errors import InvalidArgument, SkiffError, Unauthorized, Unavailable

log = logging.getLogger(__name__)

PREFIX = "/skiff/cluster/store"
HEARTBEAT = 5.0  # seconds between heartbeat lines on an idle watch

StoreGetter = Callable[[], Store | None]
Authorize = Callable[[web.Request], Awaitable[None]]


def bearer(request: web.Request) -> str:
    """The request's bearer token ('' when none)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def static_token(token: str) -> Authorize:
    """An ``authorize`` accepting one fixed token (tests, a single-secret cluster)."""
    import hmac

    async def check(request: web.Request) -> None:
        if not hmac.compare_digest(bearer(request).encode(), token.encode()):
            raise Unauthorized("cluster token missing or not valid")

    return check


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


class StoreGateway:
    """The routes above over whatever store ``get_store`` returns now."""

    def __init__(self, get_store: StoreGetter, authorize: Authorize) -> None:
        self.get_store = get_store
        self.authorize = authorize

    def register(self, app: web.Application) -> None:
        ops: dict[str, Callable[[Store, dict[str, Any]], Awaitable[Any]]] = {
            "get": self._get,
            "range": self._range,
            "put": self._put,
            "delete": self._delete,
            "txn": self._txn,
            "revision": self._revision,
            "compact": self._compact,
            "info": self._info,
            "lease/grant": self._grant,
            "lease/keepalive": self._keepalive,
            "lease/revoke": self._revoke,
        }
        for name, fn in ops.items():
            app.router.add_post(f"{PREFIX}/{name}", self._unary(fn))
        app.router.add_post(f"{PREFIX}/watch", self._watch)

    async def _open(self, request: web.Request) -> tuple[Store, dict[str, Any]]:
        await self.authorize(request)
        store = self.get_store()
        if store is None:
            raise Unavailable("this node holds no cluster store: send store requests to a manager")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"invalid JSON: {e}") from None
        if not isinstance(body, dict):
            raise InvalidArgument("the request body is a JSON object")
        return store, body

    def _unary(
        self, fn: Callable[[Store, dict[str, Any]], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                store, body = await self._open(request)
                return json_response(await fn(store, body))
            except SkiffError as e:
                status, out = error_out(e)
                return json_response(out, status)
            except (KeyError, TypeError, ValueError) as e:
                return json_response(
                    {"message": f"invalid store request: {e}", "error": "InvalidArgument"}, 400
                )

        return handler

    # --- unary operations

    @staticmethod
    async def _get(store: Store, body: dict[str, Any]) -> Any:
        kv = await store.get(str(body["key"]))
        return {"kv": kv_out(kv) if kv else None}

    @staticmethod
    async def _range(store: Store, body: dict[str, Any]) -> Any:
        r = await store.range(str(body["prefix"]))
        return {"kvs": [kv_out(kv) for kv in r.kvs], "revision": r.revision}

    @staticmethod
    async def _put(store: Store, body: dict[str, Any]) -> Any:
        rev = await store.put(
            str(body["key"]), unb64(body.get("value") or ""), lease=int(body.get("lease", 0))
        )
        return {"revision": rev}

    @staticmethod
    async def _delete(store: Store, body: dict[str, Any]) -> Any:
        return {"revision": await store.delete(str(body["key"]))}

    @staticmethod
    async def _txn(store: Store, body: dict[str, Any]) -> Any:
        r = await store.txn(
            [compare_in(c) for c in body.get("compares") or []],
            [op_in(o) for o in body.get("success") or []],
            [op_in(o) for o in body.get("failure") or []],
        )
        return {"succeeded": r.succeeded, "revision": r.revision}

    @staticmethod
    async def _revision(store: Store, body: dict[str, Any]) -> Any:
        return {"revision": await store.revision()}

    @staticmethod
    async def _compact(store: Store, body: dict[str, Any]) -> Any:
        await store.compact(int(body["revision"]))
        return {}

    @staticmethod
    async def _info(store: Store, body: dict[str, Any]) -> Any:
        return {"max_txn_ops": store.max_txn_ops, "revision": await store.revision()}

    @staticmethod
    async def _grant(store: Store, body: dict[str, Any]) -> Any:
        lease = await store.grant(int(body["ttl"]))
        return {"id": lease.id, "ttl": lease.ttl}

    @staticmethod
    async def _keepalive(store: Store, body: dict[str, Any]) -> Any:
        return {"ttl": await store.keepalive(int(body["id"]))}

    @staticmethod
    async def _revoke(store: Store, body: dict[str, Any]) -> Any:
        await store.revoke(int(body["id"]))
        return {}

    # --- watch

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        try:
            store, body = await self._open(request)
            prefix = str(body["prefix"])
            start = int(body.get("start_revision", 0))
            if start <= 0:
                start = await store.revision() + 1
        except SkiffError as e:
            status, out = error_out(e)
            return json_response(out, status)
        except (KeyError, TypeError, ValueError) as e:
            return json_response({"message": f"invalid watch request: {e}", "error": "InvalidArgument"}, 400)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)

        async def line(obj: Any) -> None:
            await resp.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

        await line({"start": start})
        try:
            async with store.watch(prefix, start_revision=start) as w:
                it = aiter(w)
                pending: asyncio.Future[Any] | None = None
                try:
                    while True:
                        if pending is None:
                            pending = asyncio.ensure_future(anext(it))
                        done, _ = await asyncio.wait([pending], timeout=HEARTBEAT)
                        if not done:
                            await line({})
                            continue
                        finished, pending = pending, None
                        try:
                            events = finished.result()
                        except StopAsyncIteration:
                            break
                        await line({"events": [event_out(e) for e in events]})
                finally:
                    if pending is not None:
                        pending.cancel()
                        with contextlib.suppress(BaseException):
                            await pending
        except SkiffError as e:
            _, out = error_out(e)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await line({"error": out})
        except (ConnectionError, RuntimeError):
            pass  # the watcher went away
        return resp
