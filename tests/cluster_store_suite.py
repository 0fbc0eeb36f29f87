"""One conformance suite for the cluster ``Store`` protocol, run against every backend.

Subclasses provide ``open(self)``: an async context manager yielding a fresh store (or a shared
one: every test works under its own key prefix and only compares revisions relative to what it
saw, so the suite also runs against one etcd member for the whole session).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from skiff.cluster.state import (
    Compacted,
    Compare,
    Delete,
    EventType,
    LeaseNotFound,
    Put,
    Store,
    StoreError,
    WatchEvent,
)

WAIT = 10.0  # seconds an awaited event may take before the test fails


class StoreSuite:
    def open(self) -> AbstractAsyncContextManager[Store]:
        raise NotImplementedError

    def run(self, body: Callable[[Store, str], Awaitable[None]]) -> None:
        prefix = f"/t{secrets.token_hex(4)}/"

        async def main() -> None:
            async with self.open() as store:
                await body(store, prefix)

        asyncio.run(main())

    # --- keys and revisions

    def test_put_get_revisions(self) -> None:
        async def body(s: Store, p: str) -> None:
            assert await s.get(p + "a") is None
            r1 = await s.put(p + "a", b"1")
            r2 = await s.put(p + "a", b"2")
            assert r2 == r1 + 1
            kv = await s.get(p + "a")
            assert kv is not None
            assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", r1, r2, 2)
            assert await s.revision() >= r2

        self.run(body)

    def test_range_is_by_prefix_and_ordered(self) -> None:
        async def body(s: Store, p: str) -> None:
            for k in ("b", "a", "c/x", "c"):
                await s.put(p + "dir/" + k, k.encode())
            await s.put(p + "dir", b"not under dir/")
            await s.put(p + "dirt/z", b"sibling")
            r = await s.range(p + "dir/")
            assert [kv.key for kv in r.kvs] == [p + "dir/" + k for k in ("a", "b", "c", "c/x")]
            assert r.revision >= max(kv.mod_revision for kv in r.kvs)

        self.run(body)

    def test_delete(self) -> None:
        async def body(s: Store, p: str) -> None:
            await s.put(p + "a", b"1")
            rev = await s.delete(p + "a")
            assert await s.get(p + "a") is None
            assert await s.delete(p + "a") == rev  # nothing deleted: no new revision
            created = await s.put(p + "a", b"again")
            kv = await s.get(p + "a")
            assert kv is not None and (kv.create_revision, kv.version) == (created, 1)

        self.run(body)

    # --- transactions

    def test_txn_compares_mod_revision(self) -> None:
        async def body(s: Store, p: str) -> None:
            rev = await s.put(p + "a", b"1")
            ok = await s.txn([Compare(p + "a", rev)], [Put(p + "a", b"2"), Put(p + "b", b"new")])
            assert ok.succeeded
            stale = await s.txn([Compare(p + "a", rev)], [Put(p + "a", b"3")], [Put(p + "lost", b"x")])
            assert not stale.succeeded
            assert stale.revision == ok.revision + 1  # the failure branch wrote
            a, b = await s.get(p + "a"), await s.get(p + "b")
            assert a is not None and b is not None
            assert a.value == b"2" and a.mod_revision == b.mod_revision == ok.revision
            assert await s.get(p + "lost") is not None

        self.run(body)

    def test_txn_absent_compare(self) -> None:
        async def body(s: Store, p: str) -> None:
            first = await s.txn([Compare(p + "once", 0)], [Put(p + "once", b"1")])
            second = await s.txn([Compare(p + "once", 0)], [Put(p + "once", b"2")])
            assert first.succeeded and not second.succeeded
            assert second.revision == first.revision  # nothing written
            kv = await s.get(p + "once")
            assert kv is not None and kv.value == b"1"

        self.run(body)

    def test_txn_deletes_and_puts_atomically(self) -> None:
        async def body(s: Store, p: str) -> None:
            await s.put(p + "a", b"1")
            r = await s.txn([], [Delete(p + "a"), Put(p + "b", b"2"), Delete(p + "never")])
            assert r.succeeded
            assert await s.get(p + "a") is None
            b = await s.get(p + "b")
            assert b is not None and b.mod_revision == r.revision

        self.run(body)

    def test_txn_limits(self) -> None:
        async def body(s: Store, p: str) -> None:
            too_many = [Put(f"{p}k{i}", b"") for i in range(s.max_txn_ops + 1)]
            with pytest.raises(StoreError, match="too many operations"):
                await s.txn([], too_many)
            with pytest.raises(StoreError, match="duplicate key"):
                await s.txn([], [Put(p + "a", b"1"), Put(p + "a", b"2")])
            assert (await s.range(p)).kvs == ()

        self.run(body)

    # --- watches

    def test_watch_replays_then_follows_in_order(self) -> None:
        async def body(s: Store, p: str) -> None:
            start = await s.put(p + "w/a", b"1")
            await s.put(p + "other", b"not watched")
            await s.txn([], [Put(p + "w/b", b"2"), Put(p + "w/c", b"3")])
            async with s.watch(p + "w/", start_revision=start) as w:
                seen: list[WatchEvent] = []
                it = aiter(w)
                while len(seen) < 3:
                    seen += await asyncio.wait_for(anext(it), WAIT)
                await s.delete(p + "w/a")
                await s.put(p + "other", b"still not watched")
                await s.put(p + "w/d", b"4")
                while len(seen) < 5:
                    seen += await asyncio.wait_for(anext(it), WAIT)
            assert [(e.type, e.kv.key.removeprefix(p)) for e in seen] == [
                (EventType.PUT, "w/a"),
                (EventType.PUT, "w/b"),
                (EventType.PUT, "w/c"),
                (EventType.DELETE, "w/a"),
                (EventType.PUT, "w/d"),
            ]
            revs = [e.kv.mod_revision for e in seen]
            assert revs == sorted(revs) and revs[1] == revs[2]  # one txn, one revision
            assert seen[1].kv.value == b"2"

        self.run(body)

    def test_watch_batches_hold_whole_revisions(self) -> None:
        async def body(s: Store, p: str) -> None:
            start = await s.revision() + 1
            await s.txn([], [Put(f"{p}k{i:03}", b"x") for i in range(100)])
            async with s.watch(p, start_revision=start) as w:
                batch = await asyncio.wait_for(anext(aiter(w)), WAIT)
            assert len(batch) == 100

        self.run(body)

    def test_watch_from_now(self) -> None:
        async def body(s: Store, p: str) -> None:
            await s.put(p + "old", b"1")
            async with s.watch(p) as w:
                it = aiter(w)
                nxt = asyncio.ensure_future(anext(it))
                await asyncio.sleep(0)  # let the watch start before the write it must see
                # etcd's watch starts when its request is answered; write until it sees one
                for i in range(100):
                    await s.put(p + "new", str(i).encode())
                    done, _ = await asyncio.wait([nxt], timeout=0.2)
                    if done:
                        break
                events = await asyncio.wait_for(nxt, WAIT)
            assert all(e.kv.key == p + "new" for e in events)

        self.run(body)

    def test_watch_compacted(self) -> None:
        async def body(s: Store, p: str) -> None:
            first = await s.put(p + "a", b"1")
            await s.put(p + "a", b"2")
            last = await s.put(p + "a", b"3")
            await s.compact(last)
            async with s.watch(p, start_revision=first) as w:
                with pytest.raises(Compacted):
                    await asyncio.wait_for(anext(aiter(w)), WAIT)
            async with s.watch(p, start_revision=last) as w:
                (event,) = await asyncio.wait_for(anext(aiter(w)), WAIT)
                assert event.kv.value == b"3"

        self.run(body)

    # --- leases

    def test_lease_revoke_deletes_its_keys_in_one_revision(self) -> None:
        async def body(s: Store, p: str) -> None:
            lease = await s.grant(60)
            assert lease.ttl >= 60
            await s.put(p + "a", b"1", lease=lease.id)
            await s.put(p + "b", b"2", lease=lease.id)
            await s.put(p + "c", b"3")
            kv = await s.get(p + "a")
            assert kv is not None and kv.lease == lease.id
            start = await s.revision() + 1
            await s.revoke(lease.id)
            assert [kv.key for kv in (await s.range(p)).kvs] == [p + "c"]
            async with s.watch(p, start_revision=start) as w:
                events = await asyncio.wait_for(anext(aiter(w)), WAIT)
            assert {(e.type, e.kv.key) for e in events} == {
                (EventType.DELETE, p + "a"),
                (EventType.DELETE, p + "b"),
            }
            assert len({e.kv.mod_revision for e in events}) == 1
            with pytest.raises(LeaseNotFound):
                await s.keepalive(lease.id)
            with pytest.raises(LeaseNotFound):
                await s.put(p + "d", b"4", lease=lease.id)

        self.run(body)

    def test_lease_expiry_deletes_keys(self) -> None:
        async def body(s: Store, p: str) -> None:
            lease = await s.grant(1)
            start = await s.put(p + "live", b"1", lease=lease.id)
            async with s.watch(p, start_revision=start + 1) as w:
                events = await asyncio.wait_for(anext(aiter(w)), WAIT)  # the expiry's delete
            assert [(e.type, e.kv.key) for e in events] == [(EventType.DELETE, p + "live")]
            assert await s.get(p + "live") is None
            with pytest.raises(LeaseNotFound):
                await s.keepalive(lease.id)

        self.run(body)

    def test_keepalive_keeps_a_lease(self) -> None:
        async def body(s: Store, p: str) -> None:
            lease = await s.grant(1)
            await s.put(p + "live", b"1", lease=lease.id)
            loop = asyncio.get_running_loop()
            until = loop.time() + 2.5 * lease.ttl
            while loop.time() < until:
                assert await s.keepalive(lease.id) == lease.ttl
                await asyncio.sleep(lease.ttl / 4)  # the keepalive cadence is the workload here
            assert await s.get(p + "live") is not None
            await s.revoke(lease.id)

        self.run(body)
