"""HA managers on a three-member etcd: three manager processes (``python -m
skiff.cluster.leadership``, each its own etcd client) and 20 hollow nodes in this process.

SIGKILL the leading manager: another one leads within a bound and the services converge; SIGKILL
an etcd member: the cluster keeps working on the other two. Then the store's whole history is
replayed: no slot ever had two tasks meant to run, no task changed node, and no task meant to
run was ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from skiff.cluster import keys, ops
from skiff.cluster.election import Election, parse_leader
from skiff.cluster.model import Service, ServiceSpec, Task, TaskState, from_json
from skiff.cluster.sim import HollowFleet
from skiff.cluster.state.etcd import EtcdStore
from tests.cluster_support import all_tasks, audit, eventually, template
from tests.etcd_support import MAX_TXN_OPS, EtcdCluster, etcd_available, running_etcd_cluster

LEADER_TTL = 3
FAILOVER_BOUND = 15.0  # seconds from SIGKILL to a new leader (the TTL is 3 s)
CONVERGE = 60.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    if not etcd_available():
        pytest.skip("etcd is not installed (Debian package etcd-server; make deps)")
    with running_etcd_cluster(3) as c:
        yield c


@dataclass
class Manager:
    name: str
    proc: asyncio.subprocess.Process
    events: list[dict[str, object]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None


@contextlib.asynccontextmanager
async def managers(endpoints: list[str], count: int = 3) -> AsyncIterator[dict[str, Manager]]:
    """``count`` manager processes; each is stopped by its pid when the block ends."""
    url = "etcd://" + ",".join(e.removeprefix("http://") for e in endpoints) + f"?max-txn-ops={MAX_TXN_OPS}"
    out: dict[str, Manager] = {}
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    try:
        for i in range(1, count + 1):
            name = f"m{i}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "skiff.cluster.leadership",
                f"--store={url}",
                f"--name={name}",
                f"--addr=127.0.0.1:{2376 + i}",
                f"--ttl={LEADER_TTL}",
                stdout=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
            m = out[name] = Manager(name, proc)
            m.reader = asyncio.ensure_future(_read(m))
        yield out
    finally:
        for m in out.values():
            if m.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.proc.pid, signal.SIGTERM)
        for m in out.values():
            try:
                await asyncio.wait_for(m.proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.proc.pid, signal.SIGKILL)
                await m.proc.wait()
            if m.reader is not None:
                m.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await m.reader


async def _read(m: Manager) -> None:
    assert m.proc.stdout is not None
    async for line in m.proc.stdout:
        with contextlib.suppress(ValueError):
            m.events.append(json.loads(line))


async def leader_of(store: EtcdStore) -> str | None:
    kv = await store.get(keys.LEADER)
    info = parse_leader(kv.value if kv else None)
    return str(info["node_id"]) if info else None


def live_tasks(tasks: list[Task], service: Service) -> list[Task]:
    return [
        t
        for t in tasks
        if t.service_id == service.id
        and t.desired_state is TaskState.RUNNING
        and t.state is TaskState.RUNNING
    ]


async def no_task_dropped(store: EtcdStore) -> int:
    """Replay the history: a task meant to run is only ever removed after it was told to stop or
    had ended (no lost task). Returns the task deletions seen."""
    tasks: dict[str, Task] = {}
    deletions = 0
    last = await store.revision()
    async with store.watch(keys.ROOT, start_revision=1) as w:  # ROOT: the last revision may not be a task's
        async for events in w:
            for e in events:
                if not e.kv.key.startswith(keys.TASKS):
                    continue
                tid = e.kv.key.removeprefix(keys.TASKS)
                if e.type == "delete":
                    old = tasks.pop(tid, None)
                    deletions += 1
                    assert old is None or old.desired_state is not TaskState.RUNNING or old.state.terminal, (
                        f"task {tid} ({old.state}) deleted while meant to run, at revision {e.kv.mod_revision}"
                    )
                else:
                    tasks[tid] = from_json(Task, e.kv.value)
            if events[-1].kv.mod_revision >= last:
                break
    return deletions


def test_leader_and_etcd_member_die(etcd3: EtcdCluster) -> None:
    async def main() -> None:
        store = EtcdStore(etcd3.endpoints, max_txn_ops=MAX_TXN_OPS)
        try:
            fleet = HollowFleet(store, 20, ttl=3, lease_group=1)
            await fleet.start()
            try:
                async with managers(etcd3.endpoints) as mgrs:
                    await _scenario(store, fleet, etcd3, mgrs)
            finally:
                await fleet.stop()
            checked = await audit(store)
            deleted = await no_task_dropped(store)
            print(f"{checked} task revisions audited, {deleted} task deletions checked")
            assert checked > 50
        finally:
            await store.close()

    asyncio.run(main())


async def _scenario(
    store: EtcdStore, fleet: HollowFleet, etcd3: EtcdCluster, mgrs: dict[str, Manager]
) -> None:
    async def has_leader() -> bool:
        return await leader_of(store) is not None

    await eventually(store, has_leader, timeout=30)
    web = await ops.create_service(
        store, ServiceSpec(name="web", template=template(), replicas=12), now=time.time()
    )
    api = await ops.create_service(
        store, ServiceSpec(name="api", template=template(), replicas=8), now=time.time()
    )

    def converged(*expected: tuple[Service, int]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            tasks = await all_tasks(store)
            for svc, n in expected:
                live = live_tasks(tasks, svc)
                if len(live) != n or {t.slot for t in live} != set(range(1, n + 1)):
                    return False
            return True

        return check

    await eventually(store, converged((web, 12), (api, 8)), timeout=CONVERGE)

    # 1. SIGKILL the leading manager while a scale-up is pending
    first = await leader_of(store)
    assert first in mgrs
    os.kill(mgrs[first].proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    await ops.update_service(store, web.id, replace(web.spec, replicas=16), now=time.time())

    async def new_leader() -> bool:
        leader = await leader_of(store)
        return leader is not None and leader != first

    await eventually(store, new_leader, timeout=FAILOVER_BOUND + 5)
    failover = time.monotonic() - killed
    second = await leader_of(store)
    print(f"{first} killed: {second} leads after {failover:.2f} s")
    assert failover <= FAILOVER_BOUND
    await eventually(store, converged((web, 16), (api, 8)), timeout=CONVERGE)
    print(f"services converged {time.monotonic() - killed:.2f} s after the kill")
    assert any(e["event"] == "leading" for e in mgrs[str(second)].events)

    # 2. SIGKILL an etcd member: the store keeps its quorum; managers, nodes and clients fail over
    etcd3.kill(0)
    await ops.update_service(store, api.id, replace(api.spec, replicas=11), now=time.time())
    victim = fleet.node_id(3)
    await eventually(store, converged((web, 16), (api, 11)), timeout=CONVERGE)
    assert await leader_of(store) == second  # the leading manager kept its lease through it

    # 3. and a node death is still handled (the leader's watch survived the member's death)
    fleet.kill(victim)

    async def healed() -> bool:
        tasks = await all_tasks(store)
        live = live_tasks(tasks, web) + live_tasks(tasks, api)
        return len(live) == 27 and all(t.node_id != victim for t in live)

    await eventually(store, healed, timeout=CONVERGE)
    per_slot = Counter(
        (t.service_id, t.slot) for t in await all_tasks(store) if t.desired_state is TaskState.RUNNING
    )
    assert max(per_slot.values()) == 1


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """An address that accepts TCP connections (the kernel's backlog) and never answers: what a
    member that lost power looks like to a connection established before."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_silent_member_does_not_hang_watches_or_campaigns(etcd3: EtcdCluster) -> None:
    async def main() -> None:
        with silent_endpoint() as silent:
            store = EtcdStore([silent, *etcd3.endpoints], timeout=1.0, watch_idle=1.0)
            other = EtcdStore(etcd3.endpoints)
            try:
                # a watch whose first connection goes to the silent member moves on to a live one
                start = await other.revision() + 1
                async with store.watch("/skiff-test/", start_revision=start) as w:
                    await other.put("/skiff-test/a", b"1")
                    events = await asyncio.wait_for(anext(aiter(w)), 15)
                assert [e.kv.key for e in events] == ["/skiff-test/a"]
                # a candidate whose store tries the silent member first still takes over
                a = Election(other, "a", ttl=LEADER_TTL)
                await a.campaign()
                store._next = 0
                b = Election(store, "b", ttl=LEADER_TTL)
                waiting = asyncio.ensure_future(b.campaign())
                await asyncio.sleep(0.5)
                assert not waiting.done()
                store._next = 0  # its watch, if any, and its next reads go to the silent one first
                await a.resign()
                await asyncio.wait_for(waiting, FAILOVER_BOUND)
                assert b.is_leader
                await b.close()
            finally:
                await store.close()
                await other.close()

    asyncio.run(main())
