"""The docker CLI with 100 containers: `ps`, `ps -a`, `inspect`, and `run --rm`, skiffd vs dockerd.

Issue 4's benchmark: what a docker CLI user waits for, against either daemon. Each daemon first
gets ``--containers`` containers (``sleep 3600``, no network) created through its Engine API,
``--running`` of them started. Then every round runs each command once against each daemon, in
a rotated order, with the same client (``/usr/local/bin/docker``, ``DOCKER_HOST`` set per daemon),
so the client's own cost is the same on both sides:

- ``ps``: the running containers; ``ps -a``: all of them (one ``GET /containers/json`` each);
- ``inspect 1``: one container; ``inspect all``: every container in one command (the CLI makes
  one ``GET /containers/{id}/json`` per argument);
- ``run --rm``: ``run --rm --network none busybox true`` with the 100 containers present
  (dockerd here has no bridge; ``bench/run_bridge.py`` measures the bridge).

    .venv/bin/python -m bench.docker_cli --runs 30
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from bench.common import (
    RUN_ID,
    api_call,
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
from bench.run_bridge import SKIFF_BRIDGE, SKIFF_CHAINS, skiff_settings

PEERS = ("skiff", "docker")


def populate(peer: Peer, count: int, running: int) -> list[str]:
    """Create ``count`` sleeping containers (4 API clients at a time), start the first ``running``."""
    assert peer.socket is not None
    sock = peer.socket
    body = {"Image": "busybox", "Cmd": ["sleep", "3600"], "HostConfig": {"NetworkMode": "none"}}

    def create(i: int) -> str:
        status, data = api_call(sock, "POST", f"/containers/create?name=skbench-cli-{RUN_ID}-{i}", body)
        if status != 201:
            raise RuntimeError(f"{peer.name}: create failed ({status}): {data[:200]!r}")
        return str(json.loads(data)["Id"])

    def start(cid: str) -> None:
        status, data = api_call(sock, "POST", f"/containers/{cid}/start")
        if status != 204:
            raise RuntimeError(f"{peer.name}: start failed ({status}): {data[:200]!r}")

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(create, range(count)))
        list(pool.map(start, ids[:running]))
    return ids


def commands_for(peer: Peer, ids: list[str]) -> dict[str, list[str]]:
    """The measured command lines against one daemon."""
    return {
        "ps": peer.argv("ps"),
        "ps -a": peer.argv("ps", "-a"),
        "inspect 1": peer.argv("inspect", ids[0]),
        "inspect all": peer.argv("inspect", *ids),
        "run --rm": peer.run_argv("--rm", "--network", "none", "busybox", "true"),
    }


def check_counts(peer: Peer, count: int, running: int) -> None:
    """The daemon lists what we made (a daemon that lists less would look faster)."""
    listed_all = len(peer.sh("ps", "-aq").split())
    listed_running = len(peer.sh("ps", "-q").split())
    if (listed_all, listed_running) != (count, running):
        raise RuntimeError(
            f"{peer.name}: ps shows {listed_all} containers ({listed_running} running), "
            f"expected {count} ({running})"
        )


def main() -> None:
    parser = rounds_parser(__doc__, runs=30, warmup=2, max_seconds=900)
    parser.add_argument("--containers", type=int, default=100, help="containers per daemon (default 100)")
    parser.add_argument("--running", type=int, default=20, help="how many of them run (default 20)")
    args = parser.parse_args()
    if not 0 < args.running <= args.containers:
        parser.error("--running must be between 1 and --containers")

    timed: dict[str, Callable[[int], float]] = {}
    notes: list[str] = []
    with ExitStack() as stack:
        setups: dict[str, Callable[[], Peer]] = {
            "skiff": lambda: stack.enter_context(
                skiff_peer(settings=skiff_settings(), bridge=SKIFF_BRIDGE, chain_prefix=SKIFF_CHAINS)
            ),
            "docker": lambda: stack.enter_context(docker_peer()),
        }
        for name in PEERS:
            if name in args.skip:
                continue
            try:
                peer = setups[name]()
                ids = populate(peer, args.containers, args.running)
                check_counts(peer, args.containers, args.running)
            except Exception as exc:  # a missing peer is reported, the other still runs
                notes.append(f"{name}: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")
                continue
            for what, argv in commands_for(peer, ids).items():
                timed[f"{name}: {what}"] = lambda i, argv=argv, env=peer.env: timed_run(argv, env=env)

        for run in timed.values():
            for i in range(args.warmup):
                run(-1 - i)
        samples = interleaved_rounds(timed, args.runs, args.max_seconds, notes)
        # Leaving the stack force-removes every container and stops both daemons.

    series = {name: summarize(s) for name, s in samples.items() if s}
    print_series(f"docker CLI with {args.containers} containers ({args.running} running), ms", series)
    figures = []
    for what in ("ps", "ps -a", "inspect 1", "inspect all", "run --rm"):
        limit = 0.3 if what == "run --rm" else None  # performance.md: run --rm --network none
        figures.append(
            figure(
                f"docker {what}, skiff/docker p50",
                ratio(series, f"skiff: {what}", f"docker: {what}"),
                "<= 0.3" if limit else "",
                limit,
            )
        )
    write_result(
        "docker_cli",
        {
            "title": f"docker CLI: ps, inspect and run --rm with {args.containers} containers",
            "params": {
                "containers": args.containers,
                "running": args.running,
                "runs": args.runs,
                "warmup": args.warmup,
                "client": "docker CLI for skiffd and dockerd",
            },
            "series": series,
            "figures": figures,
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
