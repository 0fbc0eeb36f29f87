"""``ClusterView``: the leader's in-memory mirror of the cluster keys, fed by one watch.

Loaded with one range over ``/skiff/`` (one revision), then kept current by applying watch
events in order. Besides the objects it keeps what planning needs at hand: each key's
``mod_revision`` (the plan's compares), which nodes hold a live lease, every node's
``NodeUsage`` and the services that need a look (``dirty``), updated per event rather than
recomputed per pass.

The leader applies its own committed plans at once (``apply_written``); their watch events,
arriving later, are recognised by revision and skipped, so nothing is decoded twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field

from skiff.cluster import keys
from skiff.cluster.model import Node, Service, Task, TaskState, from_json
from skiff.cluster.scheduler.usage import NodeUsage
from skiff.cluster.state.base import EventType, Store, WatchEvent

_WAITING = (TaskState.NEW, TaskState.PENDING)
LOAD_YIELD = 2000  # keys parsed between turns of the event loop while loading


@dataclass
class ClusterView:
    """See module doc. ``revision``: the store revision the view has seen through its watch."""

    revision: int = 0
    nodes: dict[str, Node] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)  # nodes whose lease key exists
    revs: dict[str, int] = field(default_factory=dict)  # key -> mod_revision, for every key held
    usage: dict[str, NodeUsage] = field(default_factory=lambda: defaultdict(NodeUsage))
    by_service: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    waiting: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # service -> pending tasks
    dirty: set[str] = field(default_factory=set)  # services to reconcile
    nodes_dirty: bool = True  # node records or liveness changed since the last pass
    nodes_version: int = 0  # bumped by every node change (caches keyed on the nodes use it)
    _gone: dict[str, int] = field(default_factory=dict)  # keys this leader deleted, at revision

    @classmethod
    async def load(cls, store: Store) -> ClusterView:
        view = cls()
        r = await store.range(keys.ROOT)
        for i, kv in enumerate(r.kvs):
            view._put(kv.key, kv.value, kv.mod_revision)
            if i % LOAD_YIELD == LOAD_YIELD - 1:  # 100,000 tasks take seconds: let keepalives run
                await asyncio.sleep(0)
        view.revision = r.revision
        view.dirty = set(view.services) | set(view.by_service)
        return view

    # --- reading

    def tasks_of(self, service_id: str) -> list[Task]:
        return [self.tasks[t] for t in self.by_service.get(service_id, ())]

    def tasks_of_node(self, node_id: str) -> list[Task]:
        """Tasks holding resources on the node (O(tasks): for tools, not the planning path)."""
        return [t for t in self.tasks.values() if t.node_id == node_id and t.state.on_node]

    def rev(self, key: str) -> int:
        """The mod_revision the view holds for ``key`` (0: absent)."""
        return self.revs.get(key, 0)

    # --- changes from the watch

    def apply(self, events: list[WatchEvent]) -> None:
        """Apply one watch batch (whole revisions, in order)."""
        for e in events:
            key, rev = e.kv.key, e.kv.mod_revision
            if self.revs.get(key, 0) >= rev or self._gone.get(key, 0) >= rev:
                continue  # already applied: this leader's own write, or older than it
            if e.type is EventType.PUT:
                self._put(key, e.kv.value, rev)
            else:
                self._delete(key)
        if events:
            self.revision = max(self.revision, events[-1].kv.mod_revision)
            if self._gone:
                self._gone = {k: r for k, r in self._gone.items() if r > self.revision}

    # --- changes this leader committed

    def apply_written(self, objects: dict[str, Node | Service | Task | bytes | None], revision: int) -> None:
        """Apply a committed plan's writes (``None``: deleted) at ``revision``.

        The plan came from reconciling these services, so its writes mark nothing dirty.
        """
        dirty, nodes_dirty = set(self.dirty), self.nodes_dirty
        for key, obj in objects.items():
            if obj is None:
                self._delete(key)
                self._gone[key] = revision
            else:
                self._set(key, obj, revision)
        self.dirty, self.nodes_dirty = dirty, nodes_dirty

    # --- internals

    def _put(self, key: str, value: bytes, rev: int) -> None:
        obj: Node | Service | Task | bytes
        if key.startswith(keys.TASKS):
            obj = from_json(Task, value)
        elif key.startswith(keys.NODES):
            obj = from_json(Node, value)
        elif key.startswith(keys.SERVICES):
            obj = from_json(Service, value)
        elif key.startswith((keys.NODE_LEASES, keys.ALLOC)):
            obj = value
        else:
            return  # keys the planner does not read (leader, endpoints, ...)
        self._set(key, obj, rev)

    def _set(self, key: str, obj: Node | Service | Task | bytes, rev: int) -> None:
        self.revs[key] = rev
        self._gone.pop(key, None)
        if isinstance(obj, Task):
            old = self.tasks.get(obj.id)
            self._untrack(old)
            self.tasks[obj.id] = obj
            self._track(obj)
            self._task_changed(old, obj)
        elif isinstance(obj, Node):
            self.nodes[obj.id] = obj
            self._node_changed(obj.id)
        elif isinstance(obj, Service):
            self.services[obj.id] = obj
            self.dirty.add(obj.id)
        elif key.startswith(keys.NODE_LEASES):
            node_id = key.removeprefix(keys.NODE_LEASES)
            self.alive.add(node_id)
            self._node_changed(node_id)

    def _delete(self, key: str) -> None:
        self.revs.pop(key, None)
        if key.startswith(keys.TASKS):
            old = self.tasks.pop(key.removeprefix(keys.TASKS), None)
            self._untrack(old)
            if old is not None:
                self._task_changed(old, None)
        elif key.startswith(keys.NODES):
            node_id = key.removeprefix(keys.NODES)
            self.nodes.pop(node_id, None)
            self._node_changed(node_id)
        elif key.startswith(keys.SERVICES):
            service_id = key.removeprefix(keys.SERVICES)
            self.services.pop(service_id, None)
            self.dirty.add(service_id)
        elif key.startswith(keys.NODE_LEASES):
            node_id = key.removeprefix(keys.NODE_LEASES)
            self.alive.discard(node_id)
            self._node_changed(node_id)

    def _track(self, t: Task) -> None:
        self.by_service[t.service_id].add(t.id)
        if t.state.on_node:
            self.usage[t.node_id].add(t)
        if t.state in _WAITING and t.desired_state is TaskState.RUNNING:
            self.waiting[t.service_id].add(t.id)

    def _untrack(self, t: Task | None) -> None:
        if t is None:
            return
        ids = self.by_service.get(t.service_id)
        if ids is not None:
            ids.discard(t.id)
            if not ids:
                del self.by_service[t.service_id]
        if t.state.on_node:
            self.usage[t.node_id].remove(t)
        w = self.waiting.get(t.service_id)
        if w is not None:
            w.discard(t.id)
            if not w:
                del self.waiting[t.service_id]

    def _task_changed(self, old: Task | None, new: Task | None) -> None:
        """Mark what a task change calls for. Most changes are agents reporting progress
        (assigned -> preparing -> running) that need no decision: reconciling a 5,000-task
        service for each of them would cost the leader more than placing them."""
        t = new or old
        assert t is not None
        if old is not None and old.state.on_node and (new is None or not new.state.on_node):
            self._capacity_freed()
        if (
            old is None
            or new is None
            or (
                new.state.terminal != old.state.terminal
                or new.desired_state is not old.desired_state
                or (new.up != old.up and self._updating(t.service_id))
            )
        ):
            self.dirty.add(t.service_id)

    def _updating(self, service_id: str) -> bool:
        service = self.services.get(service_id)
        return service is not None and service.update_status is not None and service.update_status.in_progress

    def _node_changed(self, node_id: str) -> None:
        self.nodes_dirty = True
        self.nodes_version += 1
        usage = self.usage.get(node_id)
        if usage is not None:
            self.dirty.update(usage.by_service)
        self.dirty.update(s.id for s in self.services.values() if s.spec.mode == "global")
        self._capacity_freed()

    def _capacity_freed(self) -> None:
        """Tasks waiting for a node may fit now."""
        self.dirty.update(self.waiting)


def describe(view: ClusterView) -> str:
    """A one-line summary, for logs and the benchmark."""
    states: dict[str, int] = defaultdict(int)
    for t in view.tasks.values():
        states[t.state] += 1
    return json.dumps(
        {"revision": view.revision, "nodes": len(view.nodes), "alive": len(view.alive), "tasks": states}
    )
