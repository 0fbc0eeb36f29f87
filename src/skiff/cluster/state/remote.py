"""``RemoteStore``: the Store protocol through a manager's store gateway (``cluster/gateway.py``).

Nodes that hold no store (workers, and managers of an SQLite cluster other than its one
holder) use it. Several manager addresses may be given: a request that cannot reach one tries
the next, and a watch whose connection drops resumes on another from the revision after the
last one it delivered, so its reader misses nothing (as ``EtcdStore`` does between members).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from skiff.cluster.state.base import (
    Compare,
    FedWatch,
    KeyValue,
    Lease,
    Op,
    RangeResult,
    TxnResult,
    check_txn_size,
)
from skiff.cluster.state.wire import (
    b64,
    compare_out,
    error_in,
    event_in,
    kv_in,
    op_out,
)
from skiff.errors import InvalidArgument, SkiffError, Unavailable

PREFIX = "/skiff/cluster/store"
WATCH_IDLE = 20.0  # seconds without a line (the gateway sends heartbeats every 5) -> reconnect


class RemoteStore:
    """The Store protocol over HTTP to one of ``addrs`` ("host:port"), with ``token``."""

    def __init__(
        self, addrs: Sequence[str], token: str, *, max_txn_ops: int = 128, timeout: float = 10.0
    ) -> None:
        if not addrs:
            raise InvalidArgument("no manager address given for the cluster store")
        self.addrs = [a if "://" in a else f"http://{a}" for a in addrs]
        self.token = token
        self.max_txn_ops = max_txn_ops
        self.timeout = timeout
        self._next = 0
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
                connector=aiohttp.TCPConnector(limit=64),
                headers={"Authorization": f"Bearer {self.token}"},
            )
        return self._session

    def set_addrs(self, addrs: Sequence[str]) -> None:
        """Replace the manager addresses (the cluster's managers changed)."""
        if addrs:
            self.addrs = [a if "://" in a else f"http://{a}" for a in addrs]
            self._next = 0

    async def _call(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        last: BaseException | None = None
        for attempt in range(len(self.addrs)):
            i = (self._next + attempt) % len(self.addrs)
            try:
                async with self._http().post(
                    f"{self.addrs[i]}{PREFIX}/{op}",
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as resp:
                    status = resp.status
                    answer: dict[str, Any] = json.loads(await resp.read() or b"{}")
            except (aiohttp.ClientError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
                last = e
                continue
            if status == 503:  # that node holds no store (or lost it): try another
                last = error_in(status, answer)
                continue
            self._next = i
            if status >= 400:
                raise error_in(status, answer)
            return answer
        if isinstance(last, SkiffError):
            raise last
        raise Unavailable(f"no cluster manager answered ({', '.join(self.addrs)}): {last}")

    # --- reads

    async def get(self, key: str) -> KeyValue | None:
        kv = (await self._call("get", {"key": key})).get("kv")
        return kv_in(kv) if kv else None

    async def range(self, prefix: str) -> RangeResult:
        answer = await self._call("range", {"prefix": prefix})
        return RangeResult(tuple(kv_in(d) for d in answer["kvs"]), int(answer["revision"]))

    async def revision(self) -> int:
        return int((await self._call("revision", {}))["revision"])

    async def info(self) -> dict[str, Any]:
        """The serving store's ``max_txn_ops`` and revision."""
        return await self._call("info", {})

    # --- writes

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        answer = await self._call("put", {"key": key, "value": b64(value), "lease": lease})
        return int(answer["revision"])

    async def delete(self, key: str) -> int:
        return int((await self._call("delete", {"key": key}))["revision"])

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        check_txn_size(self, compares, success, failure)
        answer = await self._call(
            "txn",
            {
                "compares": [compare_out(c) for c in compares],
                "success": [op_out(o) for o in success],
                "failure": [op_out(o) for o in failure],
            },
        )
        return TxnResult(bool(answer["succeeded"]), int(answer["revision"]))

    async def compact(self, revision: int) -> None:
        await self._call("compact", {"revision": revision})

    # --- leases

    async def grant(self, ttl: int) -> Lease:
        answer = await self._call("lease/grant", {"ttl": ttl})
        return Lease(int(answer["id"]), int(answer["ttl"]))

    async def keepalive(self, lease_id: int) -> int:
        return int((await self._call("lease/keepalive", {"id": lease_id}))["ttl"])

    async def revoke(self, lease_id: int) -> None:
        await self._call("lease/revoke", {"id": lease_id})

    # --- watches

    def watch(self, prefix: str, *, start_revision: int = 0) -> RemoteWatch:
        return RemoteWatch(self, prefix, start_revision)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class RemoteWatch(FedWatch):
    """One streamed watch, resumed on another manager if its connection drops."""

    _task_name = "skiff-remote-watch"

    def __init__(self, store: RemoteStore, prefix: str, start_revision: int) -> None:
        super().__init__()
        self._store = store
        self._prefix = prefix
        self._cursor = start_revision  # 0 until the gateway says where "now" starts

    async def _run(self) -> None:
        store = self._store
        failures = 0
        try:
            while True:
                try:
                    async for msg in self._stream():
                        failures = 0
                        if "error" in msg:
                            err = msg["error"]
                            raise error_in(409 if err.get("error") in ("compacted", "store") else 503, err)
                        if "start" in msg:
                            if self._cursor <= 0:
                                self._cursor = int(msg["start"])
                        elif msg.get("events"):
                            events = [event_in(e) for e in msg["events"]]
                            self._cursor = events[-1].kv.mod_revision + 1
                            await self._queue.put(events)
                except (aiohttp.ClientError, TimeoutError, ConnectionError, Unavailable) as e:
                    failures += 1
                    if failures > 3 * len(store.addrs):
                        raise Unavailable(f"cluster store watch lost: {e}") from e
                    store._next = (store._next + 1) % len(store.addrs)
                    await asyncio.sleep(min(1.0, 0.05 * failures))
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            await self._queue.put(e)

    async def _stream(self) -> AsyncIterator[dict[str, Any]]:
        store = self._store
        addr = store.addrs[store._next % len(store.addrs)]
        body = {"prefix": self._prefix, "start_revision": self._cursor}
        async with store._http().post(
            f"{addr}{PREFIX}/watch",
            json=body,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=store.timeout, sock_read=WATCH_IDLE),
        ) as resp:
            if resp.status >= 400:
                answer = json.loads(await resp.read() or b"{}")
                err = error_in(resp.status, answer)
                if resp.status == 503:
                    raise Unavailable(err.message)
                raise err
            buf = bytearray()
            scanned = 0
            async for chunk in resp.content.iter_any():
                buf.extend(chunk)
                while (i := buf.find(b"\n", scanned)) >= 0:
                    line = bytes(buf[:i])
                    del buf[: i + 1]
                    scanned = 0
                    if line.strip():
                        yield json.loads(line)
                scanned = len(buf)
        raise aiohttp.ClientPayloadError("the store gateway closed the watch stream")
