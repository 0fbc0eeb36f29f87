"""Builders for cluster tests: nodes, services and tasks with readable defaults."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from skiff.cluster import keys
from skiff.cluster.model import (
    Node,
    Placement,
    PortConfig,
    ResourceRequirements,
    Resources,
    RestartPolicy,
    Service,
    ServiceMode,
    ServiceSpec,
    Task,
    TaskState,
    TaskTemplate,
    UpdatePolicy,
    advance,
    from_json,
    new_task,
)
from skiff.cluster.orchestrator import Orchestrator
from skiff.cluster.sim import HollowFleet
from skiff.cluster.state.base import Compare, Op, Store, TxnResult, Watch
from skiff.cluster.state.memory import MemoryStore

GiB = 1 << 30
MiB = 1 << 20
CPU = 1_000_000_000


def node(
    node_id: str,
    *,
    labels: dict[str, str] | None = None,
    cpus: int = 4 * CPU,
    memory: int = 8 * GiB,
    **kw: Any,
) -> Node:
    return Node(
        id=node_id,
        hostname=kw.pop("hostname", f"host-{node_id}"),
        labels=labels or {},
        resources=Resources(cpus, memory),
        **kw,
    )


def template(
    *,
    image: str = "busybox",
    memory: int = 0,
    cpus: int = 0,
    constraints: tuple[str, ...] = (),
    preferences: tuple[str, ...] = (),
    ports: tuple[int, ...] = (),
    **kw: Any,
) -> TaskTemplate:
    return TaskTemplate(
        image=image,
        resources=ResourceRequirements(reservations=Resources(cpus, memory)),
        placement=Placement(constraints, preferences),
        ports=tuple(PortConfig(target=p, published=p) for p in ports),
        **kw,
    )


def service(
    service_id: str = "svc",
    *,
    replicas: int = 3,
    mode: ServiceMode = ServiceMode.REPLICATED,
    tpl: TaskTemplate | None = None,
    restart: RestartPolicy | None = None,
    update: UpdatePolicy | None = None,
    **kw: Any,
) -> Service:
    spec = ServiceSpec(
        name=kw.pop("name", service_id),
        template=tpl or template(),
        mode=mode,
        replicas=replicas,
        restart=restart or RestartPolicy(delay=0),
        update=update or UpdatePolicy(),
    )
    return Service(id=service_id, spec=spec, **kw)


def running(svc: Service, slot: int, node_id: str, *, now: float = 100.0, **kw: Any) -> Task:
    """A task of ``svc`` in ``slot``, running on ``node_id`` since ``now``."""
    t = new_task(
        svc, slot=slot, node_id="" if slot else node_id, predecessor=kw.pop("predecessor", None), now=now
    )
    t = advance(t, TaskState.ASSIGNED, now=now, node_id=node_id)
    t = advance(t, TaskState.RUNNING, now=now)
    return replace(t, **kw) if kw else t


def ended(task: Task, state: TaskState, *, now: float) -> Task:
    return advance(task, state, now=now)


# --- store-level helpers (async)


async def eventually(store: Store, check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0) -> None:
    """Wait until ``check()`` holds, re-checking after every change in the store (no polling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with store.watch(keys.ROOT) as w:
        it = aiter(w)
        while not await check():
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("condition not reached in time")
            try:
                await asyncio.wait_for(anext(it), left)
            except TimeoutError:
                raise AssertionError("condition not reached in time") from None


async def all_tasks(store: Store) -> list[Task]:
    return [from_json(Task, kv.value) for kv in (await store.range(keys.TASKS)).kvs]


async def audit(store: Store, capacity: dict[str, int] | None = None) -> int:
    """Replay the store's whole task history and check, at every revision, the invariants that
    no race may break: a task is assigned once (its node never changes), a slot never has two
    tasks meant to run, and (with ``capacity``: node -> memory bytes) no node's reservations
    exceed it. Returns the number of task revisions checked."""
    tasks: dict[str, Task] = {}

    def check(revision: int) -> None:
        per_slot: Counter[tuple[str, str]] = Counter()
        used: Counter[str] = Counter()
        for t in tasks.values():
            if t.desired_state is TaskState.RUNNING and not t.state.terminal:
                k = (t.service_id, t.slot_key)
                per_slot[k] += 1
                assert per_slot[k] == 1, f"slot {k} has two tasks meant to run at revision {revision}"
            if t.state.on_node:
                used[t.node_id] += t.template.resources.reservations.memory_bytes
        if capacity is not None:
            for n, mem in used.items():
                assert mem <= capacity[n], f"node {n} overcommitted at revision {revision}"

    checked = 0
    last = await store.revision()
    revision = 0
    async with store.watch(keys.ROOT, start_revision=1) as w:  # ROOT: the last revision may not be a task's
        async for events in w:
            for e in events:
                if e.kv.mod_revision != revision:
                    check(revision)
                    revision = e.kv.mod_revision
                if not e.kv.key.startswith(keys.TASKS):
                    continue
                checked += 1
                tid = e.kv.key.removeprefix(keys.TASKS)
                if e.type == "delete":
                    tasks.pop(tid, None)
                    continue
                t = from_json(Task, e.kv.value)
                old = tasks.get(tid)
                if old is not None and old.node_id:
                    assert t.node_id == old.node_id, f"task {tid} moved from {old.node_id} to {t.node_id}"
                tasks[tid] = t
            if revision >= last:
                break
    check(revision)
    return checked


class YieldingStore:
    """A store that yields to the event loop inside every transaction, so concurrent planners
    interleave between reading and committing as they would across processes."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.max_txn_ops = inner.max_txn_ops

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        await asyncio.sleep(0)
        result = await self.inner.txn(compares, success, failure)
        await asyncio.sleep(0)
        return result

    def watch(self, prefix: str, *, start_revision: int = 0) -> Watch:
        return self.inner.watch(prefix, start_revision=start_revision)


async def split_brain(raw: Store) -> tuple[int, int]:
    """Two orchestrators run their loops at once on one store while services scale, a node
    drains and capacity runs out; then the store's whole history is replayed (``audit``): no
    task ever changed node, no slot ever had two tasks meant to run, no node was overcommitted.
    Returns (task revisions audited, stale plans re-planned)."""
    from skiff.cluster import ops
    from skiff.cluster.model import Availability

    now = 1000.0
    store = YieldingStore(raw)
    nodes = [node(f"n{i}", memory=2 * GiB) for i in range(6)]
    lease = await raw.grant(600)
    for n in nodes:
        await ops.register_node(raw, n, lease.id)
    stop = asyncio.Event()
    leaders = [
        Orchestrator(store, rng=random.Random(i), name=f"l{i}", max_plan_ops=8)  # type: ignore[arg-type]
        for i in range(2)
    ]
    for orch in leaders:
        await orch.start()
    loops = [asyncio.ensure_future(orch.run(stop)) for orch in leaders]

    def spec(name: str, replicas: int, **tpl: Any) -> ServiceSpec:
        return ServiceSpec(name=name, template=template(**tpl), replicas=replicas)

    web = await ops.create_service(raw, spec("web", 12, memory=128 * MiB), now=now)
    api = await ops.create_service(raw, spec("api", 8, memory=256 * MiB, ports=(8080,)), now=now)

    async def settled(expected: dict[str, int]) -> None:
        async def check() -> bool:
            live = Counter(
                t.service_id
                for t in await all_tasks(raw)
                if t.desired_state is TaskState.RUNNING and t.state is TaskState.ASSIGNED
            )
            return dict(live) == expected

        await eventually(raw, check)

    try:
        await settled({web.id: 12, api.id: 6})  # api: one per node (host port 8080)
        await ops.update_service(raw, web.id, replace(web.spec, replicas=20), now=now)
        await ops.update_node(raw, "n0", now=now, availability=Availability.DRAIN)
        await settled({web.id: 20, api.id: 5})
        await ops.update_service(raw, web.id, replace(web.spec, replicas=3), now=now)
        await settled({web.id: 3, api.id: 5})
    finally:
        stop.set()
        await asyncio.gather(*loops)
        for orch in leaders:
            await orch.stop()
    checked = await audit(raw, capacity={n.id: n.resources.memory_bytes for n in nodes})
    return checked, sum(orch.stats["stale"] for orch in leaders)


@dataclass
class Cluster:
    store: Store
    fleet: HollowFleet
    leader: Orchestrator

    async def tasks(self, service: Service) -> list[Task]:
        return [t for t in await all_tasks(self.store) if t.service_id == service.id]

    async def running(self, service: Service) -> list[Task]:
        return [
            t
            for t in await self.tasks(service)
            if t.state is TaskState.RUNNING and t.desired_state is TaskState.RUNNING
        ]

    async def until(self, check: Callable[[], Awaitable[bool]]) -> None:
        await eventually(self.store, check)

    async def service(self, service: Service) -> Service:
        kv = await self.store.get(keys.service(service.id))
        assert kv is not None
        return from_json(Service, kv.value)

    async def node(self, node_id: str) -> Node:
        kv = await self.store.get(keys.node(node_id))
        assert kv is not None
        return from_json(Node, kv.value)


@contextlib.asynccontextmanager
async def cluster(nodes: int = 4, store: Store | None = None, **fleet: object) -> AsyncIterator[Cluster]:
    """A leader and ``nodes`` hollow nodes (lease TTL 1 s, each its own lease) on ``store``
    (a fresh MemoryStore by default); the store's history is audited when the block ends."""
    store = store or MemoryStore()
    hollow = HollowFleet(store, nodes, ttl=1, **fleet)  # type: ignore[arg-type]
    await hollow.start(own_lease=frozenset(hollow.node_id(i) for i in range(nodes)))
    leader = Orchestrator(store)
    await leader.start()
    stop = asyncio.Event()
    loop = asyncio.ensure_future(leader.run(stop))
    try:
        yield Cluster(store, hollow, leader)
    finally:
        stop.set()
        await loop
        await leader.stop()
        await hollow.stop()
        checked = await audit(store)
        assert checked > 0
        await store.close()
