"""cgroup file parsing against a fake /sys/fs/cgroup tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument
from skiff.runtime import cgroups


@pytest.fixture
def v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    files = {
        "memory/skiff/c1/memory.usage_in_bytes": "1048576\n",
        "memory/skiff/c1/memory.max_usage_in_bytes": "2097152\n",
        "memory/skiff/c1/memory.limit_in_bytes": "67108864\n",
        "memory/skiff/c1/memory.failcnt": "3\n",
        "memory/skiff/c1/memory.stat": "cache 4096\nrss 8192\ntotal_cache 4096\ntotal_rss 8192\n",
        "memory/skiff/c1/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        "cpuacct/skiff/c1/cpuacct.usage": "123456789\n",
        "cpuacct/skiff/c1/cpuacct.usage_percpu": "100000000 23456789 \n",
        "cpuacct/skiff/c1/cpuacct.stat": "user 10\nsystem 5\n",
        "cpu/skiff/c1/cpu.stat": "nr_periods 7\nnr_throttled 2\nthrottled_time 999\n",
        "pids/skiff/c1/pids.current": "4\n",
        "pids/skiff/c1/pids.max": "max\n",
        "pids/skiff/c1/cgroup.procs": "10\n11\n",
        "pids/skiff/c1/sub/cgroup.procs": "12\n",
        "blkio/skiff/c1/blkio.throttle.io_service_bytes_recursive": "8:0 Read 100\n8:0 Write 200\nTotal 300\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_read_stats_v1(v1: Path) -> None:
    s = cgroups.read_stats("/skiff/c1")
    assert (s.memory_usage, s.memory_max_usage, s.memory_limit, s.memory_failcnt) == (
        1048576,
        2097152,
        67108864,
        3,
    )
    assert (s.memory_cache, s.memory_rss) == (4096, 8192)
    assert s.cpu_total_usage == 123456789
    assert s.cpu_percpu_usage == (100000000, 23456789)
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert (s.cpu_usage_in_usermode, s.cpu_usage_in_kernelmode) == (10 * tick, 5 * tick)
    assert (s.throttling_periods, s.throttled_periods, s.throttled_time) == (7, 2, 999)
    assert (s.pids_current, s.pids_limit) == (4, 0)
    assert [(e.op, e.value) for e in s.blkio_io_service_bytes_recursive] == [("Read", 100), ("Write", 200)]
    assert s.system_cpu_usage > 0 and s.online_cpus >= 1


def test_pids_oom_and_path_checks(v1: Path) -> None:
    assert cgroups.list_pids("skiff/c1") == [10, 11, 12]
    assert cgroups.oom_killed("/skiff/c1") is True
    with pytest.raises(InvalidArgument):
        cgroups.read_stats("/skiff/../../etc")


def test_remove_cgroup_removes_empty_dirs_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    (tmp_path / "memory/skiff-x/c1/child").mkdir(parents=True)
    (tmp_path / "pids/skiff-x").mkdir(parents=True)
    cgroups.remove_cgroup("/skiff-x")
    assert not (tmp_path / "memory/skiff-x").exists() and not (tmp_path / "pids/skiff-x").exists()
    cgroups.remove_cgroup("/skiff-x")  # idempotent


def test_top_filters_to_container_pids() -> None:
    import asyncio

    titles, rows = asyncio.run(cgroups.top([os.getpid()], "-ef"))
    assert "PID" in titles and "CMD" in titles
    assert len(rows) == 1 and rows[0][titles.index("PID")] == str(os.getpid())
