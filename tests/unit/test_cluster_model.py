"""Cluster model: the task state machine, derived ids, and the JSON records."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from skiff.cluster.model import (
    TERMINAL,
    Availability,
    FailureAction,
    InvalidTransition,
    Node,
    NodeRole,
    NodeStatus,
    RestartCondition,
    RestartPolicy,
    Service,
    ServiceMode,
    ServiceSpec,
    Task,
    TaskState,
    UpdateOrder,
    UpdatePolicy,
    UpdateState,
    UpdateStatus,
    advance,
    derived_id,
    from_json,
    legal,
    new_id,
    new_task,
    successor_id,
    to_json,
)
from skiff.types.codec import decode, to_plain
from skiff.types.container import HealthConfig
from tests.cluster_support import service, template

S = TaskState
# Every legal move; everything else must be refused.
LEGAL = {
    (S.NEW, S.PENDING),
    (S.NEW, S.SHUTDOWN),
    (S.NEW, S.REJECTED),
    (S.PENDING, S.ASSIGNED),
    (S.PENDING, S.SHUTDOWN),
    (S.PENDING, S.REJECTED),
    *(
        (S.ASSIGNED, s)
        for s in (S.PREPARING, S.STARTING, S.RUNNING, S.SHUTDOWN, S.REJECTED, S.FAILED, S.ORPHANED)
    ),
    *((S.PREPARING, s) for s in (S.STARTING, S.RUNNING, S.SHUTDOWN, S.REJECTED, S.FAILED, S.ORPHANED)),
    *((S.STARTING, s) for s in (S.RUNNING, S.SHUTDOWN, S.FAILED, S.COMPLETE, S.ORPHANED)),
    *((S.RUNNING, s) for s in (S.SHUTDOWN, S.FAILED, S.COMPLETE, S.ORPHANED)),
}


@pytest.mark.parametrize("old", list(TaskState))
@pytest.mark.parametrize("new", list(TaskState))
def test_transition_table(old: TaskState, new: TaskState) -> None:
    assert legal(old, new) == ((old, new) in LEGAL)


def test_terminal_states_are_final_and_never_hold_a_node() -> None:
    for s in TERMINAL:
        assert s.terminal and not s.on_node
        assert not any(legal(s, other) for other in TaskState)
    assert {s for s in TaskState if s.on_node} == {S.ASSIGNED, S.PREPARING, S.STARTING, S.RUNNING}


def test_advance_keeps_timestamps_and_refuses_illegal_moves() -> None:
    t = new_task(service(), slot=1, node_id="", predecessor=None, now=10.0)
    assert (t.state, t.created_at, t.state_since) == (S.PENDING, 10.0, 10.0)
    t = advance(t, S.ASSIGNED, now=11.0, node_id="n1", message="placed")
    assert (t.node_id, t.message, t.state_since, t.started_at) == ("n1", "placed", 11.0, 0.0)
    t = advance(t, S.RUNNING, now=12.0)
    assert (t.started_at, t.finished_at) == (12.0, 0.0)
    t = advance(t, S.FAILED, now=15.0, exit_code=3)
    assert (t.started_at, t.finished_at, t.exit_code, t.updated_at) == (12.0, 15.0, 3, 15.0)
    with pytest.raises(InvalidTransition, match="cannot go from failed to running"):
        advance(t, S.RUNNING, now=16.0)
    fresh = new_task(service(), slot=1, node_id="", predecessor=None, now=10.0)
    with pytest.raises(InvalidTransition):
        advance(fresh, S.RUNNING, now=11.0)  # a node only through the scheduler


def test_task_ids_derive_from_what_they_replace() -> None:
    svc = service()
    first = new_task(svc, slot=2, node_id="", predecessor=None, now=1.0)
    assert (
        first.id
        == successor_id(svc.id, "2", None)
        == new_task(svc, slot=2, node_id="", predecessor=None, now=9.0).id
    )
    second = new_task(svc, slot=2, node_id="", predecessor=first, now=2.0)
    assert second.id == derived_id("next", first.id) and second.predecessor == first.id
    assert len({first.id, second.id, new_task(svc, slot=3, node_id="", predecessor=None, now=1.0).id}) == 3
    assert len(first.id) == 25 and first.id.isalnum() and first.id.islower()
    assert len(new_id()) == 25 and new_id() != new_id()


def test_task_names_and_slots() -> None:
    svc = service(name="web")
    t = new_task(svc, slot=3, node_id="", predecessor=None, now=1.0)
    assert t.name == f"web.3.{t.id}" and t.slot_key == "3"
    g = new_task(service(mode=ServiceMode.GLOBAL), slot=0, node_id="node9", predecessor=None, now=1.0)
    assert g.slot_key == "node9" and g.name.startswith("svc.node9.")


def test_up_needs_health_when_checked() -> None:
    plain = advance(
        advance(
            new_task(service(), slot=1, node_id="", predecessor=None, now=1), S.ASSIGNED, now=1, node_id="n"
        ),
        S.RUNNING,
        now=2,
    )
    assert plain.up
    checked = replace(plain, template=template(healthcheck=HealthConfig(test=("CMD", "true"))))
    assert not checked.up
    assert replace(checked, health="healthy").up
    assert replace(plain, template=template(healthcheck=HealthConfig(test=("NONE",)))).up


def _full_task() -> Task:
    svc = service(
        tpl=template(
            memory=64 << 20,
            cpus=250_000_000,
            constraints=("node.labels.ssd==true",),
            preferences=("spread=node.labels.zone",),
            ports=(8080,),
            healthcheck=HealthConfig(test=("CMD", "true"), interval=1_000_000_000),
            env=("A=1",),
            labels={"l": "v"},
        )
    )
    t = new_task(svc, slot=4, node_id="", predecessor=None, now=1.5)
    t = advance(t, S.ASSIGNED, now=2.0, node_id="n1")
    t = advance(t, S.RUNNING, now=3.0, container_id="c" * 64)
    return replace(t, health="healthy", restarts=(1.0, 2.0), exit_code=0, error="e", predecessor="p")


def test_task_codec_matches_the_generic_codec() -> None:
    t = _full_task()
    data = to_json(t)
    assert decode(Task, json.loads(data)) == t  # the generic codec reads the compact form
    assert from_json(Task, json.dumps(to_plain(t)).encode()) == t  # and the fast one the full form
    fresh = new_task(service(), slot=1, node_id="", predecessor=None, now=1.0)
    assert len(to_json(fresh)) < len(json.dumps(to_plain(fresh))) / 2  # defaults are left out
    back = from_json(Task, data)
    assert back == t and back.state is S.RUNNING and isinstance(back.restarts, tuple)
    assert decode(Task, json.loads(data)) == t
    # the template cache must not hand back a stale template for the same service version
    other = replace(t, template=replace(t.template, image="other"))
    assert from_json(Task, to_json(other)).template.image == "other"
    assert from_json(Task, data).template.image == "busybox"


def test_node_and_service_records_round_trip() -> None:
    node = Node(
        id="n1",
        hostname="h",
        role=NodeRole.MANAGER,
        availability=Availability.DRAIN,
        status=NodeStatus.DOWN,
        labels={"zone": "a"},
        address="10.0.0.1",
        leader=True,
    )
    back = from_json(Node, to_json(node))
    assert back == node and back.availability is Availability.DRAIN
    spec = ServiceSpec(
        name="web",
        template=template(),
        mode=ServiceMode.GLOBAL,
        restart=RestartPolicy(RestartCondition.ON_FAILURE, delay=1, max_attempts=3, window=60),
        update=UpdatePolicy(2, 1.5, FailureAction.ROLLBACK, 4, UpdateOrder.START_FIRST),
    )
    svc = Service(
        id="s1",
        spec=spec,
        version=3,
        previous_spec=replace(spec, replicas=2),
        update_status=UpdateStatus(UpdateState.ROLLBACK_STARTED, 5.0, message="m"),
    )
    back_svc = from_json(Service, to_json(svc))
    assert back_svc == svc
    assert back_svc.update_status is not None and back_svc.update_status.rolling_back
    assert back_svc.update_policy == spec.rollback


def test_task_codec_fields_it_does_not_know_and_missing_ones() -> None:
    t = _full_task()
    raw = json.loads(to_json(t))
    newer = from_json(Task, json.dumps({**raw, "from_a_newer_version": 1}).encode())
    assert newer == t and "from_a_newer_version" not in vars(newer)
    assert vars(newer).keys() == vars(t).keys()
    del raw["spec_version"]
    with pytest.raises((TypeError, KeyError), match="spec_version"):
        from_json(Task, json.dumps(raw).encode())
