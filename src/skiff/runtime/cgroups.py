"""Container cgroup reading: stats (for ``docker stats``), pids, top, OOM, removal.

Works on cgroup v1 (a hierarchy per controller under /sys/fs/cgroup/<ctrl>/) and v2
(/sys/fs/cgroup when unified-only). ``cgroups_path`` is the spec's ``linux.cgroupsPath``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skiff.errors import InvalidArgument, RuntimeFailure

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "blkio", "cpuset", "devices", "freezer", "systemd")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class BlkioEntry:
    """One ``io_service_bytes_recursive`` row as Docker reports it."""

    major: int
    minor: int
    op: str
    value: int


@dataclass(frozen=True)
class CgroupStats:
    """What Docker's stats JSON needs. CPU times in nanoseconds, memory in bytes."""

    memory_usage: int = 0
    memory_max_usage: int = 0
    memory_limit: int = 0
    memory_failcnt: int = 0
    memory_cache: int = 0
    memory_rss: int = 0
    memory_stat: dict[str, int] = field(default_factory=dict)
    cpu_total_usage: int = 0
    cpu_percpu_usage: tuple[int, ...] = ()
    cpu_usage_in_kernelmode: int = 0
    cpu_usage_in_usermode: int = 0
    system_cpu_usage: int = 0
    online_cpus: int = 0
    throttling_periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0
    pids_current: int = 0
    pids_limit: int = 0  # 0: unlimited
    blkio_io_service_bytes_recursive: tuple[BlkioEntry, ...] = ()


def is_unified() -> bool:
    """True on a pure cgroup v2 host."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _rel(cgroups_path: str) -> str:
    rel = cgroups_path.strip("/")
    if ".." in rel.split("/") or not rel:
        raise InvalidArgument(f"invalid cgroups path {cgroups_path!r}")
    return rel


def _v1(controller: str, cgroups_path: str) -> Path:
    return CGROUP_ROOT / controller / _rel(cgroups_path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, OSError):
        return None


def _int(path: Path, default: int = 0) -> int:
    text = _read(path)
    if text is None:
        return default
    text = text.strip()
    if text == "max":
        return 0
    try:
        return int(text)
    except ValueError:
        return default


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def system_cpu_usage() -> int:
    """Host CPU time in nanoseconds from the first line of /proc/stat (Docker's system_cpu_usage)."""
    fields = (_read(Path("/proc/stat")) or "cpu 0").splitlines()[0].split()[1:8]
    return sum(int(f) for f in fields) * 1_000_000_000 // _CLOCK_TICKS


def online_cpus() -> int:
    """CPUs the host has online."""
    return len(os.sched_getaffinity(0)) or (os.cpu_count() or 1)


def read_stats(cgroups_path: str, pids: Sequence[int] = ()) -> CgroupStats:
    """Current stats of the container's cgroup (``pids`` unused on cgroup files; kept for callers)."""
    del pids
    if is_unified():
        return _read_stats_v2(CGROUP_ROOT / _rel(cgroups_path))
    mem = _v1("memory", cgroups_path)
    stat = _kv(mem / "memory.stat")
    cpuacct = _v1("cpuacct", cgroups_path)
    percpu = tuple(int(v) for v in (_read(cpuacct / "cpuacct.usage_percpu") or "").split())
    acct = _kv(cpuacct / "cpuacct.stat")
    tick_ns = 1_000_000_000 // _CLOCK_TICKS
    throttle = _kv(_v1("cpu", cgroups_path) / "cpu.stat")
    limit = _int(mem / "memory.limit_in_bytes")
    pids_max = _int(_v1("pids", cgroups_path) / "pids.max")
    return CgroupStats(
        memory_usage=_int(mem / "memory.usage_in_bytes"),
        memory_max_usage=_int(mem / "memory.max_usage_in_bytes"),
        memory_limit=limit if limit < 2**62 else _host_memory(),
        memory_failcnt=_int(mem / "memory.failcnt"),
        memory_cache=stat.get("total_cache", stat.get("cache", 0)),
        memory_rss=stat.get("total_rss", stat.get("rss", 0)),
        memory_stat=stat,
        cpu_total_usage=_int(cpuacct / "cpuacct.usage"),
        cpu_percpu_usage=percpu,
        cpu_usage_in_kernelmode=acct.get("system", 0) * tick_ns,
        cpu_usage_in_usermode=acct.get("user", 0) * tick_ns,
        system_cpu_usage=system_cpu_usage(),
        online_cpus=online_cpus(),
        throttling_periods=throttle.get("nr_periods", 0),
        throttled_periods=throttle.get("nr_throttled", 0),
        throttled_time=throttle.get("throttled_time", 0),
        pids_current=_int(_v1("pids", cgroups_path) / "pids.current"),
        pids_limit=pids_max,
        blkio_io_service_bytes_recursive=_blkio_v1(_v1("blkio", cgroups_path)),
    )


def _blkio_v1(path: Path) -> tuple[BlkioEntry, ...]:
    entries = []
    for line in (_read(path / "blkio.throttle.io_service_bytes_recursive") or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            entries.append(BlkioEntry(int(major), int(minor), parts[1], int(parts[2])))
    return tuple(entries)


def _read_stats_v2(path: Path) -> CgroupStats:
    stat = _kv(path / "memory.stat")
    cpu = _kv(path / "cpu.stat")
    entries = []
    for line in (_read(path / "io.stat") or "").splitlines():
        dev, *pairs = line.split()
        major, minor = (int(x) for x in dev.split(":"))
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        entries.append(BlkioEntry(major, minor, "read", int(values.get("rbytes", 0))))
        entries.append(BlkioEntry(major, minor, "write", int(values.get("wbytes", 0))))
    limit = _int(path / "memory.max")
    return CgroupStats(
        memory_usage=_int(path / "memory.current"),
        memory_max_usage=_int(path / "memory.peak"),
        memory_limit=limit or _host_memory(),
        memory_failcnt=_kv(path / "memory.events").get("max", 0),
        memory_cache=stat.get("file", 0),
        memory_rss=stat.get("anon", 0),
        memory_stat=stat,
        cpu_total_usage=cpu.get("usage_usec", 0) * 1000,
        cpu_usage_in_kernelmode=cpu.get("system_usec", 0) * 1000,
        cpu_usage_in_usermode=cpu.get("user_usec", 0) * 1000,
        system_cpu_usage=system_cpu_usage(),
        online_cpus=online_cpus(),
        throttling_periods=cpu.get("nr_periods", 0),
        throttled_periods=cpu.get("nr_throttled", 0),
        throttled_time=cpu.get("throttled_usec", 0) * 1000,
        pids_current=_int(path / "pids.current"),
        pids_limit=_int(path / "pids.max"),
        blkio_io_service_bytes_recursive=tuple(entries),
    )


def _host_memory() -> int:
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def list_pids(cgroups_path: str) -> list[int]:
    """Every pid in the container's cgroup (and its children)."""
    base = CGROUP_ROOT / _rel(cgroups_path) if is_unified() else _v1("pids", cgroups_path)
    if not base.exists():
        base = _v1("memory", cgroups_path)
    pids: set[int] = set()
    for dirpath, _dirs, _files in os.walk(base):
        for line in (_read(Path(dirpath) / "cgroup.procs") or "").split():
            pids.add(int(line))
    return sorted(pids)


async def top(pids: Sequence[int], ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
    """Run ``ps`` on the host and keep the container's rows, like dockerd's ``ContainerTop``."""
    args = ps_args.split() if ps_args else ["-ef"]
    proc = await asyncio.create_subprocess_exec(
        "ps", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        # ps refuses only its arguments (the caller's ps_args): a client error, not ours.
        first = next((line for line in err.decode(errors="replace").splitlines() if line.strip()), "failed")
        raise InvalidArgument(f"ps {ps_args}: {first.strip()}")
    lines = out.decode(errors="replace").splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument(f"Couldn't find PID field in ps output for ps {ps_args}")
    pid_index = titles.index("PID")
    wanted = set(pids)
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_index and fields[pid_index].isdigit() and int(fields[pid_index]) in wanted:
            rows.append(fields)
    return titles, rows


def oom_killed(cgroups_path: str) -> bool:
    """Whether the kernel OOM-killed a process of this cgroup."""
    if is_unified():
        return _kv(CGROUP_ROOT / _rel(cgroups_path) / "memory.events").get("oom_kill", 0) > 0
    return _kv(_v1("memory", cgroups_path) / "memory.oom_control").get("oom_kill", 0) > 0


def remove_cgroup(cgroups_path: str) -> None:
    """rmdir the cgroup (children first) in every hierarchy; missing dirs are fine."""
    rel = _rel(cgroups_path)
    roots = [CGROUP_ROOT] if is_unified() else [CGROUP_ROOT / c for c in _V1_CONTROLLERS]
    if not is_unified() and (CGROUP_ROOT / "unified").is_dir():
        roots.append(CGROUP_ROOT / "unified")
    for root in roots:
        top_dir = root / rel
        if not top_dir.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top_dir), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RuntimeFailure(
                    f"cannot remove cgroup {dirpath}: {exc.strerror} (processes still inside?)"
                ) from exc
