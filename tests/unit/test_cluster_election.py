"""Leader election on the in-process stores: one leader at a time, resign and lease expiry hand
leadership over, a deposed leader learns it, and the leadership loop runs one orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from skiff.cluster import keys, ops
from skiff.cluster.election import Election, leader_value, parse_leader
from skiff.cluster.leadership import lead_forever
from skiff.cluster.model import ServiceSpec, TaskState
from skiff.cluster.orchestrator import Orchestrator
from skiff.cluster.sim import HollowFleet
from skiff.cluster.state.base import Store
from skiff.cluster.state.memory import MemoryStore
from skiff.cluster.state.sqlite import SQLiteStore
from tests.cluster_support import all_tasks, audit, eventually, template

TTL = 1  # seconds: the stores' minimum, so expiry tests take about a second


class FreezableStore:
    """A store client whose process can "freeze" (SIGSTOP, a partition): once frozen, every call
    hangs, so its keepalives stop and its lease expires in the real store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.max_txn_ops = inner.max_txn_ops
        self.frozen = asyncio.Event()

    async def _gate(self) -> None:
        if self.frozen.is_set():
            await asyncio.Future()  # forever (cancelled by its owner)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "watch":
            return self._watch
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*a: Any, **kw: Any) -> Any:
            await self._gate()
            result = await attr(*a, **kw)
            await self._gate()
            return result

        return call

    def _watch(self, prefix: str, *, start_revision: int = 0) -> Any:
        outer = self

        class W:
            def __init__(self) -> None:
                self.w = outer.inner.watch(prefix, start_revision=start_revision)

            def __aiter__(self) -> W:
                return self

            async def __anext__(self) -> Any:
                await outer._gate()
                events = await self.w.__anext__()
                await outer._gate()
                return events

            async def __aenter__(self) -> W:
                return self

            async def __aexit__(self, *exc: object) -> None:
                await self.w.close()

            async def close(self) -> None:
                await self.w.close()

        return W()


@contextlib.asynccontextmanager
async def opened(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "cluster.db")
    try:
        yield store
    finally:
        await store.close()


STORES = ["memory", "sqlite"]


async def within(seconds: float, aw: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(aw, seconds)


@pytest.mark.parametrize("kind", STORES)
def test_one_leads_and_resign_hands_over(kind: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with opened(kind, tmp_path) as store:
            a = Election(store, "a", value=leader_value("a", "10.0.0.1:2377"), ttl=TTL)
            b = Election(store, "b", value=leader_value("b", "10.0.0.2:2377"), ttl=TTL)
            assert await a.leader() is None
            await within(5, a.campaign())
            assert a.is_leader
            assert parse_leader(await b.leader()) == {"node_id": "a", "addr": "10.0.0.1:2377"}
            waiting = asyncio.ensure_future(b.campaign())
            await asyncio.sleep(3 * TTL)  # a keeps its lease alive: b must not get in
            assert not waiting.done()
            assert a.is_leader and not a.lost.is_set()
            await a.resign()
            assert a.lost.is_set() and not a.is_leader
            await within(5, waiting)
            assert b.is_leader
            assert parse_leader(await a.leader()) == {"node_id": "b", "addr": "10.0.0.2:2377"}
            kv = await store.get(keys.LEADER)
            assert kv is not None and kv.lease == b.lease_id
            await b.close()
            assert await a.leader() is None
            await a.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", STORES)
def test_lease_expiry_hands_over_and_the_old_leader_knows(kind: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with opened(kind, tmp_path) as store:
            frozen = FreezableStore(store)
            a = Election(frozen, "a", ttl=TTL)  # type: ignore[arg-type]
            b = Election(store, "b", ttl=TTL)
            await within(5, a.campaign())
            waiting = asyncio.ensure_future(b.campaign())
            await asyncio.sleep(0.1)
            assert not waiting.done()
            loop = asyncio.get_running_loop()
            frozen.frozen.set()  # a's keepalives stop reaching the store
            t0 = loop.time()
            await within(5, waiting)
            took = loop.time() - t0
            assert b.is_leader
            assert took >= TTL * 0.5, f"b led {took:.2f} s after a froze: before a's lease could expire"
            # a stopped believing it leads no later than its lease could have expired
            await within(1, a.lost.wait())
            assert not a.is_leader
            await b.close()
            for t in a._tasks:
                t.cancel()

    asyncio.run(main())


@pytest.mark.parametrize("kind", STORES)
def test_deleted_key_or_revoked_lease_deposes(kind: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with opened(kind, tmp_path) as store:
            a = Election(store, "a", ttl=TTL)
            await a.campaign()
            await store.delete(keys.LEADER)  # an operator removes the key
            await within(5, a.lost.wait())
            assert not a.is_leader
            await within(5, a.campaign())  # campaigns again, and the key is free
            assert a.is_leader and not a.lost.is_set()
            await store.revoke(a.lease_id)  # the store ends the lease
            await within(5, a.lost.wait())
            b = Election(store, "b", ttl=TTL)
            await within(5, b.campaign())
            await b.close()
            await a.close()

    asyncio.run(main())


def test_restarted_candidate_takes_its_key_back_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with opened("memory", tmp_path) as store:
            old = Election(store, "a", ttl=30)
            await old.campaign()
            for t in old._tasks:  # the process died: its lease lives on for 30 s
                t.cancel()
            new = Election(store, "a", ttl=TTL)
            await within(2, new.campaign())
            kv = await store.get(keys.LEADER)
            assert kv is not None and kv.lease == new.lease_id
            other = Election(store, "b", ttl=TTL)
            attempt = asyncio.ensure_future(other.campaign())
            await asyncio.sleep(0.2)
            assert not attempt.done()  # another candidate does not get that shortcut
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            await new.close()

    asyncio.run(main())


def test_lead_forever_fails_over_and_services_converge() -> None:
    """Two managers run the leadership loop; the leader freezes; the other one takes over and
    the services converge; the store's history shows no slot ever had two tasks meant to run."""

    async def main() -> None:
        store = MemoryStore()
        fleet = HollowFleet(store, 6, ttl=TTL)
        await fleet.start(own_lease=frozenset(fleet.node_id(i) for i in range(6)))
        events: list[tuple[str, str]] = []
        managers: dict[str, FreezableStore] = {}
        stop = asyncio.Event()
        runs = []
        elections = {}
        for name in ("m1", "m2"):
            client = managers[name] = FreezableStore(store)
            elections[name] = e = Election(client, name, ttl=TTL)  # type: ignore[arg-type]

            def make(client: FreezableStore = client, name: str = name) -> Orchestrator:
                return Orchestrator(client, name=name)  # type: ignore[arg-type]

            def record(event: str, orch: Orchestrator | None, name: str = name) -> None:
                events.append((name, event))

            runs.append(asyncio.ensure_future(lead_forever(e, make, stop, on_change=record)))

        def leading(name: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                kv = await store.get(keys.LEADER)
                return kv is not None and kv.value == name.encode()

            return check

        async def running(n: int) -> bool:
            tasks = await all_tasks(store)
            live = [t for t in tasks if t.desired_state is TaskState.RUNNING and t.state is TaskState.RUNNING]
            return len(live) == n

        try:
            web = await ops.create_service(
                store, ServiceSpec(name="web", template=template(), replicas=6), now=0
            )
            await eventually(store, lambda: running(6))
            first = (await store.get(keys.LEADER)).value.decode()  # type: ignore[union-attr]
            second = "m2" if first == "m1" else "m1"
            managers[first].frozen.set()
            await ops.update_service(
                store, web.id, ServiceSpec(name="web", template=template(), replicas=9), now=1
            )
            await eventually(store, leading(second), timeout=10)
            await eventually(store, lambda: running(9), timeout=10)
            assert (second, "leading") in events
            await within(2, elections[first].lost.wait())
        finally:
            stop.set()
            for name, client in managers.items():
                if client.frozen.is_set():
                    runs[list(managers).index(name)].cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            await fleet.stop()
        assert await audit(store) > 0
        await store.close()

    asyncio.run(main())


def test_own_stall_past_the_ttl_does_not_depose_on_an_in_process_store() -> None:
    """The leader's own event loop blocks longer than its TTL (loading a big view, say): an
    in-process store forgives its clients' stalls, so the lease lives and the leader stays."""

    async def main() -> None:
        store = MemoryStore()
        a = Election(store, "a", ttl=TTL)
        b = Election(store, "b", ttl=TTL)
        await a.campaign()
        waiting = asyncio.ensure_future(b.campaign())
        await asyncio.sleep(0.1)
        time.sleep(TTL * 1.5)  # the whole process stalls (a blocking call on the event loop)
        await asyncio.sleep(TTL)  # a's keepalive runs late, then on time again
        assert not a.lost.is_set() and a.is_leader
        assert not waiting.done()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await a.close()
        await store.close()

    asyncio.run(main())


class HungWatchStore(FreezableStore):
    """Every call works, but watches never deliver anything: a watch stuck on a store endpoint
    that went silent (a member's power cut leaves an established connection that says nothing)."""

    def _watch(self, prefix: str, *, start_revision: int = 0) -> Any:
        class W:
            def __aiter__(self) -> W:
                return self

            async def __anext__(self) -> Any:
                await asyncio.Future()

            async def __aenter__(self) -> W:
                return self

            async def __aexit__(self, *exc: object) -> None:
                pass

            async def close(self) -> None:
                pass

        return W()


def test_a_candidate_on_a_silent_watch_still_campaigns_again() -> None:
    async def main() -> None:
        store = MemoryStore()
        a = Election(store, "a", ttl=TTL)
        b = Election(HungWatchStore(store), "b", ttl=TTL)  # type: ignore[arg-type]
        await a.campaign()
        waiting = asyncio.ensure_future(b.campaign())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await a.resign()  # the key goes; b's watch never says so
        await within(3 * TTL + 2, waiting)
        assert b.is_leader
        await b.close()
        await store.close()

    asyncio.run(main())
