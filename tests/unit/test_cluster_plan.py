"""Plan commit: one transaction per plan, compared against everything it read. Two planners
on one store never assign a task twice, never fill a slot twice, never overcommit a node.

Runs on the memory and SQLite stores (the etcd store runs the same in the integration tier).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from skiff.cluster import keys, ops
from skiff.cluster.model import Availability, Node, ServiceSpec, TaskState
from skiff.cluster.orchestrator import Orchestrator
from skiff.cluster.plan import StalePlan, commit
from skiff.cluster.state.base import Store
from skiff.cluster.state.memory import MemoryStore
from skiff.cluster.state.sqlite import SQLiteStore
from tests.cluster_support import GiB, MiB, all_tasks, node, split_brain, template

NOW = 1000.0


@pytest.fixture(params=["memory", "sqlite"])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., contextlib.AbstractAsyncContextManager[Store]]:
    @contextlib.asynccontextmanager
    async def make(max_txn_ops: int = 128) -> AsyncIterator[Store]:
        store: MemoryStore | SQLiteStore
        if request.param == "memory":
            store = MemoryStore(max_txn_ops=max_txn_ops)
        else:
            store = SQLiteStore(tmp_path / "cluster.db", max_txn_ops=max_txn_ops)
        try:
            yield store
        finally:
            await store.close()

    return make


def run(body: Awaitable[None]) -> None:
    asyncio.run(body)  # type: ignore[arg-type]


async def join(store: Store, *nodes: Node) -> None:
    lease = await store.grant(600)
    for n in nodes:
        await ops.register_node(store, n, lease.id)


async def leader(store: Store, name: str, seed: int = 0) -> Orchestrator:
    orch = Orchestrator(store, clock=lambda: NOW, rng=random.Random(seed), name=name)
    await orch.start()
    await orch.sync()
    return orch


def spec(name: str, replicas: int, **tpl: object) -> ServiceSpec:
    return ServiceSpec(name=name, template=template(**tpl), replicas=replicas)  # type: ignore[arg-type]


def test_two_planners_one_view_one_wins(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    async def main() -> None:
        async with open_store() as store:
            await join(store, node("n1"), node("n2"), node("n3"))
            svc = await ops.create_service(store, spec("web", 6), now=NOW)
            a, b = await leader(store, "a", 1), await leader(store, "b", 2)
            plan_a, plan_b = a.prepare(), b.prepare()  # both from the same revision
            assert sum(p.placements for p in plan_a.plans) == sum(p.placements for p in plan_b.plans) == 6
            assert (await a.commit(plan_a)).placements == 6
            lost = await b.commit(plan_b)
            assert lost.stale and lost.placements == 0
            await b.sync()
            again = await b.run_pass()
            assert again.placements == 0 and not again.plans  # nothing left to do: not done twice
            tasks = await all_tasks(store)
            assert sorted(t.slot for t in tasks) == [1, 2, 3, 4, 5, 6]
            assert all(t.state is TaskState.ASSIGNED and t.service_id == svc.id for t in tasks)
            assert Counter(t.node_id for t in tasks) == {"n1": 2, "n2": 2, "n3": 2}
            await a.stop()
            await b.stop()

    run(main())


def test_a_plan_is_never_applied_twice(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    async def main() -> None:
        async with open_store() as store:
            await join(store, node("n1"))
            await ops.create_service(store, spec("web", 2), now=NOW)
            a = await leader(store, "a")
            (plan,) = a.prepare().plans
            await commit(store, plan)
            with pytest.raises(StalePlan):
                await commit(store, plan)
            assert len(await all_tasks(store)) == 2
            await a.stop()

    run(main())


def test_placements_on_one_node_conflict_across_services(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    """Different tasks, same node: the node's alloc key makes the second plan stale, and the
    re-plan sees the first one's reservations."""

    async def main() -> None:
        async with open_store() as store:
            await join(store, node("n1", memory=1 * GiB))
            x = await ops.create_service(store, spec("x", 3, memory=256 * MiB), now=NOW)
            y = await ops.create_service(store, spec("y", 3, memory=256 * MiB), now=NOW)
            a, b = await leader(store, "a"), await leader(store, "b")
            a.view.dirty, b.view.dirty = {x.id}, {y.id}
            plan_a, plan_b = a.prepare(), b.prepare()
            await a.commit(plan_a)
            assert (await b.commit(plan_b)).stale
            await b.sync()
            b.view.dirty = {y.id}
            await b.run_pass()
            tasks = await all_tasks(store)
            assigned = [t for t in tasks if t.state is TaskState.ASSIGNED]
            assert (
                len(assigned) == 4
                and sum(t.template.resources.reservations.memory_bytes for t in assigned) <= GiB
            )
            waiting = [t for t in tasks if t.state is TaskState.PENDING]
            assert [t.message for t in waiting] == ["no suitable node: 1 node — insufficient memory on 1"] * 2
            await a.stop()
            await b.stop()

    run(main())


def test_a_drain_makes_a_plan_on_that_node_stale(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    async def main() -> None:
        async with open_store() as store:
            await join(store, node("n1"), node("n2"))
            await ops.create_service(store, spec("web", 4), now=NOW)
            a = await leader(store, "a")
            prepared = a.prepare()
            await ops.update_node(store, "n1", now=NOW, availability=Availability.DRAIN)
            assert (await a.commit(prepared)).stale
            await a.sync()
            await a.run_pass()
            assert {t.node_id for t in await all_tasks(store)} == {"n2"}
            await a.stop()

    run(main())


def test_plans_fit_the_stores_transaction_limit(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    async def main() -> None:
        async with open_store(max_txn_ops=16) as store:
            await join(store, *(node(f"n{i}") for i in range(5)))
            await ops.create_service(store, spec("web", 40), now=NOW)
            a = await leader(store, "a")
            prepared = a.prepare()
            assert len(prepared.plans) > 3
            assert all(len(p.compares) <= 16 and len(p.writes) <= 16 for p in prepared.plans)
            assert (await a.commit(prepared)).placements == 40
            assert len({t.slot for t in await all_tasks(store)}) == 40
            await a.stop()

    run(main())


def test_stale_plan_is_replanned_by_run_pass(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    async def main() -> None:
        async with open_store() as store:
            await join(store, node("n1"), node("n2"))
            svc = await ops.create_service(store, spec("web", 2), now=NOW)
            a, b = await leader(store, "a"), await leader(store, "b")
            await a.run_pass()
            # b has not seen a's plan yet: its first attempt is stale, run_pass catches up and re-plans
            b.view.dirty = {svc.id}
            result = await b.run_pass()
            assert not result.stale and result.placements == 0
            assert b.stats["stale"] == 1
            assert len(await all_tasks(store)) == 2
            await a.stop()
            await b.stop()

    run(main())


def test_concurrent_leaders_never_break_the_invariants(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    """Two leaders at once on one store (a split brain): see ``cluster_support.split_brain``."""

    async def main() -> None:
        async with open_store(max_txn_ops=64) as raw:
            checked, stale = await split_brain(raw)
            assert checked > 40
            print(f"{checked} task revisions audited; {stale} stale plans re-planned")

    run(main())


def test_service_names_are_unique_and_specs_validated(
    open_store: Callable[..., contextlib.AbstractAsyncContextManager[Store]],
) -> None:
    from skiff.errors import AlreadyExists, Conflict, InvalidArgument

    async def main() -> None:
        async with open_store() as store:
            svc = await ops.create_service(store, spec("web", 1), now=NOW)
            with pytest.raises(AlreadyExists, match="service web already exists"):
                await ops.create_service(store, spec("web", 2), now=NOW)
            with pytest.raises(InvalidArgument, match="invalid constraint"):
                await ops.create_service(store, spec("bad", 1, constraints=("node.labels.x",)), now=NOW)
            with pytest.raises(InvalidArgument, match="invalid service name"):
                await ops.create_service(store, spec("-x", 1), now=NOW)
            updated = await ops.update_service(store, svc.id, replace(svc.spec, replicas=3), now=NOW)
            assert updated.version == 2 and updated.update_status is None  # scaling is no rolling update
            with pytest.raises(Conflict, match="out of sequence"):
                await ops.update_service(store, svc.id, svc.spec, now=NOW, version=1)
            rolled = await ops.update_service(
                store, svc.id, replace(svc.spec, template=template(image="v2")), now=NOW
            )
            assert rolled.update_status is not None and rolled.update_status.state == "updating"
            back = await ops.rollback_service(store, svc.id, now=NOW)
            assert back.spec.template.image == "busybox" and back.version == 4
            await ops.remove_service(store, svc.id)
            assert await store.get(keys.service_name("web")) is None
            await ops.create_service(store, spec("web", 1), now=NOW)  # the name is free again

    run(main())
