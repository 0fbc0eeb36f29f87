"""``skiff compose`` on a 20-service project: ``up -d`` from nothing, a no-change ``up -d``, and
``down -v``; the same skiff compose CLI against skiffd and against dockerd, same run.

Issue 7's benchmark. The project: 20 busybox services (``sleep`` under ``init: true``), in
four tiers where each tier depends on the one before (``depends_on``, started), every service
on the project's default network, one in four sharing a named volume, each with environment,
labels and a health-free config. Each round, per peer (rotating who goes first):

- ``up -d`` on an empty daemon: network, volume, 20 containers created and started in
  dependency order, independent services in parallel;
- ``up -d`` again with nothing changed: observe, plan, find nothing to do (compose still
  prints a "Running" line per container) -- the figure that "should take well under a second";
- ``down -v``.

The client is skiff's own CLI (``skiff compose``) for both daemons (``SKIFF_HOST`` per peer),
so its cost is identical: the difference is the daemon. dockerd runs with iptables off and a
private address pool; skiffd with its own bridge, pool and chains (as ``bench/run_bridge.py``).

    .venv/bin/python -m bench.compose --runs 10
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.common import brief, figure, print_series, ratio, rounds_parser, summarize, timed_run, write_result
from bench.peers import Peer, docker_peer, skiff_bin, skiff_peer
from bench.run_bridge import SKIFF_BRIDGE, SKIFF_CHAINS, skiff_settings

SERVICES = 20
TIERS = 4
PROJECT = "skbench-compose"
DOCKER_POOL = "10.246.0.0/16"  # dockerd's user networks (br-<id> bridges it deletes with them)
PHASES = ("up", "up no-change", "down")
STARTUP = "skiff CLI start-up (--version)"


def compose_file(services: int = SERVICES, tiers: int = TIERS) -> str:
    """The project: ``services`` services in ``tiers`` dependency tiers."""
    per_tier = services // tiers
    lines = ["services:"]
    for i in range(services):
        tier = i // per_tier
        lines += [
            f"  s{i:02d}:",
            "    image: busybox:latest",
            "    init: true",
            '    command: ["sleep", "1d"]',
            "    environment:",
            f"      SERVICE_INDEX: '{i}'",
            "      TIER: " + f"'{tier}'",
            "    labels:",
            "      bench: compose",
        ]
        if i % 4 == 0:
            lines += ["    volumes:", "      - shared:/shared"]
        if tier > 0:
            deps = [f"s{j:02d}" for j in range((tier - 1) * per_tier, tier * per_tier)]
            lines += ["    depends_on: [" + ", ".join(deps) + "]"]
    lines += ["volumes:", "  shared: {}", ""]
    return "\n".join(lines)


def compose_peer(daemon: Peer) -> Peer:
    """skiff's CLI (``skiff compose -p ...``) against ``daemon``."""
    env = {**daemon.env, "SKIFF_HOST": daemon.env["DOCKER_HOST"]}
    return Peer(daemon.name, [skiff_bin("skiff"), "compose", "-p", PROJECT], env, socket=daemon.socket)


def round_for(peer: Peer, project_dir: Path) -> Callable[[], dict[str, float]]:
    """One measured round on ``peer``: fresh up, no-change up, down -v (ms each)."""

    def run(*args: str) -> float:
        argv = [*peer.cli[:1], *peer.cli[1:], "--project-directory", str(project_dir), *args]
        return timed_run(argv, env=peer.env, timeout=600)

    def one() -> dict[str, float]:
        return {"up": run("up", "-d"), "up no-change": run("up", "-d"), "down": run("down", "-v")}

    return one


def check_project(peer: Peer, project_dir: Path) -> None:
    """An unmeasured up that checks the project really runs (20 containers), then down."""
    base = [*peer.cli, "--project-directory", str(project_dir)]
    subprocess.run([*base, "up", "-d"], env=peer.env, check=True, capture_output=True, timeout=600)
    out = subprocess.run([*base, "ps", "-q"], env=peer.env, check=True, capture_output=True, text=True)
    running = len(out.stdout.split())
    subprocess.run([*base, "down", "-v"], env=peer.env, check=True, capture_output=True, timeout=600)
    if running != SERVICES:
        raise RuntimeError(f"{peer.name}: {running} containers running after up, expected {SERVICES}")


def main() -> None:
    parser = rounds_parser(__doc__, runs=10, warmup=1, max_seconds=900)
    args = parser.parse_args()
    notes: list[str] = []
    rounds: dict[str, Callable[[], dict[str, float]]] = {}
    peers: list[tuple[Peer, Path]] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="skbench-compose-") as tmp:
        project_dir = Path(tmp)
        (project_dir / "compose.yaml").write_text(compose_file())
        setups: dict[str, Callable[[], Peer]] = {
            "skiff": lambda: stack.enter_context(
                skiff_peer(settings=skiff_settings(), bridge=SKIFF_BRIDGE, chain_prefix=SKIFF_CHAINS)
            ),
            "docker": lambda: stack.enter_context(docker_peer(address_pool=DOCKER_POOL)),
        }
        for name, setup in setups.items():
            if name in args.skip:
                continue
            try:
                peer = compose_peer(setup())
                # Whatever happens below, the project's network goes before its daemon does.
                stack.callback(
                    subprocess.run,
                    [*peer.cli, "--project-directory", str(project_dir), "down", "-v", "-t", "0"],
                    env=peer.env,
                    capture_output=True,
                    check=False,
                )
                check_project(peer, project_dir)
                rounds[name] = round_for(peer, project_dir)
                peers.append((peer, project_dir))
            except Exception as exc:  # a missing peer is reported, the other still runs
                notes.append(f"{name}: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")
        for one in rounds.values():
            for _ in range(args.warmup):
                one()
        samples: dict[str, list[float]] = {f"{n} {p}": [] for n in rounds for p in PHASES}
        # The floor under every command above: the CLI starting (Python, imports) and exiting.
        samples[STARTUP] = []
        order = list(rounds)
        deadline = time.monotonic() + args.max_seconds
        for rnd in range(args.runs):
            if time.monotonic() > deadline:
                notes.append(f"stopped after {rnd} rounds: --max-seconds {args.max_seconds:.0f} reached")
                break
            shift = rnd % len(order) if order else 0
            for name in order[shift:] + order[:shift]:
                for phase, ms in rounds[name]().items():
                    samples[f"{name} {phase}"].append(ms)
            samples[STARTUP].append(timed_run([skiff_bin("skiff"), "--version"]))

    series = {name: summarize(s) for name, s in samples.items() if s}
    print_series(f"skiff compose, {SERVICES} services (ms)", series)
    no_change = series.get("skiff up no-change")
    if no_change and STARTUP in series:
        notes.append(
            f"of the no-change up on skiffd (p50 {no_change.p50} ms), {series[STARTUP].p50} ms is the CLI "
            "starting and exiting (`skiff --version`); the rest is loading the file, one container "
            "list, the network and volume lists, one image inspect, and 20 'Running' lines"
        )
    figures = [
        figure(
            "no-change up -d on skiffd, p50 ms",
            no_change.p50 if no_change else None,
            "well under 1000 ms",
            1000.0,
        ),
        figure(
            "up -d from nothing, skiffd/dockerd p50", ratio(series, "skiff up", "docker up"), "<= 1.0", 1.0
        ),
        # The same CLI's start-up dominates a no-change up on either daemon: informational.
        figure(
            "no-change up -d, skiffd/dockerd p50",
            ratio(series, "skiff up no-change", "docker up no-change"),
            "",
            None,
        ),
        figure("down -v, skiffd/dockerd p50", ratio(series, "skiff down", "docker down"), "", None),
    ]
    write_result(
        "compose",
        {
            "title": f"skiff compose: a {SERVICES}-service project, up -d from nothing, no-change up -d, down -v",
            "params": {
                "runs": args.runs,
                "warmup": args.warmup,
                "services": SERVICES,
                "tiers": TIERS,
                "client": "skiff compose (the same CLI) against skiffd and dockerd",
                "network": "the project's default network (dockerd: iptables off)",
            },
            "series": series,
            "figures": figures,
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
