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
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
    # Private networking: own default bridge, subnets and iptables chains, so a test daemon
    # never collides with a demo skiffd or another test daemon.
    bridge: str = ""
    bip: str = ""
    pool: str = ""
    chain_prefix: str = ""
    # More skiffd flags (e.g. a tcp:// -H with TLS); the unix socket stays, the fixture talks to it.
    extra_args: list[str] = field(default_factory=list)

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
                *(["--bridge", self.bridge] if self.bridge else []),
                *(["--bip", self.bip] if self.bip else []),
                *(["--default-address-pool", self.pool] if self.pool else []),
                *(["--iptables-chain-prefix", self.chain_prefix] if self.chain_prefix else []),
                *self.extra_args,
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
        kill_cgroup_tree(self.cgroup_parent)  # e.g. a `runc init` left by a crash test
        unmount_under(self.base)
        remove_cgroup_tree(self.cgroup_parent)
        self.remove_network_objects()
        shutil.rmtree(self.base, ignore_errors=True)

    def bridges(self) -> list[str]:
        """Linux bridges of this daemon's networks (read from its database)."""
        names = {self.bridge} if self.bridge else set()
        db = self.root / "metadata.db"
        if db.exists():
            with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db)) as conn:
                for (data,) in conn.execute("SELECT data FROM networks"):
                    bridge = json.loads(data).get("bridge")
                    if bridge:
                        names.add(bridge)
        return sorted(names)

    def remove_network_objects(self) -> None:
        """Bridges and iptables chains the daemon made (its containers' veths die with their netns)."""
        for bridge in self.bridges():
            subprocess.run(["ip", "link", "delete", bridge, "type", "bridge"], capture_output=True)
        if self.chain_prefix:
            remove_chains(self.chain_prefix)


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


def remove_chains(prefix: str) -> None:
    """Delete iptables chains named ``prefix-*`` and the jumps to them (filter and nat)."""
    for table in ("filter", "nat"):
        rules = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True).stdout
        for line in rules.splitlines():
            parts = line.split()
            if (
                len(parts) > 3
                and parts[0] == "-A"
                and "-j" in parts
                and parts[parts.index("-j") + 1].startswith(prefix + "-")
            ):
                if not parts[1].startswith(prefix + "-"):
                    subprocess.run(["iptables", "-w", "-t", table, "-D", *parts[1:]], capture_output=True)
        chains = [
            ln.split()[1]
            for ln in rules.splitlines()
            if ln.startswith("-N ") and ln.split()[1].startswith(prefix + "-")
        ]
        for chain in chains:
            subprocess.run(["iptables", "-w", "-t", table, "-F", chain], capture_output=True)
        for chain in chains:
            subprocess.run(["iptables", "-w", "-t", table, "-X", chain], capture_output=True)


def unmount_under(base: Path) -> None:
    prefix = str(base)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def kill_cgroup_tree(parent: str) -> None:
    """SIGKILL every process in the test daemon's cgroup parent (they are all the test's)."""
    for procs in Path("/sys/fs/cgroup").glob(f"*/{parent}/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.1)


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


def network_settings(tag: str) -> dict[str, str]:
    """A private bridge, default subnet, address pool and chain prefix for one test daemon."""
    r = int(tag[:2], 16)
    return {
        "bridge": f"skt-{tag}",
        "bip": f"10.239.{r}.1/24",
        "pool": f"10.{240 + r // 16}.{(r % 16) * 16}.0/20",
        "chain_prefix": f"SKT{tag[:6]}",
    }


@contextlib.contextmanager
def running_daemon(extra_args: Sequence[str] = ()) -> Iterator[Daemon]:
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
        extra_args=list(extra_args),
        **network_settings(tag),
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
