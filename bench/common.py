"""Shared helpers for the benchmarks: timing statistics, result files, machine facts, cleanup.

Benchmarks are never tests: they print figures and write ``bench/results/<name>.json``,
which ``bench/report.py`` merges into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RUN_ID = secrets.token_hex(3)  # distinguishes kernel objects of concurrent bench runs


@dataclass(frozen=True)
class Summary:
    """Statistics of one series of measurements, in milliseconds."""

    n: int
    p50: float
    p95: float
    mean: float
    min: float
    max: float


def summarize(samples_ms: Sequence[float]) -> Summary:
    """p50/p95/mean of a series; p95 by nearest rank so it is a value actually observed."""
    if not samples_ms:
        raise ValueError("no samples to summarize")
    ordered = sorted(samples_ms)
    rank95 = max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))
    return Summary(
        n=len(ordered),
        p50=round(statistics.median(ordered), 2),
        p95=round(ordered[rank95], 2),
        mean=round(statistics.fmean(ordered), 2),
        min=round(ordered[0], 2),
        max=round(ordered[-1], 2),
    )


def interleaved_rounds(
    commands: Mapping[str, Callable[[int], float]], runs: int, max_seconds: float, notes: list[str]
) -> dict[str, list[float]]:
    """Run every peer once per round, rotating who goes first; stop adding rounds after
    ``max_seconds`` (noted). Returns each peer's samples in ms."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    order = list(commands)
    deadline = time.monotonic() + max_seconds
    for rnd in range(runs):
        if time.monotonic() > deadline:
            notes.append(f"stopped after {rnd} rounds: --max-seconds {max_seconds:.0f} reached")
            break
        shift = rnd % len(order) if order else 0
        for name in order[shift:] + order[:shift]:
            samples[name].append(commands[name](rnd))
    return samples


def timed_run(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> float:
    """Run a command to completion and return its wall time in ms; raise with its output if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = (time.perf_counter() - start) * 1000.0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return elapsed


def tool_version(argv: Sequence[str]) -> str:
    """First line of a tool's ``--version`` output, or ``absent``."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "absent"


def machine_facts() -> dict[str, str]:
    """Date, kernel, CPU and the versions of every peer, recorded with each result."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": f"{os.cpu_count()} x {cpu}",
        "python": platform.python_version(),
        "runc": tool_version(["runc", "--version"]),
        "crun": tool_version(["crun", "--version"]),
        "conmon": tool_version(["conmon", "--version"]),
        "dockerd": tool_version(["dockerd", "--version"]),
        "docker CLI": tool_version(["docker", "--version"]),
        "podman": tool_version(["podman", "--version"]),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine facts attached."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"bench": name, "machine": machine_facts(), **data}
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    print(f"wrote {path}")
    return path


def _jsonable(obj: object) -> object:
    if isinstance(obj, Summary):
        return asdict(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, to time API calls without any client library in the way."""

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def api_call(socket_path: str, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
    """One Engine API request; returns (status, body)."""
    conn = UnixHTTPConnection(socket_path)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_for_ping(socket_path: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until a daemon answers ``GET /_ping``; fail early if its process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before answering on {socket_path}")
        try:
            status, _ = api_call(socket_path, "GET", "/_ping")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no answer on {socket_path} after {timeout:.0f} s")


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (the order to unmount them)."""
    prefix = str(root.resolve())
    points: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(root: Path) -> None:
    """Unmount everything a peer left below its private dir (lazily if busy)."""
    if not root.exists():
        return
    for point in mounts_under(root):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_cgroups(name: str) -> None:
    """Remove the cgroup ``/<name>`` (and children) from every v1 hierarchy and the v2 mount."""
    base = Path("/sys/fs/cgroup")
    for hierarchy in base.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        # Children first: rmdir on a cgroup only works once it has no sub-cgroups.
        for sub in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if sub.is_dir():
                try:
                    sub.rmdir()
                except OSError:
                    pass
        try:
            top.rmdir()
        except OSError:
            pass


def pss_kb(pid: int) -> int:
    """Proportional set size of one process in KiB (0 if it has gone)."""
    return _rollup_field(pid, "Pss:")


def rss_kb(pid: int) -> int:
    """Resident set size of one process in KiB (0 if it has gone)."""
    return _rollup_field(pid, "Rss:")


def _rollup_field(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def parent_pid(pid: int) -> int:
    """The parent of a process (0 if it has gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def ratio(series: dict[str, Summary], num: str, den: str, stat: str = "p50") -> float | None:
    """``series[num].stat / series[den].stat``, or None when either side was not measured."""
    if num not in series or den not in series:
        return None
    bottom = float(getattr(series[den], stat))
    return round(float(getattr(series[num], stat)) / bottom, 3) if bottom else None


def figure(
    what: str, value: float | None, target: str, limit: float | None, higher_is_better: bool = False
) -> dict[str, Any]:
    """One reported figure with its target from performance.md; ``met`` is None when unmeasured."""
    met: bool | None = None
    if value is not None and limit is not None:
        met = value >= limit if higher_is_better else value <= limit
    return {"what": what, "value": value, "target": target, "met": met}


def print_series(title: str, series: dict[str, Summary]) -> None:
    """A small table on stdout (rich when available)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for name, s in series.items():
            print(f"  {name:12} n={s.n} p50={s.p50} p95={s.p95} mean={s.mean}")
        return
    table = Table(title=title)
    for col in ("peer", "n", "p50", "p95", "mean", "min", "max"):
        table.add_column(col, justify="left" if col == "peer" else "right")
    for name, s in series.items():
        table.add_row(name, *(str(v) for v in (s.n, s.p50, s.p95, s.mean, s.min, s.max)))
    Console().print(table)


def brief(exc: BaseException) -> str:
    """First and last line of an error (for a daemon that died: the cause is at the log's end)."""
    lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1].strip()}"


def rounds_parser(doc: str | None, *, runs: int, warmup: int, max_seconds: float) -> argparse.ArgumentParser:
    """The options every interleaved-rounds bench takes: --runs --warmup --max-seconds --skip."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=runs, help=f"measured rounds per peer (default {runs})")
    parser.add_argument("--warmup", type=int, default=warmup, help="unmeasured rounds per peer first")
    parser.add_argument(
        "--max-seconds", type=float, default=max_seconds, help="stop adding rounds after this"
    )
    parser.add_argument("--skip", action="append", default=[], help="peer to leave out (repeatable)")
    return parser
