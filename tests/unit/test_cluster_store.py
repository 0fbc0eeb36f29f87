"""The Store conformance suite on the in-process backends, plus what only they have
(a fake clock for leases, SQLite's persistence, lock and crash atomicity)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skiff.cluster.state import LeaseNotFound, Put, Store, open_store
from skiff.cluster.state.memory import MemoryStore
from skiff.cluster.state.remote import RemoteStore
from skiff.cluster.state.sqlite import SQLiteStore
from skiff.errors import InvalidArgument, Unauthorized, Unavailable
from tests.cluster_store_suite import StoreSuite


class TestMemoryStore(StoreSuite):
    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        try:
            yield store
        finally:
            await store.close()


class TestSQLiteStore(StoreSuite):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.path = tmp_path / "cluster.db"

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(self.path)
        try:
            yield store
        finally:
            await store.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_lease_expiry_on_a_fake_clock(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()

    async def main() -> None:
        store = MemoryStore(clock=clock) if kind == "memory" else SQLiteStore(tmp_path / "c.db", clock=clock)
        try:
            lease = await store.grant(10)
            await store.put("/n/a", b"1", lease=lease.id)
            clock.now += 9
            await store.expire_due()
            assert await store.keepalive(lease.id) == 10  # deadline now 1019
            clock.now += 9.5
            await store.expire_due()
            assert await store.get("/n/a") is not None
            clock.now += 1
            await store.expire_due()
            assert await store.get("/n/a") is None
            with pytest.raises(LeaseNotFound):
                await store.keepalive(lease.id)
        finally:
            await store.close()

    asyncio.run(main())


def test_sqlite_survives_reopen_and_renews_leases(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    clock = FakeClock()

    async def first() -> tuple[int, int]:
        store = SQLiteStore(path, clock=clock)
        lease = await store.grant(5)
        await store.put("/k/leased", b"x", lease=lease.id)
        rev = await store.put("/k/plain", b"y")
        await store.close()
        return lease.id, rev

    lease_id, rev = asyncio.run(first())
    clock.now += 100  # long after the lease's deadline: reopening gives it a fresh TTL

    async def second() -> None:
        store = SQLiteStore(path, clock=clock)
        try:
            assert await store.revision() == rev
            assert await store.get("/k/leased") is not None
            await store.expire_due()
            assert await store.keepalive(lease_id) == 5
            assert await store.put("/k/plain", b"z") == rev + 1
            lease = await store.grant(5)
            assert lease.id > lease_id
            clock.now += 6
            await store.expire_due()
            assert [kv.key for kv in (await store.range("/k/")).kvs] == ["/k/plain"]
        finally:
            await store.close()

    asyncio.run(second())


def test_sqlite_one_process_owns_the_file(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    try:
        with pytest.raises(Unavailable, match="in use"):
            SQLiteStore(tmp_path / "c.db")
    finally:
        asyncio.run(store.close())
    SQLiteStore(tmp_path / "c.db")._db.close()


def test_sqlite_crash_mid_transaction_leaves_nothing(tmp_path: Path) -> None:
    """A process killed inside a store transaction (failpoint) leaves none of it behind."""
    path = tmp_path / "c.db"

    async def seed() -> int:
        store = SQLiteStore(path)
        rev = await store.put("/k/before", b"1")
        await store.close()
        return rev

    rev = asyncio.run(seed())
    child = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from skiff.cluster.state import Put
        from skiff.cluster.state.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore(Path({str(path)!r}))
            await store.txn([], [Put(f"/k/{{i}}", b"x" * 1000) for i in range(500)])

        asyncio.run(main())
        """
    )
    env = dict(os.environ, SKIFF_FAILPOINTS="cluster-store-mid-txn")
    proc = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 137, proc.stderr.decode()

    async def check() -> None:
        store = SQLiteStore(path)
        try:
            assert await store.revision() == rev
            assert [kv.key for kv in (await store.range("/k/")).kvs] == ["/k/before"]
            assert await store.put("/k/after", b"2") == rev + 1
        finally:
            await store.close()

    asyncio.run(check())


def test_sqlite_retains_a_bounded_history(tmp_path: Path) -> None:
    async def main() -> None:
        store = SQLiteStore(tmp_path / "c.db", retain_revisions=100)
        try:
            for i in range(1500):
                await store.txn([], [Put("/k/a", str(i).encode())])
            count = store._db.execute("SELECT count(*) FROM log").fetchone()[0]
            assert 100 <= count <= 1200
        finally:
            await store.close()

    asyncio.run(main())


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    store = open_store(f"sqlite://{tmp_path}/x.db")
    assert isinstance(store, SQLiteStore)
    asyncio.run(store.close())
    etcd = open_store("etcd://10.0.0.1:2379,10.0.0.2:2379?max-txn-ops=512")
    assert etcd.max_txn_ops == 512
    for bad in ("mysql://x", "sqlite://", "etcd://", "etcd://h:1?max-txn-ops=lots"):
        with pytest.raises(InvalidArgument):
            open_store(bad)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_stall_of_the_stores_own_process_expires_no_lease(kind: str, tmp_path: Path) -> None:
    """The embedded stores live in the leader's process: a blocked event loop (a long pass, a
    big GC) must not expire the leases whose keepalives were queued behind it."""

    async def main() -> None:
        store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "c.db")
        try:
            kept, left = await store.grant(1), await store.grant(1)
            await store.put("/n/kept", b"1", lease=kept.id)
            await store.put("/n/left", b"1", lease=left.id)
            await asyncio.sleep(0.3)  # the reaper has looked at the table
            time.sleep(1.6)  # the process stalls for longer than the TTL (the workload here)
            assert await store.keepalive(kept.id) == 1
            assert await store.get("/n/kept") is not None
            async with store.watch("/n/", start_revision=await store.revision() + 1) as w:
                (gone,) = await asyncio.wait_for(anext(aiter(w)), 10)  # the one left alone still expires
            assert gone.kv.key == "/n/left"
            assert await store.keepalive(kept.id) == 1
        finally:
            await store.close()

    asyncio.run(main())


def test_sqlite_watch_reads_old_revisions_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recent events come from memory, older ones (and all after a reopen) from the log table:
    a watch from revision 1 sees the same history either way."""
    import skiff.cluster.state.sqlite as sqlite_mod

    monkeypatch.setattr(sqlite_mod, "RECENT_EVENTS", 5)

    async def history(store: SQLiteStore) -> list[tuple[str, str, int, int]]:
        out = []
        async with store.watch("/h/", start_revision=1) as w:
            async for events in w:
                out += [(e.type.value, e.kv.key, e.kv.mod_revision, e.kv.version) for e in events]
                if out[-1][2] >= await store.revision():
                    return out
        return out

    async def main() -> None:
        store = SQLiteStore(tmp_path / "c.db")
        for i in range(30):
            await store.txn([], [Put(f"/h/{i % 4}", str(i).encode()), Put(f"/other/{i}", b"")])
        await store.delete("/h/1")
        live = await history(store)
        assert len(store._recent) <= 10
        await store.close()
        reopened = SQLiteStore(tmp_path / "c.db")
        try:
            assert await history(reopened) == live
        finally:
            await reopened.close()
        assert len(live) == 31 and live[-1][:2] == ("delete", "/h/1")
        assert [v for _, k, _, v in live if k == "/h/0"] == list(range(1, 9))

    asyncio.run(main())


@contextlib.asynccontextmanager
async def gateway_in_front(store: Store, token: str = "s3cret") -> AsyncIterator[str]:
    """A store gateway on a loopback port serving ``store``; yields its address."""
    from aiohttp import web

    from skiff.cluster.gateway import StoreGateway, static_token

    app = web.Application()
    StoreGateway(lambda: store, static_token(token)).register(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class TestRemoteStoreOverMemory(StoreSuite):
    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[RemoteStore]:
        backing = MemoryStore()
        async with gateway_in_front(backing) as addr:
            store = RemoteStore([addr], "s3cret", max_txn_ops=backing.max_txn_ops)
            try:
                yield store
            finally:
                await store.close()
        await backing.close()


class TestRemoteStoreOverSQLite(StoreSuite):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.path = tmp_path / "cluster.db"

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[RemoteStore]:
        backing = SQLiteStore(self.path)
        async with gateway_in_front(backing) as addr:
            # a dead address first: every call fails over to the live one
            store = RemoteStore(["127.0.0.1:1", addr], "s3cret", max_txn_ops=backing.max_txn_ops)
            try:
                yield store
            finally:
                await store.close()
        await backing.close()


def test_remote_store_refuses_a_wrong_token() -> None:
    async def main() -> None:
        backing = MemoryStore()
        async with gateway_in_front(backing) as addr:
            bad = RemoteStore([addr], "wrong")
            try:
                with pytest.raises(Unauthorized):
                    await bad.put("/k", b"v")
                with pytest.raises(Unauthorized):
                    async with bad.watch("/k") as w:
                        await asyncio.wait_for(anext(aiter(w)), 10)
            finally:
                await bad.close()
            assert await backing.get("/k") is None
        await backing.close()

    asyncio.run(main())


def test_remote_watch_resumes_on_another_gateway() -> None:
    """Two gateways in front of one store (managers on one etcd): the watch's gateway goes
    away, the watch continues on the other from where it was, missing nothing."""

    async def main() -> None:
        backing = MemoryStore()
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(gateway_in_front(backing))
            second = await stack.enter_async_context(gateway_in_front(backing))
            store = RemoteStore([first, second], "s3cret")
            seen: list[str] = []
            try:
                async with store.watch("/w/", start_revision=1) as w:
                    it = aiter(w)
                    await backing.put("/w/a", b"1")
                    seen += [e.kv.key for e in await asyncio.wait_for(anext(it), 10)]
                    await stack.aclose()  # both gateways stop ...
                    await backing.put("/w/b", b"2")
                    async with gateway_in_front(backing) as third:
                        store.set_addrs([third])  # ... and a new one is the manager now
                        await backing.put("/w/c", b"3")
                        while len(seen) < 3:
                            seen += [e.kv.key for e in await asyncio.wait_for(anext(it), 15)]
            finally:
                await store.close()
        assert seen == ["/w/a", "/w/b", "/w/c"]
        await backing.close()

    asyncio.run(main())
