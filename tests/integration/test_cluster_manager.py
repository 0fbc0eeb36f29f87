"""Two private skiffd on the host's loopback, each with its own cluster port: ``cluster init`` on
one, ``cluster join`` on the other (worker), a service of 2 busybox replicas runs one task on
each node (containers present in each daemon), its logs come from both, scale to 0 removes the
containers, rm removes the service, and both nodes leave."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from skiff.client import Client, connect
from skiff.cluster.model import ServiceSpec, TaskTemplate
from skiff.errors import Unavailable
from skiff.types.codec import to_plain
from tests.daemon_fixture import Daemon, bootstrap_busybox, running_daemon
from tests.etcd_support import MAX_TXN_OPS, etcd_available, running_etcd

TIMEOUT = 90.0
SERVICE_LABEL = "com.skiff.cluster.service.name"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f} s: {what}")
        time.sleep(0.2)  # polling cadence, not an assertion on timing


@pytest.fixture
def two_daemons() -> Iterator[tuple[Daemon, Daemon]]:
    with (
        running_daemon(["--node-name", "skmgr1"]) as one,
        running_daemon(["--node-name", "skwrk2"]) as two,
    ):
        bootstrap_busybox(one)
        bootstrap_busybox(two)
        try:
            yield one, two
        finally:
            for d in (two, one):  # leave before the daemons go (their fixture removes containers)
                with contextlib.suppress(Exception):
                    connect(d.host).cluster_leave(force=True)


def containers_of(d: Daemon, service: str) -> list[dict[str, Any]]:
    return list(d.client().containers(all=True, filters={"label": f"{SERVICE_LABEL}={service}"}))


def test_init_join_service_on_both_nodes(two_daemons: tuple[Daemon, Daemon]) -> None:
    one, two = two_daemons
    mgr: Client = connect(one.host)
    wrk: Client = connect(two.host)
    p1, p2 = free_port(), free_port()

    out = mgr.cluster_init(listen_addr=f"127.0.0.1:{p1}")
    assert set(out) == {"ClusterID", "NodeID", "JoinTokens"}
    joined = wrk.cluster_join([f"127.0.0.1:{p1}"], out["JoinTokens"]["Worker"], listen_addr=f"127.0.0.1:{p2}")
    assert joined["Role"] == "worker"
    assert mgr.cluster_join_token("worker") == out["JoinTokens"]["Worker"]
    info = wrk.cluster_inspect()
    assert info["ClusterID"] == out["ClusterID"] and info["Role"] == "worker"

    def nodes_ready() -> bool:
        nodes = mgr.nodes()
        return sorted(n["hostname"] for n in nodes if n["Status"] == "ready") == ["skmgr1", "skwrk2"]

    until(nodes_ready, "both nodes ready")
    by_name = {n["hostname"]: n for n in mgr.nodes()}
    assert by_name["skwrk2"]["resources"]["nano_cpus"] > 0
    until(lambda: mgr.cluster_inspect()["Leader"] == out["NodeID"], "the manager leads")

    name = "skmt" + out["ClusterID"][:6]
    spec = ServiceSpec(
        name=name,
        template=TaskTemplate(
            image="busybox:latest",
            command=("sh", "-c", "echo hello from $HOSTNAME; exec sleep 300"),
            stop_grace_period=1,
        ),
        replicas=2,
    )
    sid = mgr.service_create(to_plain(spec))["ID"]

    def running_on_both() -> bool:
        live = [t for t in mgr.tasks(service=name) if t["state"] == "running"]
        return sorted(t["NodeHostname"] for t in live) == ["skmgr1", "skwrk2"]

    until(running_on_both, "a running task on each node")
    for d in (one, two):
        (c,) = containers_of(d, name)
        assert c["State"] == "running" and c["Labels"]["com.skiff.cluster.service.id"] == sid
    service = mgr.service_inspect(name)
    assert (service["Running"], service["Desired"]) == (2, 2)

    logs: list[tuple[str, bytes]] = []

    def logs_from_both() -> bool:
        logs[:] = list(mgr.service_logs(name))
        return sorted(label.rsplit("@", 1)[1] for label, _ in logs) == ["skmgr1", "skwrk2"]

    until(logs_from_both, "a log line from each task")
    assert all(line.startswith(b"hello from ") and label.startswith(f"{name}.") for label, line in logs)

    # the worker's skiffd restarts: it resumes from state.json, its agent adopts the running
    # container (no duplicate, no replacement) and the node is ready again
    (before,) = containers_of(two, name)
    two.stop()
    two.start()
    until(lambda: wrk.cluster_inspect()["Role"] == "worker", "the worker resumed its role")
    until(lambda: mgr.node_inspect("skwrk2")["Status"] == "ready", "the worker is ready again")
    until(running_on_both, "still a running task on each node")
    assert [c["Id"] for c in containers_of(two, name)] == [before["Id"]]

    mgr.service_update(name, to_plain(spec) | {"replicas": 0})
    until(lambda: not containers_of(one, name) and not containers_of(two, name), "containers removed")
    assert mgr.service_inspect(name)["Running"] == 0
    mgr.service_rm(name)
    assert all(s["spec"]["name"] != name for s in mgr.services())

    wrk.cluster_leave()
    until(lambda: mgr.node_inspect("skwrk2")["Status"] == "down", "the worker is down after leaving")
    mgr.node_rm("skwrk2")
    mgr.cluster_leave(force=True)
    assert (one.root / "cluster" / "state.json").exists() is False


def test_promoted_manager_on_etcd_takes_over(two_daemons: tuple[Daemon, Daemon]) -> None:
    """A cluster on etcd: the worker is promoted (it opens etcd and campaigns), the first manager
    stops, the promoted one leads and runs a new service."""
    if not etcd_available():
        pytest.skip("etcd is not installed (Debian package etcd-server; make deps)")
    one, two = two_daemons
    mgr: Client = connect(one.host)
    wrk: Client = connect(two.host)
    p1, p2 = free_port(), free_port()
    with running_etcd() as etcd:
        url = f"etcd://{etcd.endpoint.removeprefix('http://')}?max-txn-ops={MAX_TXN_OPS}"
        out = mgr.cluster_init(listen_addr=f"127.0.0.1:{p1}", store=url)
        assert mgr.cluster_inspect()["Store"] == url
        wrk.cluster_join([f"127.0.0.1:{p1}"], out["JoinTokens"]["Worker"], listen_addr=f"127.0.0.1:{p2}")
        until(lambda: mgr.node_inspect("skwrk2")["Status"] == "ready", "the worker is ready")

        mgr.node_update("skwrk2", role="manager")
        until(lambda: wrk.cluster_inspect()["Role"] == "manager", "the promoted node runs as a manager")
        assert sorted(wrk.cluster_inspect()["Managers"]) == sorted([f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"])
        assert wrk.cluster_join_token("worker") == out["JoinTokens"]["Worker"]
        assert mgr.node_inspect("skwrk2")["ManagerStatus"]["Reachability"] == "reachable"
        until(lambda: mgr.cluster_inspect()["Leader"] == out["NodeID"], "the first manager leads")

        # demoted: back to a worker (the store through the managers again); then promoted again
        mgr.node_update("skwrk2", role="worker")
        until(lambda: wrk.cluster_inspect()["Role"] == "worker", "the demoted node runs as a worker")
        with pytest.raises(Unavailable, match="Worker nodes"):
            wrk.nodes()
        until(lambda: mgr.node_inspect("skwrk2")["Status"] == "ready", "the demoted node is ready")
        mgr.node_update("skwrk2", role="manager")
        until(lambda: wrk.cluster_inspect()["Role"] == "manager", "promoted again")

        one.stop()  # SIGTERM: the leader resigns on its way out
        promoted = wrk.cluster_inspect()["NodeID"]
        until(lambda: wrk.cluster_inspect()["Leader"] == promoted, "the promoted manager leads", 30)

        name = "skha" + out["ClusterID"][:6]
        spec = ServiceSpec(
            name=name,
            template=TaskTemplate(image="busybox:latest", command=("sleep", "300"), stop_grace_period=1),
            replicas=1,
        )
        spec_plain = to_plain(spec)
        spec_plain["template"]["placement"]["constraints"] = ["node.hostname==skwrk2"]
        wrk.service_create(spec_plain)
        until(lambda: wrk.service_inspect(name)["Running"] == 1, "the new service runs")
        assert [c["State"] for c in containers_of(two, name)] == ["running"]
        wrk.service_rm(name)
        until(lambda: not containers_of(two, name), "its container is removed")
        wrk.cluster_leave(force=True)


def free_port_block(size: int = 4) -> int:
    """A port p with p .. p+size-1 free on loopback (cluster port, then etcd's client and peer)."""
    for _ in range(50):
        base = free_port()
        if base + size > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for p in range(base, base + size):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return base
    raise RuntimeError("no block of free ports")


def test_etcd_local_two_managers(two_daemons: tuple[Daemon, Daemon]) -> None:
    """``init --etcd-local`` starts an etcd member; a node joining with the manager token adds
    its own member and becomes a second manager; a service runs on both; leave stops the member."""
    if not etcd_available():
        pytest.skip("etcd is not installed (Debian package etcd-server; make deps)")
    one, two = two_daemons
    mgr: Client = connect(one.host)
    wrk: Client = connect(two.host)
    p1, p2 = free_port_block(), free_port_block()
    out = mgr.cluster_init(listen_addr=f"127.0.0.1:{p1}", etcd_local=True)
    assert mgr.cluster_inspect()["Store"].startswith(f"etcd://127.0.0.1:{p1 + 2}")
    joined = wrk.cluster_join(
        [f"127.0.0.1:{p1}"], out["JoinTokens"]["Manager"], listen_addr=f"127.0.0.1:{p2}"
    )
    assert joined["Role"] == "manager"

    def two_managers_ready() -> bool:
        nodes = wrk.nodes()
        return sorted((n["role"], n["Status"]) for n in nodes) == [("manager", "ready")] * 2

    until(two_managers_ready, "two managers ready, seen from the second")
    members = [one.root / "cluster" / "etcd", two.root / "cluster" / "etcd"]
    assert all(m.is_dir() for m in members)

    name = "skel" + out["ClusterID"][:6]
    spec = ServiceSpec(
        name=name,
        template=TaskTemplate(image="busybox:latest", command=("sleep", "300"), stop_grace_period=1),
        replicas=2,
    )
    mgr.service_create(to_plain(spec))
    until(lambda: bool(containers_of(one, name)) and bool(containers_of(two, name)), "a replica on each node")
    mgr.service_rm(name)
    until(lambda: not containers_of(one, name) and not containers_of(two, name), "replicas removed")
    wrk.cluster_leave(force=True)  # its etcd member leaves the etcd cluster first
    assert not members[1].exists()
    until(lambda: mgr.node_inspect("skwrk2")["Status"] == "down", "the store still answers the first manager")
    mgr.cluster_leave(force=True)
    assert not members[0].exists()
