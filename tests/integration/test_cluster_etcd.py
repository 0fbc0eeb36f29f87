"""The cluster core on a real etcd member: two leaders at once never break the invariants, and
a dead node's replicas run elsewhere (hollow nodes with real etcd leases)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from skiff.cluster import ops
from skiff.cluster.model import NodeStatus, ServiceSpec
from skiff.cluster.state.etcd import EtcdStore
from tests.cluster_support import cluster, split_brain, template
from tests.etcd_support import MAX_TXN_OPS, Etcd, etcd_available, running_etcd


@pytest.fixture
def etcd() -> Iterator[Etcd]:
    """A fresh member per test: the cluster keys live at fixed places under /skiff/."""
    if not etcd_available():
        pytest.skip("etcd is not installed (Debian package etcd-server; make deps)")
    with running_etcd() as member:
        yield member


def test_split_brain_on_etcd(etcd: Etcd) -> None:
    async def main() -> None:
        store = EtcdStore([etcd.endpoint], max_txn_ops=64)
        try:
            checked, stale = await split_brain(store)
            assert checked > 40
            print(f"{checked} task revisions audited; {stale} stale plans re-planned")
        finally:
            await store.close()

    asyncio.run(main())


def test_dead_node_on_etcd(etcd: Etcd) -> None:
    async def main() -> None:
        store = EtcdStore([etcd.endpoint], max_txn_ops=MAX_TXN_OPS)
        async with cluster(4, store=store) as c:
            web = await ops.create_service(
                c.store, ServiceSpec(name="web", template=template(), replicas=8), now=0
            )

            async def all_running() -> bool:
                return len(await c.running(web)) == 8

            await c.until(all_running)
            victim = c.fleet.node_id(2)
            c.fleet.kill(victim)

            async def healed() -> bool:
                run = await c.running(web)
                return len(run) == 8 and all(t.node_id != victim for t in run)

            await c.until(healed)
            assert (await c.node(victim)).status is NodeStatus.DOWN
        await store.close()

    asyncio.run(main())
