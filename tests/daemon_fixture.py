"""A real skiffd for integration and e2e tests: private root, run dir, socket and cgroup parent.

Everything it makes carries a ``skiff-test-<hex>`` name and is removed at the end, even
when tests fail: containers through the API, then leftover conmon processes by pid (only
those whose command line names this daemon's private run dir), mounts under the root,
the cgroup parent, and the directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

BIN = Path(sys.executable).parent


@dataclass
class Daemon:
    """Handle on a running test skiffd."""

    base: Path
    root: Path
    run_dir: Path
    socket: Path
    cgroup_parent: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SKIFF_HOST": self.host, "DOCKER_HOST": self.host}

    def client(self, **kwargs: Any) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version="1.41", timeout=60, **kwargs)

    def start(self, env: dict[str, str] | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(BIN / "skiffd"),
                "--root",
                str(self.root),
                "--run-dir",
                str(self.run_dir),
                "-H",
                self.host,
                "--cgroup-parent",
                self.cgroup_parent,
                "--log-level",
                "debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiffd exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"skiffd did not answer within 20 s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def skiff(
        self, *args: str, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(BIN / "skiff"), *args], env=self.env(), input=input, capture_output=True, timeout=timeout
        )

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc is not None and self.proc.poll() is None:
                api = self.client()
                for c in api.containers(all=True):
                    with contextlib.suppress(Exception):
                        api.remove_container(c["Id"], force=True)
        self.stop()
        kill_processes_mentioning(str(self.run_dir))
        kill_processes_mentioning(str(self.root))
        unmount_under(self.base)
        remove_cgroup_tree(self.cgroup_parent)
        shutil.rmtree(self.base, ignore_errors=True)


def kill_processes_mentioning(marker: str) -> None:
    """SIGKILL processes whose command line names our private directory (conmon, containers)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def unmount_under(base: Path) -> None:
    prefix = str(base)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def remove_cgroup_tree(parent: str) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / parent
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


@contextlib.contextmanager
def running_daemon() -> Iterator[Daemon]:
    tag = secrets.token_hex(4)
    base = Path(f"/tmp/skiff-test-{tag}")
    base.mkdir(parents=True)
    daemon = Daemon(
        base=base,
        root=base / "root",
        run_dir=base / "run",
        socket=base / "run" / "skiff.sock",
        cgroup_parent=f"skiff-test-{tag}",
        log_path=base / "skiffd.log",
    )
    try:
        daemon.start()
        yield daemon
    finally:
        if os.environ.get("SKIFF_TEST_KEEP_LOG"):
            with contextlib.suppress(OSError):
                shutil.copy(daemon.log_path, os.environ["SKIFF_TEST_KEEP_LOG"])
        daemon.cleanup()


def bootstrap_busybox(daemon: Daemon) -> None:
    api = daemon.client()
    with contextlib.suppress(docker.errors.ImageNotFound):
        api.inspect_image("busybox:latest")
        return
    resp = api._post(api._url("/skiff/images/bootstrap"), params={"name": "busybox"}, stream=True)
    resp.raise_for_status()
    for line in resp.iter_lines():
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(msg["error"])
