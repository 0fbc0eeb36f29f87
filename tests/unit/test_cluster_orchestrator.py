"""The leader's loop end to end on a memory store, with hollow nodes as agents: replicas
spread and run, a dead node's replicas run elsewhere, a drained node is emptied, a global
service reaches a new node, rolling updates complete or roll back, restarts stop at their limit.
Every scenario ends with the store's whole history audited."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

from skiff.cluster import ops
from skiff.cluster.model import (
    Availability,
    FailureAction,
    NodeStatus,
    RestartCondition,
    RestartPolicy,
    ServiceMode,
    ServiceSpec,
    TaskState,
    UpdatePolicy,
    UpdateState,
)
from skiff.cluster.sim import HollowFleet
from tests.cluster_support import cluster, template

FAST = UpdatePolicy(parallelism=2, monitor=0.0)


def spec(name: str, replicas: int = 6, **kw: object) -> ServiceSpec:
    tpl = kw.pop("tpl", template())
    return ServiceSpec(name=name, template=tpl, replicas=replicas, restart=RestartPolicy(delay=0), **kw)  # type: ignore[arg-type]


def test_replicas_spread_and_run() -> None:
    async def main() -> None:
        async with cluster(4) as c:
            web = await ops.create_service(c.store, spec("web", 8), now=0)

            async def all_running() -> bool:
                return len(await c.running(web)) == 8

            await c.until(all_running)
            assert Counter(t.node_id for t in await c.running(web)) == {
                c.fleet.node_id(i): 2 for i in range(4)
            }

    asyncio.run(main())


def test_dead_node_replicas_run_elsewhere() -> None:
    async def main() -> None:
        async with cluster(4) as c:
            web = await ops.create_service(c.store, spec("web", 8), now=0)

            async def all_running() -> bool:
                return len(await c.running(web)) == 8

            await c.until(all_running)
            victim = c.fleet.node_id(0)
            lost = {t.id for t in await c.running(web) if t.node_id == victim}
            c.fleet.kill(victim)

            async def healed() -> bool:
                run = await c.running(web)
                return len(run) == 8 and all(t.node_id != victim for t in run)

            await c.until(healed)
            tasks = {t.id: t for t in await c.tasks(web)}
            assert all(tasks[i].state is TaskState.ORPHANED for i in lost)
            assert {t.predecessor for t in tasks.values() if t.predecessor} >= lost
            down = await c.node(victim)
            assert down.status is NodeStatus.DOWN and "lease expired" in down.status_message

    asyncio.run(main())


def test_drained_node_is_emptied() -> None:
    async def main() -> None:
        async with cluster(3) as c:
            web = await ops.create_service(c.store, spec("web", 6), now=0)

            async def all_running() -> bool:
                return len(await c.running(web)) == 6

            await c.until(all_running)
            drained = c.fleet.node_id(1)
            await ops.update_node(c.store, drained, now=0, availability=Availability.DRAIN)

            async def emptied() -> bool:
                tasks = await c.tasks(web)
                on_node = [t for t in tasks if t.node_id == drained and not t.state.terminal]
                return not on_node and len(await c.running(web)) == 6

            await c.until(emptied)
            stopped = [t for t in await c.tasks(web) if t.node_id == drained]
            assert stopped and all(t.state is TaskState.SHUTDOWN for t in stopped)

    asyncio.run(main())


def test_global_service_reaches_a_new_node() -> None:
    async def main() -> None:
        async with cluster(3) as c:
            agent = await ops.create_service(c.store, spec("agent", 0, mode=ServiceMode.GLOBAL), now=0)

            async def on_all(n: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return len({t.node_id for t in await c.running(agent)}) == n

                return check

            await c.until(await on_all(3))
            late = HollowFleet(c.store, 1, ttl=1, prefix="late")
            await late.start()
            try:
                await c.until(await on_all(4))
                assert {t.node_id for t in await c.running(agent)} >= {"late00000"}
            finally:
                await late.stop()

    asyncio.run(main())


def test_rolling_update_completes() -> None:
    async def main() -> None:
        async with cluster(3) as c:
            web = await ops.create_service(c.store, spec("web", 6, update=FAST), now=0)

            async def all_running() -> bool:
                return len(await c.running(web)) == 6

            await c.until(all_running)
            await ops.update_service(
                c.store, web.id, replace(web.spec, template=template(image="v2")), now=time.time()
            )

            async def updated() -> bool:
                svc = await c.service(web)
                run = await c.running(web)
                done = svc.update_status is not None and svc.update_status.state is UpdateState.COMPLETED
                return done and len(run) == 6 and all(t.template.image == "v2" for t in run)

            await c.until(updated)
            old = [t for t in await c.tasks(web) if t.template.image == "busybox"]
            assert len(old) == 6 and all(t.state is TaskState.SHUTDOWN for t in old)

    asyncio.run(main())


def test_failed_update_rolls_back() -> None:
    async def main() -> None:
        async with cluster(3, fail_images=frozenset({"broken"})) as c:
            policy = UpdatePolicy(parallelism=1, monitor=0.0, failure_action=FailureAction.ROLLBACK)
            web = await ops.create_service(c.store, spec("web", 3, update=policy, rollback=FAST), now=0)

            async def all_running() -> bool:
                return len(await c.running(web)) == 3

            await c.until(all_running)
            await ops.update_service(
                c.store, web.id, replace(web.spec, template=template(image="broken")), now=time.time()
            )

            async def rolled_back() -> bool:
                svc = await c.service(web)
                run = await c.running(web)
                done = (
                    svc.update_status is not None
                    and svc.update_status.state is UpdateState.ROLLBACK_COMPLETED
                )
                return done and len(run) == 3 and all(t.template.image == "busybox" for t in run)

            await c.until(rolled_back)
            svc = await c.service(web)
            assert svc.spec.template.image == "busybox"
            assert svc.previous_spec is not None and svc.previous_spec.template.image == "broken"
            broken = [t for t in await c.tasks(web) if t.template.image == "broken"]
            assert len(broken) == 1 and broken[0].state is TaskState.FAILED  # parallelism 1: one slot tried

    asyncio.run(main())


def test_restarts_stop_at_max_attempts() -> None:
    async def main() -> None:
        async with cluster(2, fail_images=frozenset({"crash"})) as c:
            restart = RestartPolicy(RestartCondition.ON_FAILURE, delay=0, max_attempts=2)
            bad = await ops.create_service(
                c.store, replace(spec("bad", 1, tpl=template(image="crash")), restart=restart), now=0
            )

            async def gave_up() -> bool:
                tasks = await c.tasks(bad)
                return len(tasks) == 3 and all(t.state is TaskState.FAILED for t in tasks)

            await c.until(gave_up)
            tasks = sorted(await c.tasks(bad), key=lambda t: t.created_at)
            assert [len(t.restarts) for t in tasks] == [0, 1, 2]
            assert tasks[-1].desired_state is TaskState.RUNNING  # the slot's last word: failed, not replaced
            await c.leader.run_pass()
            assert len(await c.tasks(bad)) == 3

    asyncio.run(main())


def test_a_pass_reconciles_a_bounded_number_of_tasks_and_the_next_resumes() -> None:
    """A new leader finds every service dirty; each pass reconciles at most ``max_pass_scan``
    tasks' worth of services (at least one service), and the next pass starts with those left."""

    async def main() -> None:
        from skiff.cluster.orchestrator import Orchestrator
        from skiff.cluster.state.memory import MemoryStore

        store = MemoryStore()
        ids = sorted([(await ops.create_service(store, spec(f"s{i}", 4), now=0)).id for i in range(3)])
        leader = Orchestrator(store)
        await leader.start()
        await leader.run_pass()  # creates the tasks (pending: no nodes)
        assert all(len(leader.view.by_service[i]) == 4 for i in ids)
        leader.max_pass_scan = 5  # one service of 4 tasks, then a second: 8 >= 5
        leader.view.dirty = set(ids)
        leader.prepare()
        assert leader.view.dirty == {ids[2]}
        leader.max_pass_scan = 1
        leader.view.dirty = set(ids)
        leader.prepare()  # resumes with the service the previous pass left
        assert leader.view.dirty == {ids[0], ids[1]}
        leader.prepare()
        assert leader.view.dirty == {ids[1]}
        leader.prepare()
        assert not leader.view.dirty
        await leader.stop()
        await store.close()

    asyncio.run(main())
