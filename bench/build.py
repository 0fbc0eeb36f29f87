"""`docker build` (classic builder) of a 6-step Dockerfile on busybox: skiffd vs dockerd, cold and cached.

Issue 5's benchmark. Both daemons are driven by the same docker CLI (``/usr/local/bin/docker``,
``DOCKER_BUILDKIT=0``, ``DOCKER_HOST`` per daemon), so the client's cost is the same on both
sides. The Dockerfile has two RUN steps (each a real container on the default bridge), a COPY
and config-only steps::

    FROM busybox / ENV / RUN / COPY / RUN / CMD

- cold: ``build --no-cache -q`` (every step executes: two containers, two layers, four
  config-only images);
- cached: ``build -q`` after the cold one (every step a cache hit; the context is sent and
  the Dockerfile parsed each time).

Bridges as in ``bench/run_bridge.py``: skiffd's default network on ``skbench-s0`` (with its
masquerading rules), dockerd's on ``skbench-d0`` with iptables off (which favours dockerd).
Each round runs both peers, rotating who goes first.

    .venv/bin/python -m bench.build --runs 20
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.common import (
    brief,
    figure,
    interleaved_rounds,
    print_series,
    ratio,
    rounds_parser,
    summarize,
    timed_run,
    write_result,
)
from bench.peers import Peer, docker_peer, skiff_peer
from bench.run_bridge import DOCKER_CIDR, SKIFF_BRIDGE, SKIFF_CHAINS, skiff_settings

DOCKERFILE = """FROM busybox
ENV GREETING=hello
RUN echo "$GREETING" > /greeting.txt
COPY Dockerfile /app/
RUN wc -c /app/Dockerfile > /app/size.txt
CMD ["cat", "/greeting.txt"]
"""


def build_commands(peer: Peer, context: Path) -> dict[str, Callable[[int], float]]:
    env = {**peer.env, "DOCKER_BUILDKIT": "0"}
    tag = "skbench-build:latest"
    cold = peer.argv("build", "--no-cache", "-q", "-t", tag, str(context))
    cached = peer.argv("build", "-q", "-t", tag, str(context))
    timed_run(cold, env=env, timeout=300)  # the cache the cached runs hit, and a check it works
    return {
        f"{peer.name} cold": lambda i: timed_run(cold, env=env, timeout=300),
        f"{peer.name} cached": lambda i: timed_run(cached, env=env, timeout=300),
    }


def main() -> None:
    parser = rounds_parser(__doc__, runs=20, warmup=1, max_seconds=900)
    args = parser.parse_args()

    commands: dict[str, Callable[[int], float]] = {}
    notes: list[str] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="skbench-build-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(DOCKERFILE)
        setups: dict[str, Callable[[], Peer]] = {
            "skiff": lambda: stack.enter_context(
                skiff_peer(settings=skiff_settings(), bridge=SKIFF_BRIDGE, chain_prefix=SKIFF_CHAINS)
            ),
            "docker": lambda: stack.enter_context(docker_peer(bridge_cidr=DOCKER_CIDR)),
        }
        for name, setup in setups.items():
            if name in args.skip:
                continue
            try:
                commands.update(build_commands(setup(), context))
            except Exception as exc:  # a missing peer is reported, the other still runs
                notes.append(f"{name}: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")
        for run in commands.values():
            for i in range(args.warmup):
                run(-1 - i)
        samples = interleaved_rounds(commands, args.runs, args.max_seconds, notes)

    series = {name: summarize(s) for name, s in samples.items() if s}
    print_series("docker build, classic builder, 6 steps with 2 RUN (ms)", series)
    figures = [
        figure("cold build, skiff/docker p50", ratio(series, "skiff cold", "docker cold"), "<= 0.5", 0.5),
        figure(
            "cached rebuild, skiff/docker p50", ratio(series, "skiff cached", "docker cached"), "<= 1.0", 1.0
        ),
        figure("cold build, skiff/docker p95", ratio(series, "skiff cold", "docker cold", "p95"), "", None),
        figure(
            "cached rebuild, skiff/docker p95",
            ratio(series, "skiff cached", "docker cached", "p95"),
            "",
            None,
        ),
    ]
    write_result(
        "build",
        {
            "title": "docker build (classic builder): 6-step Dockerfile with 2 RUN, cold and cached",
            "params": {
                "runs": args.runs,
                "warmup": args.warmup,
                "client": "docker CLI, DOCKER_BUILDKIT=0, for skiffd and dockerd",
                "network": "default bridge (dockerd: iptables off)",
            },
            "series": series,
            "figures": figures,
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
