"""Hollow nodes: in-process stand-ins for agents, so one machine can play thousands of nodes
against a real store (Kubernetes' "hollow kubelet" idea).

A ``HollowFleet`` registers N nodes, keeps their leases alive from one loop, and follows the
task keys with one watch: a task assigned to one of its nodes is reported ``running`` at once (a
fake engine that starts instantly), a task told to shut down is reported ``shutdown``. Reports
are batched per watch batch into transactions that compare each task's revision, as a real
agent's would. ``kill(node)`` stops a node's keepalives: its lease expires like a crashed host's.

The leader (``Orchestrator``) does not know the nodes are hollow: everything goes through the
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from skiff.cluster import keys
from skiff.cluster.model import Node, Resources, Task, TaskState, advance, from_json, to_json
from skiff.cluster.state.base import Compare, Lease, LeaseNotFound, Put, Store

CPU = 1_000_000_000
GiB = 1 << 30


@dataclass
class FleetStats:
    running: int = 0  # tasks reported running
    stopped: int = 0  # tasks reported shut down
    failed: int = 0  # tasks reported failed (``fail_images``)
    conflicts: int = 0  # report transactions that lost a race (then retried one by one)


@dataclass
class HollowFleet:
    """N hollow nodes on ``store`` (see module doc)."""

    store: Store
    count: int
    cpus: int = 4 * CPU
    memory: int = 8 * GiB
    ttl: int = 3  # lease TTL, seconds; keepalives every ttl/3
    labels: Callable[[int], dict[str, str]] = field(default=lambda i: {})
    prefix: str = "hollow"
    lease_group: int = 1  # nodes sharing one lease (>1 spares etcd one HTTP keepalive per node)
    clock: Callable[[], float] = time.time
    on_running: Callable[[Task, float], None] | None = None  # called for each task reported running
    fail_images: frozenset[str] = frozenset()  # tasks of these images fail at once (exit status 1)
    # A store of its own for the keepalives, used from a thread with its own event loop: real
    # agents are other processes, so a busy leader in this process must not starve their
    # keepalives to an external store (etcd). In-process stores use the main loop instead.
    keepalive_store: Callable[[], Store] | None = None

    def __post_init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.leases: dict[str, int] = {}  # node -> lease id
        self.dead: set[str] = set()
        self.stats = FleetStats()
        self._tasks: list[asyncio.Task[None]] = []
        self._own_lease: set[str] = set()
        self._own_revisions: set[int] = set()  # revisions of our own reports: their events are skipped
        self._keepalive_thread: threading.Thread | None = None
        self._keepalive_stop = threading.Event()

    def node_id(self, i: int) -> str:
        return f"{self.prefix}{i:05d}"

    async def start(self, *, own_lease: set[str] | frozenset[str] = frozenset()) -> None:
        """Register the nodes (batched), then keep them alive and follow their tasks.

        Nodes in ``own_lease`` get a lease each, so they can be killed alone.
        """
        now = self.clock()
        group: Lease | None = None
        ops: list[Put] = []
        start_revision = await self.store.revision() + 1
        for i in range(self.count):
            node_id = self.node_id(i)
            if node_id in own_lease or self.lease_group <= 1:
                lease = await self.store.grant(self.ttl)
                self._own_lease.add(node_id)
            else:
                if group is None or i % self.lease_group == 0:
                    group = await self.store.grant(self.ttl)
                lease = group
            node = Node(
                id=node_id,
                hostname=node_id,
                labels=self.labels(i),
                resources=Resources(self.cpus, self.memory),
                address=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                created_at=now,
                updated_at=now,
            )
            self.nodes[node_id] = node
            self.leases[node_id] = lease.id
            ops += [Put(keys.node(node_id), to_json(node)), Put(keys.node_lease(node_id), b"", lease.id)]
            if len(ops) + 2 > self.store.max_txn_ops:
                await self.store.txn([], ops)
                ops = []
        if ops:
            await self.store.txn([], ops)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow(start_revision), name="hollow-agents")]
        if self.keepalive_store is None:
            self._tasks.append(loop.create_task(self._keepalive(self.store), name="hollow-keepalive"))
        else:
            self._keepalive_thread = threading.Thread(
                target=self._keepalive_in_thread, name="hollow-keepalive"
            )
            self._keepalive_thread.start()

    def kill(self, node_id: str) -> None:
        """The node stops sending keepalives (a crashed host); its lease expires within ``ttl``."""
        if node_id not in self._own_lease:
            raise ValueError(f"{node_id} shares its lease: start the fleet with own_lease={{{node_id!r}}}")
        self.dead.add(node_id)

    async def stop(self) -> None:
        self._keepalive_stop.set()
        if self._keepalive_thread is not None:
            await asyncio.to_thread(self._keepalive_thread.join)
            self._keepalive_thread = None
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    async def _keepalive(self, store: Store, *, concurrency: int = 1) -> None:
        """Renew every live node's lease each ``ttl/3``. In-process stores answer at once, so one
        pass over all leases takes one turn of the event loop; over HTTP (the keepalive thread)
        ``concurrency`` requests are in flight at a time, as from many agents."""
        while not self._keepalive_stop.is_set():
            live = sorted({lease for n, lease in self.leases.items() if n not in self.dead})
            for chunk in _chunks(live, concurrency):
                if len(chunk) == 1:
                    await self._keep(store, chunk[0])
                else:
                    await asyncio.gather(*(self._keep(store, lease_id) for lease_id in chunk))
            await asyncio.sleep(self.ttl / 3)

    @staticmethod
    async def _keep(store: Store, lease_id: int) -> None:
        with contextlib.suppress(LeaseNotFound):
            await store.keepalive(lease_id)

    def _keepalive_in_thread(self) -> None:
        assert self.keepalive_store is not None
        make = self.keepalive_store

        async def run() -> None:
            store = make()
            try:
                await self._keepalive(store, concurrency=64)
            finally:
                await store.close()

        asyncio.run(run())

    async def _follow(self, start_revision: int) -> None:
        async with self.store.watch(keys.TASKS, start_revision=start_revision) as w:
            async for events in w:
                todo: dict[str, tuple[Task, int]] = {}
                for e in events:
                    if e.kv.mod_revision in self._own_revisions:
                        continue
                    if e.type != "put":
                        todo.pop(e.kv.key, None)
                        continue
                    task = from_json(Task, e.kv.value)
                    if task.node_id in self.nodes and task.node_id not in self.dead and self._acts_on(task):
                        todo[e.kv.key] = (task, e.kv.mod_revision)
                    else:
                        todo.pop(e.kv.key, None)
                if events and self._own_revisions:
                    last = events[-1].kv.mod_revision
                    self._own_revisions = {r for r in self._own_revisions if r > last}
                if todo:
                    await self._report(list(todo.values()))

    @staticmethod
    def _acts_on(task: Task) -> bool:
        if task.desired_state is TaskState.SHUTDOWN:
            return task.state.on_node
        return task.state is TaskState.ASSIGNED

    def _next(self, task: Task, now: float) -> Task:
        if task.desired_state is TaskState.SHUTDOWN:
            return advance(task, TaskState.SHUTDOWN, now=now, message="shut down")
        if task.template.image in self.fail_images:
            return advance(task, TaskState.FAILED, now=now, message="task: non-zero exit (1)", exit_code=1)
        return advance(task, TaskState.RUNNING, now=now, message="started", container_id=f"hollow-{task.id}")

    async def _report(self, todo: list[tuple[Task, int]]) -> None:
        step = max(1, self.store.max_txn_ops)
        for i in range(0, len(todo), step):
            chunk = todo[i : i + step]
            now = self.clock()
            moved = [self._next(t, now) for t, _ in chunk]
            r = await self.store.txn(
                [Compare(keys.task(t.id), rev) for t, rev in chunk],
                [Put(keys.task(t.id), to_json(m)) for t, m in zip((t for t, _ in chunk), moved, strict=True)],
            )
            if r.succeeded:
                self._own_revisions.add(r.revision)
                self._reported(moved, now)
                continue
            self.stats.conflicts += 1
            for (task, rev), m in zip(chunk, moved, strict=True):  # one by one: skip what changed
                one = await self.store.txn(
                    [Compare(keys.task(task.id), rev)], [Put(keys.task(task.id), to_json(m))]
                )
                if one.succeeded:
                    self._own_revisions.add(one.revision)
                    self._reported([m], now)

    def _reported(self, moved: list[Task], now: float) -> None:
        for m in moved:
            if m.state is TaskState.RUNNING:
                self.stats.running += 1
                if self.on_running is not None:
                    self.on_running(m, now)
            elif m.state is TaskState.SHUTDOWN:
                self.stats.stopped += 1
            else:
                self.stats.failed += 1


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
