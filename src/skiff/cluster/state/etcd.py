"""``EtcdStore``: the Store protocol on a real etcd cluster (3.4+), for HA managers.

Speaks etcd v3 through its JSON gateway (grpc-gateway: ``/v3/kv/range``, ``/v3/kv/txn``,
``/v3/watch``, ``/v3/lease/*``) with aiohttp: keys and values are base64, 64-bit numbers are
JSON strings, and fields equal to their zero value are left out (``succeeded``, ``kvs``,
``mod_revision`` ...). No gRPC stack needed, and every member serves it on its client port.

Several endpoints may be given; a request that cannot reach one tries the next. A watch whose
connection drops resumes from the revision after the last one it delivered, so its reader
misses nothing. etcd refuses a transaction with more than ``--max-txn-ops`` compares or
operations (default 128): tell the store the cluster's value (``max_txn_ops``) so planners size
their plans to it.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp

from skiff.cluster.state.base import (
    Compacted,
    Compare,
    EventType,
    FedWatch,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    Put,
    RangeResult,
    StoreError,
    TxnResult,
    WatchEvent,
    check_txn_size,
    prefix_end,
)
from skiff.errors import InvalidArgument, Unavailable

RANGE_PAGE = 2000  # keys per range request; pages are read at one pinned revision

# gRPC status codes etcd answers with.
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_OUT_OF_RANGE = 11
_UNAVAILABLE = 14  # "leader changed", "no leader", "request timed out": the cluster is electing
RETRY_ROUNDS = 20  # rounds over every endpoint while the members elect a leader
RETRY_DELAY = 0.1  # seconds between rounds (an election takes a few election timeouts)
WATCH_RETRY_S = 30.0  # a watch keeps resuming on the members this long before it gives up
# A watch that heard nothing this long reconnects (from its cursor, on the next member): a member
# that lost power leaves an established connection that stays silent forever.
WATCH_IDLE_S = 10.0
SUSPECT_S = 30.0  # an endpoint that failed is tried after the others for this long
# With several members, a single-key request (get, put, lease calls, small transactions) gives
# one member this long before trying the next: a member that lost power never answers, and
# waiting the full timeout on it would outlast leases. Big ranges and plans get ``timeout``.
QUICK_TIMEOUT = 3.0
QUICK_OPS = 16  # transactions with at most this many compares and operations count as quick


def _b64(s: str | bytes) -> str:
    return binascii.b2a_base64(s.encode() if isinstance(s, str) else s, newline=False).decode()


def _unb64(s: str | None) -> bytes:
    return binascii.a2b_base64(s) if s else b""


def _kv(d: dict[str, Any]) -> KeyValue:
    get = d.get
    return KeyValue(
        _unb64(get("key")).decode(),
        _unb64(get("value")),
        int(get("create_revision", 0)),
        int(get("mod_revision", 0)),
        int(get("version", 0)),
        int(get("lease", 0)),
    )


def _txn_answer(raw: bytes) -> dict[str, Any]:
    """A ``/v3/kv/txn`` answer, parsed without its ``responses``: one small object per operation
    (~90 KB for 2,000 puts), of which the store reads nothing — ``header`` and ``succeeded`` come
    before them. Anything unexpected (``succeeded`` after them, an error) is parsed whole."""
    cut = raw.find(b',"responses":[')
    if cut > 0 and raw.rstrip().endswith(b"]}") and b'"succeeded"' not in raw[cut:]:
        with contextlib.suppress(ValueError):
            answer = json.loads(raw[:cut] + b"}")
            if isinstance(answer, dict) and "header" in answer:
                return answer
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


def _op(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        body: dict[str, Any] = {"key": _b64(op.key), "value": _b64(op.value)}
        if op.lease:
            body["lease"] = str(op.lease)
        return {"request_put": body}
    return {"request_delete_range": {"key": _b64(op.key)}}


class EtcdError(StoreError):
    """etcd answered with an error (its own message is kept)."""


def _code(answer: dict[str, Any]) -> int:
    """The gRPC status code of an error answer (0: none); streams nest it under ``error``."""
    error = answer.get("error")
    if isinstance(error, dict):
        return int(error.get("grpc_code", 0) or 0)
    return int(answer.get("code", 0) or 0)


def _raise_for(answer: dict[str, Any]) -> None:
    if "error" not in answer and "code" not in answer:
        return
    message = answer.get("message") or answer.get("error") or "etcd error"
    code = int(answer.get("code", 0))
    if code == _NOT_FOUND and "lease" in message:
        raise LeaseNotFound(message)
    if code == _INVALID_ARGUMENT:
        raise EtcdError(message)
    if code == _OUT_OF_RANGE and "compacted" in message:
        raise Compacted(0)
    raise EtcdError(message)


class EtcdStore:
    """The Store protocol over etcd's JSON gateway (see module doc)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        max_txn_ops: int = 128,
        timeout: float = 10.0,
        page: int = RANGE_PAGE,
        watch_idle: float = WATCH_IDLE_S,
    ) -> None:
        if not endpoints:
            raise InvalidArgument("no etcd endpoints given")
        self.endpoints = [e if "://" in e else f"http://{e}" for e in endpoints]
        self.max_txn_ops = max_txn_ops
        self.timeout = timeout
        self.page = page
        self.watch_idle = watch_idle
        self._next = 0  # index of the endpoint to try first
        self._suspect: dict[int, float] = {}  # endpoint index -> when it last failed (monotonic)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._quick_timeout()),
                connector=aiohttp.TCPConnector(limit=64),
            )
        return self._session

    def _quick_timeout(self) -> float:
        return min(self.timeout, QUICK_TIMEOUT) if len(self.endpoints) > 1 else self.timeout

    def _order(self) -> list[int]:
        """Endpoint indexes to try, from ``_next`` on; those that failed recently go last."""
        n, now = len(self.endpoints), time.monotonic()
        ring = [(self._next + k) % n for k in range(n)]
        fresh = [i for i in ring if now - self._suspect.get(i, -SUSPECT_S) >= SUSPECT_S]
        return fresh + [i for i in ring if i not in fresh]

    def _failed(self, index: int) -> None:
        self._suspect[index] = time.monotonic()
        if self._next == index:
            self._next = self._order()[0]

    async def _call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        quick: bool = False,
        parse: Callable[[bytes], dict[str, Any]] = json.loads,
    ) -> dict[str, Any]:
        """POST ``body`` to the first endpoint that answers; the first JSON object it returns.

        An endpoint that cannot be reached, or that answers "unavailable" (the members are
        electing a leader, or it lost the quorum), is skipped for the next one (and tried last
        for a while); after a round over every endpoint the store waits briefly and goes round
        again, for as long as an election takes. A retried write may have been applied already:
        puts and deletes are idempotent, and a transaction's compares then fail (the caller
        re-reads).
        """
        last: Exception | str | None = None
        timeout = aiohttp.ClientTimeout(total=self._quick_timeout() if quick else self.timeout)
        for round_ in range(RETRY_ROUNDS):
            if round_:
                await asyncio.sleep(RETRY_DELAY * min(round_, 5))
            for index in self._order():
                endpoint = self.endpoints[index]
                try:
                    async with self._http().post(endpoint + path, json=body, timeout=timeout) as resp:
                        text = (
                            await resp.content.readuntil(b"\n")
                            if path.startswith("/v3/lease/keepalive")
                            else None
                        )
                        answer = json.loads(text) if text is not None else parse(await resp.read())
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
                    last = e
                    self._failed(index)
                    continue
                if _code(answer) == _UNAVAILABLE or _code(answer.get("result") or {}) == _UNAVAILABLE:
                    last = answer.get("message") or answer.get("error") or "unavailable"
                    continue
                self._next = index
                self._suspect.pop(index, None)
                _raise_for(answer)
                return answer
            if not isinstance(last, str) and round_ >= 1:
                break  # nothing reachable at all: do not wait out an election that is not one
        raise Unavailable(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}")

    # --- reads

    async def get(self, key: str) -> KeyValue | None:
        answer = await self._call("/v3/kv/range", {"key": _b64(key)}, quick=True)
        kvs = answer.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def range(self, prefix: str) -> RangeResult:
        end = _b64(prefix_end(prefix))
        start = prefix
        revision = 0
        out: list[KeyValue] = []
        while True:
            body: dict[str, Any] = {"key": _b64(start), "range_end": end, "limit": str(self.page)}
            if revision:
                body["revision"] = str(revision)
            answer = await self._call("/v3/kv/range", body)
            if not revision:
                revision = int(answer["header"]["revision"])
            page = [_kv(d) for d in answer.get("kvs") or []]
            out.extend(page)
            if not answer.get("more") or not page:
                return RangeResult(tuple(out), revision)
            start = page[-1].key + "\x00"

    async def revision(self) -> int:
        answer = await self._call("/v3/kv/range", {"key": _b64("\x00"), "count_only": True}, quick=True)
        return int(answer["header"]["revision"])

    # --- writes

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        answer = await self._call("/v3/kv/put", body, quick=True)
        return int(answer["header"]["revision"])

    async def delete(self, key: str) -> int:
        answer = await self._call("/v3/kv/deleterange", {"key": _b64(key)}, quick=True)
        return int(answer["header"]["revision"])

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        check_txn_size(self, compares, success, failure)
        body = {
            "compare": [
                {"key": _b64(c.key), "target": "MOD", "result": "EQUAL", "mod_revision": str(c.mod_revision)}
                for c in compares
            ],
            "success": [_op(op) for op in success],
            "failure": [_op(op) for op in failure],
        }
        quick = max(len(compares), len(success), len(failure)) <= QUICK_OPS
        answer = await self._call("/v3/kv/txn", body, quick=quick, parse=_txn_answer)
        return TxnResult(bool(answer.get("succeeded", False)), int(answer["header"]["revision"]))

    async def compact(self, revision: int) -> None:
        try:
            await self._call("/v3/kv/compaction", {"revision": str(revision)})
        except Compacted:
            pass  # already compacted at least that far
        except EtcdError as e:
            if "future revision" not in str(e):
                raise

    # --- watches

    def watch(self, prefix: str, *, start_revision: int = 0) -> EtcdWatch:
        return EtcdWatch(self, prefix, start_revision)

    # --- leases

    async def grant(self, ttl: int) -> Lease:
        answer = await self._call("/v3/lease/grant", {"TTL": str(ttl)}, quick=True)
        if answer.get("error"):
            raise EtcdError(str(answer["error"]))
        return Lease(int(answer["ID"]), int(answer["TTL"]))

    async def keepalive(self, lease_id: int) -> int:
        answer = await self._call("/v3/lease/keepalive", {"ID": str(lease_id)}, quick=True)
        _raise_for(answer.get("result") or {})
        ttl = int((answer.get("result") or {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        return ttl

    async def revoke(self, lease_id: int) -> None:
        await self._call("/v3/lease/revoke", {"ID": str(lease_id)}, quick=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class EtcdWatch(FedWatch):
    """One ``/v3/watch`` stream, resumed on another endpoint if its connection drops."""

    _task_name = "skiff-etcd-watch"

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int) -> None:
        super().__init__()
        self._store = store
        self._prefix = prefix
        self._cursor = start_revision  # 0 until the first response tells us the revision
        self._endpoint = 0  # index of the endpoint of the current connection
        self._heard = False  # the current connection delivered something

    async def _run(self) -> None:
        failures = 0
        first_failure = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    async for answer in self._stream():
                        failures = 0
                        result = answer.get("result") or {}
                        if _code(answer) == _UNAVAILABLE:
                            raise aiohttp.ClientPayloadError(f"etcd: {answer}")
                        _raise_for(answer)
                        if result.get("canceled"):
                            raise Compacted(int(result.get("compact_revision", 0)))
                        if self._cursor == 0:
                            self._cursor = int(result["header"]["revision"]) + 1
                        events = [
                            WatchEvent(
                                EventType.DELETE if e.get("type") == "DELETE" else EventType.PUT, _kv(e["kv"])
                            )
                            for e in result.get("events") or []
                        ]
                        if events:
                            self._cursor = events[-1].kv.mod_revision + 1
                            await self._queue.put(events)
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
                    if self._heard and isinstance(e, TimeoutError):
                        continue  # quiet for a while: reconnect (to the same member) to be sure
                    # a member died or the members are electing: resume on the next endpoint,
                    # for as long as an election or a restart may take
                    if failures == 0:
                        first_failure = loop.time()
                    failures += 1
                    if loop.time() - first_failure > WATCH_RETRY_S:
                        raise Unavailable(f"etcd watch lost: {e}") from e
                    self._store._failed(self._endpoint)
                    await asyncio.sleep(min(1.0, 0.05 * failures))
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            await self._queue.put(e)

    async def _stream(self) -> AsyncIterator[dict[str, Any]]:
        store = self._store
        create: dict[str, Any] = {"key": _b64(self._prefix), "range_end": _b64(prefix_end(self._prefix))}
        if self._cursor:
            create["start_revision"] = str(self._cursor)
        self._endpoint, self._heard = store._next, False
        endpoint = store.endpoints[self._endpoint]
        idle = aiohttp.ClientTimeout(
            total=None, sock_connect=store._quick_timeout(), sock_read=store.watch_idle
        )
        async with store._http().post(
            endpoint + "/v3/watch", json={"create_request": create}, timeout=idle
        ) as resp:
            buf = bytearray()  # one message per line; a big revision makes a line of megabytes
            scanned = 0
            async for chunk in resp.content.iter_any():
                buf.extend(chunk)
                while (i := buf.find(b"\n", scanned)) >= 0:
                    line = bytes(buf[:i])
                    del buf[: i + 1]
                    scanned = 0
                    if line.strip():
                        self._heard = True
                        yield json.loads(line)
                scanned = len(buf)
        raise aiohttp.ClientPayloadError("etcd closed the watch stream")
