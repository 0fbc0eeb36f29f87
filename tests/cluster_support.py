"""Builders for cluster tests: nodes, services and tasks with readable defaults."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
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
from skiff.cluster.state.base import Compare, Op, Store, TxnResult, Watch

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
