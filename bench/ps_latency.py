"""`GET /containers/json?all=1` with 1,000 containers (created, not started), skiff vs docker.

Containers are created through the Engine API directly (4 threads), then the list call is
timed over the unix socket with a bare HTTP client (no client library cost), interleaved
between the daemons. The figure is request-to-last-byte on loopback: server time plus a
negligible transfer.

    .venv/bin/python -m bench.ps_latency --containers 1000 --runs 30
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from bench.common import RUN_ID, api_call, brief, figure, print_series, ratio, summarize, write_result
from bench.peers import Peer, docker_peer, skiff_peer


def create_many(peer: Peer, count: int, max_seconds: float) -> list[str]:
    """Create up to ``count`` containers (bounded in time); returns their ids."""
    assert peer.socket is not None
    sock = peer.socket
    deadline = time.monotonic() + max_seconds
    body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}}

    def create(i: int) -> str:
        if time.monotonic() > deadline:
            return ""
        status, data = api_call(sock, "POST", f"/containers/create?name=skiff-bench-ps-{RUN_ID}-{i}", body)
        if status != 201:
            raise RuntimeError(f"{peer.name}: create failed ({status}): {data[:200]!r}")
        return str(json.loads(data)["Id"])

    with ThreadPoolExecutor(4) as pool:
        return [cid for cid in pool.map(create, range(count)) if cid]


def time_ps(sock: str) -> tuple[float, int]:
    start = time.perf_counter()
    status, data = api_call(sock, "GET", "/containers/json?all=1")
    elapsed = (time.perf_counter() - start) * 1000.0
    if status != 200:
        raise RuntimeError(f"GET /containers/json failed ({status})")
    return elapsed, len(json.loads(data))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--max-seconds", type=float, default=600, help="per-peer bound on creating")
    parser.add_argument("--skip", action="append", default=[])
    args = parser.parse_args()

    peers: dict[str, Peer] = {}
    notes: list[str] = []
    samples: dict[str, list[float]] = {}
    with ExitStack() as stack:
        for name, setup in (("skiff", skiff_peer), ("docker", docker_peer)):
            if name in args.skip:
                continue
            try:
                peer = stack.enter_context(setup())
                made = create_many(peer, args.containers, args.max_seconds)
                if len(made) < args.containers:
                    notes.append(f"{name}: only {len(made)} containers created within --max-seconds")
                peers[name] = peer
            except Exception as exc:
                notes.append(f"{name}: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")
        for _ in range(args.runs):
            for name, peer in peers.items():
                assert peer.socket is not None
                ms, _listed = time_ps(peer.socket)
                samples.setdefault(name, []).append(ms)
        # Teardown (ExitStack) force-removes every container of each private daemon.

    series = {name: summarize(s) for name, s in samples.items()}
    print_series(f"GET /containers/json?all=1 with {args.containers} containers (ms)", series)
    skiff_p50 = series["skiff"].p50 if "skiff" in series else None
    write_result(
        "ps_latency",
        {
            "title": f"GET /containers/json?all=1 with {args.containers} containers",
            "params": vars(args),
            "series": series,
            "figures": [
                figure(f"ps with {args.containers} containers, skiff p50 ms", skiff_p50, "<= 50 ms", 50.0),
                figure("same, skiff/docker p50", ratio(series, "skiff", "docker"), "", None),
            ],
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
