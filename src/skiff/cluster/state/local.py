"""Parts shared by the in-process stores (memory, SQLite): leases and watches.

Both keep a change log indexed by revision; a watch is a cursor into it that sleeps until the
store's revision passes the cursor. Leases live in memory with monotonic deadlines (like
etcd's lessor) and are expired by one background task per store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Self

from skiff.cluster.state.base import LeaseNotFound, WatchEvent

MIN_TTL = 1  # seconds; etcd's minimum depends on its election timeout, ours is one second
LAG_CHECK = 0.25  # the reaper wakes at least this often to notice a stalled event loop
LAG_GRACE = 0.5  # a wake-up later than this moves every lease deadline by the delay
WATCH_BATCH_REVISIONS = 1000  # revisions read per watch batch (a batch always ends on a whole revision)


@dataclass
class _LeaseEntry:
    ttl: int
    deadline: float


class LeaseTable:
    """Leases by id with their deadlines; the store owns the keys attached to them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._leases: dict[int, _LeaseEntry] = {}
        self.changed = asyncio.Event()
        self._guard = clock is time.monotonic  # stall guard on real time only (tests fake the clock)
        self._seen: float | None = None

    def notice(self) -> None:
        """Guard against our own stalls: the store lives in its clients' process, and while that
        process's event loop was blocked, keepalives sat unread in its queue. Expiring leases
        for our own stall would declare healthy nodes dead, so a gap since the table was last
        looked at (by the reaper, at least every LAG_CHECK, or a keepalive) moves every deadline
        by the stall first. Whoever runs first after the stall applies it, once."""
        if not self._guard:
            return
        now = time.monotonic()
        if self._seen is not None:
            stall = now - self._seen - LAG_CHECK
            if stall > LAG_GRACE:
                self.extend(stall)
        self._seen = now

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def ids(self) -> list[int]:
        return list(self._leases)

    def add(self, lease_id: int, ttl: int) -> int:
        ttl = max(MIN_TTL, ttl)
        self._leases[lease_id] = _LeaseEntry(ttl, self.clock() + ttl)
        self.changed.set()
        return ttl

    def keepalive(self, lease_id: int) -> int:
        self.notice()
        entry = self._leases.get(lease_id)
        if entry is None or entry.deadline <= self.clock():
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        entry.deadline = self.clock() + entry.ttl
        return entry.ttl

    def remove(self, lease_id: int) -> None:
        if self._leases.pop(lease_id, None) is None:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        self.changed.set()

    def extend(self, seconds: float) -> None:
        for entry in self._leases.values():
            entry.deadline += seconds

    def due(self) -> list[int]:
        self.notice()
        now = self.clock()
        return [i for i, e in self._leases.items() if e.deadline <= now]

    def next_deadline(self) -> float | None:
        return min((e.deadline for e in self._leases.values()), default=None)


class LeaseReaper:
    """Runs ``expire(lease_id)`` for every lease whose deadline passed, from one asyncio task."""

    def __init__(self, table: LeaseTable, expire: Callable[[int], Awaitable[None]]) -> None:
        self.table = table
        self.expire = expire
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="skiff-lease-reaper")

    async def expire_due(self) -> None:
        for lease_id in self.table.due():
            await self.expire(lease_id)

    async def _run(self) -> None:
        while True:
            await self.expire_due()
            deadline = self.table.next_deadline()
            self.table.changed.clear()
            timeout = None if deadline is None else max(0.0, deadline - self.table.clock())
            # asyncio.wait, not wait_for: wait_for(timeout=0) can swallow our own cancellation
            waiter = asyncio.ensure_future(self.table.changed.wait())
            try:  # wake at least every LAG_CHECK: the stall guard needs a recent look
                await asyncio.wait(
                    [waiter], timeout=LAG_CHECK if timeout is None else min(timeout, LAG_CHECK)
                )
            finally:
                waiter.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class RevisionSignal:
    """Lets watches sleep until the store's revision reaches a value."""

    def __init__(self, revision: int) -> None:
        self.revision = revision
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def advanced(self, revision: int) -> None:
        self.revision = revision
        keep = []
        for rev, fut in self._waiters:
            if rev <= revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    async def wait_for(self, revision: int) -> None:
        if self.revision >= revision:  # advanced between the caller's check and this task's start
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def close(self) -> None:
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters = []


class LocalWatch:
    """A watch over an in-process change log: ``fetch(first, last)`` returns the events under
    the watched prefix for revisions ``first..last`` (or raises ``Compacted``)."""

    def __init__(
        self,
        fetch: Callable[[int, int], list[WatchEvent]],
        current: Callable[[], int],
        signal: RevisionSignal,
        start_revision: int,
    ) -> None:
        self._fetch = fetch
        self._current = current
        self._signal = signal
        self._cursor = start_revision if start_revision > 0 else current() + 1
        self._closed = False
        self._waiting: asyncio.Task[None] | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[WatchEvent]:
        while not self._closed:
            head = self._current()
            if self._cursor <= head:
                last = min(head, self._cursor + WATCH_BATCH_REVISIONS - 1)
                events = self._fetch(self._cursor, last)
                self._cursor = last + 1
                if events:
                    return events
                continue
            self._waiting = asyncio.ensure_future(self._signal.wait_for(self._cursor))
            try:
                await self._waiting
            except asyncio.CancelledError:
                if not self._closed:
                    raise
            finally:
                self._waiting = None
        raise StopAsyncIteration

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._waiting is not None:
            self._waiting.cancel()
