"""The scheduler: every filter and ranker with its reason, the chain, sampling at scale."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace

import pytest

from skiff.cluster.model import Availability, NodeRole, NodeStatus, ServiceMode, Task, new_task
from skiff.cluster.scheduler import NodeUsage, Scheduler, filters, rank
from skiff.cluster.scheduler.constraints import parse_constraint, parse_constraints, parse_preference
from skiff.errors import InvalidArgument
from tests.cluster_support import CPU, GiB, MiB, node, running, service, template


def pending(svc_id: str = "svc", n: int = 1, **tpl: object) -> list[Task]:
    svc = service(svc_id, tpl=template(**tpl))  # type: ignore[arg-type]
    return [new_task(svc, slot=i + 1, node_id="", predecessor=None, now=1.0) for i in range(n)]


def usage_of(*tasks: Task) -> dict[str, NodeUsage]:
    out: dict[str, NodeUsage] = {}
    for t in tasks:
        out.setdefault(t.node_id, NodeUsage()).add(t)
    return out


# --- constraints


@pytest.mark.parametrize(
    ("text", "labels", "ok"),
    [
        ("node.labels.ssd==true", {"ssd": "true"}, True),
        ("node.labels.ssd==true", {"ssd": "TRUE"}, True),  # swarmkit compares case-insensitively
        ("node.labels.ssd==true", {}, False),
        ("node.labels.ssd!=true", {}, True),
        ("node.labels.ssd != true", {"ssd": "true"}, False),
        ("node.hostname==host-n1", {}, True),
        ("node.hostname!=host-n1", {}, False),
        ("node.id==n1", {}, True),
        ("node.role==manager", {}, False),
        ("node.role==worker", {}, True),
    ],
)
def test_constraints(text: str, labels: dict[str, str], ok: bool) -> None:
    assert parse_constraint(text).matches(node("n1", labels=labels)) is ok


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("node.labels.ssd", "expected <key>==<value>"),
        ("node.labels.ssd=true", "expected <key>==<value>"),
        ("node.labels.==x", "empty label name"),
        ("engine.labels.x==y", "unknown key 'engine.labels.x'"),
        ("node.role==boss", "node.role is manager or worker"),
        ("node.id==", "expected"),
    ],
)
def test_bad_constraints(text: str, error: str) -> None:
    with pytest.raises(InvalidArgument, match=error):
        parse_constraint(text)


def test_preferences() -> None:
    assert parse_preference("spread=node.labels.zone") == "zone"
    for bad in ("spread=node.hostname", "binpack=node.labels.x", "spread=node.labels."):
        with pytest.raises(InvalidArgument, match="placement preference"):
            parse_preference(bad)


# --- filters, one by one, with their reasons


def test_static_filters_and_reasons() -> None:
    ssd = parse_constraints(("node.labels.ssd==true",))
    assert filters.node_ready(node("a")) is None
    assert filters.node_ready(node("a", status=NodeStatus.DOWN)) == "node is down"
    assert filters.node_active(node("a", availability=Availability.PAUSE)) == "node availability is pause"
    assert filters.node_active(node("a", availability=Availability.DRAIN)) == "node availability is drain"
    assert filters.constraints_met(node("a"), ssd) == "constraint node.labels.ssd==true not met"
    assert filters.constraints_met(node("a", labels={"ssd": "true"}), ssd) is None
    # the first failing filter names the node's reason
    down_drained = node("a", status=NodeStatus.DOWN, availability=Availability.DRAIN)
    assert filters.static_reason(down_drained, ssd) == "node is down"


def test_dynamic_filters_and_reasons() -> None:
    n = node("n1", cpus=2 * CPU, memory=1 * GiB)
    svc = service(tpl=template(memory=600 * MiB, cpus=CPU, ports=(80,)))
    usage = usage_of(running(svc, 1, "n1"))["n1"]
    want = svc.spec.template.resources.reservations
    assert filters.resources_free(n, NodeUsage(), want) is None
    assert filters.resources_free(n, usage, want) == "insufficient memory"
    assert filters.resources_free(n, usage, replace(want, memory_bytes=0)) is None
    assert (
        filters.resources_free(n, usage, replace(want, memory_bytes=0, nano_cpus=2 * CPU))
        == "insufficient cpu"
    )
    assert filters.ports_free(usage, svc.spec.template.ports) == "host port 80/tcp in use"
    assert filters.ports_free(usage, template(ports=(81,)).ports) is None


def test_usage_counts_and_releases() -> None:
    svc = service(tpl=template(memory=100, cpus=10, ports=(80,)))
    t = running(svc, 1, "n1")
    u = NodeUsage()
    u.add(t)
    assert (u.memory_bytes, u.nano_cpus, u.tasks, dict(u.ports), dict(u.by_service)) == (
        100,
        10,
        1,
        {("tcp", 80): 1},
        {"svc": 1},
    )
    c = u.copy()
    u.remove(t)
    assert (u.memory_bytes, u.tasks, dict(u.ports), dict(u.by_service)) == (0, 0, {}, {})
    assert c.tasks == 1  # copies are independent


# --- rankers


def test_rankers() -> None:
    svc = service("a")
    other = service("b")
    u = usage_of(running(svc, 1, "n1"), running(svc, 2, "n1"), running(other, 1, "n1"))["n1"]
    assert rank.spread(u, "a") == 2 and rank.spread(u, "b") == 1 and rank.spread(u, "c") == 0
    assert rank.fewest_tasks(u) == 3
    n = node("n1", labels={"zone": "z1"})
    assert rank.preference_group(n, ("zone", "rack")) == ("z1", "")
    assert rank.preference(n, ("zone",), Counter({("z1",): 4})) == 4


# --- the chain


def test_spreads_a_service_across_nodes() -> None:
    nodes = {f"n{i}": node(f"n{i}") for i in range(3)}
    decisions = Scheduler(nodes, {}, random.Random(1)).place_all(pending(n=6))
    assert all(d.placed for d in decisions)
    assert Counter(d.node_id for d in decisions) == {"n0": 2, "n1": 2, "n2": 2}


def test_fewest_tasks_breaks_ties_between_equal_spreads() -> None:
    nodes = {"busy": node("busy"), "idle": node("idle")}
    other = service("other")
    usage = usage_of(running(other, 1, "busy"), running(other, 2, "busy"))
    (d,) = Scheduler(nodes, usage, random.Random(0)).place_all(pending())
    assert d.node_id == "idle"
    assert d.explanation.scores[0].components == (("spread", 0), ("tasks", 0))
    assert d.explanation.scores[1].components == (("spread", 0), ("tasks", 2))


def test_placement_preference_spreads_over_label_values() -> None:
    nodes = {f"a{i}": node(f"a{i}", labels={"zone": "a"}) for i in range(4)}
    nodes["b0"] = node("b0", labels={"zone": "b"})
    decisions = Scheduler(nodes, {}, random.Random(2)).place_all(
        pending(n=4, preferences=("spread=node.labels.zone",))
    )
    zones = Counter(nodes[d.node_id].labels["zone"] for d in decisions)
    assert zones == {"a": 2, "b": 2}  # by zone, not by node: zone b's one node gets half
    names = [name for name, _ in decisions[0].explanation.scores[0].components]
    assert names == ["spread=node.labels.zone", "spread", "tasks"]


def test_unplaceable_task_explains_every_reason() -> None:
    nodes = {
        "small1": node("small1", memory=64 * MiB, labels={"ssd": "true"}),
        "small2": node("small2", memory=64 * MiB, labels={"ssd": "true"}),
        "hdd": node("hdd", memory=8 * GiB),
    }
    (d,) = Scheduler(nodes, {}, random.Random(0)).place_all(
        pending(memory=128 * MiB, constraints=("node.labels.ssd==true",))
    )
    assert not d.placed
    assert d.explanation.message() == (
        "no suitable node: 3 nodes — insufficient memory on 2, constraint node.labels.ssd==true not met on 1"
    )


def test_every_filter_shows_up_in_the_message() -> None:
    svc = service("web", tpl=template(ports=(80,)))
    nodes = {
        "down": node("down", status=NodeStatus.DOWN),
        "drained": node("drained", availability=Availability.DRAIN),
        "paused": node("paused", availability=Availability.PAUSE),
        "manager": node("manager", role=NodeRole.MANAGER),
        "noport": node("noport"),
        "nocpu": node("nocpu", cpus=0),
    }
    usage = usage_of(running(svc, 1, "noport"))
    (d,) = Scheduler(nodes, usage, random.Random(0)).place_all(
        pending("web2", cpus=CPU, ports=(80,), constraints=("node.role==worker",))
    )
    assert d.explanation.message() == (
        "no suitable node: 6 nodes — constraint node.role==worker not met on 1, host port 80/tcp in use on 1, "
        "insufficient cpu on 1, node availability is drain on 1, node availability is pause on 1, node is down on 1"
    )


def test_resources_fill_up_within_a_pass() -> None:
    nodes = {"n1": node("n1", memory=1 * GiB), "n2": node("n2", memory=1 * GiB)}
    decisions = Scheduler(nodes, {}, random.Random(0)).place_all(pending(n=5, memory=400 * MiB))
    assert [d.placed for d in decisions] == [True, True, True, True, False]
    assert decisions[4].explanation.message() == "no suitable node: 2 nodes — insufficient memory on 2"


def test_host_ports_are_one_per_node() -> None:
    nodes = {"n1": node("n1"), "n2": node("n2")}
    decisions = Scheduler(nodes, {}, random.Random(0)).place_all(pending(n=3, ports=(8080,)))
    assert sorted(d.node_id for d in decisions[:2]) == ["n1", "n2"]
    assert decisions[2].explanation.message() == "no suitable node: 2 nodes — host port 8080/tcp in use on 2"


def test_global_task_is_checked_on_its_own_node() -> None:
    g = service("g", mode=ServiceMode.GLOBAL, tpl=template(memory=2 * GiB))
    nodes = {"big": node("big"), "small": node("small", memory=GiB)}
    sched = Scheduler(nodes, {}, random.Random(0))
    ok, full = (
        sched.place(new_task(g, slot=0, node_id=n, predecessor=None, now=1)) for n in ("big", "small")
    )
    assert ok.node_id == "big"
    assert (
        not full.placed
        and full.explanation.message() == "no suitable node: 1 node — insufficient memory on 1"
    )


def test_same_seed_same_placements() -> None:
    nodes = {f"n{i}": node(f"n{i}") for i in range(50)}
    tasks = pending(n=40)
    a = [d.node_id for d in Scheduler(nodes, {}, random.Random(7)).place_all(tasks)]
    b = [
        d.node_id
        for d in Scheduler(dict(reversed(list(nodes.items()))), {}, random.Random(7)).place_all(tasks)
    ]
    assert a == b


def test_placement_samples_log2_nodes_at_scale() -> None:
    """5,000 nodes: each placement looks at ~log2(N) nodes, and replicas still spread evenly."""
    nodes = {f"n{i:04}": node(f"n{i:04}", memory=4 * GiB) for i in range(5000)}
    sched = Scheduler(nodes, {}, random.Random(3))
    tasks = pending(n=20_000, memory=100 * MiB)
    start = time.process_time()
    decisions = sched.place_all(tasks)
    cpu = time.process_time() - start
    assert all(d.placed for d in decisions)
    assert max(d.explanation.evaluated for d in decisions) == 13  # ceil(log2(5000))
    per_node = Counter(d.node_id for d in decisions)
    assert len(per_node) == 5000 and max(per_node.values()) <= 5
    print(f"20,000 placements on 5,000 nodes: {cpu:.2f} s CPU ({20_000 / cpu:,.0f}/s)")


def test_hopeless_shapes_are_not_walked_again() -> None:
    nodes = {f"n{i}": node(f"n{i}", memory=GiB) for i in range(2000)}
    sched = Scheduler(nodes, {}, random.Random(0))
    decisions = sched.place_all(pending(n=1000, memory=2 * GiB))
    assert not any(d.placed for d in decisions)
    assert {d.explanation.message() for d in decisions} == {
        "no suitable node: 2000 nodes — insufficient memory on 2000"
    }
