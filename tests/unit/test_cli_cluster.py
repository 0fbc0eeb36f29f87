"""The cluster CLI without a daemon: flag parsers, spec building, compose -> specs, the node /
service / task formatters, and the commands against a fake cluster client."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from skiff.cli.cluster import cluster, node
from skiff.cli.cluster_rows import NodeRow, ServiceRow, TaskRow, filter_nodes, filter_tasks, order_tasks
from skiff.cli.context import CliContext, ExitCode
from skiff.cli.service import Convergence, converge, progress_bar, service
from skiff.cli.service_spec import (
    check_constraint,
    check_preference,
    duration_seconds,
    go_duration,
    merge_env,
    nano_cpus,
    parse_publish,
    parse_scale,
    size_bytes,
    spec_from_flags,
    update_spec,
)
from skiff.cli.stack import service_spec, stack, unsupported_keys
from skiff.cluster.model import (
    FailureAction,
    PortConfig,
    RestartCondition,
    ServiceMode,
    ServiceSpec,
    UpdateOrder,
)
from skiff.compose.loader import load_project
from skiff.errors import InvalidArgument, NotFound
from skiff.types.codec import decode, to_plain
from skiff.types.container import HealthConfig

NOW = 1_800_000_000.0


# -- parsers ---------------------------------------------------------------------------------------------


def test_durations_sizes_and_cpus() -> None:
    assert duration_seconds("10s", "--update-delay") == 10.0
    assert duration_seconds("1m30s", "--x") == 90.0
    assert duration_seconds("500ms", "--x") == 0.5
    assert duration_seconds("0", "--x") == 0.0
    with pytest.raises(InvalidArgument, match="--restart-delay"):
        duration_seconds("10", "--restart-delay")
    assert size_bytes("128m", "--reserve-memory") == 128 << 20
    assert size_bytes("1g", "--x") == 1 << 30
    with pytest.raises(InvalidArgument, match="--limit-memory"):
        size_bytes("lots", "--limit-memory")
    assert nano_cpus("0.5", "--reserve-cpu") == 500_000_000
    assert nano_cpus("2", "--x") == 2_000_000_000
    for bad in ("-1", "x", "nan"):
        with pytest.raises(InvalidArgument, match="--limit-cpu"):
            nano_cpus(bad, "--limit-cpu")


def test_go_duration_prints_like_go() -> None:
    assert go_duration(0) == "0s"
    assert go_duration(5) == "5s"
    assert go_duration(90) == "1m30s"
    assert go_duration(0.5) == "500ms"
    assert go_duration(3600) == "1h0m0s"
    assert go_duration(1.5) == "1.5s"


def test_constraints_and_preferences_are_checked() -> None:
    assert check_constraint("node.labels.ssd == true") == "node.labels.ssd==true"
    assert check_constraint("node.role!=manager") == "node.role!=manager"
    with pytest.raises(InvalidArgument, match="expected <key>==<value>"):
        check_constraint("node.labels.ssd=true")
    with pytest.raises(InvalidArgument, match="unknown key"):
        check_constraint("engine.os==linux")
    assert check_preference("spread=node.labels.zone") == "spread=node.labels.zone"
    with pytest.raises(InvalidArgument, match=r"spread=node\.labels"):
        check_preference("binpack=node.labels.zone")


def test_publish_long_short_and_errors() -> None:
    assert parse_publish("published=8080,target=80,mode=host") == PortConfig(target=80, published=8080)
    assert parse_publish("target=53,protocol=udp") == PortConfig(target=53, published=0, protocol="udp")
    assert parse_publish("8080:80") == PortConfig(target=80, published=8080, mode="host")
    assert parse_publish("8053:53/udp") == PortConfig(target=53, published=8053, protocol="udp")
    assert parse_publish("80") == PortConfig(target=80, published=0)
    with pytest.raises(InvalidArgument, match="only mode=host"):
        parse_publish("published=80,target=80,mode=ingress")
    with pytest.raises(InvalidArgument, match="target= is required"):
        parse_publish("published=80")
    with pytest.raises(InvalidArgument, match="host IP"):
        parse_publish("127.0.0.1:80:80")
    with pytest.raises(InvalidArgument, match="invalid target port"):
        parse_publish("80:http")
    with pytest.raises(InvalidArgument, match="protocol"):
        parse_publish("80:80/icmp")


def test_merge_env_and_scale() -> None:
    assert merge_env(("A=1", "B=2", "C=3"), ["B=20", "D=4"], ("C",)) == ("A=1", "B=20", "D=4")
    assert parse_scale("web=5") == ("web", 5)
    for bad in ("web", "web=x", "=3", "web=-1"):
        with pytest.raises(InvalidArgument, match="SERVICE=REPLICAS"):
            parse_scale(bad)


def _create_params(**given: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"mode": "replicated"}
    params.update(given)
    return params


def test_spec_from_flags_builds_every_part(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n")
    spec = spec_from_flags(
        _create_params(
            name="web",
            replicas=3,
            env=("A=1",),
            env_file=(str(env_file),),
            label=("team=x",),
            container_label=("c=1",),
            reserve_memory="64m",
            reserve_cpu="0.25",
            limit_memory="128m",
            limit_cpu="1",
            constraint=("node.labels.ssd==true",),
            placement_pref=("spread=node.labels.zone",),
            publish=("8080:80",),
            health_cmd="true",
            health_interval="5s",
            health_retries=2,
            restart_condition="on-failure",
            restart_max_attempts=3,
            restart_delay="1s",
            restart_window="1m",
            update_parallelism=2,
            update_delay="2s",
            update_failure_action="rollback",
            update_order="start-first",
            update_monitor="3s",
            rollback_parallelism=0,
            rollback_order="start-first",
        ),
        "busybox",
        ("sleep", "100"),
    )
    assert spec.name == "web" and spec.replicas == 3 and spec.mode is ServiceMode.REPLICATED
    tpl = spec.template
    assert tpl.image == "busybox" and tpl.command == ("sleep", "100")
    assert tpl.env == ("FROM_FILE=1", "A=1")
    assert spec.labels == {"team": "x"} and tpl.labels == {"c": "1"}
    assert tpl.resources.reservations.memory_bytes == 64 << 20
    assert tpl.resources.reservations.nano_cpus == 250_000_000
    assert tpl.resources.limits.memory_bytes == 128 << 20
    assert tpl.resources.limits.nano_cpus == 10**9
    assert tpl.placement.constraints == ("node.labels.ssd==true",)
    assert tpl.placement.preferences == ("spread=node.labels.zone",)
    assert tpl.ports == (PortConfig(target=80, published=8080),)
    assert tpl.healthcheck == HealthConfig(test=("CMD-SHELL", "true"), interval=5 * 10**9, retries=2)
    assert spec.restart.condition is RestartCondition.ON_FAILURE
    assert (spec.restart.max_attempts, spec.restart.delay, spec.restart.window) == (3, 1.0, 60.0)
    assert spec.update.parallelism == 2 and spec.update.delay == 2.0 and spec.update.monitor == 3.0
    assert spec.update.failure_action is FailureAction.ROLLBACK
    assert spec.update.order is UpdateOrder.START_FIRST
    assert spec.rollback.parallelism == 0 and spec.rollback.order is UpdateOrder.START_FIRST
    # what goes on the wire decodes back to the same spec
    assert decode(ServiceSpec, json.loads(json.dumps(to_plain(spec)))) == spec


def test_spec_from_flags_refuses_bad_combinations() -> None:
    with pytest.raises(InvalidArgument, match="replicated mode"):
        spec_from_flags(_create_params(mode="global", replicas=2), "busybox", ())
    with pytest.raises(InvalidArgument, match="--mode"):
        spec_from_flags(_create_params(mode="both"), "busybox", ())
    with pytest.raises(InvalidArgument, match="--no-healthcheck conflicts"):
        spec_from_flags(_create_params(no_healthcheck=True, health_cmd="true"), "busybox", ())
    with pytest.raises(InvalidArgument, match="--rollback-failure-action"):
        spec_from_flags(_create_params(rollback_failure_action="rollback"), "busybox", ())
    with pytest.raises(InvalidArgument, match="service name"):
        spec_from_flags(_create_params(name="bad name"), "busybox", ())
    spec = spec_from_flags(_create_params(mode="global", no_healthcheck=True), "busybox", ())
    assert spec.mode is ServiceMode.GLOBAL and spec.template.healthcheck == HealthConfig(test=("NONE",))


def test_update_spec_changes_only_what_is_given() -> None:
    spec = spec_from_flags(
        _create_params(
            name="web",
            env=("A=1", "B=2"),
            label=("x=1",),
            constraint=("node.role==worker",),
            publish=("8080:80", "9090:90"),
            health_cmd="true",
        ),
        "busybox",
        ("sleep", "1"),
    )
    same = update_spec(spec, {})
    assert same == spec
    new = update_spec(
        spec,
        {
            "image": "busybox:musl",
            "args": "sleep 2",
            "env_add": ("B=3", "C=4"),
            "env_rm": ("A",),
            "label_add": ("y=2",),
            "label_rm": ("x",),
            "constraint_add": ("node.labels.ssd==true",),
            "constraint_rm": ("node.role == worker",),
            "publish_add": ("7070:70",),
            "publish_rm": ("90",),
            "replicas": 4,
            "health_interval": "2s",
            "update_parallelism": 3,
        },
    )
    assert new.template.image == "busybox:musl" and new.template.command == ("sleep", "2")
    assert new.template.env == ("B=3", "C=4")
    assert new.labels == {"y": "2"}
    assert new.template.placement.constraints == ("node.labels.ssd==true",)
    assert [p.target for p in new.template.ports] == [80, 70]
    assert new.replicas == 4 and new.update.parallelism == 3
    assert new.template.healthcheck == HealthConfig(test=("CMD-SHELL", "true"), interval=2 * 10**9)
    assert new.restart == spec.restart and new.rollback == spec.rollback


# -- stack ----------------------------------------------------------------------------------------------

COMPOSE = """
services:
  web:
    image: busybox
    command: sleep 1000
    build: .
    depends_on: [db]
    environment:
      A: "1"
      UNSET:
    labels: {tier: front}
    ports: ["8080:80"]
    healthcheck:
      test: "true"
      interval: 10s
    deploy:
      replicas: 2
      labels: {svc: web}
      resources:
        limits: {cpus: "0.5", memory: 64M}
        reservations: {memory: 32M, cpus: "0.25"}
      placement:
        constraints: [node.role==manager]
        preferences: [{spread: node.labels.zone}]
      restart_policy: {condition: on-failure, delay: 3s, max_attempts: 2, window: 1m}
      update_config: {parallelism: 2, delay: 1s, order: start-first, failure_action: rollback, monitor: 2s}
      rollback_config: {parallelism: 0}
  db:
    image: busybox
    deploy:
      mode: global
"""


def _project(tmp_path: Path, text: str = COMPOSE) -> Any:
    path = tmp_path / "compose.yml"
    path.write_text(text)
    return load_project([path], None, "st", {}, ())


def test_stack_service_spec_from_compose(tmp_path: Path) -> None:
    project = _project(tmp_path)
    web = service_spec("st", "web", project.services["web"])
    assert web.name == "st_web" and web.replicas == 2 and web.mode is ServiceMode.REPLICATED
    assert web.labels == {"svc": "web", "com.docker.stack.namespace": "st"}
    tpl = web.template
    assert tpl.labels == {"tier": "front", "com.docker.stack.namespace": "st"}
    assert tpl.command == ("sleep", "1000") and tpl.env == ("A=1",)
    assert tpl.ports == (PortConfig(target=80, published=8080, mode="host"),)
    assert tpl.resources.limits.nano_cpus == 500_000_000 and tpl.resources.limits.memory_bytes == 64 << 20
    assert tpl.resources.reservations.memory_bytes == 32 << 20
    assert tpl.placement.constraints == ("node.role==manager",)
    assert tpl.placement.preferences == ("spread=node.labels.zone",)
    assert tpl.healthcheck == HealthConfig(test=("CMD-SHELL", "true"), interval=10 * 10**9)
    assert web.restart.condition is RestartCondition.ON_FAILURE and web.restart.window == 60.0
    assert web.update.order is UpdateOrder.START_FIRST and web.update.monitor == 2.0
    assert web.update.failure_action is FailureAction.ROLLBACK
    assert web.rollback.parallelism == 0
    db = service_spec("st", "db", project.services["db"])
    assert db.mode is ServiceMode.GLOBAL
    assert unsupported_keys(project.services["web"]) == ["build", "depends_on"]
    assert unsupported_keys(project.services["db"]) == []


def test_stack_service_without_image_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path, "services:\n  app:\n    build: .\n")
    with pytest.raises(InvalidArgument, match="has no image"):
        service_spec("st", "app", project.services["app"])


# -- rows -----------------------------------------------------------------------------------------------


def _node(ident: str, hostname: str, **kw: Any) -> dict[str, Any]:
    raw = {
        "id": ident,
        "hostname": hostname,
        "role": "worker",
        "availability": "active",
        "status": "ready",
        "labels": {},
        "resources": {"nano_cpus": 2 * 10**9, "memory_bytes": 2 << 30},
        "Status": "ready",
        "Leader": False,
    }
    raw.update(kw)
    return raw


def test_node_rows() -> None:
    leader = NodeRow(_node("n1" * 12 + "a", "host1", role="manager", Leader=True), self_id="n1" * 12 + "a")
    assert leader.ID.endswith(" *") and leader.ManagerStatus == "Leader"
    assert (leader.Status, leader.Availability, leader.CPU, leader.Memory) == ("Ready", "Active", "2", "2GiB")
    other = NodeRow(_node("n2", "host2", availability="drain", Status="down"))
    assert (other.ID, other.Status, other.Availability, other.ManagerStatus) == ("n2", "Down", "Drain", "")
    assert NodeRow(_node("n3", "h", role="manager")).ManagerStatus == "Reachable"
    assert NodeRow(_node("n3", "h", ManagerStatus="Unreachable")).ManagerStatus == "Unreachable"
    nodes = [_node("a1", "alpha", labels={"zone": "x"}), _node("b1", "beta", role="manager")]
    assert [n["id"] for n in filter_nodes(nodes, {"role": ["manager"]})] == ["b1"]
    assert [n["id"] for n in filter_nodes(nodes, {"label": ["zone=x"]})] == ["a1"]
    assert [n["id"] for n in filter_nodes(nodes, {"name": ["alp", "bet"]})] == ["a1", "b1"]
    with pytest.raises(InvalidArgument):
        filter_nodes(nodes, {"color": ["red"]})


def _service(ident: str, name: str, **spec: Any) -> dict[str, Any]:
    s = spec_from_flags(_create_params(name=name, **spec), "busybox", ("sleep", "1"))
    return {"id": ident, "spec": to_plain(s), "version": 1, "Running": 0, "Desired": s.replicas}


def test_service_row() -> None:
    raw = _service("s" * 25, "web", replicas=3, publish=("8080:80", "53/udp"))
    raw["Running"] = 2
    row = ServiceRow(raw)
    assert (row.ID, row.Name, row.Mode, row.Replicas, row.Image) == (
        "s" * 12,
        "web",
        "replicated",
        "2/3",
        "busybox",
    )
    assert row.Ports == "*:8080->80/tcp, *:0->53/udp"


def _task(ident: str, slot: int, state: str, created: float, **kw: Any) -> dict[str, Any]:
    raw = {
        "id": ident,
        "service_id": "svc",
        "service_name": "web",
        "ServiceName": "web",
        "slot": slot,
        "template": {"image": "busybox", "ports": []},
        "spec_version": 1,
        "node_id": "node1",
        "NodeHostname": "host1",
        "desired_state": "running",
        "state": state,
        "message": "",
        "error": "",
        "created_at": created,
        "state_since": created,
    }
    raw.update(kw)
    return raw


def test_task_rows_group_history_under_the_newest_task() -> None:
    tasks = [
        _task("t1old" + "0" * 20, 1, "failed", NOW - 60, desired_state="shutdown", error="task: exit 1"),
        _task("t2" + "0" * 23, 2, "running", NOW - 120),
        _task("t1new" + "0" * 20, 1, "running", NOW - 30),
        _task(
            "t3" + "0" * 23,
            3,
            "pending",
            NOW - 5,
            node_id="",
            NodeHostname="",
            message="no suitable node (insufficient memory on 2 nodes)",
        ),
    ]
    ordered = order_tasks(tasks)
    rows = [TaskRow(t, history=h, now=NOW) for t, h in ordered]
    assert [r.Name for r in rows] == ["web.1", " \\_ web.1", "web.2", "web.3"]
    assert rows[0].CurrentState == "Running 30 seconds ago" and rows[0].DesiredState == "Running"
    assert rows[1].DesiredState == "Shutdown" and rows[1].Error == '"task: exit 1"'
    assert rows[3].Error == '"no suitable node (insufficient memory on 2 nodes)"'
    assert rows[3].Node == "" and rows[2].Node == "host1"
    assert TaskRow(tasks[1], trunc=False).Name == "web.2." + "t2" + "0" * 23
    running = filter_tasks(tasks, {"desired-state": ["running"]})
    assert len(running) == 3
    assert [t["id"][:2] for t in filter_tasks(tasks, {"desired-state": ["shutdown"]})] == ["t1"]
    with pytest.raises(InvalidArgument):
        filter_tasks(tasks, {"desired-state": ["sleeping"]})


# -- commands against a fake cluster --------------------------------------------------------------------


class FakeCluster:
    """The contract's client methods over in-memory state; tasks run as soon as they exist."""

    def __init__(self) -> None:
        self.services_: dict[str, dict[str, Any]] = {}
        self.nodes_ = [
            _node("node1" + "0" * 20, "host1", role="manager", Leader=True),
            _node("node2" + "0" * 20, "host2"),
        ]
        self.calls: list[tuple[str, Any]] = []
        self.tasks_state = "running"
        self.pending_reason = ""

    # cluster
    def cluster_init(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("init", kw))
        return {
            "ClusterID": "c1",
            "NodeID": self.nodes_[0]["id"],
            "JoinTokens": {"Worker": "WT", "Manager": "MT"},
        }

    def cluster_join(self, remote_addrs: list[str], token: str, **kw: Any) -> dict[str, Any]:
        self.calls.append(("join", (remote_addrs, token, kw)))
        return {"NodeID": "n9", "Role": "worker"}

    def cluster_leave(self, *, force: bool = False) -> None:
        self.calls.append(("leave", force))

    def cluster_inspect(self) -> dict[str, Any]:
        return {
            "ClusterID": "c1",
            "NodeID": self.nodes_[0]["id"],
            "Role": "manager",
            "Managers": ["10.0.0.1:2377"],
        }

    def cluster_join_token(self, role: str, *, rotate: bool = False) -> str:
        self.calls.append(("token", (role, rotate)))
        return "WT2" if rotate else "WT"

    # nodes
    def nodes(self) -> list[dict[str, Any]]:
        return self.nodes_

    def node_inspect(self, ref: str) -> dict[str, Any]:
        for n in self.nodes_:
            if n["id"].startswith(ref) or n["hostname"] == ref:
                return n
        raise NotFound(f"node {ref} not found")

    def node_update(self, ref: str, **kw: Any) -> None:
        n = self.node_inspect(ref)
        self.calls.append(("node_update", (ref, kw)))
        n["labels"].update(kw.get("labels_add") or {})
        if kw.get("role"):
            n["role"] = kw["role"]

    def node_rm(self, ref: str, *, force: bool = False) -> None:
        self.node_inspect(ref)
        self.calls.append(("node_rm", (ref, force)))

    # services
    def services(self) -> list[dict[str, Any]]:
        out = []
        for s in self.services_.values():
            spec = s["spec"]
            desired = spec["replicas"] if spec["mode"] == "replicated" else len(self.nodes_)
            running = desired if self.tasks_state == "running" else 0
            out.append({**s, "Running": running, "Desired": desired})
        return out

    def service_create(self, spec: dict[str, Any]) -> dict[str, Any]:
        decode(ServiceSpec, spec)  # what the manager would do
        sid = f"{spec['name']:x<25}"[:25]
        self.services_[sid] = {"id": sid, "spec": spec, "version": 1}
        self.calls.append(("create", spec))
        return {"ID": sid}

    def service_inspect(self, ref: str) -> dict[str, Any]:
        for s in self.services_.values():
            if s["id"].startswith(ref) or s["spec"]["name"] == ref:
                return s
        raise NotFound(f"service {ref} not found")

    def service_update(
        self, ref: str, spec: dict[str, Any] | None = None, *, rollback: bool = False, force: bool = False
    ) -> None:
        s = self.service_inspect(ref)
        self.calls.append(("update", (ref, spec, rollback, force)))
        if rollback:
            s["spec"], s["previous_spec"] = s["previous_spec"], s["spec"]
        else:
            s["previous_spec"] = s["spec"]
            s["spec"] = spec
        s["version"] += 1

    def service_rm(self, ref: str) -> None:
        s = self.service_inspect(ref)
        del self.services_[s["id"]]
        self.calls.append(("rm", s["spec"]["name"]))

    def tasks(self, *, service: str | None = None, node: str | None = None) -> list[dict[str, Any]]:
        out = []
        for s in self.services_.values():
            if service and s["id"] != service:
                continue
            for slot in range(1, s["spec"]["replicas"] + 1):
                out.append(
                    _task(
                        f"{s['id'][:20]}{slot:05d}",
                        slot,
                        self.tasks_state,
                        NOW,
                        service_id=s["id"],
                        service_name=s["spec"]["name"],
                        ServiceName=s["spec"]["name"],
                        spec_version=s["version"],
                        message=self.pending_reason,
                    )
                )
        return out

    def service_logs(self, ref: str, **kw: Any) -> Iterator[tuple[str, bytes]]:
        self.calls.append(("logs", (ref, kw)))
        yield "web.1.abc@host1", b"hello\n"
        yield "web.2.def@host2", b"world"


def run_cli(group: click.Group, fake: FakeCluster, args: list[str]) -> Result:
    """Run a command group; ``ExitCode`` (mapped by ``skiff.cli.main.run``) becomes the exit code."""
    r = CliRunner().invoke(group, args, obj=CliContext(_client=fake))  # type: ignore[arg-type]
    if r.exception is not None and not isinstance(r.exception, ExitCode | SystemExit):
        raise r.exception
    if isinstance(r.exception, ExitCode):
        r.exit_code = r.exception.code
    return r


def test_cluster_init_prints_the_join_command() -> None:
    fake = FakeCluster()
    r = run_cli(cluster, fake, ["init", "--listen-addr", "127.0.0.1:4000"])
    assert r.exit_code == 0, r.output
    assert "current node (node1" in r.output
    assert "skiff cluster join --token WT 10.0.0.1:2377" in r.output
    assert fake.calls[0] == (
        "init",
        {"advertise_addr": None, "listen_addr": "127.0.0.1:4000", "store": None, "etcd_local": False},
    )
    r = run_cli(cluster, fake, ["init", "--store", "http://x"])
    assert r.exit_code == 2 and "etcd://" in r.output
    r = run_cli(cluster, fake, ["join-token", "worker", "-q", "--rotate"])
    assert r.output == "WT2\n"
    r = run_cli(cluster, fake, ["join", "--token", "T", "10.0.0.1:2377"])
    assert "joined a cluster as a worker" in r.output
    assert fake.calls[-1] == (
        "join",
        (["10.0.0.1:2377"], "T", {"advertise_addr": None, "listen_addr": "0.0.0.0:2377"}),
    )


def test_node_commands() -> None:
    fake = FakeCluster()
    r = run_cli(node, fake, ["ls"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == [
        "ID",
        "HOSTNAME",
        "STATUS",
        "AVAILABILITY",
        "MANAGER",
        "STATUS",
        "ENGINE",
        "VERSION",
        "CPU",
        "MEMORY",
    ]
    assert lines[1].startswith("node1" + "0" * 20 + " *") and "Leader" in lines[1]
    assert run_cli(node, fake, ["ls", "-q", "-f", "role=worker"]).output == "node2" + "0" * 20 + "\n"
    r = run_cli(node, fake, ["update", "--label-add", "zone=a", "--availability", "drain", "host2"])
    assert r.exit_code == 0 and fake.nodes_[1]["labels"] == {"zone": "a"}
    assert fake.calls[-1][1][1]["availability"] == "drain"
    r = run_cli(node, fake, ["inspect", "--pretty", "self"])
    assert "Hostname:               host1" in r.output and " Leader:                Yes" in r.output
    r = run_cli(node, fake, ["promote", "host2"])
    assert r.output == "Node host2 promoted to a manager in the cluster.\n"
    r = run_cli(node, fake, ["inspect", "nosuch"])
    assert r.exit_code == 1 and "node nosuch not found" in r.output


def test_service_create_ls_ps_scale_update_rm() -> None:
    fake = FakeCluster()
    r = run_cli(
        service,
        fake,
        ["create", "--name", "web", "--replicas", "2", "-d", "-p", "8080:80", "busybox", "sleep", "1000"],
    )
    assert r.exit_code == 0, r.output
    sent = fake.calls[-1][1]
    assert sent["name"] == "web" and sent["template"]["command"] == ["sleep", "1000"]
    r = run_cli(service, fake, ["ls"])
    lines = r.output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert lines[1].split()[1:] == ["web", "replicated", "2/2", "busybox", "*:8080->80/tcp"]
    r = run_cli(service, fake, ["ps", "web"])
    assert r.output.splitlines()[1].split()[1:5] == ["web.1", "busybox", "host1", "Running"]
    r = run_cli(service, fake, ["scale", "-d", "web=4"])
    assert r.output == "web scaled to 4\n" and fake.service_inspect("web")["spec"]["replicas"] == 4
    run_cli(service, fake, ["create", "-d", "--name", "everywhere", "--mode", "global", "busybox"])
    r = run_cli(service, fake, ["scale", "-d", "everywhere=2", "web=4"])
    assert r.exit_code == 1 and "everywhere: scale can only be used with replicated mode" in r.output
    run_cli(service, fake, ["rm", "everywhere"])
    r = run_cli(service, fake, ["update", "-d", "--env-add", "X=1", "web"])
    assert r.exit_code == 0, r.output
    assert fake.service_inspect("web")["spec"]["template"]["env"] == ["X=1"]
    r = run_cli(service, fake, ["rollback", "-d", "web"])
    assert "rollback: manually requested rollback" in r.output
    assert fake.service_inspect("web")["spec"]["template"]["env"] == []
    r = run_cli(service, fake, ["update", "--rollback", "--env-add", "Y=1", "web"])
    assert r.exit_code == 2 and "cannot be combined" in r.output
    r = run_cli(service, fake, ["inspect", "--pretty", "web"])
    assert "Name:               web" in r.output and "Replicas:          4" in r.output
    r = run_cli(service, fake, ["logs", "web"])
    assert r.output == "web.1.abc@host1    | hello\nweb.2.def@host2    | world\n"
    r = run_cli(service, fake, ["rm", "web", "nosuch"])
    assert r.exit_code == 1 and r.output.startswith("web\n") and "service nosuch not found" in r.output
    r = run_cli(service, fake, ["create", "--constraint", "node.labels.x=1", "busybox"])
    assert r.exit_code == 2 and "invalid constraint" in r.output


def test_service_create_waits_for_convergence() -> None:
    fake = FakeCluster()
    r = run_cli(
        service, fake, ["create", "--name", "web", "--replicas", "2", "--update-monitor", "0s", "busybox"]
    )
    assert r.exit_code == 0, r.output
    assert "overall progress: 2 out of 2 tasks" in r.output
    assert "1/2: running   [" + "=" * 50 + ">]" in r.output and r.output.endswith(
        "verify: Service converged\n"
    )


def test_convergence_reports_pending_reason_and_waits() -> None:
    fake = FakeCluster()
    fake.service_create(to_plain(spec_from_flags(_create_params(name="web", replicas=2), "busybox", ())))
    fake.tasks_state = "pending"
    fake.pending_reason = "no suitable node (insufficient memory on 2 nodes)"
    svc = fake.service_inspect("web")
    state = Convergence(svc, fake.tasks(service=svc["id"]))
    assert not state.converged
    assert state.lines()[0] == "overall progress: 0 out of 2 tasks"
    assert state.lines()[1] == "1/2: no suitable node (insufficient memory on 2 nodes)"
    polls: list[float] = []

    def sleep(s: float) -> None:
        polls.append(s)
        if len(polls) == 3:
            fake.tasks_state = "running"

    clock = iter(float(i) for i in range(100))
    converge(fake, "web", quiet=True, sleep=sleep, clock=lambda: next(clock))
    assert len(polls) >= 3
    svc["update_status"] = {"state": "paused", "message": "update paused due to failure"}
    with pytest.raises(ExitCode) as info:
        converge(fake, "web", quiet=True, sleep=sleep, clock=lambda: next(clock))
    assert info.value.code == 1


def test_stack_deploy_redeploy_prune_ls_rm(tmp_path: Path) -> None:
    fake = FakeCluster()
    path = tmp_path / "compose.yml"
    path.write_text(COMPOSE)
    r = run_cli(stack, fake, ["deploy", "-c", str(path), "st"])
    assert r.exit_code == 0, r.output
    assert "Ignoring unsupported options: build, depends_on" in r.output
    assert "Creating service st_db" in r.output and "Creating service st_web" in r.output
    before = len(fake.calls)
    r = run_cli(stack, fake, ["deploy", "-c", str(path), "st"])
    assert "Creating" not in r.output and "Updating" not in r.output and len(fake.calls) == before
    path.write_text(
        COMPOSE.replace("replicas: 2", "replicas: 3").replace("depends_on: [db]", "").split("  db:")[0]
    )
    r = run_cli(stack, fake, ["deploy", "--prune", "-c", str(path), "st"])
    assert "Removing service st_db" in r.output and "Updating service st_web" in r.output
    assert fake.service_inspect("st_web")["spec"]["replicas"] == 3
    r = run_cli(stack, fake, ["ls"])
    assert r.output.splitlines() == ["NAME      SERVICES", "st        1"]
    r = run_cli(stack, fake, ["services", "st"])
    assert "st_web" in r.output
    r = run_cli(stack, fake, ["ps", "st"])
    assert r.output.count("st_web.") == 3
    r = run_cli(stack, fake, ["rm", "st"])
    assert r.output == "Removing service st_web\n" and not fake.services_
    r = run_cli(stack, fake, ["ps", "st"])
    assert r.exit_code == 1 and "Nothing found in stack: st" in r.output


def test_progress_bar_and_generated_name() -> None:
    assert progress_bar("new") == "[>" + " " * 50 + "]"
    assert progress_bar("preparing") == "[" + "=" * 30 + ">" + " " * 20 + "]"
    assert progress_bar("running") == "[" + "=" * 50 + ">]"
    name = spec_from_flags(_create_params(), "busybox", ()).name
    assert re.fullmatch(r"[a-z]+_[a-z]+", name), name


def test_convergence_during_an_update_counts_and_shows_the_new_tasks_only() -> None:
    spec = to_plain(spec_from_flags(_create_params(name="web", replicas=2), "busybox", ()))
    svc = {"id": "svc", "spec": spec, "version": 2, "update_status": {"state": "updating"}}
    old = _task("old2", 2, "running", NOW, spec_version=1)
    new1 = _task("new1", 1, "running", NOW, spec_version=2)
    new2 = _task("new2", 2, "preparing", NOW, spec_version=2)
    state = Convergence(svc, [new1, old, new2])
    assert not state.converged and state.up == 1
    assert state.lines() == [
        "overall progress: 1 out of 2 tasks",
        "1/2: running   " + progress_bar("running"),
        "2/2: preparing " + progress_bar("preparing"),
    ]
    svc["update_status"] = {"state": "completed"}
    assert not Convergence(svc, [new1, old]).converged  # the old task still runs
    assert Convergence(svc, [new1, dict(new2, state="running")]).converged
