"""The cluster commands of the skiff CLI against a real skiffd made a single-node cluster.

A private daemon (not the session one: ``cluster init`` changes it for good) is initialised with
``skiff cluster init --listen-addr 127.0.0.1:<free port>``; each test removes the services and
stacks it made, and the daemon leaves the cluster and is cleaned up at the end of the module.
Waiting is polling with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.daemon_fixture import Daemon, bootstrap_busybox, running_daemon
from tests.e2e._skiff import ok

T = TypeVar("T")
DEADLINE = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def manager() -> Iterator[Daemon]:
    with running_daemon() as d:
        bootstrap_busybox(d)
        port = free_port()
        out = ok(
            d,
            "cluster",
            "init",
            "--listen-addr",
            f"127.0.0.1:{port}",
            "--advertise-addr",
            f"127.0.0.1:{port}",
        )
        assert "is now a manager" in out and "skiff cluster join --token " in out, out
        try:
            yield d
        finally:
            with contextlib.suppress(Exception):
                for sid in d.skiff("service", "ls", "-q").stdout.decode().split():
                    d.skiff("service", "rm", sid)
            d.skiff("cluster", "leave", "--force")


@contextlib.contextmanager
def services(daemon: Daemon) -> Iterator[list[str]]:
    """Names appended to the yielded list are removed at the end, even when the test fails."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            daemon.skiff("service", "rm", name)


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def service_ls(daemon: Daemon) -> dict[str, str]:
    """name -> replicas (``2/2``)."""
    out = ok(daemon, "service", "ls", "--format", "{{.Name}} {{.Replicas}}")
    return {name: replicas for name, replicas in (line.split() for line in out.splitlines())}


def tasks(daemon: Daemon, name: str, *flags: str) -> list[dict[str, str]]:
    out = ok(daemon, "service", "ps", "--format", "json", *flags, name)
    return [json.loads(line) for line in out.splitlines()]


def running_tasks(daemon: Daemon, name: str, count: int) -> Callable[[], list[dict[str, str]] | None]:
    def probe() -> list[dict[str, str]] | None:
        live = tasks(daemon, name, "-f", "desired-state=running")
        up = [t for t in live if t["CurrentState"].startswith("Running")]
        return live if len(up) == count and len(live) == count else None

    return probe


def task_containers(daemon: Daemon, name: str) -> list[str]:
    """Ids of the containers (any state) the agent made for service ``name``."""
    flt = f"label=com.skiff.cluster.service.name={name}"
    return ok(daemon, "ps", "-aq", "--no-trunc", "--filter", flt).split()


def task_env(daemon: Daemon, name: str) -> list[list[str]]:
    """The Env of every running container of service ``name`` (one removed meanwhile is skipped)."""
    flt = f"label=com.skiff.cluster.service.name={name}"
    envs = []
    for cid in ok(daemon, "ps", "-q", "--no-trunc", "--filter", flt).split():
        r = daemon.skiff("inspect", "--format", "{{json .Config.Env}}", cid)
        if r.returncode == 0:
            envs.append(json.loads(r.stdout))
    return envs


def envs_where(
    daemon: Daemon, name: str, count: int, check: Callable[[list[str]], bool]
) -> Callable[[], list[list[str]] | None]:
    """A probe: the Envs of the service's containers once there are ``count`` and all pass ``check``."""

    def probe() -> list[list[str]] | None:
        envs = task_env(daemon, name)
        return envs if len(envs) == count and all(check(e) for e in envs) else None

    return probe


def test_cluster_inspect_and_node_commands(manager: Daemon) -> None:
    info = json.loads(ok(manager, "cluster", "inspect"))[0]
    assert info["Role"] == "manager" and info["NodeID"]
    lines = ok(manager, "node", "ls").splitlines()
    assert lines[0].split()[:4] == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY"]
    assert len(lines) == 2
    assert lines[1].startswith(f"{info['NodeID']} *"), lines
    assert "Ready" in lines[1] and "Active" in lines[1] and "Leader" in lines[1]
    assert ok(manager, "node", "ls", "-q").split() == [info["NodeID"]]
    ok(manager, "node", "update", "--label-add", "zone=a", "--label-add", "ssd=true", "self")
    labels = json.loads(ok(manager, "node", "inspect", "--format", "{{json .labels}}", "self"))
    assert labels == {"zone": "a", "ssd": "true"}
    ok(manager, "node", "update", "--label-rm", "ssd", "self")
    pretty = ok(manager, "node", "inspect", "--pretty", "self")
    assert " - zone=a" in pretty and "ssd=true" not in pretty and "Leader:                Yes" in pretty
    assert ok(manager, "node", "ls", "-q", "-f", "label=zone=a").split() == [info["NodeID"]]
    assert ok(manager, "node", "ls", "-q", "-f", "label=zone=b").split() == []


def test_service_create_scale_update_rollback_rm(manager: Daemon) -> None:
    name = unique("web")
    with services(manager) as made:
        made.append(name)
        out = ok(
            manager,
            "service",
            "create",
            "--name",
            name,
            "--replicas",
            "2",
            "--update-monitor",
            "1s",
            "--update-parallelism",
            "1",
            "-e",
            "A=1",
            "busybox",
            "sleep",
            "1000",
        )
        assert "overall progress: 2 out of 2 tasks" in out and "verify: Service converged" in out, out
        assert service_ls(manager)[name] == "2/2"
        live = tasks(manager, name)
        assert sorted(t["Name"] for t in live) == [f"{name}.1", f"{name}.2"]
        assert all(t["DesiredState"] == "Running" and t["Image"] == "busybox" for t in live)
        assert ok(manager, "service", "inspect", "--format", "{{.spec.replicas}}", name).strip() == "2"
        assert "Replicas:" in ok(manager, "service", "inspect", "--pretty", name)

        assert ok(manager, "service", "scale", "-d", f"{name}=3").strip() == f"{name} scaled to 3"
        wait_for("3 running tasks", running_tasks(manager, name, 3))

        # a rolling update: every slot gets a new task, the old one stays as history
        out = ok(manager, "service", "update", "--env-add", "B=2", name)
        assert "verify: Service converged" in out, out
        envs = wait_for(
            "3 containers with B=2",
            envs_where(manager, name, 3, lambda env: "B=2" in env),
        )
        assert all("A=1" in e for e in envs)
        history = tasks(manager, name)
        assert sum(1 for t in history if t["Name"].startswith(" \\_ ")) == 3
        assert sum(1 for t in history if t["DesiredState"] == "Shutdown") == 3

        out = ok(manager, "service", "rollback", name)
        assert "rollback: manually requested rollback" in out and "verify: Service converged" in out, out
        envs = wait_for(
            "3 containers without B",
            envs_where(manager, name, 3, lambda env: "B=2" not in env),
        )
        assert all("A=1" in e for e in envs)

        assert ok(manager, "service", "rm", name).strip() == name
        made.remove(name)
        wait_for("the containers gone", lambda: not task_containers(manager, name) or None)
        assert name not in service_ls(manager)


def test_service_logs_have_task_prefixes(manager: Daemon) -> None:
    name = unique("talk")
    with services(manager) as made:
        made.append(name)
        ok(
            manager,
            "service",
            "create",
            "-d",
            "--name",
            name,
            "busybox",
            "sh",
            "-c",
            "echo hello-from-task; sleep 1000",
        )

        def logged() -> str | None:
            out = manager.skiff("service", "logs", name).stdout.decode()
            return out if "hello-from-task" in out else None

        out = wait_for("the task's output in service logs", logged)
        line = next(x for x in out.splitlines() if "hello-from-task" in x)
        label, sep, text = line.partition("|")
        assert sep and text.strip() == "hello-from-task"
        assert label.strip().startswith(f"{name}.1.") and "@" in label, line


def test_unmet_constraint_shows_the_schedulers_reason(manager: Daemon) -> None:
    name, hungry = unique("nowhere"), unique("hungry")
    with services(manager) as made:
        made += [name, hungry]
        ok(
            manager,
            "service",
            "create",
            "-d",
            "--name",
            name,
            "--constraint",
            "node.labels.nosuch==x",
            "busybox",
            "sleep",
            "1000",
        )
        ok(
            manager,
            "service",
            "create",
            "-d",
            "--name",
            hungry,
            "--reserve-memory",
            "100000g",
            "busybox",
            "sleep",
            "1000",
        )

        def pending(svc: str) -> Callable[[], dict[str, str] | None]:
            def probe() -> dict[str, str] | None:
                for t in tasks(manager, svc, "--no-trunc"):
                    if t["CurrentState"].startswith("Pending") and t["Error"]:
                        return t
                return None

            return probe

        task = wait_for("a pending task with a reason", pending(name))
        assert "no suitable node" in task["Error"] and "node.labels.nosuch==x" in task["Error"], task
        task = wait_for("a pending task with a reason", pending(hungry))
        assert "no suitable node" in task["Error"] and "memory" in task["Error"], task
        assert service_ls(manager)[name] == "0/1"
        table = ok(manager, "service", "ps", name)
        assert "no suitable node" in table


COMPOSE = """
services:
  web:
    image: busybox
    command: sleep 1000
    build: .
    environment:
      GREETING: hi
    deploy:
      replicas: 2
      labels: {tier: front}
  worker:
    image: busybox
    command: ["sh", "-c", "sleep 1000"]
"""


def test_stack_deploy_ls_ps_redeploy_rm(manager: Daemon, tmp_path: Path) -> None:
    stack = unique("st")
    path = tmp_path / "compose.yml"
    path.write_text(COMPOSE)
    try:
        r = manager.skiff("stack", "deploy", "-c", str(path), stack)
        assert r.returncode == 0, r.stderr.decode()
        assert "Ignoring unsupported options: build" in r.stderr.decode()
        out = r.stdout.decode()
        assert f"Creating service {stack}_web" in out and f"Creating service {stack}_worker" in out
        assert f"{stack}        2" in ok(manager, "stack", "ls") or any(
            line.split() == [stack, "2"] for line in ok(manager, "stack", "ls").splitlines()
        )
        names = ok(manager, "stack", "services", "--format", "{{.Name}}", stack).split()
        assert names == [f"{stack}_web", f"{stack}_worker"]

        def all_running() -> str | None:
            out = ok(manager, "stack", "ps", "--format", "{{.Name}} {{.CurrentState}}", stack)
            states = [line.split()[1] for line in out.splitlines()]
            return out if len(states) == 3 and all(s == "Running" for s in states) else None

        wait_for("3 running stack tasks", all_running)
        assert all("GREETING=hi" in e for e in task_env(manager, f"{stack}_web"))

        # redeploy: only the changed service is updated; --prune removes the one left out
        path.write_text(COMPOSE.replace("replicas: 2", "replicas: 3").split("  worker:")[0])
        out = ok(manager, "stack", "deploy", "--prune", "-c", str(path), stack)
        assert f"Updating service {stack}_web" in out and f"Removing service {stack}_worker" in out, out
        assert ok(manager, "stack", "services", "--format", "{{.Name}}", stack).split() == [f"{stack}_web"]
        wait_for("3 web tasks", running_tasks(manager, f"{stack}_web", 3))
        out = ok(manager, "stack", "deploy", "-c", str(path), stack)
        assert "Updating" not in out and "Creating" not in out

        assert ok(manager, "stack", "rm", stack).strip() == f"Removing service {stack}_web"
        r = manager.skiff("stack", "ps", stack)
        assert r.returncode == 1 and f"Nothing found in stack: {stack}" in r.stderr.decode()
    finally:
        manager.skiff("stack", "rm", stack)
