"""A manager's leadership loop: campaign -> run the Orchestrator until leadership is lost ->
stop it -> campaign again (``lead_forever``).

Every manager runs this; the ``Election`` makes sure one of them at a time runs the leader's
loop. A fresh Orchestrator per term loads its view from the store, so nothing a previous term
believed survives into the next.

Also a process of its own, for HA tests and benchmarks (no skiffd around it)::

    python -m skiff.cluster.leadership --store etcd://127.0.0.1:2379 --name m1 --ttl 3

prints one JSON line per change (``{"event": "leading"|"lost"|"stopped", "name": ..., "t": ...}``)
and resigns on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from skiff.cluster.election import Election, leader_value
from skiff.cluster.orchestrator import Orchestrator
from skiff.errors import SkiffError

log = logging.getLogger(__name__)

RESTART_DELAY = 0.5  # seconds before campaigning again after a term ended in an error


async def lead_forever(
    election: Election,
    make_orchestrator: Callable[[], Orchestrator],
    stop: asyncio.Event,
    *,
    on_change: Callable[[str, Orchestrator | None], None] | None = None,
) -> None:
    """Lead whenever the election lets us, until ``stop`` is set; then resign.

    ``on_change("leading", orchestrator)`` when a term starts and ``on_change("lost", ...)``
    when it ends (for logs, metrics, tests).
    """

    def tell(event: str, orch: Orchestrator | None) -> None:
        if on_change is not None:
            on_change(event, orch)

    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            campaign = asyncio.ensure_future(election.campaign())
            await asyncio.wait([campaign, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not campaign.done():
                campaign.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await campaign
                break
            campaign.result()
            orch = make_orchestrator()
            tell("leading", orch)
            failed = False
            try:
                await _term(election, orch, stopping)
            except (SkiffError, OSError) as e:
                log.warning("leadership: the leader's loop failed: %s", e)
                failed = True
            tell("lost", orch)
            if failed or election.is_leader:  # an error ended the term: let another manager lead
                await election.resign()
            if failed and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESTART_DELAY)
    finally:
        stopping.cancel()
        await election.resign()


async def _term(election: Election, orch: Orchestrator, stopping: asyncio.Future[Any]) -> None:
    """One term: the orchestrator runs until leadership is lost or we are told to stop."""
    await orch.start()
    halt = asyncio.Event()
    run: asyncio.Future[Any] = asyncio.ensure_future(orch.run(halt))
    lost: asyncio.Future[Any] = asyncio.ensure_future(election.lost.wait())
    try:
        await asyncio.wait([run, lost, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        halt.set()
        try:
            # a pass in flight may finish (its plans compare what they read, so a deposed
            # leader's late commit either holds or is refused); one that hangs on an
            # unreachable store is cancelled after a TTL
            await asyncio.wait([run], timeout=election.ttl)
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
            else:
                run.result()
        finally:
            await orch.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="run one manager's leadership loop (tests, benchmarks)")
    ap.add_argument("--store", required=True, help="store URL: etcd://h1:p1,h2:p2[?max-txn-ops=N]")
    ap.add_argument("--name", required=True, help="this candidate's node id")
    ap.add_argument("--addr", default="", help="this manager's cluster address (for the leader key)")
    ap.add_argument("--ttl", type=int, default=5, help="leader lease TTL, seconds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    def emit(event: str, orch: Orchestrator | None = None) -> None:
        print(json.dumps({"event": event, "name": args.name, "t": time.time()}), flush=True)

    async def run() -> None:
        from skiff.cluster.state import open_store

        store = open_store(args.store)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        election = Election(store, args.name, value=leader_value(args.name, args.addr), ttl=args.ttl)
        try:
            emit("started")
            await lead_forever(election, lambda: Orchestrator(store, name=args.name), stop, on_change=emit)
        finally:
            await store.close()
            emit("stopped")

    asyncio.run(run())


if __name__ == "__main__":
    main()
