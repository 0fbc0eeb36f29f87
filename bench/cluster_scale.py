"""Cluster scheduler at scale: hollow nodes against a real store (issue 8).

For each store (SQLite, and etcd when Debian's ``etcd-server`` is installed) and node count:

1. N hollow nodes join (``skiff.cluster.sim.HollowFleet``: leases with keepalives, one watch
   that reports assigned tasks running at once), and a leader (``Orchestrator``) starts;
2. S services of R/S replicas each are created at once; **committed placements per second** is
   R over the time from the first create to the leader's last committed placement (the time to
   all-running is reported too);
3. K nodes are killed one after another (their keepalives stop, as a crashed host's): **node
   death -> replicas running elsewhere** is, per lost replica, the time from the kill until its
   replacement is reported running; p50/p99 over all of them. It includes the lease TTL
   (``--ttl``): detection is most of it.
4. leader failover: two managers run the leadership loop (``skiff.cluster.leadership``, each
   with its own store client); the leading one freezes (its store calls hang forever, as a
   SIGKILLed or partitioned process's) while a service is scaled up. **Failover** is the time
   from the freeze until the other manager is elected (its election includes waiting out the
   leader lease, ``--ttl``) and until its first committed plan (it loads the whole view first).

The leader and the store's client run in this process on one event loop. On SQLite the hollow
agents do too (the store lives in this process), so their work is counted against the leader's
rate; on etcd (a separate process) they run in a process of their own, as real agents would
(``--fleet-in-process`` keeps them here). Private dirs under /tmp/skiff-bench-cluster-*, removed
afterwards; etcd (from ``tests/etcd_support.py``) on loopback ports, stopped by its pid.

    .venv/bin/python -m bench.cluster_scale --nodes 1000,5000 --replicas 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.etcd_support import MAX_TXN_OPS, etcd_available, running_etcd

from bench.common import write_result
from skiff.cluster import ops
from skiff.cluster.election import Election
from skiff.cluster.leadership import lead_forever
from skiff.cluster.model import (
    Placement,
    ResourceRequirements,
    Resources,
    RestartPolicy,
    Service,
    ServiceSpec,
    Task,
    TaskTemplate,
    from_json,
)
from skiff.cluster.orchestrator import Orchestrator
from skiff.cluster.sim import CPU, GiB, HollowFleet
from skiff.cluster.state.base import Store
from skiff.cluster.state.etcd import EtcdStore
from skiff.cluster.state.sqlite import SQLiteStore
from skiff.cluster.view import ClusterView

MiB = 1 << 20
PLACEMENT_TARGET = 3750.0  # per second at 5,000 nodes (Nomad's C1M rate)
RESCHEDULE_TARGET = 6.0  # seconds, p99


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


@contextlib.asynccontextmanager
async def open_store(kind: str) -> AsyncIterator[Store]:
    if kind == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="skiff-bench-cluster-"))
        store = SQLiteStore(tmp / "cluster.db", retain_revisions=200_000)
        try:
            yield store
        finally:
            await store.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    with running_etcd(quota_bytes=8 << 30) as member:
        etcd = EtcdStore([member.endpoint], max_txn_ops=MAX_TXN_OPS)
        try:
            yield etcd
        finally:
            await etcd.close()


async def wait_until(event: asyncio.Event, done: Any, timeout: float) -> None:
    """Wait for ``done()`` re-checking each time ``event`` fires (set by the leader or the fleet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        event.clear()
        if done():
            return
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError("benchmark step did not finish in time")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), min(left, 1.0))


class FreezableStore:
    """A manager's store client that can freeze: every call after ``freeze()`` hangs, so its
    keepalives stop and its lease expires in the store, as a crashed manager's."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.max_txn_ops = inner.max_txn_ops
        self.frozen = False

    async def _gate(self) -> None:
        if self.frozen:
            await asyncio.Future()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "watch":
            return self._watch
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*a: Any, **kw: Any) -> Any:
            await self._gate()
            result = await attr(*a, **kw)
            await self._gate()
            return result

        return call

    def _watch(self, prefix: str, *, start_revision: int = 0) -> Any:
        outer, inner = self, self.inner.watch(prefix, start_revision=start_revision)
        events_of = inner.__aiter__()

        class FrozenWatch:
            def __aiter__(self) -> FrozenWatch:
                return self

            async def __anext__(self) -> Any:
                await outer._gate()
                events = await events_of.__anext__()
                await outer._gate()
                return events

            async def __aenter__(self) -> FrozenWatch:
                return self

            async def __aexit__(self, *exc: object) -> None:
                await inner.close()

            async def close(self) -> None:
                await inner.close()

        return FrozenWatch()


async def failover(store: Store, service_id: str, extra: int, ttl: int) -> dict[str, float]:
    """Two managers; the leader freezes as ``extra`` replicas are added to a service: seconds
    until the other one is elected, and until its first committed plan."""
    own: list[Store] = []

    def client() -> Store:
        if isinstance(store, EtcdStore):
            c = EtcdStore(store.endpoints, max_txn_ops=store.max_txn_ops)
            own.append(c)
            return c
        return store

    gc.collect()  # now, not while the managers' leases need their keepalives
    a, b = FreezableStore(client()), client()
    terms: dict[str, tuple[float, Orchestrator]] = {}
    changed = asyncio.Event()

    def recorder(name: str) -> Any:
        def record(event: str, orch: Orchestrator | None) -> None:
            if event == "leading" and orch is not None:
                terms[name] = (time.perf_counter(), orch)
                changed.set()

        return record

    stop = asyncio.Event()
    run_a = asyncio.ensure_future(
        lead_forever(
            Election(a, "a", ttl=ttl),
            lambda: Orchestrator(a, name="a", rng=random.Random(2)),
            stop,
            on_change=recorder("a"),
        )
    )
    await wait_until(changed, lambda: "a" in terms, timeout=60)
    run_b = asyncio.ensure_future(
        lead_forever(
            Election(b, "b", ttl=ttl),
            lambda: Orchestrator(b, name="b", rng=random.Random(3)),
            stop,
            on_change=recorder("b"),
        )
    )
    orch_a = terms["a"][1]
    await wait_until(orch_a.passed, lambda: orch_a.stats["passes"] > 0, timeout=600)
    if "b" in terms:
        raise RuntimeError("the standby manager took over before the leader froze (a stalled leader?)")
    kv = await store.get(f"/skiff/services/{service_id}")
    assert kv is not None
    svc = from_json(Service, kv.value)
    a.frozen = True
    t0 = time.perf_counter()
    await ops.update_service(
        store, service_id, replace(svc.spec, replicas=svc.spec.replicas + extra), now=time.time()
    )
    await wait_until(changed, lambda: "b" in terms, timeout=120)
    elected_s = terms["b"][0] - t0
    orch_b = terms["b"][1]
    await wait_until(orch_b.passed, lambda: orch_b.stats["placements"] >= extra, timeout=600)
    plan_s = time.perf_counter() - t0
    stop.set()
    run_a.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run_a
    await run_b
    await orch_a.stop()
    for c in own:
        await c.close()
    print(
        f"  leader frozen: new leader after {elected_s:.2f} s, its first plan committed after {plan_s:.2f} s"
    )
    return {"failover_elected_s": round(elected_s, 2), "failover_first_plan_s": round(plan_s, 2)}


def fleet_options(nodes: int, ttl: int) -> dict[str, Any]:
    return {
        "cpus": 16 * CPU,
        "memory": 64 * GiB,
        "ttl": ttl,
        "labels": lambda i: {"zone": f"z{i % 3}"},
    }


class FleetProcess:
    """The hollow fleet in a process of its own (etcd only), as real agents are: its watch,
    reports and keepalives stop competing with the leader for this process's CPU. It tells us
    each task it reported running (``R <task> <predecessor|-> <time>`` lines) and takes ``kill
    <node>`` commands; stopped by its pid."""

    def __init__(self, endpoints: list[str], nodes: int, ttl: int, on_running: Any) -> None:
        self.args = {"endpoints": endpoints, "nodes": nodes, "ttl": ttl}
        self.on_running = on_running
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *, own_lease: frozenset[str]) -> None:
        self.args["own_lease"] = sorted(own_lease)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.cluster_scale",
            "--fleet-child",
            json.dumps(self.args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"hollow fleet process did not start: {line!r}")
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 4 and parts[0] == b"R":
                pred = parts[2].decode()
                self.on_running(parts[1].decode(), "" if pred == "-" else pred, float(parts[3]))

    def kill(self, node_id: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"kill {node_id}\n".encode())

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def fleet_child(spec: str) -> None:
    """The child side of ``FleetProcess``."""
    args = json.loads(spec)
    stopping = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        endpoints = args["endpoints"]
        store = EtcdStore(endpoints, max_txn_ops=MAX_TXN_OPS)
        out = sys.stdout

        def on_running(task: Task, now: float) -> None:
            out.write(f"R {task.id} {task.predecessor or '-'} {now}\n")

        fleet = HollowFleet(
            store,
            args["nodes"],
            lease_group=50,
            on_running=on_running,
            keepalive_store=lambda: EtcdStore(endpoints),
            **fleet_options(args["nodes"], args["ttl"]),
        )
        await fleet.start(own_lease=frozenset(args["own_lease"]))
        out.write("ready\n")
        out.flush()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def commands() -> None:
            async for line in reader:
                if line.startswith(b"kill "):
                    fleet.kill(line.split()[1].decode())

        async def flush() -> None:
            while True:
                out.flush()
                await asyncio.sleep(0.02)

        helpers = [asyncio.ensure_future(commands()), asyncio.ensure_future(flush())]
        await stopping.wait()
        for h in helpers:
            h.cancel()
        await fleet.stop()
        await store.close()
        out.flush()

    asyncio.run(run())


async def scenario(
    kind: str, nodes: int, replicas: int, services: int, kills: int, ttl: int, fleet_process: bool = False
) -> dict[str, Any]:
    rng = random.Random(nodes)
    victims = {f"hollow{i:05d}" for i in rng.sample(range(nodes), kills)}
    running_at: dict[str, float] = {}  # task id -> when reported running
    replaced_at: dict[str, float] = {}  # predecessor id -> when its replacement ran
    progress = asyncio.Event()

    def on_running(task: Task, now: float) -> None:
        running_at[task.id] = now
        if task.predecessor:
            replaced_at[task.predecessor] = now
        progress.set()

    async with open_store(kind) as store:
        fleet: HollowFleet | FleetProcess
        if fleet_process and isinstance(store, EtcdStore):

            def ran(task_id: str, predecessor: str, now: float) -> None:
                running_at[task_id] = now
                if predecessor:
                    replaced_at[predecessor] = now
                progress.set()

            fleet = FleetProcess(store.endpoints, nodes, ttl, ran)
        else:
            fleet = HollowFleet(
                store,
                nodes,
                lease_group=1 if kind == "sqlite" else 50,
                on_running=on_running,
                # etcd: the hollow agents' keepalives come from a thread, as from other processes
                keepalive_store=(lambda: EtcdStore(store.endpoints))
                if isinstance(store, EtcdStore)
                else None,
                **fleet_options(nodes, ttl),
            )
        t = time.perf_counter()
        await fleet.start(own_lease=frozenset(victims))
        join_s = time.perf_counter() - t
        leader = Orchestrator(store, rng=random.Random(1))
        await leader.start()
        stop = asyncio.Event()
        loop_task = asyncio.ensure_future(leader.run(stop))
        per_service = replicas // services
        tpl = TaskTemplate(
            image="busybox",
            command=("sleep", "infinity"),
            resources=ResourceRequirements(reservations=Resources(10_000_000, 64 * MiB)),
            placement=Placement(preferences=("spread=node.labels.zone",)),
        )
        gc.collect()
        cpu0, t0 = time.process_time(), time.perf_counter()
        first_service = ""
        for s in range(services):
            spec = ServiceSpec(
                name=f"svc{s:03d}", template=tpl, replicas=per_service, restart=RestartPolicy(delay=0)
            )
            created = await ops.create_service(store, spec, now=time.time())
            first_service = first_service or created.id
        total = per_service * services
        await wait_until(leader.passed, lambda: leader.stats["placements"] >= total, timeout=1800)
        placed_s = time.perf_counter() - t0
        placed_cpu = time.process_time() - cpu0
        await wait_until(progress, lambda: len(running_at) >= total, timeout=1800)
        running_s = time.perf_counter() - t0
        print(
            f"  {kind} {nodes} nodes: {total} placed in {placed_s:.1f} s ({total / placed_s:,.0f}/s), running after {running_s:.1f} s"
        )

        # node deaths, one after another, once the cluster is quiet
        per_replica: list[float] = []
        per_node: list[float] = []
        for victim in sorted(victims):
            lost = [t.id for t in leader.view.tasks_of_node(victim)]
            await asyncio.sleep(0)  # let pending watch batches land before the clock starts
            killed = time.time()
            fleet.kill(victim)
            await wait_until(progress, lambda lost=lost: all(i in replaced_at for i in lost), timeout=120)
            times = [replaced_at[i] - killed for i in lost]
            per_replica += times
            per_node.append(max(times))
            print(f"  killed {victim}: {len(lost)} replicas running elsewhere after {max(times):.2f} s")
        stop.set()
        await loop_task
        await leader.stop()
        leader.view = ClusterView()  # one view fewer in memory while two managers load theirs
        took_over = await failover(store, first_service, 100, ttl)
        await fleet.stop()
    return {
        "store": kind,
        "nodes": nodes,
        "hollow agents": "own process" if isinstance(fleet, FleetProcess) else "in the leader's process",
        "replicas": total,
        "join_s": round(join_s, 2),
        "placements_per_s": round(total / placed_s),
        "placement_cpu_s": round(placed_cpu, 1),
        "all_running_s": round(running_s, 1),
        "reschedule_p50_s": round(statistics.median(per_replica), 2),
        "reschedule_p99_s": round(pct(per_replica, 99), 2),
        "reschedule_node_max_s": round(max(per_node), 2),
        "replicas_rescheduled": len(per_replica),
        **took_over,
        "stale_plans": leader.stats["stale"],
        "passes": leader.stats["passes"],
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the finally blocks stop etcd and remove the temp dirs


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="1000,5000", help="comma-separated node counts")
    ap.add_argument("--replicas", type=int, default=100_000)
    ap.add_argument("--services", type=int, default=20)
    ap.add_argument("--kills", type=int, default=5, help="nodes killed (one after another) per scenario")
    ap.add_argument("--ttl", type=int, default=3, help="node lease TTL in seconds")
    ap.add_argument("--stores", default="sqlite,etcd")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    ap.add_argument(
        "--fleet-in-process",
        action="store_true",
        help="etcd: run the hollow agents in the leader's process too (SQLite always does)",
    )
    ap.add_argument("--fleet-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fleet_child:
        fleet_child(args.fleet_child)
        return
    stores = [s for s in args.stores.split(",") if s]
    notes: list[str] = []
    if "etcd" in stores and not etcd_available():
        stores.remove("etcd")
        notes.append("etcd not measured: Debian etcd-server is not installed")
    rows = []
    for kind in stores:
        for n in (int(x) for x in args.nodes.split(",")):
            rows.append(
                asyncio.run(
                    scenario(
                        kind, n, args.replicas, args.services, args.kills, args.ttl, not args.fleet_in_process
                    )
                )
            )
    figures = []
    for r in rows:
        at_target_scale = r["nodes"] >= 5000
        figures.append(
            {
                "what": f"committed placements/s, {r['nodes']} nodes, {r['replicas']:,} replicas, {r['store']}",
                "value": r["placements_per_s"],
                "target": f">= {PLACEMENT_TARGET:,.0f}/s" if at_target_scale else None,
                "met": r["placements_per_s"] >= PLACEMENT_TARGET if at_target_scale else None,
            }
        )
        figures.append(
            {
                "what": f"node death -> replicas running elsewhere, p50 / p99 s, {r['nodes']} nodes, {r['store']}",
                "value": f"{r['reschedule_p50_s']} / {r['reschedule_p99_s']}",
                "target": f"p99 <= {RESCHEDULE_TARGET:.0f} s",
                "met": r["reschedule_p99_s"] <= RESCHEDULE_TARGET,
            }
        )
        figures.append(
            {
                "what": f"leader failover: frozen leader -> new leader elected / its first committed plan, s, {r['nodes']} nodes, {r['store']}",
                "value": f"{r['failover_elected_s']} / {r['failover_first_plan_s']}",
                "target": None,
                "met": None,
            }
        )
    for r in rows:
        print(r)
    if not args.no_write:
        write_result(
            "cluster_scale",
            {
                "title": "cluster: hollow nodes, committed placements/s and node-death rescheduling",
                "params": {
                    "replicas": args.replicas,
                    "services": args.services,
                    "kills": args.kills,
                    "lease TTL s (nodes and leader)": args.ttl,
                    "reservation": "0.01 CPU, 64 MiB, spread=node.labels.zone (3 zones)",
                },
                "figures": figures,
                "rows": rows,
                "notes": notes,
            },
        )


if __name__ == "__main__":
    main()
