"""Desired vs actual: what the leader must change so a service is what its spec says. Pure.

``reconcile_service`` looks at one service, its tasks and the nodes, at time ``now``, and
returns the tasks to create (state ``pending``: the scheduler places them), the tasks to change
and to delete, the service's new update status, and when to look again (``wake_at``) for
anything waiting on time (restart delay, update delay, monitor period). In order:

1. nodes: tasks on a down (or removed) node are ``orphaned``; tasks on a drained node, or on a
   node that no longer meets the constraints, are told to shut down;
2. a failed rolling update pauses or rolls back (the rest of the pass then uses that spec);
3. slots: each slot (1..replicas, or each eligible node of a global service) should have one
   task meant to run. A task that ended is replaced per the restart policy (condition, delay,
   max attempts within a window); a slot without a task gets one, after any task still stopping
   in it on a usable node has stopped (stop-first); slots beyond ``replicas`` are shut down;
4. rolling update: outdated slots are replaced ``parallelism`` at a time, ``delay`` apart,
   stop-first or start-first; a new task counts once up (running, and healthy if it has a
   health check) and is watched for ``monitor`` seconds;
5. tasks told to shut down that never reached a node are ``shutdown`` at once, and each slot
   keeps its newest ``history_limit`` tasks.

A task's id derives from its predecessor's, so replacing a task twice (two planners, or a
retried plan) names the same new task: see ``model.derived_id`` and ``plan.py``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from skiff.cluster.model import (
    Availability,
    FailureAction,
    Node,
    NodeStatus,
    RestartCondition,
    RestartPolicy,
    Service,
    ServiceMode,
    Task,
    TaskState,
    UpdateOrder,
    UpdateState,
    UpdateStatus,
    advance,
    evolve,
    new_task,
)
from skiff.cluster.scheduler.constraints import parse_constraints

HISTORY_LIMIT = 5  # tasks kept per slot (Swarm's default task history retention)
_RESTARTS_KEPT = 10  # restart times remembered when max_attempts is unlimited
_RESTART_ON_FAILURE = frozenset({TaskState.FAILED, TaskState.REJECTED, TaskState.SHUTDOWN})


@dataclass
class Actions:
    """What one service needs written (see module doc)."""

    create: list[Task] = field(default_factory=list)
    update: list[Task] = field(default_factory=list)
    delete: list[Task] = field(default_factory=list)
    service: Service | None = None  # the service with a new update status or spec (rollback)
    wake_at: float | None = None
    more: bool = False  # creations were left for the next pass (``max_create``)

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete or self.service)


def reconcile_nodes(nodes: Iterable[Node], alive: Iterable[str], now: float) -> list[Node]:
    """Node status from lease liveness: the nodes whose status must change."""
    live = set(alive)
    changed = []
    for node in nodes:
        if node.id in live and node.status is NodeStatus.DOWN:
            changed.append(replace(node, status=NodeStatus.READY, status_message="", updated_at=now))
        elif node.id not in live and node.status is NodeStatus.READY:
            changed.append(
                replace(
                    node,
                    status=NodeStatus.DOWN,
                    status_message="heartbeat failure: lease expired",
                    updated_at=now,
                )
            )
    return changed


def node_usable(node: Node | None) -> bool:
    return (
        node is not None and node.status is NodeStatus.READY and node.availability is not Availability.DRAIN
    )


class _Pass:
    """Working state of one reconcile: the latest version of every task, and what changed."""

    def __init__(
        self,
        service: Service,
        tasks: Sequence[Task],
        nodes: Mapping[str, Node],
        now: float,
        max_create: int | None = None,
    ) -> None:
        self.service = service
        self.max_create = max_create
        self.nodes = nodes
        self.now = now
        self.tasks: dict[str, Task] = {t.id: t for t in tasks}
        self.changed: set[str] = set()
        self.created: list[Task] = []
        self.out = Actions()

    def set(self, task: Task) -> None:
        self.tasks[task.id] = task
        self.changed.add(task.id)

    def shut_down(self, task: Task, message: str) -> None:
        if task.desired_state is not TaskState.SHUTDOWN:
            self.set(evolve(task, desired_state=TaskState.SHUTDOWN, message=message, updated_at=self.now))

    def create(
        self, slot: int, node_id: str, predecessor: Task | None, restarts: tuple[float, ...] = ()
    ) -> Task | None:
        """A new task for the slot, or None when this pass's budget is spent (``Actions.more``)."""
        if self.max_create is not None and len(self.created) >= self.max_create:
            self.out.more = True
            return None
        task = new_task(self.service, slot=slot, node_id=node_id, predecessor=predecessor, now=self.now)
        if restarts:
            task = evolve(task, restarts=restarts)
        if task.id in self.tasks:  # already created (a re-run of the same pass): never twice
            return self.tasks[task.id]
        self.tasks[task.id] = task
        self.created.append(task)
        return task

    def slots(self) -> dict[str, list[Task]]:
        """Tasks by slot key, oldest first."""
        by_slot: dict[str, list[Task]] = defaultdict(list)
        for t in self.tasks.values():
            by_slot[t.slot_key].append(t)
        for ts in by_slot.values():
            if len(ts) > 1:  # most slots hold one task: no sort (a pass calls this per service)
                ts.sort(key=_age)
        return by_slot

    def finish(self, history_limit: int) -> Actions:
        created = {t.id for t in self.created}
        for tid in list(self.tasks):  # step 5: never-placed tasks told to stop are stopped now
            t = self.tasks[tid]
            if t.desired_state is TaskState.SHUTDOWN and t.state in (TaskState.NEW, TaskState.PENDING):
                t = advance(
                    t, TaskState.SHUTDOWN, now=self.now, message=t.message or "shut down before placement"
                )
                if tid in created:
                    self.tasks[tid] = t
                    self.created = [t if c.id == tid else c for c in self.created]
                else:
                    self.set(t)
        deleted = set()
        for ts in self.slots().values():
            for t in ts[: max(0, len(ts) - history_limit)]:
                if t.state.terminal and t.desired_state is not TaskState.RUNNING and t.id not in created:
                    deleted.add(t.id)
        self.out.create = [t for t in self.created if t.id not in deleted]
        self.out.update = [self.tasks[i] for i in sorted(self.changed - created - deleted)]
        self.out.delete = [self.tasks[i] for i in sorted(deleted)]
        return self.out


def _age(t: Task) -> tuple[float, str]:
    return (t.created_at, t.id)


def reconcile_service(
    service: Service,
    tasks: Sequence[Task],
    nodes: Mapping[str, Node],
    now: float,
    *,
    history_limit: int = HISTORY_LIMIT,
    max_create: int | None = None,
) -> Actions:
    """One service's actions (see module doc). At most ``max_create`` new tasks: the leader
    bounds a pass so its event loop keeps serving (the rest comes next pass, ``Actions.more``)."""
    p = _Pass(service, tasks, nodes, now, max_create)
    _handle_nodes(p)
    _check_update_failure(p)
    if p.service.spec.mode is ServiceMode.GLOBAL:
        _global_slots(p)
    else:
        _replicated_slots(p)
    _rolling_update(p)
    return p.finish(history_limit)


def reconcile_removed(tasks: Sequence[Task], now: float) -> Actions:
    """The tasks of a removed service: shut down what runs, forget what ended."""
    out = Actions()
    for t in tasks:
        if t.state.terminal:
            out.delete.append(t)
        elif t.state in (TaskState.NEW, TaskState.PENDING):
            out.update.append(advance(t, TaskState.SHUTDOWN, now=now, message="service removed"))
        elif t.desired_state is not TaskState.SHUTDOWN:
            out.update.append(
                evolve(t, desired_state=TaskState.SHUTDOWN, message="service removed", updated_at=now)
            )
    return out


# --- step 1: nodes


def _handle_nodes(p: _Pass) -> None:
    constraints = parse_constraints(p.service.spec.template.placement.constraints)
    for t in list(p.tasks.values()):
        if not t.state.on_node:
            continue
        node = p.nodes.get(t.node_id)
        if node is None or node.status is NodeStatus.DOWN:
            why = "node removed" if node is None else "node is down"
            p.set(advance(t, TaskState.ORPHANED, now=p.now, message=why, desired_state=TaskState.SHUTDOWN))
        elif t.desired_state is TaskState.RUNNING:
            if node.availability is Availability.DRAIN:
                p.shut_down(t, "node is drained")
            elif any(not c.matches(node) for c in constraints) and t.template == p.service.spec.template:
                p.shut_down(t, "node no longer meets the placement constraints")


# --- step 3: slots


def _replicated_slots(p: _Pass) -> None:
    replicas = p.service.spec.replicas
    by_slot = p.slots()
    for slot in range(1, replicas + 1):
        _fill_slot(p, by_slot.get(str(slot), []), slot=slot, node_id="")
    for key, ts in by_slot.items():
        if int(key) > replicas:
            for t in ts:
                if not t.state.terminal:
                    p.shut_down(t, "service scaled down")


def _global_slots(p: _Pass) -> None:
    constraints = parse_constraints(p.service.spec.template.placement.constraints)
    by_node = p.slots()
    for node in p.nodes.values():
        ts = by_node.get(node.id, [])
        eligible = node.status is NodeStatus.READY and all(c.matches(node) for c in constraints)
        if node.availability is Availability.DRAIN or not eligible:
            for t in ts:
                if not t.state.terminal and node.status is NodeStatus.READY:
                    p.shut_down(
                        t, "node is drained" if eligible else "node no longer meets the placement constraints"
                    )
            continue
        may_create = node.availability is Availability.ACTIVE  # paused: keep what runs, add nothing
        _fill_slot(p, ts, slot=0, node_id=node.id, may_create=may_create)
    for node_id, ts in by_node.items():
        if node_id not in p.nodes:
            for t in ts:
                if not t.state.terminal:
                    p.shut_down(t, "node removed")


def _fill_slot(p: _Pass, ts: list[Task], *, slot: int, node_id: str, may_create: bool = True) -> None:
    """Make the slot hold one task meant to run (restart policy, replacements)."""
    ts = [p.tasks[t.id] for t in ts]
    newest = ts[-1] if ts else None
    if newest is not None and newest.desired_state is TaskState.RUNNING:
        if not newest.state.terminal:
            return  # alive (or on its way)
        restarts = _restart_decision(p, newest, p.service.spec.restart)
        if restarts is not None and may_create and p.create(slot, node_id, newest, restarts):
            p.shut_down(newest, newest.message)
        return
    stopping = [t for t in ts if not t.state.terminal and node_usable(p.nodes.get(t.node_id))]
    if stopping and not any(t.state in (TaskState.NEW, TaskState.PENDING) for t in stopping):
        return  # stop-first: the new task waits until the old one has stopped
    if may_create:
        p.create(slot, node_id, newest)


def _restart_decision(p: _Pass, task: Task, policy: RestartPolicy) -> tuple[float, ...] | None:
    """The successor's restart times if ``task`` is to be replaced now, else None (maybe later)."""
    if policy.condition is RestartCondition.NONE:
        return None
    if policy.condition is RestartCondition.ON_FAILURE and task.state not in _RESTART_ON_FAILURE:
        return None
    recent = tuple(r for r in task.restarts if not policy.window or r > p.now - policy.window)
    if policy.max_attempts and len(recent) >= policy.max_attempts:
        if policy.window:
            p.out.wake(min(recent) + policy.window)
        return None
    due = task.finished_at + policy.delay
    if p.now < due:
        p.out.wake(due)
        return None
    keep = policy.max_attempts or _RESTARTS_KEPT
    return (*recent, p.now)[-keep:]


# --- steps 2 and 4: rolling updates


def _updated_tasks(p: _Pass) -> list[Task]:
    """Tasks created for the current update (current template, created since it started)."""
    status = p.service.update_status
    if status is None:
        return []
    tpl = p.service.spec.template
    return [t for t in p.tasks.values() if t.created_at >= status.started_at and t.template == tpl]


def _check_update_failure(p: _Pass) -> None:
    status = p.service.update_status
    if status is None or not status.in_progress:
        return
    policy = p.service.update_policy
    if policy.failure_action is FailureAction.CONTINUE:
        return
    for t in _updated_tasks(p):
        if t.state not in (TaskState.FAILED, TaskState.REJECTED):
            continue
        if t.started_at and t.finished_at - t.started_at > policy.monitor:
            continue  # failed after its monitor period: an ordinary failure, not the update's
        what = f"failure or early termination of task {t.id}"
        if (
            policy.failure_action is FailureAction.ROLLBACK
            and not status.rolling_back
            and p.service.previous_spec
        ):
            p.service = rollback(p.service, p.now, f"update rolled back due to {what}")
        else:
            state = UpdateState.ROLLBACK_PAUSED if status.rolling_back else UpdateState.PAUSED
            kind = "rollback" if status.rolling_back else "update"
            p.service = replace(
                p.service, update_status=replace(status, state=state, message=f"{kind} paused due to {what}")
            )
        p.out.service = p.service
        return


def rollback(service: Service, now: float, message: str) -> Service:
    """The service returned to its previous spec, rolling back (``service rollback`` too)."""
    if service.previous_spec is None:
        return service
    return replace(
        service,
        spec=service.previous_spec,
        previous_spec=service.spec,
        version=service.version + 1,
        update_status=UpdateStatus(UpdateState.ROLLBACK_STARTED, started_at=now, message=message),
        updated_at=now,
    )


def _rolling_update(p: _Pass) -> None:
    status = p.service.update_status
    tpl = p.service.spec.template
    policy = p.service.update_policy
    current: dict[str, Task] = {}  # slot -> its task meant to run
    stopping_old: set[str] = set()  # slots whose outdated task is stopping, new one not made yet
    for key, ts in p.slots().items():
        live = [t for t in ts if t.desired_state is TaskState.RUNNING and not t.state.terminal]
        if live:
            current[key] = live[-1]
            if live[-1].up and live[-1].template == tpl:
                for old in live[:-1]:  # start-first: the new task is up, the old one goes
                    p.shut_down(old, "replaced by an updated task")
        elif any(not t.state.terminal and t.template != tpl for t in ts):
            stopping_old.add(key)
    outdated = sorted((k for k, t in current.items() if t.template != tpl), key=_slot_order)
    updated = _updated_tasks(p)
    updated_ids = {t.id for t in updated}
    in_flight = len(stopping_old) + sum(1 for t in current.values() if t.id in updated_ids and not t.up)
    if status is None or status.paused:
        return
    if outdated:
        up_times = [t.started_at for t in updated if t.up]
        if policy.delay and up_times and p.now < max(up_times) + policy.delay:
            p.out.wake(max(up_times) + policy.delay)
            return
        room = len(outdated) if policy.parallelism == 0 else max(0, policy.parallelism - in_flight)
        for key in outdated[:room]:
            old = current[key]
            if policy.order is UpdateOrder.START_FIRST:
                p.create(old.slot, old.node_id, old)
            else:
                p.shut_down(old, "updating to a new spec")
        return
    if in_flight or not status.in_progress:
        return
    ends = [t.started_at + policy.monitor for t in updated if t.up]
    if ends and p.now < max(ends):
        p.out.wake(max(ends))
        return
    done = UpdateState.ROLLBACK_COMPLETED if status.rolling_back else UpdateState.COMPLETED
    message = "rollback completed" if status.rolling_back else "update completed"
    p.service = replace(
        p.service, update_status=replace(status, state=done, completed_at=p.now, message=message)
    )
    p.out.service = p.service


def _slot_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (0, key)
