"""A real etcd (Debian's ``etcd-server``) for tests and benchmarks: one member on loopback
ports with its data in a temp dir, stopped by pid and removed at the end.

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
