"""Memory per running container: N idle containers (`sleep 3600`, --network none) per peer.

For each peer in turn: note the daemon's PSS/RSS, start N containers, find each container's
monitor as the parent of its init process (conmon for skiff and podman, containerd-shim for
docker), sum the monitors' PSS (/proc/<pid>/smaps_rollup), note the daemon again, remove all.

    .venv/bin/python -m bench.memory --count 100     # and --count 1000 for the growth target
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from bench.common import RUN_ID, brief, figure, parent_pid, pss_kb, rss_kb, write_result
from bench.peers import Peer, docker_peer, podman_peer, skiff_peer


def _daemon_kb(peer: Peer) -> tuple[int, int]:
    pids = peer.daemon_pids()
    return sum(pss_kb(p) for p in pids), sum(rss_kb(p) for p in pids)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def measure(peer: Peer, count: int, max_seconds: float) -> dict[str, float | int]:
    """Start up to ``count`` idle containers, measure, remove them; figures in KiB."""
    before_pss, before_rss = _daemon_kb(peer)
    names: list[str] = []
    deadline = time.monotonic() + max_seconds
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                print(f"{peer.name}: --max-seconds reached after {i} containers")
                break
            name = f"skiff-bench-mem-{RUN_ID}-{i}"
            peer.sh(
                *peer.run_argv("-d", "--network", "none", "--name", name, "busybox", "sleep", "3600")[
                    len(peer.cli) :
                ]
            )
            names.append(name)
        time.sleep(2)  # let monitors and the daemon settle after the last start
        pids: list[int] = []
        for chunk in _chunks(names, 100):
            pids += [int(p) for p in peer.sh("inspect", "-f", "{{.State.Pid}}", *chunk).split()]
        monitors = {parent_pid(p) for p in pids if p > 0} - {0}
        monitor_pss = sum(pss_kb(m) for m in monitors)
        after_pss, after_rss = _daemon_kb(peer)
    finally:
        for chunk in _chunks(names, 50):
            peer.sh("rm", "-f", *chunk, check=False, timeout=600)
    n = max(1, len(names))
    return {
        "containers": len(names),
        "monitors": len(monitors),
        "monitor_pss_kb_per_container": round(monitor_pss / n, 1),
        "daemon_pss_growth_kb_per_container": round((after_pss - before_pss) / n, 1),
        "daemon_rss_growth_kb_per_container": round((after_rss - before_rss) / n, 1),
        "daemon_pss_before_kb": before_pss,
        "daemon_pss_after_kb": after_pss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100, help="idle containers per peer (default 100)")
    parser.add_argument("--max-seconds", type=float, default=900, help="per-peer bound on starting them")
    parser.add_argument("--skip", action="append", default=[], help="peer to leave out")
    args = parser.parse_args()

    setups: dict[str, Callable[[], AbstractContextManager[Peer]]] = {
        "skiff": skiff_peer,
        "docker": docker_peer,
        "podman": podman_peer,
    }
    results: dict[str, dict[str, float | int]] = {}
    notes: list[str] = []
    for name, setup in setups.items():
        if name in args.skip:
            continue
        try:
            with setup() as peer:
                results[name] = measure(peer, args.count, args.max_seconds)
                print(f"{name}: {results[name]}")
        except Exception as exc:
            notes.append(f"{name}: not measured ({brief(exc)})")
            print(f"! {notes[-1]}")

    skiff = results.get("skiff", {})
    total = None
    if skiff:
        total = round(
            (skiff["monitor_pss_kb_per_container"] + max(0.0, skiff["daemon_pss_growth_kb_per_container"]))
            / 1024,
            3,
        )
    growth = skiff.get("daemon_pss_growth_kb_per_container") if skiff else None
    figures = [
        figure(
            f"skiff memory per container at {args.count} (monitor PSS + daemon growth), MB",
            total,
            "<= 1.2",
            1.2,
        ),
        figure(f"skiffd PSS growth per container at {args.count}, KB", growth, "<= 50 (at 1,000)", 50.0),
    ]
    write_result(
        f"memory_{args.count}",
        {
            "title": f"memory per running container, {args.count} idle containers",
            "params": vars(args),
            "per_peer_kb": results,
            "figures": figures,
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
