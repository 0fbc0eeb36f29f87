"""``SQLiteStore``: the embedded default — the Store protocol in one SQLite file.

One manager, nothing else to install. Tables: ``kv`` (the keys as they are now, with etcd's
revisions), ``log`` (every change by revision, which watches replay), ``leases`` and ``meta``
(the revision counter). Every write is one SQLite transaction (WAL), so a crash leaves either
all of a store transaction or none of it.

Leases are persisted when granted; their deadlines live in memory, and opening the store gives
every lease a fresh TTL, as etcd does when a new leader takes over: nodes get one TTL to
reconnect to a restarted manager. One process owns the file (an exclusive lock): watches are
woken in-process.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from skiff import failpoints
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
    prefix_end,
)
from skiff.cluster.state.local import MIN_TTL, LeaseReaper, LeaseTable, LocalWatch, RevisionSignal
from skiff.errors import Unavailable

RECENT_EVENTS = 50_000  # events kept in memory for watches that keep up (~50 MB of task records)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compacted', 0), ('lease_seq', 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    PRIMARY KEY (rev, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
"""


class SQLiteStore:
    """The embedded store (see module doc). ``retain_revisions`` > 0 compacts the change log
    automatically, keeping that many revisions of history for watches."""

    def __init__(
        self,
        path: Path,
        *,
        max_txn_ops: int = 10_000,
        retain_revisions: int = 0,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.max_txn_ops = max_txn_ops
        self.retain_revisions = retain_revisions
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise Unavailable(f"cluster store {self.path} is in use by another process") from None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a crash never loses or half-applies a committed transaction's
        # consistency; only a power cut may drop the last commits (as MetadataDB).
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the hot keys of 100,000 tasks
        self._db.execute("PRAGMA wal_autocheckpoint=10000")  # checkpoint per ~40 MB, not per 4 MB
        self._db.executescript(_SCHEMA)
        self._rev = self._meta("revision")
        self._compacted = self._meta("compacted")
        self._leases = LeaseTable(clock)
        for lease_id, ttl in self._db.execute("SELECT id, ttl FROM leases"):
            self._leases.add(lease_id, ttl)
        self._reaper = LeaseReaper(self._leases, self._expire)
        self._signal = RevisionSignal(self._rev)
        # the events of recent revisions, for watches that keep up (older ones read the log table)
        self._recent: list[WatchEvent] = []
        self._recent_revs: list[int] = []
        self._reaper_started = False

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction (the connection is in autocommit mode otherwise)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def _start_reaper(self) -> None:
        if not self._reaper_started:
            self._reaper.start()
            self._reaper_started = True

    # --- reads

    async def get(self, key: str) -> KeyValue | None:
        row = self._db.execute(
            "SELECT key, value, create_rev, mod_rev, version, lease FROM kv WHERE key = ?", (key,)
        ).fetchone()
        return KeyValue(*row) if row else None

    async def range(self, prefix: str) -> RangeResult:
        rows = self._db.execute(
            "SELECT key, value, create_rev, mod_rev, version, lease FROM kv WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix_end(prefix)),
        ).fetchall()
        return RangeResult(tuple(KeyValue(*r) for r in rows), self._rev)

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
        self._start_reaper()
        with self._tx():
            # one read of everything the transaction compares or writes
            state = self._read_state([c.key for c in compares] + [op.key for op in (*success, *failure)])
            ok = all((state[c.key][1] if c.key in state else 0) == c.mod_revision for c in compares)
            ops = success if ok else failure
            for op in ops:
                if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                    raise LeaseNotFound("etcdserver: requested lease not found")
            events = self._apply(ops, state)
        self._committed(events)
        return TxnResult(ok, self._rev)

    def _read_state(self, keys: list[str]) -> dict[str, tuple[int, int, int]]:
        """key -> (create_rev, mod_rev, version) for the keys that exist."""
        rows = self._select_keys("SELECT key, create_rev, mod_rev, version FROM kv WHERE key IN ({})", keys)
        return {k: (c, m, v) for k, c, m, v in rows}

    def _apply(self, ops: Sequence[Op], state: dict[str, tuple[int, int, int]]) -> list[WatchEvent]:
        """Write ``ops`` at revision ``self._rev + 1`` inside the open SQLite transaction;
        ``state`` holds the current revisions of their keys. Returns the change's events.

        Batched (``executemany``) rather than a statement per key: a plan writes thousands.
        """
        db = self._db
        rev = self._rev + 1
        events: list[WatchEvent] = []
        kv_rows, gone = [], []
        for op in ops:
            old = state.get(op.key)
            if isinstance(op, Put):
                create_rev, version = (old[0], old[2] + 1) if old else (rev, 1)
                kv_rows.append((op.key, op.value, create_rev, rev, version, op.lease))
                events.append(
                    WatchEvent(EventType.PUT, KeyValue(op.key, op.value, create_rev, rev, version, op.lease))
                )
            elif old is not None:
                gone.append((op.key,))
                events.append(WatchEvent(EventType.DELETE, KeyValue(op.key, b"", 0, rev, 0)))
        if kv_rows:
            db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)", kv_rows)
        if gone:
            db.executemany("DELETE FROM kv WHERE key = ?", gone)
        db.executemany(
            "INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    rev,
                    i,
                    e.kv.key,
                    int(e.type is EventType.DELETE),
                    e.kv.value,
                    e.kv.create_revision,
                    e.kv.version,
                    e.kv.lease,
                )
                for i, e in enumerate(events)
            ],
        )
        failpoints.hit("cluster-store-mid-txn")  # the crash tests end the process here
        if events:
            db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (rev,))
        return events

    def _committed(self, events: list[WatchEvent]) -> None:
        """After COMMIT: the new revision is visible, and its events go to the watch buffer."""
        if not events:
            return
        self._rev += 1
        self._recent.extend(events)
        self._recent_revs.extend([self._rev] * len(events))
        if len(self._recent) > 2 * RECENT_EVENTS:
            del self._recent[: len(self._recent) - RECENT_EVENTS]
            del self._recent_revs[: len(self._recent_revs) - RECENT_EVENTS]
        self._signal.advanced(self._rev)
        self._maybe_compact()

    def _select_keys(self, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
        """``sql`` (with ``IN ({})``) over ``keys``, 500 at a time."""
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows += self._db.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    # --- watches

    def watch(self, prefix: str, *, start_revision: int = 0) -> LocalWatch:
        end = prefix_end(prefix)

        def fetch(first: int, last: int) -> list[WatchEvent]:
            if first < self._compacted:
                raise Compacted(self._compacted)
            if self._recent_revs and first >= self._recent_revs[0]:  # recent: from memory, as etcd
                lo = bisect.bisect_left(self._recent_revs, first)
                hi = bisect.bisect_right(self._recent_revs, last)
                return [e for e in self._recent[lo:hi] if e.kv.key.startswith(prefix)]
            rows = self._db.execute(
                "SELECT rev, key, deleted, value, create_rev, version, lease FROM log"
                " WHERE rev BETWEEN ? AND ? AND key >= ? AND key < ? ORDER BY rev, seq",
                (first, last, prefix, end),
            ).fetchall()
            return [
                WatchEvent(
                    EventType.DELETE if deleted else EventType.PUT,
                    KeyValue(key, value, create_rev, rev, version, lease),
                )
                for rev, key, deleted, value, create_rev, version, lease in rows
            ]

        return LocalWatch(fetch, lambda: self._rev, self._signal, start_revision)

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._rev)
        if revision <= self._compacted:
            return
        with self._tx() as db:
            db.execute("DELETE FROM log WHERE rev < ?", (revision,))
            db.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (revision,))
        self._compacted = revision
        cut = bisect.bisect_left(self._recent_revs, revision)
        del self._recent[:cut], self._recent_revs[:cut]

    def _maybe_compact(self) -> None:
        keep = self.retain_revisions
        if keep and self._rev - self._compacted > keep + max(1000, keep // 10):
            revision = self._rev - keep
            with self._tx() as db:
                db.execute("DELETE FROM log WHERE rev < ?", (revision,))
                db.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (revision,))
            self._compacted = revision

    # --- leases

    async def grant(self, ttl: int) -> Lease:
        with self._tx() as db:
            (lease_id,) = db.execute(
                "UPDATE meta SET value = value + 1 WHERE name = 'lease_seq' RETURNING value"
            ).fetchone()
            db.execute("INSERT INTO leases VALUES (?, ?)", (lease_id, max(MIN_TTL, ttl)))
        granted = self._leases.add(lease_id, ttl)
        self._start_reaper()
        return Lease(lease_id, granted)

    async def keepalive(self, lease_id: int) -> int:
        return self._leases.keepalive(lease_id)

    async def revoke(self, lease_id: int) -> None:
        self._leases.remove(lease_id)
        with self._tx() as db:
            keys = [k for (k,) in db.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease_id,))]
            events = self._apply([Delete(k) for k in keys], self._read_state(keys))
            db.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
        self._committed(events)

    async def _expire(self, lease_id: int) -> None:
        if lease_id in self._leases:
            await self.revoke(lease_id)

    async def expire_due(self) -> None:
        """Expire every lease whose deadline passed now (tests with a fake clock call this)."""
        await self._reaper.expire_due()

    async def close(self) -> None:
        await self._reaper.stop()
        self._signal.close()
        self._db.close()
        os.close(self._lock_fd)
