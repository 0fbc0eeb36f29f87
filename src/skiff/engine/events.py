"""EventBus: publishes engine events to live subscribers and persists them.

Events are persisted in the metadata database so ``events --since`` works across daemon
restarts; live subscribers get them through bounded asyncio queues (a slow subscriber
loses its oldest events rather than stalling the engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

from skiff.store.metadata import MetadataDB
from skiff.types import Event
from skiff.types.codec import decode, to_plain

EventFilter = Callable[[Event], bool]
_QUEUE_SIZE = 4096
_KEEP_EVENTS = 100_000


class EventBus:
    """Fan-out of engine events, persisted in SQLite."""

    def __init__(self, db: MetadataDB) -> None:
        self._db = db
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._published = 0

    def publish(self, type_: str, action: str, actor_id: str, **attributes: str) -> Event:
        event = Event(
            type=type_,
            action=action,
            actor_id=actor_id,
            attributes=dict(attributes),
            time_nano=time.time_ns(),
        )
        self._db.append_event(event.time_nano, json.dumps(to_plain(event)))
        self._published += 1
        if self._published % 10_000 == 0:
            self._db.prune_events(_KEEP_EVENTS)
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)
        return event

    def history(self, since_nano: int | None, until_nano: int | None) -> list[Event]:
        return [decode(Event, json.loads(d)) for d in self._db.events(since_nano, until_nano)]

    async def subscribe(
        self, since_nano: int | None = None, until_nano: int | None = None
    ) -> AsyncIterator[Event]:
        """Past events from ``since`` (if given), then live ones until ``until`` (if given)."""
        queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            last = 0
            if since_nano is not None:
                for event in self.history(since_nano, until_nano):
                    last = event.time_nano
                    yield event
            while True:
                if until_nano is not None:
                    remaining = (until_nano - time.time_ns()) / 1e9
                    if remaining <= 0:
                        return
                    try:
                        event = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        return
                else:
                    event = await queue.get()
                if event.time_nano <= last:
                    continue
                if until_nano is not None and event.time_nano > until_nano:
                    return
                yield event
        finally:
            self._subscribers.discard(queue)
