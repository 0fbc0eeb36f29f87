"""The ``skiff compose`` suite, run against skiffd (test_compose.py) and a real dockerd
(test_compose_dockerd.py): compose talks to both through the Engine API only, so the same
tests must pass against either.

Each test gets its own project (``sktc-<hex>``, its own directory) and removes everything the
project made, containers, networks and volumes, even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

SKIFF = str(Path(sys.executable).parent / "skiff")
LABEL = "com.docker.compose.project"


@dataclass
class Engine:
    """A daemon the suite runs against."""

    name: str
    host: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "SKIFF_HOST": self.host, "DOCKER_HOST": self.host}

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version="1.41", timeout=60)


@dataclass
class Project:
    """One compose project in its own directory."""

    engine: Engine
    dir: Path
    name: str

    def write(self, text: str, filename: str = "compose.yaml") -> Path:
        path = self.dir / filename
        path.write_text(textwrap.dedent(text))
        return path

    def compose(
        self, *args: str, timeout: float = 120, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [SKIFF, "compose", "-p", self.name, "--progress", "plain", *args],
            cwd=self.dir,
            env=self.engine.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input.decode() if input is not None else None,
        )
        if check:
            assert proc.returncode == 0, (
                f"compose {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def containers(self, all_: bool = True, oneoff: bool = False) -> dict[str, dict[str, Any]]:
        """name -> summary of the project's (service) containers."""
        labels = [f"{LABEL}={self.name}", f"com.docker.compose.oneoff={'True' if oneoff else 'False'}"]
        found = self.engine.api().containers(all=all_, filters={"label": labels})
        return {c["Names"][0].lstrip("/"): c for c in found}

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(self.engine.api().inspect_container(name))

    def cleanup(self) -> None:
        api = self.engine.api()
        for c in api.containers(all=True, filters={"label": f"{LABEL}={self.name}"}):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(c["Id"], force=True, v=True)
        for n in api.networks(filters={"label": f"{LABEL}={self.name}"}):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_network(n["Id"])
        for v in api.volumes(filters={"label": f"{LABEL}={self.name}"}).get("Volumes") or []:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_volume(v["Name"], force=True)


def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (a container's own timing, not ours)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


WEB_WORKER = """
    services:
      web:
        image: busybox:latest
        init: true
        command: httpd -f -p 8080 -h /srv
        volumes: [www:/srv]
      worker:
        image: busybox:latest
        init: true
        command: ["sh", "-c", "echo worker up; while true; do hostname > /srv/index.html; sleep 1; done"]
        volumes: [www:/srv]
        depends_on: [web]
    volumes:
      www: {}
"""


class ComposeSuite:
    """Tests shared by every engine; subclasses provide the ``engine`` fixture."""

    @pytest.fixture
    def project(self, engine: Engine, tmp_path: Path) -> Iterator[Project]:
        name = f"sktc-{secrets.token_hex(4)}"
        path = tmp_path / name
        path.mkdir()
        p = Project(engine, path, name)
        try:
            yield p
        finally:
            p.cleanup()

    def test_up_creates_network_volume_and_labelled_containers_then_down(self, project: Project) -> None:
        project.write(WEB_WORKER)
        r = project.compose("up", "-d")
        assert f"✔ Container {project.name}-web-1  Started" in r.stderr
        found = project.containers()
        assert set(found) == {f"{project.name}-web-1", f"{project.name}-worker-1"}
        labels = found[f"{project.name}-web-1"]["Labels"]
        assert labels["com.docker.compose.service"] == "web"
        assert labels["com.docker.compose.container-number"] == "1"
        assert labels["com.docker.compose.oneoff"] == "False"
        assert len(labels["com.docker.compose.config-hash"]) == 64
        assert labels["com.docker.compose.project.config_files"] == str(project.dir / "compose.yaml")
        assert labels["com.docker.compose.project.working_dir"] == str(project.dir)
        assert (
            found[f"{project.name}-worker-1"]["Labels"]["com.docker.compose.depends_on"]
            == "web:service_started:false"
        )
        api = project.engine.api()
        assert (
            api.inspect_network(f"{project.name}_default")["Labels"]["com.docker.compose.network"]
            == "default"
        )
        assert api.inspect_volume(f"{project.name}_www")["Labels"]["com.docker.compose.volume"] == "www"
        # Services resolve each other by name on the project network; the volume is shared.
        page = until(
            lambda: (
                project.compose(
                    "exec", "-T", "worker", "wget", "-qO-", "http://web:8080/index.html", check=False
                ).stdout
            ),
            "the worker's page served by web",
        )
        assert page.strip() == project.inspect(f"{project.name}-worker-1")["Config"]["Hostname"]

        r = project.compose("down")
        assert project.containers() == {}
        assert not api.networks(names=[f"{project.name}_default"])
        assert api.inspect_volume(f"{project.name}_www")  # kept without -v
        project.compose("down", "-v")
        with pytest.raises(docker.errors.NotFound):
            api.inspect_volume(f"{project.name}_www")

    def test_up_again_recreates_only_the_changed_service(self, project: Project) -> None:
        project.write(WEB_WORKER)
        project.compose("up", "-d")
        before = {n: c["Id"] for n, c in project.containers().items()}
        r = project.compose("up", "-d")
        assert {n: c["Id"] for n, c in project.containers().items()} == before
        assert "Running" in r.stderr and "Recreate" not in r.stderr and "Created" not in r.stderr
        project.write(WEB_WORKER.replace("echo worker up", "echo worker v2"))
        r = project.compose("up", "-d")
        after = {n: c["Id"] for n, c in project.containers().items()}
        web, worker = f"{project.name}-web-1", f"{project.name}-worker-1"
        assert after[web] == before[web]
        assert after[worker] != before[worker]
        assert f"✔ Container {worker}  Recreated" in r.stderr
        assert project.inspect(worker)["State"]["Running"]
        r = project.compose("up", "-d", "--force-recreate", "web")
        assert project.containers()[web]["Id"] != before[web]
        assert project.containers()[worker]["Id"] == after[worker]

    def test_scale_up_and_down(self, project: Project) -> None:
        project.write(WEB_WORKER)
        project.compose("up", "-d", "--scale", "worker=3")
        names = sorted(n for n in project.containers() if "-worker-" in n)
        assert names == [f"{project.name}-worker-{i}" for i in (1, 2, 3)]
        assert all(c["State"] == "running" for c in project.containers().values())
        project.compose("up", "-d", "--scale", "worker=1")
        assert sorted(project.containers()) == [f"{project.name}-web-1", f"{project.name}-worker-1"]
        # deploy.replicas in the file, and ps lists what runs.
        project.write(
            WEB_WORKER.replace("depends_on: [web]\n", "depends_on: [web]\n        deploy: {replicas: 2}\n")
        )
        project.compose("up", "-d")
        ps = project.compose("ps", "--format", "json").stdout
        rows = [json.loads(line) for line in ps.splitlines() if line.strip()]
        assert sorted(r["Name"] for r in rows if r["Service"] == "worker") == [
            f"{project.name}-worker-1",
            f"{project.name}-worker-2",
        ]
        assert project.compose("ps", "--services").stdout.split() == ["web", "worker"]

    def test_depends_on_healthy_and_completed(self, project: Project) -> None:
        project.write(
            """
            services:
              db:
                image: busybox:latest
                init: true
                command: ["sh", "-c", "sleep 2; touch /shared/ready; sleep 1d"]
                volumes: [shared:/shared]
                healthcheck:
                  test: ["CMD", "test", "-f", "/shared/ready"]
                  interval: 1s
                  retries: 30
              migrate:
                image: busybox:latest
                command: ["sh", "-c", "test -f /shared/ready && echo migrated > /shared/migrated"]
                volumes: [shared:/shared]
                depends_on:
                  db: {condition: service_healthy}
              web:
                image: busybox:latest
                init: true
                command: ["sh", "-c", "cat /shared/migrated; sleep 1d"]
                volumes: [shared:/shared]
                depends_on:
                  db: {condition: service_healthy}
                  migrate: {condition: service_completed_successfully}
            volumes:
              shared: {}
            """
        )
        r = project.compose("up", "-d")
        assert f"✔ Container {project.name}-db-1  Healthy" in r.stderr
        assert f"✔ Container {project.name}-migrate-1  Exited" in r.stderr
        logs = until(lambda: project.compose("logs", "web").stdout, "web's output")
        assert "web-1  | migrated" in logs
        assert project.inspect(f"{project.name}-migrate-1")["State"]["ExitCode"] == 0

    def test_unhealthy_dependency_fails_up(self, project: Project) -> None:
        project.write(
            """
            services:
              db:
                image: busybox:latest
                init: true
                command: sleep 1d
                healthcheck: {test: ["CMD", "false"], interval: 1s, retries: 1}
              web:
                image: busybox:latest
                command: sleep 1d
                depends_on: {db: {condition: service_healthy}}
            """
        )
        r = project.compose("up", "-d", check=False)
        assert r.returncode != 0
        assert f"dependency failed to start: container {project.name}-db-1 is unhealthy" in r.stderr
        assert project.inspect(f"{project.name}-db-1")["State"]["Running"]
        assert f"{project.name}-web-1" not in project.containers()

    def test_named_volume_survives_down_and_up(self, project: Project) -> None:
        project.write(WEB_WORKER)
        project.compose("up", "-d")
        project.compose("exec", "-T", "web", "sh", "-c", "echo kept > /srv/keep.txt")
        project.compose("down")
        project.compose("up", "-d")
        r = project.compose("exec", "-T", "web", "cat", "/srv/keep.txt")
        assert r.stdout == "kept\n"
        project.compose("down", "-v")
        project.compose("up", "-d")
        r = project.compose("exec", "-T", "web", "cat", "/srv/keep.txt", check=False)
        assert r.returncode != 0

    def test_run_one_off_with_rm_env_and_exit_code(self, project: Project) -> None:
        project.write(WEB_WORKER)
        r = project.compose(
            "run",
            "--rm",
            "-T",
            "-e",
            "GREETING=hi there",
            "worker",
            "sh",
            "-c",
            'echo "$GREETING"; exit 7',
            check=False,
        )
        assert r.returncode == 7, r.stderr
        assert r.stdout == "hi there\n"
        # --rm leaves nothing; the dependency (web) was started, the service itself was not.
        assert project.containers(oneoff=True) == {}
        assert set(project.containers()) == {f"{project.name}-web-1"}
        r = project.compose("run", "-d", "-T", "--no-deps", "worker", "sleep", "1d")
        name = r.stdout.strip()
        assert name.startswith(f"{project.name}-worker-run-")
        info = project.inspect(name)
        assert info["Config"]["Labels"]["com.docker.compose.oneoff"] == "True"
        assert info["Config"]["Cmd"] == ["sleep", "1d"]
        project.compose("down")
        assert project.containers(oneoff=True) == {}

    def test_exec_logs_and_lifecycle_commands(self, project: Project) -> None:
        project.write(WEB_WORKER)
        project.compose("up", "-d")
        assert project.compose("exec", "-T", "web", "sh", "-c", "exit 3", check=False).returncode == 3
        r = project.compose("exec", "-T", "-e", "X=1", "-w", "/srv", "web", "sh", "-c", 'echo "$X $PWD"')
        assert r.stdout == "1 /srv\n"
        logs = until(
            lambda: "worker up" in project.compose("logs").stdout and project.compose("logs").stdout, "logs"
        )
        assert "worker-1  | worker up" in logs
        assert project.compose("logs", "--no-log-prefix", "worker").stdout.startswith("worker up\n")
        web = f"{project.name}-web-1"
        project.compose("pause", "web")
        assert project.inspect(web)["State"]["Paused"]
        project.compose("unpause", "web")
        assert not project.inspect(web)["State"]["Paused"]
        project.compose("stop", "-t", "5")
        assert not any(c["State"] == "running" for c in project.containers().values())
        project.compose("start")
        assert all(c["State"] == "running" for c in project.containers().values())
        started = project.inspect(web)["State"]["StartedAt"]
        project.compose("restart", "web")
        assert project.inspect(web)["State"]["StartedAt"] != started
        top = project.compose("top", "web").stdout
        assert web in top and "httpd" in top
        project.compose("kill", "worker")
        assert project.inspect(f"{project.name}-worker-1")["State"]["Status"] == "exited"
        project.compose("rm", "-f", "worker")
        assert f"{project.name}-worker-1" not in project.containers()

    def test_attached_up_streams_prefixed_logs_and_returns_exit_code(self, project: Project) -> None:
        project.write(
            """
            services:
              a:
                image: busybox:latest
                command: ["sh", "-c", "echo from-a"]
              b:
                image: busybox:latest
                command: ["sh", "-c", "echo from-b; sleep 4; exit 5"]
            """
        )
        r = project.compose("up", "--exit-code-from", "b", check=False)
        assert r.returncode == 5, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "Attaching to a-1, b-1"
        assert "a-1  | from-a" in lines and "b-1  | from-b" in lines
        assert "b-1 exited with code 5" in lines
        r = project.compose("up", "--abort-on-container-exit", check=False)
        assert r.returncode == 0, r.stdout + r.stderr  # a exits first (b sleeps 4 s), with 0
        assert "Aborting on container exit..." in r.stderr

    def test_orphans_ports_secrets_and_configs(self, project: Project) -> None:
        (project.dir / "token.txt").write_text("s3cret\n")
        (project.dir / "app.conf").write_text("key=value\n")
        web = """
            services:
              web:
                image: busybox:latest
                init: true
                command: httpd -f -p 8080
                ports: ["127.0.0.1::8080"]
                secrets: [token]
                configs: [app.conf]
            secrets:
              token: {file: ./token.txt}
            configs:
              app.conf: {file: ./app.conf}
        """
        old = """
              old:
                image: busybox:latest
                command: sleep 1d
        """
        project.write(
            web.replace("            secrets:\n", old.lstrip("\n").rstrip(" ") + "            secrets:\n", 1)
        )
        project.compose("up", "-d")
        assert project.compose("exec", "-T", "web", "cat", "/run/secrets/token").stdout == "s3cret\n"
        assert project.compose("exec", "-T", "web", "cat", "/app.conf").stdout == "key=value\n"
        port = project.compose("port", "web", "8080").stdout.strip()
        assert port.startswith("127.0.0.1:") and int(port.rsplit(":", 1)[1]) > 0
        project.write(web)
        r = project.compose("up", "-d")
        assert f"{project.name}-old-1" in r.stderr and "orphan" in r.stderr.lower()
        assert f"{project.name}-old-1" in project.containers()
        project.compose("up", "-d", "--remove-orphans")
        assert f"{project.name}-old-1" not in project.containers()
        ls = project.compose("ls", "--format", "json").stdout
        assert any(p["Name"] == project.name and p["Status"] == "running(1)" for p in json.loads(ls))

    def test_busybox_example_app(self, project: Project) -> None:
        """examples/compose/busybox-app: up --wait, the page from the host, scale, logs, down -v."""
        example = Path(__file__).resolve().parents[2] / "examples" / "compose" / "busybox-app"
        shutil.copy(example / "compose.yaml", project.dir / "compose.yaml")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (project.dir / ".env").write_text(f"WEB_PORT={port}\n")
        r = project.compose("up", "-d", "--wait")
        assert f"✔ Container {project.name}-web-1  Healthy" in r.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.read().decode().startswith("<h1>hello from worker ")
        project.compose("up", "-d", "--scale", "worker=3")
        assert len([n for n in project.containers() if "-worker-" in n]) == 3
        logs = until(
            lambda: (
                (out := project.compose("logs", "worker").stdout).count("web says: <h1>hello") >= 3 and out
            ),
            "workers reading the page back from web",
        )
        assert "worker-3  | web says: <h1>hello from worker" in logs
        project.compose("down", "-v")
        assert project.containers() == {}
