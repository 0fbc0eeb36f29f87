"""The ``Store`` protocol: etcd v3's data model, which every backend implements.

A flat, ordered key space with one global ``revision`` counter. Every write (a put, a delete,
a transaction, a lease expiring) makes one new revision; each key remembers the revision that
created it and the one that last changed it (``mod_revision``). That is what makes optimistic
concurrency work: a writer reads keys, remembers their ``mod_revision``, and commits with a
transaction that *compares* them first::

    kv = await store.get("/skiff/tasks/t1")                 # mod_revision 41
    r = await store.txn(
        [Compare("/skiff/tasks/t1", kv.mod_revision)],      # still what I read?
        [Put("/skiff/tasks/t1", new_value)],
    )
    if not r.succeeded:                                     # someone else wrote it: re-read
        ...

``Compare(key, 0)`` means "the key does not exist". A watch replays every change under a
prefix from a revision on, in revision order, so a reader that ranged at revision R and watches
from R + 1 sees every later change exactly once. A lease has a TTL in seconds; keys put with a
lease are deleted (one revision) when it expires unless someone keeps it alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, Self

from skiff.errors import Conflict, InvalidArgument, NotFound


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key as stored, with etcd's bookkeeping."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  # number of writes since it was created
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when ``key``'s mod_revision equals ``mod_revision`` (0: the key is absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``revision`` is the store's revision after the transaction (its writes carry it)."""

    succeeded: bool
    revision: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Every key under a prefix, at one revision."""

    kvs: tuple[KeyValue, ...]
    revision: int


class EventType(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. For a delete, ``kv.value`` is empty and ``kv.mod_revision`` is the delete's."""

    type: EventType
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int  # seconds granted (a backend may round up to its minimum)


class StoreError(Conflict):
    """The store refused an operation (too many operations in one transaction, ...)."""


class LeaseNotFound(NotFound):
    """The lease expired or was revoked (or never existed)."""


class Compacted(StoreError):
    """A watch asked for revisions the store has already compacted away: re-read, then watch."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"required revision has been compacted (compacted up to {compact_revision})")
        self.compact_revision = compact_revision


class Watch(Protocol):
    """A stream of changes: batches of events, each batch holding whole revisions in order.

    Use as ``async with store.watch(prefix, start_revision=r) as w: async for events in w``;
    leaving the block cancels it.
    """

    def __aiter__(self) -> AsyncIterator[list[WatchEvent]]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def close(self) -> None: ...


class FedWatch:
    """A :class:`Watch` fed by a background task: subclasses implement ``_run``, which puts
    batches of events on ``_queue`` (an exception there ends the watch by raising it). The task
    starts with the first ``__anext__``; ``close`` cancels it."""

    _task_name = "skiff-watch"

    def __init__(self) -> None:
        self._queue: asyncio.Queue[list[WatchEvent] | BaseException | None] = asyncio.Queue(maxsize=64)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[WatchEvent]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._task_name)
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


class Store(Protocol):
    """A revisioned key-value store with transactions, watches and leases (see module doc)."""

    max_txn_ops: int  # most compares, and most operations, one transaction may carry

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(self, prefix: str) -> RangeResult:
        """Every key starting with ``prefix``, in key order, at one revision."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write one key; returns the new revision. Unknown lease: :class:`LeaseNotFound`."""
        ...

    async def delete(self, key: str) -> int:
        """Delete one key; returns the revision (unchanged when the key did not exist)."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """All compares hold -> apply ``success``, else ``failure``; atomically, one revision."""
        ...

    def watch(self, prefix: str, *, start_revision: int = 0) -> Watch:
        """Changes under ``prefix`` from ``start_revision`` (0: from the next revision)."""
        ...

    async def grant(self, ttl: int) -> Lease: ...

    async def keepalive(self, lease_id: int) -> int:
        """Restart the lease's TTL; returns it. Expired or unknown: :class:`LeaseNotFound`."""
        ...

    async def revoke(self, lease_id: int) -> None:
        """End the lease now, deleting its keys (one revision). Unknown: :class:`LeaseNotFound`."""
        ...

    async def revision(self) -> int:
        """The store's current revision."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget the change history before ``revision`` (watches from earlier fail)."""
        ...

    async def close(self) -> None: ...


def prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (etcd's range_end)."""
    if not prefix:
        raise InvalidArgument("empty prefix")
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def check_txn_size(
    store: Store, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
) -> None:
    """etcd's --max-txn-ops rule, so every backend refuses the same transactions."""
    biggest = max(len(compares), len(success), len(failure))
    if biggest > store.max_txn_ops:
        raise StoreError(f"too many operations in txn request ({biggest} > {store.max_txn_ops})")
    keys = [op.key for op in success]
    if len(set(keys)) != len(keys):
        raise StoreError("duplicate key given in txn request")
