"""ImageService: images as users see them — tags, removal rules, prune, import, save/load, bootstrap."""

from __future__ import annotations

import asyncio
import builtins
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, BinaryIO

from skiff.engine.containers import ContainerService
from skiff.engine.events import EventBus
from skiff.errors import Conflict, NotFound
from skiff.images import archive, archive_load
from skiff.images.archive import SavePlan
from skiff.images.archive_load import ImageLoaded, LoadEvent
from skiff.images.history import history_items
from skiff.images.imagestore import ImageStore
from skiff.images.reference import parse_reference
from skiff.types import HistoryItem, ImageRecord

log = logging.getLogger("skiff.images")
_SAVE_CHUNK = 1 << 20
_SAVE_QUEUE = 4  # chunks in flight between the writer thread and the HTTP response


class _ChunkPipe:
    """Bytes written by a worker thread, read as async chunks; the writer blocks when the reader lags.

    The worker is a plain thread, not the default executor: a slow client must not hold an
    executor slot that other requests need, and the reader never waits on the executor.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._slots = threading.Semaphore(_SAVE_QUEUE)
        self._buf = bytearray()
        self._cancelled = False

    # worker side
    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= _SAVE_CHUNK:
            self._put(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def _put(self, item: bytes | BaseException | None) -> None:
        self._slots.acquire()
        if self._cancelled:
            raise BrokenPipeError("the client went away")
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def finish(self, error: BaseException | None) -> None:
        try:
            if error is None and self._buf:
                self._put(bytes(self._buf))
            self._put(error)
        except (BrokenPipeError, RuntimeError):
            pass  # the reader is gone (or the loop closed): nobody to tell

    # reader side
    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self._queue.get()
                self._slots.release()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._cancelled = True
            for _ in range(_SAVE_QUEUE + 1):
                self._slots.release()  # unblock a writer waiting for a slot: it sees the cancel


class ImageService:
    """Image operations with Docker's semantics and events."""

    def __init__(self, store: ImageStore, containers: ContainerService, events: EventBus) -> None:
        self.store = store
        self.containers = containers
        self.events = events
        # Temp files (spooled archives, regenerated layers) go next to the content store: same
        # disk as the images, and opened unlinked, so a crash leaves nothing behind.
        self.spool_dir: Path = store.content.root / "ingest"

    def get(self, ref: str) -> ImageRecord:
        return self.store.get(ref)

    def list(self) -> builtins.list[ImageRecord]:
        return self.store.list()

    def history(self, ref: str) -> builtins.list[HistoryItem]:
        """``docker history``: newest step first (see :func:`skiff.images.history.history_items`)."""

        def image_or_none(image_id: str) -> ImageRecord | None:
            try:
                return self.store.get(image_id)
            except NotFound:
                return None

        return history_items(self.store.get(ref), image_or_none, self.store.layer_size)

    def _users(self, image_id: str) -> builtins.list[tuple[str, bool]]:
        return [(c.id, c.running) for c in self.containers.list() if c.image_id == image_id]

    def tag(self, ref: str, repo: str, tag: str = "") -> str:
        image = self.store.get(ref)
        target = parse_reference(f"{repo}:{tag}" if tag else repo).familiar()
        self.store.tag(image.id, target)
        self.events.publish("image", "tag", image.id, name=target)
        return target

    def remove(self, ref: str, force: bool = False, prune: bool = True) -> builtins.list[dict[str, str]]:
        """``docker rmi``: untag, and delete the image once no tag and no container holds it."""
        image = self.store.get(ref)
        out: builtins.list[dict[str, str]] = []
        by_tag = not image.id.startswith(ref) and not ref.startswith("sha256:")
        normalized = parse_reference(ref).familiar() if by_tag else ""
        users = self._users(image.id)
        if by_tag and len(image.repo_tags) > 1 and normalized in image.repo_tags:
            self.store.untag(normalized)
            self.events.publish("image", "untag", image.id, name=normalized)
            return [{"Untagged": normalized}]
        if users:
            cid, running = users[0]
            if not force:
                if by_tag:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{ref}" (must force) - '
                        f"container {cid[:12]} is using its referenced image {image.id[7:19]}"
                    )
                kind = "running" if running else "stopped"
                raise Conflict(
                    f"conflict: unable to delete {image.id[7:19]} (must be forced) - "
                    f"image is being used by {kind} container {cid[:12]}"
                )
            # Forced: drop the tags; the layers stay while the container uses them (as Docker).
            for tag in image.repo_tags:
                self.store.untag(tag)
                self.events.publish("image", "untag", image.id, name=tag)
                out.append({"Untagged": tag})
            return out
        if not force and len(image.repo_tags) > 1 and not by_tag:
            raise Conflict(
                f"conflict: unable to delete {image.id[7:19]} (must be forced) - "
                "image is referenced in multiple repositories"
            )
        for tag in image.repo_tags:
            self.store.untag(tag)
            self.events.publish("image", "untag", image.id, name=tag)
            out.append({"Untagged": tag})
        self.store.delete(image.id)
        self.events.publish("image", "delete", image.id)
        out.append({"Deleted": image.id})
        if prune:
            out.extend(self._prune_parents(image.parent))
        return out

    def _children(self, image_id: str) -> bool:
        return any(i.parent == image_id for i in self.store.list())

    def _prune_parents(self, parent_id: str) -> builtins.list[dict[str, str]]:
        """As ``docker rmi``: untagged parents (a build's step images) nothing else uses go too."""
        out: builtins.list[dict[str, str]] = []
        while parent_id:
            try:
                parent = self.store.get(parent_id)
            except NotFound:
                break
            if parent.repo_tags or parent.repo_digests or self._users(parent.id) or self._children(parent.id):
                break
            self.store.delete(parent.id)
            self.events.publish("image", "delete", parent.id)
            out.append({"Deleted": parent.id})
            parent_id = parent.parent
        return out

    def prune(
        self, dangling_only: bool = True, keep: Callable[[ImageRecord], bool] | None = None
    ) -> tuple[builtins.list[dict[str, str]], int]:
        used = {c.image_id for c in self.containers.list()}
        deleted: builtins.list[dict[str, str]] = []
        reclaimed = 0
        images = self.store.list()
        parents = {i.parent for i in images if i.parent}
        for image in images:
            if image.id in used or (dangling_only and image.repo_tags) or (keep and keep(image)):
                continue
            if dangling_only and image.id in parents:
                continue  # a step image under another image: it goes with that image (Docker's heads)
            try:
                deleted.extend(self.remove(image.id, force=True))
                reclaimed += image.size
            except (Conflict, NotFound):
                continue
        self.events.publish("image", "prune", "", reclaimed=str(reclaimed))
        return deleted, reclaimed

    async def import_image(
        self, stream: BinaryIO, *, repo_tag: str | None, changes: Sequence[str], message: str
    ) -> ImageRecord:
        image = await asyncio.to_thread(
            self.store.import_image, stream, changes=changes, message=message, repo_tag=repo_tag
        )
        self.events.publish("image", "import", image.id)
        if repo_tag:
            self.events.publish("image", "tag", image.id, name=parse_reference(repo_tag).familiar())
        return image

    # -- save / load ------------------------------------------------------------------------------

    async def plan_save(self, names: Sequence[str], fmt: str = "docker") -> SavePlan:
        """Resolve what ``docker save NAMES`` writes; NotFound and friends surface here, before any byte."""
        return await asyncio.to_thread(archive.plan_save, self.store, names, fmt, self.spool_dir)

    async def save(self, plan: SavePlan) -> AsyncIterator[bytes]:
        """The archive for ``plan``, streamed: a writer thread fills a bounded pipe.

        An error after the first chunk (a layer file changed on disk) is raised from the
        iteration; the caller can only cut the stream, as dockerd does.
        """
        pipe = _ChunkPipe(asyncio.get_running_loop())

        def work() -> None:
            error: BaseException | None = None
            try:
                archive.write_archive(plan, pipe)  # type: ignore[arg-type]  # write() is all it uses
            except BrokenPipeError:
                return
            except BaseException as e:  # handed to the reader
                error = e
            pipe.finish(error)

        threading.Thread(target=work, name="skiff-save", daemon=True).start()
        async for chunk in pipe.chunks():
            yield chunk
        for img in plan.images:
            self.events.publish("image", "save", img.record.id, name=img.record.id)  # as dockerd

    def spool(self) -> IO[bytes]:
        """A temp file on the images' disk for a request body (unlinked: gone after a crash)."""
        return tempfile.TemporaryFile(dir=self.spool_dir)

    async def load(self, body: BinaryIO) -> AsyncIterator[LoadEvent]:
        """``docker load``: progress and loaded images as they happen (events ``load`` and ``tag``).

        The work runs in its own thread and completes even if the caller stops listening.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[LoadEvent | BaseException | None] = asyncio.Queue()

        def emit(event: LoadEvent) -> None:
            if isinstance(event, ImageLoaded):
                loop.call_soon_threadsafe(self._loaded, event)
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def work() -> None:
            result: BaseException | None = None
            try:
                with archive_load.opened_archive(body, self.spool_dir) as spooled:
                    archive_load.load_archive(self.store, spooled, emit)
            except BaseException as e:  # handed to the reader
                result = e
            try:
                loop.call_soon_threadsafe(queue.put_nowait, result)
            except RuntimeError:
                pass  # the loop is gone (daemon shutting down)

        threading.Thread(target=work, name="skiff-load", daemon=True).start()
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _loaded(self, event: ImageLoaded) -> None:
        self.events.publish("image", "load", event.id, name=event.id)  # as dockerd
        for tag in event.tags:
            self.events.publish("image", "tag", event.id, name=tag)

    async def bootstrap(self, name: str, tag: str | None) -> ImageRecord:
        from skiff.images import bootstrap

        if name == "busybox":
            image = await asyncio.to_thread(bootstrap.bootstrap_busybox, self.store, tag or "busybox:latest")
        elif name == "debian":
            image = await asyncio.to_thread(bootstrap.bootstrap_debian, self.store, tag or "debian:bookworm")
        else:
            raise NotFound(f"no bootstrap recipe for {name!r}: choose busybox or debian")
        self.events.publish("image", "import", image.id)
        for t in image.repo_tags:
            self.events.publish("image", "tag", image.id, name=t)
        return image
