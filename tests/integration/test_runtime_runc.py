"""The runtime layer against real runc + conmon + cgroups (root only).

Every container lives under a unique cgroup parent /skiff-test-<hex>/ and a private
runc --root; the module fixture deletes containers, conmon processes and cgroups.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from skiff.runtime import Runtime, generate_spec, iter_log, list_pids, oom_killed, read_stats, remove_cgroup
from skiff.runtime.cgroups import CGROUP_ROOT
from skiff.types import ContainerSpec, HostConfig

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("conmon") is None, reason="needs root and conmon"),
]

DEFAULT_CAPEFF = 0x00000000A80425FB  # Docker's default capability set as a CapEff mask


def aio(fn: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def build_rootfs(root: Path) -> None:
    """A busybox rootfs: the static binary plus a symlink per applet, passwd with root and nobody."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        if name != "busybox" and not (root / "bin" / name).exists():
            (root / "bin" / name).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")


@dataclass
class Env:
    base: Path
    rootfs: Path
    parent: str
    runtime: Runtime

    def cgroup(self, cid: str) -> str:
        return f"{self.parent}/{cid}"

    def bundle(self, cid: str, spec: ContainerSpec, *, hostname: str = "skiffbox") -> Path:
        bundle = self.base / "bundles" / cid
        bundle.mkdir(parents=True)
        config = generate_spec(
            spec,
            container_id=cid,
            rootfs=str(self.rootfs),
            hostname=hostname,
            netns_path=None,
            cgroups_path=self.cgroup(cid),
        )
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def log(self, cid: str) -> Path:
        return self.base / "logs" / f"{cid}.log"

    async def run(
        self, cmd: tuple[str, ...], *, start: bool = True, stdin: bool = False, **host: object
    ) -> str:
        cid = f"skiff-test-{uuid.uuid4().hex[:10]}"
        spec = ContainerSpec(image="busybox", cmd=cmd, open_stdin=stdin, host=replace(HostConfig(), **host))
        bundle = self.bundle(cid, spec)
        (self.base / "logs").mkdir(exist_ok=True)
        await self.runtime.create(cid, bundle, tty=False, stdin=stdin, log_path=self.log(cid))
        if start:
            await self.runtime.start(cid)
        return cid


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="skiff-rootfs-"))
    build_rootfs(base / "rootfs")
    yield base / "rootfs"
    shutil.rmtree(base, ignore_errors=True)


async def _cleanup(runtime: Runtime) -> None:
    for cid in await runtime.recover():
        conmon = runtime.conmon_pid(cid)
        await runtime.delete(cid, force=True)
        if conmon is not None:
            for _ in range(100):
                if not Path(f"/proc/{conmon}").exists():
                    break
                await asyncio.sleep(0.02)
            else:
                os.kill(conmon, signal.SIGKILL)


@pytest.fixture
def env(rootfs: Path) -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="skiff-rt-"))
    parent = f"/skiff-test-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(state_dir=base / "state", runtime_root=base / "runc")
    e = Env(base, rootfs, parent, runtime)
    try:
        yield e
    finally:
        runtime.close()
        asyncio.run(_cleanup(runtime))
        remove_cgroup(parent)
        shutil.rmtree(base, ignore_errors=True)


def output(env: Env, cid: str, stream: str = "stdout") -> str:
    return b"".join(line.data for line in iter_log(env.log(cid)) if line.stream == stream).decode()


@aio
async def test_exit_code_and_logs(env: Env) -> None:
    cid = await env.run(("sh", "-c", "echo hello; echo oops >&2; exit 3"))
    status = await asyncio.wait_for(env.runtime.wait_exit(cid), 30)
    assert status.exit_code == 3
    assert not status.oom_killed
    assert status.finished_at.endswith("Z")
    assert output(env, cid) == "hello\n"
    assert output(env, cid, "stderr") == "oops\n"
    state = await env.runtime.state(cid)
    assert state is not None and state.status == "stopped"
    await env.runtime.delete(cid)
    assert await env.runtime.state(cid) is None
    assert env.runtime.exit_status(cid) is None
    await env.runtime.delete(cid)  # idempotent


@aio
async def test_create_failure_reports_runtime_message(env: Env) -> None:
    from skiff.errors import RuntimeFailure

    with pytest.raises(RuntimeFailure, match="no-such-binary"):
        await env.run(("no-such-binary",))


@aio
async def test_isolation_from_inside(env: Env) -> None:
    script = (
        "for n in pid net ipc mnt uts; do echo ns $n $(readlink /proc/self/ns/$n); done;"
        "echo host $(hostname); echo cmd $(tr '\\0' ' ' < /proc/1/cmdline);"
        "grep CapEff /proc/1/status; echo kcore $(cat /proc/kcore 2>/dev/null | wc -c);"
        "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo procsys rw || echo procsys ro;"
        "mknod /tmp/sda b 8 0 && (head -c 1 /tmp/sda >/dev/null 2>&1 && echo dev open || echo dev denied);"
        "echo uid $(id -u)"
    )
    cid = await env.run(("sh", "-c", script))
    assert (await asyncio.wait_for(env.runtime.wait_exit(cid), 30)).exit_code == 0
    out = output(env, cid)
    lines = dict(line.split(maxsplit=1) for line in out.splitlines())
    for ns in ("pid", "net", "ipc", "mnt", "uts"):
        inside = next(line for line in out.splitlines() if line.startswith(f"ns {ns} ")).split()[2]
        assert inside != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert lines["host"] == "skiffbox"
    assert lines["cmd"].startswith("sh -c for n in")
    assert int(lines["CapEff:"].strip(), 16) == DEFAULT_CAPEFF
    assert lines["kcore"] == "0"
    assert lines["procsys"] == "ro"
    assert lines["dev"] == "denied"
    assert lines["uid"] == "0"


@aio
async def test_memory_limit_oom_kill(env: Env) -> None:
    mem = 16 * 1024 * 1024
    cid = await env.run(
        ("dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"), memory=mem, memory_swap=mem
    )
    status = await asyncio.wait_for(env.runtime.wait_exit(cid), 60)
    assert status.exit_code == 137
    assert status.oom_killed or oom_killed(env.cgroup(cid))


@aio
async def test_pids_limit_contains_fork_bomb(env: Env) -> None:
    cid = await env.run(("sh", "-c", "f() { f | f & }; f; sleep 30"), pids_limit=20)
    try:
        await asyncio.sleep(2)
        stats = read_stats(env.cgroup(cid))
        assert stats.pids_limit == 20
        assert 0 < stats.pids_current <= 20
        assert len(list_pids(env.cgroup(cid))) <= 20
    finally:
        await env.runtime.kill(cid, signal.SIGKILL, all_processes=True)
    await asyncio.wait_for(env.runtime.wait_exit(cid), 30)


@aio
async def test_cpu_quota_memory_stats_and_user(env: Env) -> None:
    cid = await env.run(("sleep", "30"), nano_cpus=500_000_000, memory=64 * 1024 * 1024, cpu_shares=512)
    cpu = CGROUP_ROOT / "cpu" / env.cgroup(cid).strip("/")
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert (cpu / "cpu.shares").read_text().strip() == "512"
    stats = read_stats(env.cgroup(cid))
    assert stats.memory_usage > 0
    assert stats.memory_limit == 64 * 1024 * 1024
    assert stats.system_cpu_usage > 0
    state = await env.runtime.state(cid)
    assert state is not None and state.status == "running" and state.pid > 0
    await env.runtime.kill(cid, signal.SIGKILL)
    status = await asyncio.wait_for(env.runtime.wait_exit(cid), 30)
    assert status.exit_code == 137


@aio
async def test_exec_output_exit_code_and_tty(env: Env) -> None:
    cid = await env.run(("sleep", "30"))
    base = {"cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    proc = await env.runtime.exec(
        cid, {**base, "args": ["sh", "-c", "echo out; echo err >&2; exit 5"]}, tty=False, detach=False
    )
    assert proc.pid > 0
    chunks: dict[int, bytes] = {1: b"", 2: b""}
    while (item := await proc.read()) is not None:
        chunks[item[0]] += item[1]
    assert await proc.wait() == 5
    assert chunks == {1: b"out\n", 2: b"err\n"}
    tty = await env.runtime.exec(cid, {**base, "args": ["sh", "-c", "tty; echo hi"]}, tty=True, detach=False)
    data = b""
    while (item := await asyncio.wait_for(tty.read(), 10)) is not None:
        data += item[1]
    assert await tty.wait() == 0
    tty.close()
    assert b"/dev/pts/" in data and b"hi" in data
    await env.runtime.kill(cid, signal.SIGKILL)
    await asyncio.wait_for(env.runtime.wait_exit(cid), 30)


@aio
async def test_attach_receives_output_and_stdin(env: Env) -> None:
    cid = await env.run(("sh", "-c", "read line; echo got $line; echo bad >&2"), start=False, stdin=True)
    stream = await env.runtime.attach(cid)
    try:
        await env.runtime.start(cid)
        await stream.write(b"abc\n")
        got: dict[int, bytes] = {1: b"", 2: b""}
        while (item := await asyncio.wait_for(stream.read(), 10)) is not None:
            got[item[0]] += item[1]
            if got[1] and got[2]:
                break
    finally:
        stream.close()
    assert got[1] == b"got abc\n"
    assert got[2] == b"bad\n"
    assert (await asyncio.wait_for(env.runtime.wait_exit(cid), 30)).exit_code == 0


_LAUNCHER = """
import asyncio, json, sys
from pathlib import Path
from skiff.runtime import Runtime
async def main():
    rt = Runtime(state_dir=Path(sys.argv[1]), runtime_root=Path(sys.argv[2]))
    pid = await rt.create(sys.argv[3], Path(sys.argv[4]), tty=False, stdin=False, log_path=Path(sys.argv[5]))
    await rt.start(sys.argv[3])
    print(pid, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@aio
async def test_container_survives_parent_kill_and_exit_is_recorded(env: Env) -> None:
    cid = f"skiff-test-{uuid.uuid4().hex[:10]}"
    bundle = env.bundle(cid, ContainerSpec(image="busybox", cmd=("sh", "-c", "sleep 2; exit 7")))
    (env.base / "logs").mkdir(exist_ok=True)
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(env.base / "state"), str(env.base / "runc"), cid, str(bundle),
         str(env.log(cid))],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert launcher.stdout is not None
        pid = int(launcher.stdout.readline())
        assert pid > 0
    finally:
        launcher.kill()
        launcher.wait()
    state = await env.runtime.state(cid)
    assert state is not None and state.status == "running"
    assert env.runtime.conmon_pid(cid) is not None
    status = await asyncio.wait_for(env.runtime.wait_exit(cid), 30)
    assert status.exit_code == 7
    assert cid in await env.runtime.recover()


@aio
async def test_delete_leaves_nothing(env: Env) -> None:
    cid = await env.run(("sleep", "30"))
    conmon = env.runtime.conmon_pid(cid)
    assert conmon is not None
    await env.runtime.kill(cid, signal.SIGKILL)
    await asyncio.wait_for(env.runtime.wait_exit(cid), 30)
    await env.runtime.delete(cid)
    for _ in range(100):
        if env.runtime.conmon_pid(cid) is None:
            break
        await asyncio.sleep(0.05)
    assert env.runtime.conmon_pid(cid) is None
    assert cid not in await env.runtime.recover()
    assert not (env.base / "runc" / cid).exists()
    assert not any((CGROUP_ROOT / c / env.cgroup(cid).strip("/")).exists() for c in ("memory", "cpu", "pids"))


@aio
async def test_init_user_and_tty_resize(env: Env) -> None:
    if not Path("/usr/bin/tini-static").exists():
        pytest.skip("tini not installed")
    cid = f"skiff-test-{uuid.uuid4().hex[:10]}"
    spec = ContainerSpec(
        image="busybox",
        cmd=(
            "sh",
            "-c",
            "sleep 1; echo pid1 $(tr '\\0' ' ' < /proc/1/cmdline); echo size $(stty size); id -u",
        ),
        tty=True,
        host=HostConfig(init=True),
    )
    config = generate_spec(
        spec, container_id=cid, rootfs=str(env.rootfs), hostname="h", netns_path=None,
        cgroups_path=env.cgroup(cid), uid=65534, gid=65534,
    )  # fmt: skip
    bundle = env.base / "bundles" / cid
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(config))
    (env.base / "logs").mkdir(exist_ok=True)
    await env.runtime.create(cid, bundle, tty=True, stdin=False, log_path=env.log(cid))
    await env.runtime.start(cid)
    await env.runtime.resize(cid, 33, 101)
    assert (await asyncio.wait_for(env.runtime.wait_exit(cid), 30)).exit_code == 0
    out = output(env, cid).replace("\r", "")
    assert "pid1 /sbin/docker-init -- sh -c" in out
    assert "size 33 101" in out
    assert out.strip().endswith("65534")
