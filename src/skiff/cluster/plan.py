"""Plans: the leader's writes, committed as one store transaction each, compared against
everything they were computed from (Nomad's optimistic plan applier, on etcd's txn).

A plan compares the ``mod_revision`` its view held for every key it writes — each task it
creates (absent), changes or deletes, each service and node it changes — and, for every node it
places a task on, the node record and the node's ``alloc`` key, which it also bumps. So:

- two planners that replace the same task create the same derived task id: one "absent"
  compare fails (no slot ever gets two tasks);
- two planners that place on the same node from the same view both bump its ``alloc`` key: the
  second fails (a node is never overcommitted by a race);
- a plan built on a node that has since been drained, or gone down, fails on the node's key;
- committing a plan a second time fails, since its own writes changed every compared key.

A failed plan is thrown away; the leader lets its view catch up and plans again from there.
A plan never exceeds the store's ``max_txn_ops``: the builder cuts a large pass into several
plans, keeping each task with the node keys it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skiff.cluster import keys
from skiff.cluster.model import Node, Service, Task, to_json
from skiff.cluster.state.base import Compare, Delete, Op, Put, Store
from skiff.cluster.view import ClusterView
from skiff.errors import Conflict


class StalePlan(Conflict):
    """A compared key changed since the plan's view: nothing was written."""


@dataclass
class Plan:
    """One transaction's worth of writes, with the revisions they depend on."""

    compares: dict[str, int] = field(default_factory=dict)  # key -> mod_revision read (0: absent)
    writes: dict[str, bytes | None] = field(default_factory=dict)  # key -> value (None: delete)
    objects: dict[str, Node | Service | Task | bytes | None] = field(default_factory=dict)
    placements: int = 0  # tasks assigned to a node by this plan

    def ops(self) -> list[Op]:
        return [Delete(k) if v is None else Put(k, v) for k, v in self.writes.items()]

    def size(self) -> int:
        return max(len(self.compares), len(self.writes))


class PlanBuilder:
    """Collects a pass's writes into plans of at most ``max_ops`` compares and operations."""

    def __init__(self, view: ClusterView, max_ops: int) -> None:
        if max_ops < 8:
            raise ValueError("a plan needs room for a replacement, the task it replaces and their nodes")
        self.view = view
        self.max_ops = max_ops
        self.plans: list[Plan] = [Plan()]

    def _room(self, compares: int, writes: int) -> Plan:
        plan = self.plans[-1]
        if len(plan.compares) + compares > self.max_ops or len(plan.writes) + writes > self.max_ops:
            plan = Plan()
            self.plans.append(plan)
        return plan

    def _add(self, plan: Plan, key: str, obj: Node | Service | Task | None) -> None:
        plan.compares[key] = self.view.rev(key)
        plan.writes[key] = None if obj is None else to_json(obj)
        plan.objects[key] = obj

    def put_task(self, task: Task, *, placed: bool = False) -> None:
        """Write ``task``; ``placed``: it was just assigned to ``task.node_id`` by this pass."""
        self.put_tasks([(task, placed)])

    def put_tasks(self, group: list[tuple[Task, bool]]) -> None:
        """Write tasks that belong together (a replacement and the task it replaces) into one
        plan, so no commit ever shows one without the other."""
        plan = self.plans[-1]
        allocs = {keys.alloc(t.node_id) for t, placed in group if placed}
        fresh = sum(1 for a in allocs if a not in plan.writes)
        if len(group) + 2 * len(allocs) > self.max_ops:
            raise ValueError("a task group does not fit in one plan")
        plan = self._room(len(group) + 2 * fresh, len(group) + fresh)  # a new plan has room for all
        for task, placed in group:
            if placed:
                node_key, alloc_key = keys.node(task.node_id), keys.alloc(task.node_id)
                if alloc_key not in plan.writes:  # first placement on this node in this plan
                    if node_key not in plan.compares:
                        plan.compares[node_key] = self.view.rev(node_key)
                    plan.compares[alloc_key] = self.view.rev(alloc_key)
                    plan.writes[alloc_key] = b""
                    plan.objects[alloc_key] = b""
                plan.placements += 1
            self._add(plan, keys.task(task.id), task)

    def delete_task(self, task: Task) -> None:
        self._add(self._room(1, 1), keys.task(task.id), None)

    def put_service(self, service: Service) -> None:
        self._add(self._room(1, 1), keys.service(service.id), service)

    def put_node(self, node: Node) -> None:
        key = keys.node(node.id)
        plan = self._room(1, 1)
        self._add(plan, key, node)

    def build(self) -> list[Plan]:
        return [p for p in self.plans if p.writes]


async def commit(store: Store, plan: Plan, view: ClusterView | None = None) -> int:
    """Commit ``plan`` in one transaction; on success apply it to ``view``. Returns the revision.

    Raises :class:`StalePlan` when any compared key changed (then nothing was written).
    """
    compares = [Compare(k, r) for k, r in plan.compares.items()]
    result = await store.txn(compares, plan.ops())
    if not result.succeeded:
        raise StalePlan(f"plan is stale: one of {len(compares)} compared keys changed")
    if view is not None:
        view.apply_written(plan.objects, result.revision)
    return result.revision


async def commit_all(store: Store, plans: list[Plan], view: ClusterView) -> int:
    """Commit a pass's plans in order; returns the placements committed.

    A later plan of the pass depends on what the earlier ones wrote (a node's ``alloc`` key is
    bumped by each), so its compares for those keys are the revisions they were written at.
    A stale plan raises :class:`StalePlan`; the plans before it stay committed (each one is
    whole on its own), the ones after it are dropped.
    """
    written: dict[str, int] = {}
    placements = 0
    for plan in plans:
        for key in plan.compares.keys() & written.keys():
            plan.compares[key] = written[key]
        revision = await commit(store, plan, view)
        for key, value in plan.writes.items():
            written[key] = 0 if value is None else revision
        placements += plan.placements
    return placements
