"""``stats``: resource usage per container, computed from the stats JSON like docker does."""

from __future__ import annotations

import time
from typing import Any

import click

from skiff.cli.context import CliContext, pass_cli
from skiff.cli.format.rows import short_id
from skiff.cli.format.table import render_rows
from skiff.client import Client
from skiff.errors import SkiffError
from skiff.units import bytes_size, human_size

STATS_TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
)
STATS_TITLES = {
    "ID": "CONTAINER ID",
    "Container": "CONTAINER",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}


def cpu_percent(stats: dict[str, Any]) -> float:
    """docker's calculateCPUPercentUnix: share of the host's CPU time, times online CPUs."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if system_delta > 0 and cpu_delta > 0:
        return float(cpu_delta) / system_delta * online * 100.0
    return 0.0


def memory_usage(stats: dict[str, Any]) -> tuple[int, int]:
    """(usage without page cache, limit), as docker computes it for cgroup v1 and v2."""
    mem = stats.get("memory_stats") or {}
    usage = int(mem.get("usage") or 0)
    detail = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in detail and detail[key] < usage:
            usage -= int(detail[key])
            break
    return usage, int(mem.get("limit") or 0)


class StatsRow:
    """One container's sample as docker's stats formatter sees it."""

    def __init__(self, ref: str, stats: dict[str, Any]) -> None:
        self.Container = ref
        self.raw = stats
        self.ID = short_id(str(stats.get("id", "")))
        self.Name = str(stats.get("name", "")).removeprefix("/") or "--"
        self.CPUPerc = f"{cpu_percent(stats):.2f}%"
        usage, limit = memory_usage(stats)
        self.MemUsage = f"{bytes_size(usage)} / {bytes_size(limit)}"
        self.MemPerc = f"{(usage / limit * 100.0) if limit else 0.0:.2f}%"
        nets = (stats.get("networks") or {}).values()
        rx, tx = sum(n.get("rx_bytes", 0) for n in nets), sum(n.get("tx_bytes", 0) for n in nets)
        self.NetIO = f"{human_size(rx)} / {human_size(tx)}"
        blk = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
        read = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "read")
        write = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "write")
        self.BlockIO = f"{human_size(read)} / {human_size(write)}"
        self.PIDs = str((stats.get("pids_stats") or {}).get("current", 0))

    def to_json(self) -> dict[str, str]:
        keys = ("BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs")
        return {k: str(getattr(self, k)) for k in keys}


def _sample(client: Client, refs: list[str]) -> list[StatsRow]:
    rows = []
    for ref in refs:
        try:
            stats = next(iter(client.stats(ref, stream=False)), {})
        except SkiffError:
            continue  # the container went away between listing and sampling
        rows.append(StatsRow(ref, stats))
    return rows


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@click.argument("containers", nargs=-1)
@pass_cli
def stats(
    obj: CliContext, all_: bool, no_stream: bool, no_trunc: bool, fmt: str, containers: tuple[str, ...]
) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    client = obj.client

    def refs() -> list[str]:
        if containers:
            return list(containers)
        return [str(c["Id"]) for c in client.containers(all=all_)]

    if no_stream:
        click.echo(render_rows(fmt, _sample(client, refs()), STATS_TITLES, STATS_TABLE))
        return
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    try:
        with Live(Text(""), console=Console(), auto_refresh=False) as live:
            while True:
                text = render_rows(fmt, _sample(client, refs()), STATS_TITLES, STATS_TABLE)
                live.update(Text(text), refresh=True)
                time.sleep(1.0)
    except KeyboardInterrupt:
        return


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(stats)
