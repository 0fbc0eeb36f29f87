"""``Orchestrator``: the leader's loop — watch -> reconcile -> schedule -> commit plan.

The manager runs one while it leads (election is the manager's job, not this one's). It keeps
a ``ClusterView`` current from one watch on ``/skiff/``, and whenever something changed (or a
timer from the reconciler came due) runs a pass:

1. node status from lease liveness (``reconcile_nodes``);
2. each dirty service: ``reconcile_service`` (or ``reconcile_removed``), then the scheduler
   places the service's pending tasks, then the writes go into the pass's plans;
3. the plans are committed in order (``plan.commit_all``). A stale plan ends the pass: the
   view catches up with the store and the services are planned again.

``prepare`` and ``commit`` are the two halves of a pass, separate so tests can interleave
two planners deterministically.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from skiff.cluster import keys
from skiff.cluster.model import Node, Task, TaskState, advance, evolve
from skiff.cluster.plan import Plan, PlanBuilder, StalePlan, commit_all
from skiff.cluster.reconcile import HISTORY_LIMIT, reconcile_nodes, reconcile_removed, reconcile_service
from skiff.cluster.scheduler import Scheduler
from skiff.cluster.scheduler.chain import NodeIndex
from skiff.cluster.state.base import Compacted, Store
from skiff.cluster.view import ClusterView

log = logging.getLogger(__name__)

ASSIGNED_MESSAGE = "scheduler assigned task to node"
# Tasks created or placed per pass. A pass runs on the event loop without yielding; bounding it
# keeps the leader answering (keepalives, API calls, watches) while it places 100,000 replicas.
MAX_PASS_TASKS = 2000
# Tasks reconciled per pass. A new leader finds every service dirty: reconciling 100,000 tasks
# in one pass would hold the event loop for seconds, and a leader that cannot send its lease's
# keepalives loses its leadership (and the next leader would do the same).
MAX_PASS_SCAN = 20_000


@dataclass
class PassResult:
    """What one pass did."""

    plans: list[Plan] = field(default_factory=list)
    services: set[str] = field(default_factory=set)  # services reconciled
    placements: int = 0  # tasks assigned (committed, after ``commit``)
    unplaced: int = 0  # pending tasks no node could take
    stale: bool = False


class Orchestrator:
    """The leader's reconcile/schedule/commit loop over one store (see module doc)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        history_limit: int = HISTORY_LIMIT,
        max_plan_ops: int | None = None,
        max_pass_tasks: int = MAX_PASS_TASKS,
        max_pass_scan: int = MAX_PASS_SCAN,
        name: str = "leader",
    ) -> None:
        self.store = store
        self.name = name
        self.clock = clock
        self.rng = rng or random.Random()
        self.history_limit = history_limit
        self.max_plan_ops = min(max_plan_ops or store.max_txn_ops, store.max_txn_ops)
        self.max_pass_tasks = max_pass_tasks
        self.max_pass_scan = max_pass_scan
        self.view = ClusterView()
        self.timers: dict[str, float] = {}  # service -> when the reconciler wants another look
        self._watch_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._advanced = asyncio.Event()
        self.passed = asyncio.Event()
        self._resume = ""  # the first service a pass cut short left for the next one
        self._index: tuple[int, NodeIndex] | None = None  # (view.nodes_version, index over view.nodes)
        self.stats = {"passes": 0, "stale": 0, "placements": 0}

    # --- lifecycle

    async def start(self) -> None:
        """Load the view and follow the store."""
        self.view = await ClusterView.load(self.store)
        self._watch_task = asyncio.get_running_loop().create_task(
            self._follow(), name="skiff-orchestrator-watch"
        )
        self._changed.set()

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None

    async def _follow(self) -> None:
        while True:
            try:
                async with self.store.watch(keys.ROOT, start_revision=self.view.revision + 1) as w:
                    async for events in w:
                        self.view.apply(events)
                        self._advanced.set()
                        if self.view.dirty or self.view.nodes_dirty:
                            self._changed.set()
            except Compacted:
                log.warning("cluster watch fell behind a compaction: reloading the view")
                self.view = await ClusterView.load(self.store)
                self._changed.set()

    async def sync(self) -> None:
        """Return once the view has seen everything the store held when called.

        A barrier: write this leader's sync key and wait until the watch delivers it (the
        store's revision alone may belong to keys outside ``/skiff/`` that the watch never sees).
        """
        target = await self.store.put(keys.sync(self.name), b"")
        while self.view.revision < target:
            self._advanced.clear()
            if self.view.revision >= target:
                break
            await self._advanced.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop`` is set: on changes, and when a timer comes due."""
        while not stop.is_set():
            due = min(self.timers.values(), default=None)
            timeout = None if due is None else max(0.0, due - self.clock())
            waiters = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            if stop.is_set():
                return
            self._changed.clear()
            await self.run_pass()
            self.passed.set()  # for watchers of progress (benchmarks, tests): cleared by them

    async def run_pass(self) -> PassResult:
        """One pass; a stale plan makes the view catch up and the pass run again."""
        while True:
            result = await self.commit(self.prepare())
            if not result.stale:
                return result
            await self.sync()

    # --- one pass

    def prepare(self) -> PassResult:
        """Reconcile and schedule everything dirty (or due) into plans. No I/O."""
        view, now = self.view, self.clock()
        due = {s for s, at in self.timers.items() if at <= now}
        for s in due:
            del self.timers[s]
        services, view.dirty = view.dirty | due, set()
        result = PassResult(services=services)
        builder = PlanBuilder(view, self.max_plan_ops)
        nodes: dict[str, Node] = view.nodes
        if view.nodes_dirty:
            view.nodes_dirty = False
            changed = reconcile_nodes(view.nodes.values(), view.alive, now)
            if changed:
                nodes = {**view.nodes, **{n.id: n for n in changed}}
                for node in changed:
                    builder.put_node(node)
                    usage = view.usage.get(node.id)
                    if usage is not None:
                        services |= set(usage.by_service)
                services |= {s.id for s in view.services.values() if s.spec.mode == "global"}
        if self._index is None or self._index[0] != view.nodes_version or nodes is not view.nodes:
            self._index = (view.nodes_version, NodeIndex(nodes))
        scheduler = Scheduler(nodes, view.usage, self.rng, index=self._index[1])
        budget, scan = self.max_pass_tasks, self.max_pass_scan
        order = sorted(services)
        if self._resume:  # the last pass was cut short: the services it left go first
            cut = bisect.bisect_left(order, self._resume)
            order = order[cut:] + order[:cut]
        self._resume = ""
        for service_id in order:
            if budget <= 0 or scan <= 0:  # the rest waits for the next pass, after the loop served others
                view.dirty.add(service_id)
                self._resume = self._resume or service_id
                continue
            scan -= len(view.by_service.get(service_id, ()))
            budget -= self._service_pass(service_id, nodes, scheduler, builder, now, result, budget)
        result.plans = builder.build()
        if view.dirty:
            self._changed.set()
        self.stats["passes"] += 1
        return result

    def _service_pass(
        self,
        service_id: str,
        nodes: dict[str, Node],
        scheduler: Scheduler,
        builder: PlanBuilder,
        now: float,
        result: PassResult,
        budget: int,
    ) -> int:
        """One service into the pass's plans; returns the tasks it creates or places (at most
        ``budget``, and the service stays dirty if it had more to do)."""
        view = self.view
        service = view.services.get(service_id)
        tasks = view.tasks_of(service_id)
        if service is None:
            acts = reconcile_removed(tasks, now)
        else:
            acts = reconcile_service(
                service, tasks, nodes, now, history_limit=self.history_limit, max_create=budget
            )
            if acts.service is not None:
                builder.put_service(acts.service)
            if acts.wake_at is not None:
                self.timers[service_id] = acts.wake_at
            else:
                self.timers.pop(service_id, None)
        changed = {t.id: t for t in acts.update}
        waiting = [changed.get(i) or view.tasks[i] for i in sorted(view.waiting.get(service_id, ()))]
        to_place = [
            t
            for t in [*acts.create, *waiting]
            if t.state is TaskState.PENDING and t.desired_state is TaskState.RUNNING
        ]
        if len(to_place) > budget or acts.more:
            to_place = to_place[:budget]
            view.dirty.add(service_id)
        final: dict[str, tuple[Task, bool]] = {}  # task id -> (what to write, placed now)
        for decision in scheduler.place_all(to_place):
            task = decision.task
            if decision.placed:
                task = advance(
                    task, TaskState.ASSIGNED, now=now, message=ASSIGNED_MESSAGE, node_id=decision.node_id
                )
                final[task.id] = (task, True)
                continue
            result.unplaced += 1
            message = decision.explanation.message()  # why it waits, for `service ps`
            if message != task.message:
                final[task.id] = (evolve(task, message=message, updated_at=now), False)
            elif task.id in changed or task.id not in view.tasks:
                final[task.id] = (changed.get(task.id, task), False)
            changed.pop(task.id, None)
        for task in acts.create:
            final.setdefault(task.id, (task, False))
        for task in changed.values():
            final.setdefault(task.id, (task, False))
        # a replacement and the task it replaces go into the same plan (see PlanBuilder.put_tasks)
        replacements = [t.id for t, _ in final.values() if t.predecessor in final]
        for task_id in [*replacements, *final]:
            if task_id not in final:
                continue
            group = [final.pop(task_id)]
            predecessor = final.pop(group[0][0].predecessor, None)
            if predecessor is not None:
                group.append(predecessor)
            builder.put_tasks(group)
        for task in acts.delete:
            builder.delete_task(task)
        return max(len(to_place), len(acts.create))

    async def commit(self, result: PassResult) -> PassResult:
        """Commit a prepared pass (see ``plan.commit_all``)."""
        try:
            result.placements = await commit_all(self.store, result.plans, self.view)
        except StalePlan:
            result.stale = True
            self.stats["stale"] += 1
            self.view.dirty |= result.services
            self.view.nodes_dirty = True
        self.stats["placements"] += result.placements
        return result


def tasks_by_slot(tasks: list[Task]) -> dict[tuple[str, str], list[Task]]:
    """Tasks grouped by (service, slot), for tests and tools."""
    out: dict[tuple[str, str], list[Task]] = {}
    for t in tasks:
        out.setdefault((t.service_id, t.slot_key), []).append(t)
    return out
