"""EventBus: persistence across restarts, since/until replay, live fan-out (real SQLite, no root)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from skiff.engine.events import EventBus
from skiff.store.metadata import MetadataDB


def test_events_persist_across_a_new_bus(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    bus = EventBus(db)
    first = bus.publish("container", "create", "c1", name="web", image="busybox")
    bus.publish("container", "start", "c1", name="web", image="busybox")
    db.close()

    db2 = MetadataDB(tmp_path / "metadata.db")
    replayed = EventBus(db2).history(first.time_nano, None)
    assert [e.action for e in replayed] == ["create", "start"]
    assert replayed[0].attributes == {"name": "web", "image": "busybox"}
    assert EventBus(db2).history(None, first.time_nano)[-1].action == "create"
    db2.close()


def test_subscribe_replays_then_streams_until(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    bus = EventBus(db)
    past = bus.publish("image", "tag", "sha256:x", name="busybox:latest")

    async def scenario() -> list[str]:
        seen: list[str] = []
        until = time.time_ns() + 300_000_000

        async def consume() -> None:
            async for event in bus.subscribe(past.time_nano, until):
                seen.append(event.action)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        bus.publish("container", "die", "c2", exitCode="0")
        await asyncio.wait_for(task, 2)
        return seen

    assert asyncio.run(scenario()) == ["tag", "die"]
    db.close()


def test_slow_subscriber_does_not_block_publish(tmp_path: Path) -> None:
    db = MetadataDB(tmp_path / "metadata.db")
    bus = EventBus(db)

    async def scenario() -> int:
        agen = bus.subscribe()
        first = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0)
        for i in range(5000):
            bus.publish("container", "exec_die", f"c{i}")
        event = await first
        await agen.aclose()
        return len(event.actor_id)

    assert asyncio.run(scenario()) >= 2
    db.close()
