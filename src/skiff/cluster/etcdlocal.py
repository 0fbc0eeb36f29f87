"""``LocalEtcd``: an etcd member skiffd starts and supervises (``cluster init --etcd-local``).

The member keeps its data in ``<root>/cluster/etcd``, logs to ``<root>/cluster/etcd.log``,
serves clients on ``client_port`` (the advertised host, and loopback) and peers on
``peer_port``. skiffd restarts it if it exits and stops it (SIGTERM, by pid) when skiffd stops.
A second manager joining with the manager token adds its own member through the first one
(etcd's ``member add``), then starts it with ``--initial-cluster-state=existing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from skiff.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

MAX_TXN_OPS = 1024
READY_TIMEOUT = 30.0


def etcd_binary() -> str:
    path = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(path, os.X_OK):
        raise InvalidArgument("--etcd-local needs etcd installed (Debian package etcd-server)")
    return path


class LocalEtcd:
    """One supervised etcd member (see module doc)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str,
        host: str,
        client_port: int,
        peer_port: int,
        initial_cluster: str = "",
        existing: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.name = name
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.existing = existing
        self.log_path = data_dir.parent / "etcd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def _args(self) -> list[str]:
        clients = [self.client_url]
        if self.host not in ("127.0.0.1", "localhost"):
            clients.append(f"http://127.0.0.1:{self.client_port}")
        return [
            etcd_binary(),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={','.join(clients)}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-state={'existing' if self.existing else 'new'}",
            f"--max-txn-ops={MAX_TXN_OPS}",
            "--max-request-bytes=33554432",
            "--log-outputs=stderr",
        ]

    def _spawn(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                self._args(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        log.info("cluster: etcd member %s started (pid %d, %s)", self.name, self._proc.pid, self.client_url)

    async def start(self) -> None:
        """Start the member and return once it serves clients."""
        self._stopping = False
        self._spawn()
        try:
            await self._await_ready()
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="skiff-etcd-local")

    async def _await_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while loop.time() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise Unavailable(f"etcd exited at start: {self._log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ConnectionError, ValueError):
                    async with http.post(
                        f"http://127.0.0.1:{self.client_port}/v3/maintenance/status", json={}
                    ) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.2)  # polling cadence while etcd starts
        raise Unavailable(f"etcd did not become ready within {READY_TIMEOUT:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    async def _supervise(self) -> None:
        delay = 1.0
        while True:
            proc = self._proc
            if proc is None:
                return
            code = await asyncio.to_thread(proc.wait)
            if self.stopping():
                return
            log.warning("cluster: etcd member exited with %s; restarting in %.0f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            self.existing = True  # its data dir now holds the membership
            self._spawn()

    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        self._stopping = True
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None


async def add_member(client_urls: list[str], name: str, peer_url: str) -> str:
    """Add a member through the running cluster; the ``--initial-cluster`` value it starts with."""
    last: Exception | None = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for url in client_urls:
            try:
                async with http.post(f"{url}/v3/cluster/member/add", json={"peerURLs": [peer_url]}) as r:
                    answer: dict[str, Any] = json.loads(await r.read())
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as e:
                last = e
                continue
            if "error" in answer or "code" in answer:
                raise Unavailable(
                    f"etcd refused to add a member: {answer.get('message') or answer.get('error')}"
                )
            parts = []
            for m in answer.get("members") or []:
                peers = m.get("peerURLs") or []
                member_name = m.get("name") or (name if peer_url in peers else "")
                parts += [f"{member_name}={p}" for p in peers if member_name]
            return ",".join(parts)
    raise Unavailable(f"no etcd member answered ({', '.join(client_urls)}): {last}")


async def remove_member(client_urls: list[str], name: str, *, timeout: float = 15.0) -> bool:
    """Remove the member called ``name`` from the cluster (a manager leaving). False: not found.

    etcd refuses a removal while its leader has not been connected to the remaining members
    for a few seconds ("unhealthy cluster", right after a join): that is retried."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while True:
            for url in client_urls:
                try:
                    async with http.post(f"{url}/v3/cluster/member/list", json={}) as r:
                        members = json.loads(await r.read()).get("members") or []
                    ids = [m["ID"] for m in members if m.get("name") == name]
                    if not ids:
                        return False
                    async with http.post(f"{url}/v3/cluster/member/remove", json={"ID": ids[0]}) as r:
                        answer = json.loads(await r.read())
                except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError, KeyError):
                    continue
                if "error" not in answer and "code" not in answer:
                    return True
                if "unhealthy" not in str(answer.get("message")) or loop.time() > deadline:
                    raise Unavailable(f"etcd refused to remove member {name}: {answer.get('message')}")
                break
            else:
                return False
            await asyncio.sleep(0.5)  # etcd's own health interval decides when it accepts
