"""``Election``: one leading manager at a time, by a key held under a lease (etcd's recipe).

A candidate grants itself a lease and writes the leader key (``/skiff/leader``) under it in a
transaction that succeeds only if the key is absent (``Compare(key, 0)``). Whoever wrote it
leads for as long as its lease lives; the others watch the key and try again when it is
deleted — when the leader resigns (revokes its lease) or dies (its keepalives stop and the
lease expires within its TTL).

The leader keeps its lease alive every ``ttl/3``. It gives up leadership (``lost`` is set) when
the store says the lease is gone, when the key is deleted or taken over, or when it could not
renew the lease before the lease may have expired: it counts the TTL from when it *sent* its
last successful keepalive, so it stops believing it leads no later than the store stops
believing it. A leader that notices late can still write (a stalled process, a partition):
the orchestrator's plans compare every key they read, so two leaders at once never break the
cluster's invariants — leadership only keeps one of them from doing the work twice.

The value at the key is the leader's JSON ``{"node_id": ..., "addr": "host:port"}``
(``leader_value``), so nodes and CLIs find the manager that leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from skiff.cluster import keys
from skiff.cluster.state.base import Compare, EventType, LeaseNotFound, Put, Store
from skiff.errors import SkiffError

log = logging.getLogger(__name__)

RETRY_DELAY = 0.2  # seconds between attempts when the store does not answer


def leader_value(node_id: str, addr: str) -> bytes:
    """What a manager writes at the leader key."""
    return json.dumps({"node_id": node_id, "addr": addr}, sort_keys=True).encode()


def parse_leader(value: bytes | None) -> dict[str, Any] | None:
    """The leader key's value as a dict (None: no leader, or not JSON)."""
    if not value:
        return None
    try:
        out = json.loads(value)
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


class Election:
    """Campaign for, hold and give up the leader key (see module doc)."""

    def __init__(
        self, store: Store, candidate: str, *, value: bytes = b"", ttl: int = 5, key: str = keys.LEADER
    ) -> None:
        self.store = store
        self.candidate = candidate
        self.value = value or candidate.encode()
        self.ttl = ttl
        self.key = key
        self.lost = asyncio.Event()
        self.lease_id = 0
        self.revision = 0  # the revision that made us leader
        self._leading = False
        self._valid_until = 0.0  # monotonic: the lease surely lives until then
        self._tasks: list[asyncio.Task[None]] = []
        self._revokes: set[asyncio.Task[None]] = set()

    @property
    def is_leader(self) -> bool:
        return self._leading and time.monotonic() < self._valid_until

    async def leader(self) -> bytes | None:
        kv = await self.store.get(self.key)
        return kv.value if kv is not None else None

    async def campaign(self) -> None:
        """Return once this candidate leads (at once if it already does)."""
        if self._leading:
            return
        while True:
            try:
                if await self._try():
                    return
            except (SkiffError, OSError) as e:  # store unreachable: try again shortly
                log.warning("election: %s: campaign attempt failed: %s", self.candidate, e)
                await asyncio.sleep(RETRY_DELAY)

    async def _try(self) -> bool:
        """One attempt: take the key if absent; else wait until it is deleted. True: we lead."""
        sent = time.monotonic()
        lease = await self.store.grant(self.ttl)
        try:
            result = await self.store.txn([Compare(self.key, 0)], [Put(self.key, self.value, lease.id)])
        except BaseException:
            await self._revoke_quietly(lease.id)
            raise
        if result.succeeded:
            self._become_leader(lease.id, lease.ttl, sent, result.revision)
            return True
        await self._revoke_quietly(lease.id)
        held = await self.store.get(self.key)
        if held is not None and held.value == self.value and held.lease:
            # our own key from before a restart: its lease would keep everyone out for a TTL
            await self._revoke_quietly(held.lease)
            return False
        await self._await_delete(result.revision + 1)  # someone else leads: wait for the key to go
        return False

    async def _await_delete(self, start_revision: int) -> None:
        """Return once the key is gone. The watch is bounded: every TTL the key is read again,
        so a watch stuck on a store endpoint that went silent (a member's power cut) cannot
        keep this candidate from campaigning."""
        while True:
            kv = await self.store.get(self.key)
            if kv is None:
                return
            try:
                await asyncio.wait_for(self._watch_delete(start_revision), max(1, self.ttl))
                return
            except TimeoutError:
                continue

    async def _watch_delete(self, start_revision: int) -> None:
        async with self.store.watch(self.key, start_revision=start_revision) as w:
            async for events in w:
                if any(e.kv.key == self.key and e.type is EventType.DELETE for e in events):
                    return

    def _become_leader(self, lease_id: int, ttl: int, sent: float, revision: int) -> None:
        self.lease_id = lease_id
        self.revision = revision
        self._valid_until = sent + ttl
        self._leading = True
        self.lost.clear()
        log.info("election: %s leads (lease %x, revision %d)", self.candidate, lease_id, revision)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keepalive(lease_id, ttl), name="skiff-election-keepalive"),
            loop.create_task(self._guard(lease_id, revision), name="skiff-election-watch"),
        ]

    async def _keepalive(self, lease_id: int, ttl: int) -> None:
        """Renew the lease every ttl/3; lose leadership when it may have expired.

        If this process itself stalled past the lease's deadline (its event loop blocked), the
        store is asked once at once: an in-process store forgives its clients' stalls, and a
        lease the store still knows is still ours. A store that does not answer in time ends
        the leadership.
        """
        while True:
            await asyncio.sleep(max(0.05, ttl / 3))
            late = time.monotonic() >= self._valid_until  # we, not the store, were too slow
            while True:
                left = self._valid_until - time.monotonic()
                if late:
                    left, late = max(0.05, ttl / 3), False
                if left <= 0:
                    self._lose("the lease could not be renewed in time")
                    return
                sent = time.monotonic()
                try:
                    granted = await asyncio.wait_for(self.store.keepalive(lease_id), left)
                except LeaseNotFound:
                    self._lose("the lease expired")
                    return
                except (SkiffError, OSError, TimeoutError) as e:
                    log.warning("election: %s: keepalive failed: %r", self.candidate, e)
                    await asyncio.sleep(min(RETRY_DELAY, max(0.0, self._valid_until - time.monotonic())))
                    continue
                self._valid_until = sent + granted
                break

    async def _guard(self, lease_id: int, revision: int) -> None:
        """Lose leadership when the key is deleted or rewritten under another lease."""
        while True:
            try:
                async with self.store.watch(self.key, start_revision=revision + 1) as w:
                    async for events in w:
                        for e in events:
                            if e.kv.key != self.key:
                                continue
                            revision = e.kv.mod_revision
                            if e.type is EventType.DELETE or e.kv.lease != lease_id:
                                self._lose("the leader key was deleted or taken")
                                return
            except (SkiffError, OSError) as e:  # the keepalive decides; keep watching
                log.warning("election: %s: leader key watch failed: %s", self.candidate, e)
                await asyncio.sleep(RETRY_DELAY)

    def _lose(self, why: str) -> None:
        if not self._leading:
            return
        log.warning("election: %s no longer leads: %s", self.candidate, why)
        self._leading = False
        self._valid_until = 0.0
        self.lost.set()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        lease_id, self.lease_id = self.lease_id, 0
        if lease_id:  # the key may still be ours (a slow store): let the others in at once
            revoke = asyncio.get_running_loop().create_task(self._revoke_quietly(lease_id))
            self._revokes.add(revoke)
            revoke.add_done_callback(self._revokes.discard)

    async def resign(self) -> None:
        """Give up leadership: the lease is revoked (the key goes with it); ``lost`` is set."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        lease_id, self.lease_id = self.lease_id, 0
        was = self._leading
        self._leading = False
        self._valid_until = 0.0
        if lease_id:
            await self._revoke_quietly(lease_id)
        if was:
            log.info("election: %s resigned", self.candidate)
        self.lost.set()

    async def _revoke_quietly(self, lease_id: int) -> None:
        with contextlib.suppress(LeaseNotFound, SkiffError, OSError):
            await self.store.revoke(lease_id)

    async def close(self) -> None:
        await self.resign()
