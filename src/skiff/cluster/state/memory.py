"""``MemoryStore``: the Store protocol in a process's memory, for tests and simulations.

Same semantics as etcd (revisions, compares, watches, leases); nothing survives the process.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

from skiff.cluster.state.base import (
    Compacted,
    Compare,
    Delete,
    EventType,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    Put,
    RangeResult,
    TxnResult,
    WatchEvent,
    check_txn_size,
)
from skiff.cluster.state.local import LeaseReaper, LeaseTable, LocalWatch, RevisionSignal


class MemoryStore:
    """An in-memory, etcd-shaped store (see ``skiff.cluster.state.base``)."""

    def __init__(self, *, max_txn_ops: int = 128, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_txn_ops = max_txn_ops
        self._kv: dict[str, KeyValue] = {}
        self._sorted: list[str] = []
        self._rev = 1  # etcd's first revision; the first write makes 2
        self._log: list[WatchEvent] = []
        self._log_revs: list[int] = []  # parallel to _log, for bisecting by revision
        self._compacted = 0
        self._lease_seq = 0
        self._leases = LeaseTable(clock)
        self._lease_keys: dict[int, set[str]] = {}
        self._reaper = LeaseReaper(self._leases, self._expire)
        self._signal = RevisionSignal(self._rev)

    # --- reads

    async def get(self, key: str) -> KeyValue | None:
        return self._kv.get(key)

    async def range(self, prefix: str) -> RangeResult:
        i = bisect.bisect_left(self._sorted, prefix)
        out = []
        while i < len(self._sorted) and self._sorted[i].startswith(prefix):
            out.append(self._kv[self._sorted[i]])
            i += 1
        return RangeResult(tuple(out), self._rev)

    async def revision(self) -> int:
        return self._rev

    # --- writes

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return (await self.txn((), (Put(key, value, lease),))).revision

    async def delete(self, key: str) -> int:
        return (await self.txn((), (Delete(key),))).revision

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        check_txn_size(self, compares, success, failure)
        ok = all(self._mod_revision(c.key) == c.mod_revision for c in compares)
        ops = success if ok else failure
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise LeaseNotFound("etcdserver: requested lease not found")
        self._apply(ops)
        return TxnResult(ok, self._rev)

    def _mod_revision(self, key: str) -> int:
        kv = self._kv.get(key)
        return kv.mod_revision if kv else 0

    def _apply(self, ops: Sequence[Op]) -> None:
        rev = self._rev + 1
        events = []
        for op in ops:
            old = self._kv.get(op.key)
            if isinstance(op, Put):
                kv = KeyValue(
                    op.key,
                    op.value,
                    old.create_revision if old else rev,
                    rev,
                    old.version + 1 if old else 1,
                    op.lease,
                )
                if old is None:
                    bisect.insort(self._sorted, op.key)
                else:
                    self._detach(old)
                self._kv[op.key] = kv
                if op.lease:
                    self._lease_keys.setdefault(op.lease, set()).add(op.key)
                events.append(WatchEvent(EventType.PUT, kv))
            elif old is not None:
                del self._kv[op.key]
                self._sorted.pop(bisect.bisect_left(self._sorted, op.key))
                self._detach(old)
                events.append(WatchEvent(EventType.DELETE, KeyValue(op.key, b"", 0, rev, 0)))
        if not events:
            return
        self._rev = rev
        self._log.extend(events)
        self._log_revs.extend([rev] * len(events))
        self._signal.advanced(rev)

    def _detach(self, old: KeyValue) -> None:
        if old.lease:
            self._lease_keys.get(old.lease, set()).discard(old.key)

    # --- watches

    def watch(self, prefix: str, *, start_revision: int = 0) -> LocalWatch:
        def fetch(first: int, last: int) -> list[WatchEvent]:
            if first < self._compacted:
                raise Compacted(self._compacted)
            lo = bisect.bisect_left(self._log_revs, first)
            hi = bisect.bisect_right(self._log_revs, last)
            return [e for e in self._log[lo:hi] if e.kv.key.startswith(prefix)]

        return LocalWatch(fetch, lambda: self._rev, self._signal, start_revision)

    async def compact(self, revision: int) -> None:
        cut = bisect.bisect_left(self._log_revs, revision)
        del self._log[:cut]
        del self._log_revs[:cut]
        self._compacted = max(self._compacted, revision)

    # --- leases

    async def grant(self, ttl: int) -> Lease:
        self._lease_seq += 1
        lease = Lease(self._lease_seq, self._leases.add(self._lease_seq, ttl))
        self._reaper.start()
        return lease

    async def keepalive(self, lease_id: int) -> int:
        return self._leases.keepalive(lease_id)

    async def revoke(self, lease_id: int) -> None:
        self._leases.remove(lease_id)
        keys = sorted(self._lease_keys.pop(lease_id, set()))
        self._apply([Delete(k) for k in keys])

    async def _expire(self, lease_id: int) -> None:
        if lease_id in self._leases:
            await self.revoke(lease_id)

    async def expire_due(self) -> None:
        """Expire every lease whose deadline passed now (tests with a fake clock call this)."""
        await self._reaper.expire_due()

    async def close(self) -> None:
        await self._reaper.stop()
        self._signal.close()
