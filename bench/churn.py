"""Churn: `run --rm --network none busybox true` per second with 8 concurrent clients, skiff vs docker.

Both daemons are driven by the docker CLI (same client). Phases alternate (docker, skiff,
docker, skiff, ...) so machine drift hits both; each phase lasts a fixed time and every
client stops by itself at the phase deadline (a run already started is allowed to finish).

    .venv/bin/python -m bench.churn --seconds 20 --clients 8
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from contextlib import ExitStack

from bench.common import brief, figure, write_result
from bench.peers import Peer, docker_peer, skiff_peer

RUN_ARGS = ("--rm", "--network", "none", "busybox", "true")


def phase(peer: Peer, clients: int, seconds: float) -> tuple[int, int, float]:
    """Run clients until the deadline; returns (completed, failed, elapsed seconds)."""
    done = [0] * clients
    failed = [0] * clients
    start = time.monotonic()
    deadline = start + seconds

    def client(k: int) -> None:
        while time.monotonic() < deadline:
            proc = subprocess.run(peer.run_argv(*RUN_ARGS), env=peer.env, capture_output=True, timeout=120)
            if proc.returncode == 0:
                done[k] += 1
            else:
                failed[k] += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), sum(failed), time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20, help="length of one phase (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="phases per peer, alternating (default 2)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--skip", action="append", default=[], help="peer to leave out: skiff or docker")
    args = parser.parse_args()

    peers: dict[str, Peer] = {}
    notes: list[str] = []
    totals: dict[str, list[float]] = {}
    with ExitStack() as stack:
        for name, setup in (("docker", docker_peer), ("skiff", skiff_peer)):
            if name in args.skip:
                continue
            try:
                peers[name] = stack.enter_context(setup())
            except Exception as exc:
                notes.append(f"{name}: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")
        for _ in range(args.rounds):
            for name, peer in peers.items():
                ok, bad, elapsed = phase(peer, args.clients, args.seconds)
                rate = ok / elapsed
                totals.setdefault(name, []).append(rate)
                print(f"{name}: {ok} runs in {elapsed:.1f} s = {rate:.2f}/s ({bad} failed)")
                if bad:
                    notes.append(f"{name}: {bad} runs failed in one phase")

    rates = {name: round(sum(r) / len(r), 2) for name, r in totals.items()}
    value = round(rates["skiff"] / rates["docker"], 3) if {"skiff", "docker"} <= rates.keys() else None
    write_result(
        "churn",
        {
            "title": f"churn: run --rm --network none true, {args.clients} concurrent clients",
            "params": vars(args),
            "rates_per_second": rates,
            "figures": [
                figure("churn, skiff/docker runs per second", value, ">= 4", 4.0, higher_is_better=True)
            ],
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
