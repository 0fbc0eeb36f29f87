"""Docker's stats JSON from cgroup readings (v1 and v2 read alike by runtime.cgroups)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skiff.engine.model import Container
from skiff.runtime.cgroups import CgroupStats, list_pids, read_stats

JSON = dict[str, Any]
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def _cpu(s: CgroupStats) -> JSON:
    return {
        "cpu_usage": {
            "total_usage": s.cpu_total_usage,
            "percpu_usage": list(s.cpu_percpu_usage) or None,
            "usage_in_kernelmode": s.cpu_usage_in_kernelmode,
            "usage_in_usermode": s.cpu_usage_in_usermode,
        },
        "system_cpu_usage": s.system_cpu_usage,
        "online_cpus": s.online_cpus,
        "throttling_data": {
            "periods": s.throttling_periods,
            "throttled_periods": s.throttled_periods,
            "throttled_time": s.throttled_time,
        },
    }


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


_NET_FIELDS = (
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    None,
    None,
    None,
    None,
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
)


def network_stats(pid: int) -> JSON | None:
    """Docker's ``networks``: per-interface counters from the container's /proc/PID/net/dev."""
    if pid <= 0:
        return None
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return None
    out: JSON = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo" or not rest:
            continue
        values = rest.split()
        out[name] = {key: int(values[i]) for i, key in enumerate(_NET_FIELDS) if key and i < len(values)}
    return out or None


def stats_json(c: Container, running: bool, previous: JSON | None = None) -> JSON:
    """One stats sample; ``previous`` supplies ``precpu_stats`` and ``preread``."""
    if running:
        s = read_stats(c.cgroups_path, list_pids(c.cgroups_path))
        read = _now()
    else:
        s, read = CgroupStats(), _ZERO_TIME
    limit = s.memory_limit if 0 < s.memory_limit < 2**62 else _host_memory()
    blkio = [
        {"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}
        for e in s.blkio_io_service_bytes_recursive
    ]
    return {
        "read": read,
        "preread": previous["read"] if previous else _ZERO_TIME,
        "pids_stats": {"current": s.pids_current, **({"limit": s.pids_limit} if s.pids_limit else {})},
        "blkio_stats": {
            "io_service_bytes_recursive": blkio or None,
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(s),
        "precpu_stats": previous["cpu_stats"] if previous else _cpu(CgroupStats()),
        "memory_stats": {
            "usage": s.memory_usage,
            "max_usage": s.memory_max_usage,
            "stats": dict(s.memory_stat),
            "failcnt": s.memory_failcnt,
            "limit": limit,
        }
        if running
        else {},
        **({"networks": nets} if running and (nets := network_stats(c.state.pid)) else {}),
        "name": "/" + c.name,
        "id": c.id,
    }
