"""The reconciler: desired vs actual -> actions, case by case."""

from __future__ import annotations

from dataclasses import replace

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
    new_task,
)
from skiff.cluster.reconcile import Actions, reconcile_nodes, reconcile_removed, reconcile_service
from skiff.types.container import HealthConfig
from tests.cluster_support import ended, node, running, service, template

S = TaskState
NODES = {n: node(n) for n in ("n1", "n2", "n3")}


def rec(svc: Service, tasks: list[Task], nodes: dict[str, Node] | None = None, now: float = 200.0) -> Actions:
    return reconcile_service(svc, tasks, nodes if nodes is not None else NODES, now)


def slots(tasks: list[Task]) -> list[int]:
    return sorted(t.slot for t in tasks)


def apply(tasks: list[Task], acts: Actions) -> list[Task]:
    """The task set after ``acts`` were committed."""
    by_id = {t.id: t for t in tasks}
    for t in [*acts.create, *acts.update]:
        by_id[t.id] = t
    for t in acts.delete:
        del by_id[t.id]
    return list(by_id.values())


# --- nodes


def test_node_status_follows_lease_liveness() -> None:
    a, b, c = node("a"), node("b", status=NodeStatus.DOWN), node("c")
    changed = {n.id: n for n in reconcile_nodes([a, b, c], alive=["a", "b"], now=5.0)}
    assert set(changed) == {"b", "c"}
    assert changed["b"].status is NodeStatus.READY and changed["b"].status_message == ""
    assert changed["c"].status is NodeStatus.DOWN and "lease expired" in changed["c"].status_message


# --- slots


def test_creates_missing_slots_as_pending() -> None:
    svc = service(replicas=3)
    acts = rec(svc, [running(svc, 2, "n1")])
    assert slots(acts.create) == [1, 3]
    assert all(
        t.state is S.PENDING and t.node_id == "" and t.spec_version == svc.version for t in acts.create
    )
    assert not acts.update and not acts.delete


def test_converged_service_needs_nothing() -> None:
    svc = service(replicas=2)
    assert rec(svc, [running(svc, 1, "n1"), running(svc, 2, "n2")]).empty


def test_scale_down_shuts_down_the_highest_slots() -> None:
    svc = service(replicas=1)
    tasks = [
        running(svc, 1, "n1"),
        running(svc, 2, "n2"),
        new_task(svc, slot=3, node_id="", predecessor=None, now=1),
    ]
    acts = rec(svc, tasks)
    by_slot = {t.slot: t for t in acts.update}
    assert set(by_slot) == {2, 3}
    assert by_slot[2].desired_state is S.SHUTDOWN and by_slot[2].state is S.RUNNING  # its agent stops it
    assert by_slot[3].state is S.SHUTDOWN  # never reached a node: stopped at once
    assert not acts.create


# --- restart policy


def failed(
    svc: Service, slot: int, *, at: float, restarts: tuple[float, ...] = (), state: TaskState = S.FAILED
) -> Task:
    if state is S.REJECTED:  # a node refuses a task before it runs
        t = advance(
            new_task(svc, slot=slot, node_id="", predecessor=None, now=at - 10),
            S.ASSIGNED,
            now=at - 5,
            node_id="n1",
        )
        return replace(ended(t, state, now=at), restarts=restarts)
    return ended(running(svc, slot, "n1", now=at - 10, restarts=restarts), state, now=at)


def test_failed_task_is_replaced_and_marked_handled() -> None:
    svc = service(replicas=1, restart=RestartPolicy(delay=0))
    dead = failed(svc, 1, at=150)
    acts = rec(svc, [dead])
    (new,) = acts.create
    assert new.predecessor == dead.id and new.slot == 1 and new.restarts == (200.0,)
    (old,) = acts.update
    assert old.id == dead.id and old.desired_state is S.SHUTDOWN
    assert rec(svc, apply([dead], acts)).empty  # replaced once, never twice


def test_restart_delay_waits_and_says_when() -> None:
    svc = service(replicas=1, restart=RestartPolicy(delay=30))
    dead = failed(svc, 1, at=190)
    acts = rec(svc, [dead], now=200)
    assert acts.empty and acts.wake_at == 220
    assert rec(svc, [dead], now=220).create


def test_restart_conditions() -> None:
    for condition, state, replaced in [
        (RestartCondition.NONE, S.FAILED, False),
        (RestartCondition.ON_FAILURE, S.FAILED, True),
        (RestartCondition.ON_FAILURE, S.REJECTED, True),
        (RestartCondition.ON_FAILURE, S.COMPLETE, False),
        (RestartCondition.ANY, S.COMPLETE, True),
    ]:
        svc = service(replicas=1, restart=RestartPolicy(condition, delay=0))
        acts = rec(svc, [failed(svc, 1, at=150, state=state)])
        assert bool(acts.create) is replaced, (condition, state)


def test_max_attempts_within_a_window() -> None:
    policy = RestartPolicy(delay=0, max_attempts=2, window=60)
    svc = service(replicas=1, restart=policy)
    exhausted = failed(svc, 1, at=190, restarts=(150.0, 180.0))
    acts = rec(svc, [exhausted], now=200)
    assert acts.empty and acts.wake_at == 210  # the oldest restart leaves the window at 210
    acts = rec(svc, [exhausted], now=211)
    (new,) = acts.create
    assert new.restarts == (180.0, 211.0)
    forever = service(replicas=1, restart=replace(policy, window=0))
    assert rec(forever, [failed(forever, 1, at=190, restarts=(1.0, 2.0))], now=10_000).empty


# --- nodes going away


def test_tasks_of_a_down_node_are_orphaned_and_replaced() -> None:
    svc = service(replicas=2, restart=RestartPolicy(condition=RestartCondition.NONE))
    a, b = running(svc, 1, "n1"), running(svc, 2, "n2")
    nodes = {**NODES, "n2": node("n2", status=NodeStatus.DOWN)}
    acts = rec(svc, [a, b], nodes)
    (orphan,) = acts.update
    assert orphan.id == b.id and orphan.state is S.ORPHANED and orphan.message == "node is down"
    (new,) = acts.create
    assert new.slot == 2 and new.predecessor == b.id  # rescheduled whatever the restart policy
    gone = rec(svc, [a, b], {"n1": NODES["n1"]})
    assert gone.update[0].message == "node removed"


def test_drained_node_is_emptied() -> None:
    svc = service(replicas=1)
    t = running(svc, 1, "n1")
    nodes = {**NODES, "n1": node("n1", availability=Availability.DRAIN)}
    acts = rec(svc, [t], nodes)
    (old,) = acts.update
    assert old.desired_state is S.SHUTDOWN and old.message == "node is drained"
    (new,) = acts.create
    assert new.slot == 1  # replaced at once: the old one is not waited for on a drained node


def test_paused_node_keeps_its_tasks() -> None:
    svc = service(replicas=1)
    nodes = {**NODES, "n1": node("n1", availability=Availability.PAUSE)}
    assert rec(svc, [running(svc, 1, "n1")], nodes).empty


def test_node_no_longer_meeting_constraints_is_left() -> None:
    svc = service(replicas=1, tpl=template(constraints=("node.labels.ssd==true",)))
    t = running(svc, 1, "n1")
    acts = rec(svc, [t], {"n1": node("n1")})
    assert acts.update[0].message == "node no longer meets the placement constraints"


# --- global services


def test_global_service_runs_once_per_eligible_node() -> None:
    g = service("g", mode=ServiceMode.GLOBAL, tpl=template(constraints=("node.labels.edge==yes",)))
    nodes = {
        "e1": node("e1", labels={"edge": "yes"}),
        "e2": node("e2", labels={"edge": "yes"}),
        "core": node("core"),
        "paused": node("paused", labels={"edge": "yes"}, availability=Availability.PAUSE),
        "down": node("down", labels={"edge": "yes"}, status=NodeStatus.DOWN),
    }
    acts = rec(g, [running(g, 0, "e1")], nodes)
    assert [(t.node_id, t.slot, t.state) for t in acts.create] == [("e2", 0, S.PENDING)]


def test_global_service_leaves_drained_and_ineligible_nodes() -> None:
    g = service("g", mode=ServiceMode.GLOBAL, tpl=template(constraints=("node.labels.edge==yes",)))
    nodes = {"e1": node("e1", availability=Availability.DRAIN, labels={"edge": "yes"}), "e2": node("e2")}
    acts = rec(g, [running(g, 0, "e1"), running(g, 0, "e2")], nodes)
    assert {t.node_id: t.message for t in acts.update} == {
        "e1": "node is drained",
        "e2": "node no longer meets the placement constraints",
    }
    assert not acts.create


def test_global_service_on_a_newly_joined_node() -> None:
    g = service("g", mode=ServiceMode.GLOBAL)
    tasks = [running(g, 0, n) for n in NODES]
    assert rec(g, tasks).empty
    acts = rec(g, tasks, {**NODES, "n4": node("n4")})
    assert [t.node_id for t in acts.create] == ["n4"]


# --- rolling updates


def updating(svc: Service, *, tpl_image: str, at: float = 150.0, **policy: object) -> Service:
    return replace(
        svc,
        spec=replace(
            svc.spec,
            template=template(image=tpl_image),
            update=replace(svc.spec.update, **policy),  # type: ignore[arg-type]
        ),
        previous_spec=svc.spec,
        version=svc.version + 1,
        update_status=UpdateStatus(UpdateState.UPDATING, started_at=at),
    )


def test_stop_first_update_goes_slot_by_slot() -> None:
    old = service(replicas=3)
    tasks = [running(old, s, f"n{s}") for s in (1, 2, 3)]
    svc = updating(old, tpl_image="v2", parallelism=1)
    acts = rec(svc, tasks)
    (stopping,) = acts.update
    assert stopping.slot == 1 and stopping.desired_state is S.SHUTDOWN and not acts.create
    tasks = apply(tasks, acts)
    assert rec(svc, tasks).empty  # waits for slot 1's old task to stop
    tasks = [ended(t, S.SHUTDOWN, now=201) if t.id == stopping.id else t for t in tasks]
    acts = rec(svc, tasks, now=202)
    (new,) = acts.create
    assert new.slot == 1 and new.template.image == "v2" and new.spec_version == svc.version
    tasks = apply(tasks, acts)
    assert rec(svc, tasks, now=203).empty  # the new task is not up yet: slot 2 waits
    tasks = [
        advance(advance(t, S.ASSIGNED, now=204, node_id="n1"), S.RUNNING, now=205) if t.id == new.id else t
        for t in tasks
    ]
    acts = rec(svc, tasks, now=206)
    assert [t.slot for t in acts.update] == [2]


def test_parallelism_and_delay() -> None:
    old = service(replicas=4)
    tasks = [running(old, s, "n1") for s in (1, 2, 3, 4)]
    svc = updating(old, tpl_image="v2", parallelism=2, delay=10, order=UpdateOrder.START_FIRST)
    acts = rec(svc, tasks)
    assert slots(acts.create) == [1, 2]  # start-first: new tasks beside the old ones
    assert not acts.update
    tasks = apply(tasks, acts)
    up = {t.id for t in acts.create}
    tasks = [
        advance(advance(t, S.ASSIGNED, now=210, node_id="n2"), S.RUNNING, now=210) if t.id in up else t
        for t in tasks
    ]
    acts = rec(svc, tasks, now=212)
    assert slots(acts.update) == [1, 2]  # the old ones go once the new ones are up
    assert all(t.template.image == "busybox" for t in acts.update)
    assert not acts.create and acts.wake_at == 220  # next batch after the delay
    acts = rec(svc, apply(tasks, acts), now=220)
    assert slots(acts.create) == [3, 4]


def test_update_waits_for_health() -> None:
    old = service(replicas=1)
    tasks = [running(old, 1, "n1")]
    svc = updating(old, tpl_image="v2", order=UpdateOrder.START_FIRST)
    svc = replace(
        svc,
        spec=replace(
            svc.spec, template=replace(svc.spec.template, healthcheck=HealthConfig(test=("CMD", "true")))
        ),
    )
    (new,) = rec(svc, tasks).create
    new = advance(advance(new, S.ASSIGNED, now=201, node_id="n2"), S.RUNNING, now=202)
    assert rec(svc, [*tasks, new], now=203).empty  # running but not healthy: the old one stays
    acts = rec(svc, [*tasks, replace(new, health="healthy")], now=203)
    assert [t.id for t in acts.update] == [tasks[0].id]


def test_update_completes_after_monitor() -> None:
    old = service(replicas=1)
    svc = updating(old, tpl_image="v2", monitor=5)
    t = running(svc, 1, "n1", now=196)
    acts = rec(svc, [t], now=200)
    assert acts.service is None and acts.wake_at == 201
    acts = rec(svc, [t], now=201)
    assert acts.service is not None and acts.service.update_status is not None
    assert (
        acts.service.update_status.state is UpdateState.COMPLETED
        and acts.service.update_status.completed_at == 201
    )


def test_failed_update_pauses() -> None:
    old = service(replicas=2)
    svc = updating(old, tpl_image="bad", failure_action=FailureAction.PAUSE, monitor=30)
    bad = ended(running(svc, 1, "n1", now=160), S.FAILED, now=170)
    tasks = [bad, running(old, 2, "n2")]
    acts = rec(svc, tasks)
    assert acts.service is not None and acts.service.update_status is not None
    assert acts.service.update_status.state is UpdateState.PAUSED
    assert (
        acts.service.update_status.message
        == f"update paused due to failure or early termination of task {bad.id}"
    )
    assert all(t.slot == 1 for t in acts.update + acts.create)  # slot 2 is not updated any more
    paused = acts.service
    assert not [t for t in rec(paused, apply(tasks, acts)).update if t.slot == 2]


def test_failed_update_rolls_back() -> None:
    old = service(replicas=2)
    svc = updating(old, tpl_image="bad", failure_action=FailureAction.ROLLBACK)
    bad = ended(running(svc, 1, "n1", now=160), S.FAILED, now=162)
    acts = rec(svc, [bad, running(old, 2, "n2")])
    back = acts.service
    assert back is not None and back.update_status is not None
    assert back.update_status.state is UpdateState.ROLLBACK_STARTED
    assert back.spec == old.spec and back.previous_spec == svc.spec and back.version == svc.version + 1
    (replacement,) = acts.create
    assert replacement.slot == 1 and replacement.template == old.spec.template  # the old spec again


def test_failure_after_monitor_is_not_the_updates() -> None:
    old = service(replicas=1)
    svc = updating(old, tpl_image="v2", failure_action=FailureAction.PAUSE, monitor=5)
    late = ended(running(svc, 1, "n1", now=160), S.FAILED, now=190)
    acts = rec(svc, [late])
    assert acts.service is None or acts.service.update_status is None or not acts.service.update_status.paused


# --- history and removal


def test_history_is_bounded_per_slot() -> None:
    svc = service(replicas=1)
    chain: list[Task] = []
    prev = None
    for i in range(7):
        t = new_task(svc, slot=1, node_id="", predecessor=prev, now=10 + i)
        t = advance(advance(t, S.ASSIGNED, now=10 + i, node_id="n1"), S.FAILED, now=11 + i)
        t = replace(t, desired_state=S.SHUTDOWN)
        chain.append(t)
        prev = t
    acts = reconcile_service(svc, chain, NODES, 200, history_limit=5)
    assert len(acts.create) == 1
    assert [t.id for t in acts.delete] == sorted(t.id for t in chain[:3])  # 7 + 1 new, keep 5


def test_removed_service() -> None:
    svc = service(replicas=3)
    live, done = running(svc, 1, "n1"), ended(running(svc, 2, "n2"), S.COMPLETE, now=150)
    waiting = new_task(svc, slot=3, node_id="", predecessor=None, now=1)
    acts = reconcile_removed([live, done, waiting], now=200)
    assert [t.id for t in acts.delete] == [done.id]
    states = {t.id: (t.state, t.desired_state) for t in acts.update}
    assert states == {live.id: (S.RUNNING, S.SHUTDOWN), waiting.id: (S.SHUTDOWN, S.RUNNING)}


def test_creation_budget_leaves_the_rest_for_the_next_pass() -> None:
    svc = service(replicas=5)
    acts = reconcile_service(svc, [], NODES, 200, max_create=2)
    assert slots(acts.create) == [1, 2] and acts.more
    rest = reconcile_service(svc, acts.create, NODES, 200, max_create=10)
    assert slots(rest.create) == [3, 4, 5] and not rest.more
    dead = failed(svc, 1, at=150)
    spent = reconcile_service(service(replicas=1), [dead], NODES, 200, max_create=0)
    assert spent.empty and spent.more  # a failed task is only marked handled with its replacement
