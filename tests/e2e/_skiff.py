"""Helpers shared by the CLI flag and isolation e2e tests: run containers, always remove them."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.daemon_fixture import Daemon

# Docker's default capability set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP).
DOCKER_DEFAULT_CAPS = 0x00000000A80425FB
CAP_CHOWN = 0
CAP_NET_ADMIN = 12


def ok(daemon: Daemon, *args: str, input: bytes | None = None) -> str:
    """Run the CLI, insist on exit status 0 and return its stdout."""
    r = daemon.skiff(*args, input=input)
    assert r.returncode == 0, (
        f"skiff {' '.join(args)} -> {r.returncode}\n{r.stdout.decode()}\n{r.stderr.decode()}"
    )
    return r.stdout.decode()


def unique_name(prefix: str = "skiff-e2e") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def named(daemon: Daemon) -> Iterator[str]:
    """A fresh container name; whatever container got it is force-removed on exit."""
    name = unique_name()
    try:
        yield name
    finally:
        daemon.skiff("rm", "-f", name)


def run_sh(
    daemon: Daemon, flags: list[str], script: str, image: str = "busybox"
) -> subprocess.CompletedProcess[bytes]:
    """``skiff run <flags> busybox sh -c <script>`` attached; the container is removed afterwards."""
    with named(daemon) as name:
        return daemon.skiff("run", "--name", name, *flags, image, "sh", "-c", script)


def sh_out(daemon: Daemon, flags: list[str], script: str) -> str:
    """Like run_sh, but the run must succeed; returns stdout."""
    r = run_sh(daemon, flags, script)
    assert r.returncode == 0, f"run {flags} {script!r} -> {r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    return r.stdout.decode()


@contextlib.contextmanager
def running(daemon: Daemon, flags: list[str], cmd: tuple[str, ...] = ("sleep", "300")) -> Iterator[str]:
    """A detached container; yields its full id; force-removed on exit."""
    with named(daemon) as name:
        cid = ok(daemon, "run", "-d", "--name", name, *flags, "busybox", *cmd).strip()
        assert len(cid) == 64, cid
        yield cid


def cgroup_file(daemon: Daemon, controller: str, cid: str, filename: str) -> str:
    path = Path("/sys/fs/cgroup") / controller / daemon.cgroup_parent / cid / filename
    return path.read_text().strip()


def status_field(text: str, field: str) -> str:
    """The value of ``field`` in a /proc/<pid>/status dump."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return value.strip()
    raise AssertionError(f"{field} not in {text!r}")


def host_status_field(field: str) -> str:
    return status_field(Path("/proc/self/status").read_text(), field)


def wait_for_logs(daemon: Daemon, name: str, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        logs = ok(daemon, "logs", name)
        if needle in logs:
            return logs
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not in logs of {name}: {logs!r}")


def root_block_device() -> tuple[str, str]:
    """(``/dev/<disk>``, ``major:minor``) of the whole disk under the host's ``/``.

    blk-throttle refuses partitions, so a partition is mapped to its parent disk.
    """
    with open("/proc/self/mountinfo") as f:
        majmin = next(line.split()[2] for line in f if line.split()[4] == "/")
    sys_dev = Path("/sys/dev/block") / majmin
    if not sys_dev.exists():
        raise LookupError(f"/ is on {majmin}, which is not a block device")
    real = sys_dev.resolve()
    if (real / "partition").exists():
        real = real.parent
    disk = real.name
    majmin = (real / "dev").read_text().strip()
    if not os.path.exists(f"/dev/{disk}"):
        raise LookupError(f"/dev/{disk} does not exist")
    return f"/dev/{disk}", majmin
