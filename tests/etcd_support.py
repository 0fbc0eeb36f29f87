"""A real etcd (Debian's ``etcd-server``) for tests and benchmarks: one member (``running_etcd``)
or a three-member cluster (``running_etcd_cluster``) on loopback ports with data in temp dirs,
stopped by pid and removed at the end.

Readiness is etcd's own "ready to serve client requests" line (no polling). Fast elections
(10 ms heartbeat, 100 ms election timeout) bring etcd's minimum lease TTL down to 1 s.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
MAX_TXN_OPS = 10_000  # the member's --max-txn-ops; stores are told the same


def etcd_available() -> bool:
    return os.access(ETCD, os.X_OK)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Etcd:
    endpoint: str  # http://127.0.0.1:PORT
    pid: int
    data_dir: Path


@contextlib.contextmanager
def running_etcd(*, quota_bytes: int = 4 << 30) -> Iterator[Etcd]:
    """One etcd member; its process and data dir are gone when the block ends."""
    data = Path(tempfile.mkdtemp(prefix="skiff-test-etcd-"))
    client, peer = _free_port(), _free_port()
    args = [
        ETCD,
        "--name=skiff-test",
        f"--data-dir={data / 'member'}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=skiff-test=http://127.0.0.1:{peer}",
        "--heartbeat-interval=10",
        "--election-timeout=100",
        f"--max-txn-ops={MAX_TXN_OPS}",
        "--max-request-bytes=33554432",
        f"--quota-backend-bytes={quota_bytes}",
        "--log-outputs=stderr",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _await_ready(proc, timeout=30)
        yield Etcd(f"http://127.0.0.1:{client}", proc.pid, data)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class EtcdMember:
    name: str
    endpoint: str  # http://127.0.0.1:PORT (client)
    peer: str  # http://127.0.0.1:PORT
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    members: list[EtcdMember]
    root: Path

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def kill(self, index: int) -> None:
        """SIGKILL one member (by its pid), as a crashed host."""
        member = self.members[index]
        if member.alive:
            assert member.proc is not None
            os.kill(member.proc.pid, signal.SIGKILL)
            member.proc.wait()
            _close(member)


@contextlib.contextmanager
def running_etcd_cluster(size: int = 3, *, quota_bytes: int = 2 << 30) -> Iterator[EtcdCluster]:
    """``size`` etcd members forming one cluster; every process and data dir is gone when the
    block ends (even when a member failed to start)."""
    root = Path(tempfile.mkdtemp(prefix="skiff-test-etcd3-"))
    members = [
        EtcdMember(
            f"skiff-test-{i}",
            f"http://127.0.0.1:{_free_port()}",
            f"http://127.0.0.1:{_free_port()}",
            root / f"m{i}",
        )
        for i in range(size)
    ]
    initial = ",".join(f"{m.name}={m.peer}" for m in members)
    try:
        for m in members:
            args = [
                ETCD,
                f"--name={m.name}",
                f"--data-dir={m.data_dir}",
                f"--listen-client-urls={m.endpoint}",
                f"--advertise-client-urls={m.endpoint}",
                f"--listen-peer-urls={m.peer}",
                f"--initial-advertise-peer-urls={m.peer}",
                f"--initial-cluster={initial}",
                "--initial-cluster-state=new",
                "--initial-cluster-token=skiff-test",
                # a 3-member cluster on two shared cores: elections a little slower than the
                # single member's, so a busy test process does not make the members flap
                "--heartbeat-interval=50",
                "--election-timeout=500",
                f"--max-txn-ops={MAX_TXN_OPS}",
                "--max-request-bytes=33554432",
                f"--quota-backend-bytes={quota_bytes}",
                "--log-outputs=stderr",
            ]
            m.proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
        for m in members:  # members are ready once a quorum formed
            assert m.proc is not None
            _await_ready(m.proc, timeout=30)
        yield EtcdCluster(members, root)
    finally:
        for m in members:
            if m.alive:
                assert m.proc is not None
                os.kill(m.proc.pid, signal.SIGTERM)
        for m in members:
            if m.proc is not None and m.proc.returncode is None:
                try:
                    m.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(m.proc.pid, signal.SIGKILL)
                    m.proc.wait()
            _close(m)
        shutil.rmtree(root, ignore_errors=True)


def _close(member: EtcdMember) -> None:
    if member.proc is not None and member.proc.stderr is not None and not member.proc.stderr.closed:
        with contextlib.suppress(OSError):
            member.proc.stderr.close()


def _await_ready(proc: subprocess.Popen[bytes], timeout: float) -> None:
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"etcd exited ({proc.wait()}): {seen[-2000:].decode(errors='replace')}")
        seen += chunk
        if b"ready to serve client requests" in seen:
            # keep draining its output so etcd never blocks on a full pipe
            _drain_in_background(fd)
            return
    raise RuntimeError(f"etcd did not become ready: {seen[-2000:].decode(errors='replace')}")


def _drain_in_background(fd: int) -> None:
    def drain() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 65536):
                pass

    threading.Thread(target=drain, daemon=True, name="etcd-stderr").start()
