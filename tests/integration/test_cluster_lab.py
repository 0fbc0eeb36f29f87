"""skiff lab: real hosts (network namespaces, a skiffd each) on this machine, driven by the CLI.

The first test builds a two-host lab without a cluster and checks the lab itself: hostnames,
the lab network, partition and heal, a power cut that leaves no process, a reboot, and a
``down`` that leaves nothing (and switches the context back). The cluster tests share one
three-node lab: nodes ready, a replicated service spread 2/2/2, constraints, drain, a rolling
update that fails and is rolled back, a global service on a node that joins later, a partitioned
node (replicas move; healed, its stale ones go), and a killed node whose replicas run again
elsewhere (then its reboot). Two more labs run three managers on the lab's etcd: its wiring, and
the leader's power cut (another manager leads within 20 s). Every lab is removed in ``finally``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skiff.client import Client, connect
from skiff.cluster import lab
from skiff.cluster.model import (
    FailureAction,
    Placement,
    ServiceMode,
    ServiceSpec,
    TaskTemplate,
    UpdatePolicy,
)
from skiff.types.codec import to_plain
from tests.daemon_fixture import Daemon

BIN = Path(sys.executable).parent
CONVERGE = 90.0


def lab_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SKIFF_HOST", "DOCKER_HOST", "SKIFF_CONTEXT")}
    env["SKIFF_CONFIG"] = str(config)
    return env


def skiff(config: Path, *args: str, check: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(BIN / "skiff"), *args], env=lab_env(config), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"skiff {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout}"
        )
    return proc.stdout + proc.stderr


def in_node(node: lab.LabNode, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{node.netns}", *argv], capture_output=True, text=True, timeout=30
    )


def reaches(src: lab.LabNode, dst: lab.LabNode) -> bool:
    return in_node(src, "busybox", "ping", "-c", "1", "-W", "1", dst.address).returncode == 0


def current_context(config: Path) -> str:
    path = config / "contexts.json"
    return str(json.loads(path.read_text())["current"]) if path.exists() else "default"


def wait_for(check: Callable[[], Any], what: str, timeout: float = CONVERGE) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a manager busy or restarting: ask again
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def test_lab_hosts_partition_kill_restart_down(tmp_path: Path, daemon: Daemon) -> None:
    name = "lt" + secrets.token_hex(2)
    try:
        # -H: the daemon the images come from (the test daemon has busybox)
        out = skiff(tmp_path, "-H", daemon.host, "lab", "up", "--nodes", "2", "--name", name, "--no-cluster")
        assert "n1" in out and "n2" in out
        assert "n2: loading busybox" in out  # saved from the daemon, not bootstrapped
        assert current_context(tmp_path) == f"lab-{name}"
        state = lab.load(name)
        n1, n2 = state.nodes
        source_image = daemon.client().inspect_image("busybox:latest")["Id"]
        for node in state.nodes:
            info = connect(node.host).info()
            assert info["Name"] == node.name  # its own UTS namespace
            assert connect(node.host).inspect_image("busybox:latest")["Id"] == source_image  # copied
            assert node.pid and lab.node_status(node) == "running"
        assert reaches(n1, n2) and reaches(n2, n1)
        # The lab network is the only one: no default route out of a node.
        assert "default" not in in_node(n1, "ip", "route").stdout

        skiff(tmp_path, "lab", "partition", "n2")
        assert not reaches(n1, n2)
        assert connect(n2.host).ping()  # still running, only cut off
        skiff(tmp_path, "lab", "partition", "n2", "--heal")
        assert wait_for(lambda: reaches(n1, n2), "n2 reachable again", 10)

        skiff(tmp_path, "lab", "kill", "n2")
        assert not lab.node_pids(n2)
        assert lab.load(name).node("n2").state == "killed"
        assert not reaches(n1, n2)
        skiff(tmp_path, "lab", "restart", "n2")
        back = lab.load(name).node("n2")
        assert back.pid != n2.pid
        assert connect(back.host).info()["Name"] == "n2"
        assert wait_for(lambda: reaches(n1, back), "n2 reachable after restart", 10)
        assert "killed" not in skiff(tmp_path, "lab", "ls")
    finally:
        skiff(tmp_path, "lab", "down", name, check=False)
    assert current_context(tmp_path) == "default"
    assert not list(Path("/run/netns").glob(f"skiff-lab-{name}-*"))
    assert not Path(f"/run/skiff-lab/{name}").exists() and not Path(f"/var/lib/skiff-lab/{name}").exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"skflab-{name}" not in links and f"sklv{name}n" not in links
    assert not list(Path("/sys/fs/cgroup").glob(f"**/skiff-lab-{name}-n*"))
    assert (
        f"skiff-lab-{name}"
        not in subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    )
    skiff(tmp_path, "lab", "down", name)  # again: nothing to do, no error
    # A root left from before a reboot is not reused (its nodes would resume an old cluster).
    Path(f"/var/lib/skiff-lab/{name}/n1").mkdir(parents=True)
    try:
        assert "exists already" in skiff(tmp_path, "lab", "up", "--nodes", "1", "--name", name, check=False)
    finally:
        skiff(tmp_path, "lab", "down", name)
    assert not Path(f"/var/lib/skiff-lab/{name}").exists()


# --- a three-node cluster ---------------------------------------------------------------------


needs_cluster = pytest.mark.skipif(
    not hasattr(Client, "cluster_init"), reason="the cluster API of skiffd has not landed yet"
)


class ClusterLab:
    def __init__(self, config: Path, name: str) -> None:
        self.config = config
        self.name = name

    @property
    def state(self) -> lab.Lab:
        return lab.load(self.name)

    @property
    def manager(self) -> Any:
        return connect(self.state.nodes[0].host)

    def skiff(self, *args: str, check: bool = True) -> str:
        return skiff(self.config, *args, check=check)

    def running(self, service: str) -> Counter[str]:
        """Running tasks (meant to run) of ``service`` per node hostname."""
        counts: Counter[str] = Counter()
        for task in self.manager.tasks(service=service):
            if task["state"] == "running" and task["desired_state"] == "running":
                counts[str(task["NodeHostname"])] += 1
        return counts

    def create(self, spec: ServiceSpec) -> str:
        return str(self.manager.service_create(to_plain(spec))["ID"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterLab]:
    config = tmp_path_factory.mktemp("lab-config")
    name = "lc" + secrets.token_hex(2)
    try:
        skiff(config, "lab", "up", "--nodes", "3", "--name", name)
        yield ClusterLab(config, name)
    finally:
        keep = os.environ.get("SKIFF_LAB_KEEP_LOGS")  # a directory: the nodes' logs are copied there
        if keep:
            for log in Path(f"/run/skiff-lab/{name}").glob("*.log"):
                shutil.copy(log, Path(keep) / f"{name}-{log.name}")
        skiff(config, "lab", "down", name, check=False)


def sleeper(name: str, replicas: int = 1, **kwargs: Any) -> ServiceSpec:
    template = TaskTemplate(
        image="busybox",
        command=("sleep", "1d"),
        stop_grace_period=1.0,
        placement=kwargs.pop("placement", Placement()),
    )
    return ServiceSpec(name=name, template=template, replicas=replicas, **kwargs)


@needs_cluster
def test_nodes_ready(cluster: ClusterLab) -> None:
    nodes = cluster.manager.nodes()
    assert sorted(n["hostname"] for n in nodes) == ["n1", "n2", "n3"]
    assert all(str(n["Status"]).lower() == "ready" for n in nodes)
    out = cluster.skiff("node", "ls")
    assert all(f"n{k}" in out for k in (1, 2, 3))


@needs_cluster
def test_replicas_spread_two_per_node(cluster: ClusterLab) -> None:
    cluster.create(sleeper("spread", 6))
    try:
        wait_for(lambda: cluster.running("spread") == Counter(n1=2, n2=2, n3=2), "6 replicas spread 2/2/2")
    finally:
        cluster.manager.service_rm("spread")


@needs_cluster
def test_constraints_hold(cluster: ClusterLab) -> None:
    cluster.manager.node_update("n2", labels_add={"zone": "b"})
    cluster.create(sleeper("onb", 3, placement=Placement(constraints=("node.labels.zone==b",))))
    cluster.create(sleeper("onn3", 2, placement=Placement(constraints=("node.hostname==n3",))))
    try:
        wait_for(lambda: cluster.running("onb") == Counter(n2=3), "3 replicas on the zone=b node")
        wait_for(lambda: cluster.running("onn3") == Counter(n3=2), "2 replicas on n3")
    finally:
        cluster.manager.service_rm("onb")
        cluster.manager.service_rm("onn3")
        cluster.manager.node_update("n2", labels_rm=["zone"])


@needs_cluster
def test_drain_moves_tasks(cluster: ClusterLab) -> None:
    cluster.create(sleeper("drainme", 3))
    try:
        wait_for(lambda: cluster.running("drainme") == Counter(n1=1, n2=1, n3=1), "one replica per node")
        cluster.manager.node_update("n2", availability="drain")
        wait_for(
            lambda: sum(cluster.running("drainme").values()) == 3 and "n2" not in cluster.running("drainme"),
            "n2 drained, 3 replicas on n1 and n3",
        )
    finally:
        cluster.manager.node_update("n2", availability="active")
        cluster.manager.service_rm("drainme")


@needs_cluster
def test_failed_update_rolls_back(cluster: ClusterLab) -> None:
    spec = sleeper(
        "roll", 2, update=UpdatePolicy(parallelism=1, failure_action=FailureAction.ROLLBACK, monitor=3.0)
    )
    service_id = cluster.create(spec)
    try:
        wait_for(lambda: sum(cluster.running("roll").values()) == 2, "2 replicas running")
        bad = to_plain(spec)
        bad["template"]["command"] = ["sh", "-c", "exit 3"]
        cluster.manager.service_update(service_id, bad)

        def rolled_back() -> bool:
            status = cluster.manager.service_inspect(service_id).get("update_status") or {}
            return status.get("state") == "rollback_completed"

        wait_for(rolled_back, "the update rolled back", 120)
        wait_for(lambda: sum(cluster.running("roll").values()) == 2, "2 replicas running after rollback")
        commands = {
            tuple(t["template"]["command"])
            for t in cluster.manager.tasks(service="roll")
            if t["state"] == "running" and t["desired_state"] == "running"
        }
        assert commands == {("sleep", "1d")}
    finally:
        cluster.manager.service_rm(service_id)


@needs_cluster
def test_global_service_on_a_node_that_joins_later(cluster: ClusterLab) -> None:
    spec = ServiceSpec(
        name="everywhere",
        template=TaskTemplate(image="busybox", command=("sleep", "1d"), stop_grace_period=1.0),
        mode=ServiceMode.GLOBAL,
    )
    cluster.create(spec)
    try:
        wait_for(lambda: cluster.running("everywhere") == Counter(n1=1, n2=1, n3=1), "one task per node")
        cluster.skiff("lab", "add-node", "--name", cluster.name)
        wait_for(
            lambda: cluster.running("everywhere") == Counter(n1=1, n2=1, n3=1, n4=1), "a task on the new n4"
        )
    finally:
        cluster.manager.service_rm("everywhere")


def node_status(cluster: ClusterLab, hostname: str) -> str:
    return next(str(n["Status"]).lower() for n in cluster.manager.nodes() if n["hostname"] == hostname)


def service_containers(node: lab.LabNode, service: str) -> list[str]:
    """Running containers of ``service`` on ``node``, asked from its own skiffd."""
    return [
        c["Id"]
        for c in connect(node.host).containers()
        if c["Labels"].get("com.skiff.cluster.service.name") == service
    ]


@needs_cluster
def test_partitioned_node_replicas_move_and_heal_removes_its_stale_ones(cluster: ClusterLab) -> None:
    cluster.create(sleeper("split", 6))
    n3 = cluster.state.node("n3")
    try:
        wait_for(lambda: cluster.running("split")["n3"] > 0, "replicas on n3")
        cluster.skiff("lab", "partition", "n3")
        wait_for(lambda: node_status(cluster, "n3") == "down", "n3 down")
        wait_for(
            lambda: sum(cluster.running("split").values()) == 6 and "n3" not in cluster.running("split"),
            "6 replicas on n1 and n2",
        )
        assert service_containers(n3, "split")  # cut off, not dead: its containers still run
        cluster.skiff("lab", "partition", "n3", "--heal")
        wait_for(lambda: node_status(cluster, "n3") == "ready", "n3 ready again")
        wait_for(lambda: not service_containers(n3, "split"), "n3's stale replicas removed")
        assert sum(cluster.running("split").values()) == 6
    finally:
        cluster.skiff("lab", "partition", "n3", "--heal", check=False)
        cluster.manager.service_rm("split")


@needs_cluster
def test_killed_node_replicas_run_elsewhere(cluster: ClusterLab) -> None:
    cluster.create(sleeper("survive", 6))
    try:
        wait_for(lambda: sum(cluster.running("survive").values()) == 6, "6 replicas running")
        before = cluster.running("survive")
        assert before["n3"] > 0
        cluster.skiff("lab", "kill", "n3")

        def n3_down() -> bool:
            return any(
                n["hostname"] == "n3" and str(n["Status"]).lower() == "down" for n in cluster.manager.nodes()
            )

        wait_for(n3_down, "n3 down")
        wait_for(
            lambda: sum(cluster.running("survive").values()) == 6 and "n3" not in cluster.running("survive"),
            "n3's replicas running elsewhere",
        )
        # A reboot: n3 comes back ready, and its stale containers are gone.
        cluster.skiff("lab", "restart", "n3")
        wait_for(
            lambda: any(
                n["hostname"] == "n3" and str(n["Status"]).lower() == "ready" for n in cluster.manager.nodes()
            ),
            "n3 ready again",
        )
        n3 = cluster.state.node("n3")
        wait_for(
            lambda: (
                not [
                    c
                    for c in connect(n3.host).containers(all=True)
                    if c["Labels"].get("com.skiff.cluster.service.name") == "survive"
                    and c["State"] == "running"
                    and not any(
                        t["container_id"] == c["Id"] and t["desired_state"] == "running"
                        for t in cluster.manager.tasks(service="survive")
                    )
                ]
            ),
            "no stale survive container running on n3",
        )
    finally:
        cluster.manager.service_rm("survive")


@needs_cluster
@pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (Debian etcd-server)")
def test_three_managers_on_the_labs_etcd(tmp_path: Path) -> None:
    name = "le" + secrets.token_hex(2)
    try:
        skiff(tmp_path, "lab", "up", "--nodes", "3", "--managers", "3", "--etcd", "--name", name)
        state = lab.load(name)
        x = state.index
        assert state.store_url == f"etcd://10.220.{x}.2:2379,10.220.{x}.3:2379,10.220.{x}.4:2379"
        manager: Any = connect(state.nodes[0].host)
        assert manager.cluster_inspect()["Store"] == state.store_url
        nodes = manager.nodes()
        assert sorted(n["hostname"] for n in nodes) == ["n1", "n2", "n3"]
        assert {n["role"] for n in nodes} == {"manager"}
        assert all(str(n["Status"]).lower() == "ready" for n in nodes)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for node in state.nodes:
            # One member per manager, on its lab address, all in one etcd cluster of three.
            req = urllib.request.Request(f"http://{node.address}:2379/v3/cluster/member/list", data=b"{}")
            with opener.open(req, timeout=5) as resp:
                members = json.loads(resp.read())["members"]
            assert sorted(m["name"] for m in members) == ["n1", "n2", "n3"]
            assert node.etcd_pid and node.etcd_pid in lab.node_pids(node)
    finally:
        skiff(tmp_path, "lab", "down", name, check=False)
    assert not list(Path("/run/netns").glob(f"skiff-lab-{name}-*"))


FAILOVER_BOUND = 20.0  # seconds from the leader's power cut to a new leader (leader TTL 5 s)


@needs_cluster
@pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (Debian etcd-server)")
def test_leader_power_cut_another_manager_leads(tmp_path: Path) -> None:
    name = "lf" + secrets.token_hex(2)
    try:
        skiff(tmp_path, "lab", "up", "--nodes", "3", "--managers", "3", "--etcd", "--name", name)
        state = lab.load(name)
        n1, n2, _ = state.nodes
        first: Any = connect(n1.host)
        assert first.cluster_inspect()["Leader"] == n1.node_id
        first.service_create(to_plain(sleeper("ha", 3)))
        wait_for(lambda: sum(ClusterLab(tmp_path, name).running("ha").values()) == 3, "3 replicas running")
        skiff(tmp_path, "lab", "kill", "n1")
        other: Any = connect(n2.host)
        wait_for(
            lambda: other.cluster_inspect()["Leader"] not in (None, n1.node_id),
            "a new leader",
            FAILOVER_BOUND,
        )

        def replicas_off_n1() -> bool:
            running: Counter[str] = Counter()
            for task in other.tasks(service="ha"):
                if task["state"] == "running" and task["desired_state"] == "running":
                    running[str(task["NodeHostname"])] += 1
            return sum(running.values()) == 3 and "n1" not in running

        wait_for(replicas_off_n1, "n1's replicas running on n2 and n3")
    finally:
        skiff(tmp_path, "lab", "down", name, check=False)
