"""`run --rm --network none busybox true`: skiff vs docker vs podman vs bare runc, interleaved.

Client: the docker CLI (``/usr/local/bin/docker``) with ``DOCKER_HOST`` drives both skiffd and
dockerd, so the client cost is the same on both sides; ``skiff run`` through skiff's own CLI is
an extra line. podman uses its own CLI; runc is ``runc run`` of a bundle of the same rootfs.
Each round runs every peer once, in a rotated order, so drift on a noisy machine hits all alike.

    .venv/bin/python -m bench.run_latency --runs 30
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

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
from bench.peers import docker_peer, podman_peer, runc_bundle, skiff_peer, skiff_peer_cli

RUN_ARGS = ("--rm", "--network", "none", "busybox", "true")


def main() -> None:
    parser = rounds_parser(__doc__, runs=30, warmup=2, max_seconds=900)
    args = parser.parse_args()

    commands: dict[str, Callable[[int], float]] = {}
    notes: list[str] = []
    with ExitStack() as stack:
        for name, setup in _setups(stack).items():
            if name in args.skip:
                continue
            try:
                commands.update(setup())
            except Exception as exc:  # a missing peer is reported, the others still run
                notes.append(f"{name}: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")

        for run in commands.values():
            for i in range(args.warmup):
                run(-1 - i)
        samples = interleaved_rounds(commands, args.runs, args.max_seconds, notes)

    series = {name: summarize(s) for name, s in samples.items() if s}
    print_series("run --rm --network none busybox true (ms)", series)
    figures = [
        figure(
            "run --rm true --network none, skiff/docker p50 (docker CLI)",
            ratio(series, "skiff", "docker"),
            "<= 0.3",
            0.3,
        ),
        figure("same, skiff/docker p95", ratio(series, "skiff", "docker", "p95"), "", None),
        figure("same, skiff/podman p50", ratio(series, "skiff", "podman"), "", None),
        figure("same, skiff/bare runc p50", ratio(series, "skiff", "runc"), "", None),
        figure("same, skiff CLI/docker p50", ratio(series, "skiff CLI", "docker"), "", None),
    ]
    write_result(
        "run_latency",
        {
            "title": "run --rm --network none busybox true",
            "params": {
                "runs": args.runs,
                "warmup": args.warmup,
                "client": "docker CLI for skiffd and dockerd",
            },
            "series": series,
            "figures": figures,
            "notes": notes,
        },
    )


def _setups(stack: ExitStack) -> dict[str, Callable[[], dict[str, Callable[[int], float]]]]:
    """Per peer: enter its context and return its timed commands (name -> run(i) -> ms)."""

    def skiff() -> dict[str, Callable[[int], float]]:
        daemon = stack.enter_context(skiff_peer())
        cli = skiff_peer_cli(daemon)
        return {
            "skiff": lambda i: timed_run(daemon.run_argv(*RUN_ARGS), env=daemon.env),
            "skiff CLI": lambda i: timed_run(cli.run_argv(*RUN_ARGS), env=cli.env),
        }

    def docker() -> dict[str, Callable[[int], float]]:
        peer = stack.enter_context(docker_peer())
        return {"docker": lambda i: timed_run(peer.run_argv(*RUN_ARGS), env=peer.env)}

    def podman() -> dict[str, Callable[[int], float]]:
        peer = stack.enter_context(podman_peer())
        return {"podman": lambda i: timed_run(peer.run_argv(*RUN_ARGS), env=peer.env)}

    def runc() -> dict[str, Callable[[int], float]]:
        argv = stack.enter_context(runc_bundle("runc"))
        return {"runc": lambda i: timed_run(argv(i))}

    return {"skiff": skiff, "docker": docker, "podman": podman, "runc": runc}


if __name__ == "__main__":
    main()
