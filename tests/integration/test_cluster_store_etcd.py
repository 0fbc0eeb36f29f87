"""The Store conformance suite against a real etcd member (Debian's etcd-server), plus what
only the gateway client has to get right: pagination, etcd's own limits, lost connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from skiff.cluster.state import Put, StoreError
from skiff.cluster.state.etcd import EtcdStore
from skiff.errors import Unavailable
from tests.cluster_store_suite import StoreSuite
from tests.etcd_support import MAX_TXN_OPS, Etcd, etcd_available, running_etcd


@pytest.fixture(scope="module")
def etcd() -> Iterator[Etcd]:
    if not etcd_available():
        pytest.skip("etcd is not installed (Debian package etcd-server; make deps)")
    with running_etcd() as member:
        yield member


class TestEtcdStore(StoreSuite):
    @pytest.fixture(autouse=True)
    def _member(self, etcd: Etcd) -> None:
        self.endpoint = etcd.endpoint

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[EtcdStore]:
        store = EtcdStore([self.endpoint], max_txn_ops=MAX_TXN_OPS)
        try:
            yield store
        finally:
            await store.close()


def test_range_pages_at_one_revision(etcd: Etcd) -> None:
    async def main() -> None:
        store = EtcdStore([etcd.endpoint], max_txn_ops=MAX_TXN_OPS, page=7)
        try:
            await store.txn([], [Put(f"/pages/{i:03}", b"x") for i in range(50)])
            r = await store.range("/pages/")
            assert [kv.key for kv in r.kvs] == [f"/pages/{i:03}" for i in range(50)]
        finally:
            await store.close()

    asyncio.run(main())


def test_etcds_own_txn_limit_is_a_store_error(etcd: Etcd) -> None:
    async def main() -> None:
        store = EtcdStore([etcd.endpoint], max_txn_ops=MAX_TXN_OPS + 10)  # told a wrong limit
        try:
            with pytest.raises(StoreError, match="too many operations"):
                await store.txn([], [Put(f"/lim/{i}", b"") for i in range(MAX_TXN_OPS + 1)])
        finally:
            await store.close()

    asyncio.run(main())


def test_unreachable_endpoints_fall_through_then_fail(etcd: Etcd) -> None:
    async def main() -> None:
        dead = "http://127.0.0.1:9"  # discard port: nothing listens
        store = EtcdStore([dead, etcd.endpoint], timeout=2)
        try:
            rev = await store.put("/fallthrough", b"1")
            assert rev > 1
        finally:
            await store.close()
        alone = EtcdStore([dead], timeout=2)
        try:
            with pytest.raises(Unavailable, match="no etcd endpoint answered"):
                await alone.get("/x")
        finally:
            await alone.close()

    asyncio.run(main())
