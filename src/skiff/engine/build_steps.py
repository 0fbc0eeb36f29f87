"""The build steps that touch files: RUN in a real container, COPY/ADD/WORKDIR in a mounted root.

Each returns the diff_id of the layer it made, or None when the step changed nothing (then
the image gets an ``empty_layer`` history entry and no layer, as Docker does).

RUN: a container of the current image is created by :class:`ContainerService` (the normal
path: overlay snapshot, network, runc under conmon), attached before its start so no output
is lost, waited for, and its snapshot's upper directory becomes the layer through
``ImageStore.import_diff``. Mount points runc had to create (``/etc/hosts`` on an image
without one, ``/proc``...) are not the command's doing and are dropped from the upper
directory first, as Docker keeps them in a separate init layer.

COPY/ADD/WORKDIR: an active snapshot of the current image is mounted in the job's directory,
files are written into it with :mod:`skiff.build.fs` (paths resolved inside the root), it is
unmounted and its upper directory imported the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from skiff.engine.containers import ContainerService
from skiff.errors import SkiffError
from skiff.fs.overlay import runtime_only_paths
from skiff.images.imagestore import ImageStore
from skiff.store.snapshots import OverlaySnapshotter, mount_all, unmount
from skiff.types import ContainerSpec
from skiff.types.image import ImageRecord

T = TypeVar("T")
SNAPSHOT_PREFIX = "build-"


class StepFailed(SkiffError):
    """A step failed in a way Docker reports with a code (RUN's exit status)."""

    status = 500

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


async def finish_in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread and let it finish even if we are cancelled meanwhile.

    The caller's cleanup (removing a snapshot the thread reads) must not race the thread.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


class StepRunner:
    """RUN containers and mounted-root file steps for the builder."""

    def __init__(
        self, store: ImageStore, snapshotter: OverlaySnapshotter, containers: ContainerService
    ) -> None:
        self.store = store
        self.snapshotter = snapshotter
        self.containers = containers

    # -- RUN -----------------------------------------------------------------------------------

    async def run(
        self,
        spec: ContainerSpec,
        parent: ImageRecord,
        on_start: Callable[[str], Awaitable[None]],
        output: Callable[[int, bytes], Awaitable[None]],
        remove: bool,
        force_remove: bool,
        on_remove: Callable[[str], Awaitable[None]],
    ) -> str | None:
        """Run ``spec`` to completion; the layer it made (None: nothing changed)."""
        c = await self.containers.create(spec)
        done = False
        try:
            await on_start(c.id)
            # Attach before start (as `docker run` does), so the first bytes are not lost.
            attach = self.containers.attach_at_start(c.id)
            exited = self.containers.wait_future(c.id, "next-exit")
            try:
                await self.containers.start(c.id)
            except SkiffError as exc:
                if not attach.done():
                    attach.cancel()
                elif not attach.cancelled():
                    attach.exception()  # retrieved: the start's own error is reported
                code = await exited if exited.done() else 1
                raise StepFailed(exc.message, code or 1) from exc
            stream = await attach
            try:
                while (item := await stream.read()) is not None:
                    await output(*item)
            finally:
                stream.close()
            code = await exited
            # The exit is reported before the runtime is released and the root unmounted; the
            # upper directory is ours once that is done.
            await self.containers.settled(c.id)
            if code != 0:
                argv = " ".join((*spec.entrypoint, *spec.cmd)).strip()
                raise StepFailed(f"The command '{argv}' returned a non-zero code: {code}", code)
            upper = self.snapshotter.upper_dir(c.id)
            lowers = _lower_dirs(self.snapshotter, parent)
            diff = await finish_in_thread(lambda: self._diff(upper, lowers, parent))
            done = True
            return diff
        finally:
            if (done and remove) or force_remove or (not done and _cancelled()):
                with contextlib.suppress(SkiffError):
                    await asyncio.shield(self.containers.remove(c.id, force=True, volumes=True))
                if done:
                    await on_remove(c.id)

    def _diff(self, upper: Path, lowers: list[Path], parent: ImageRecord) -> str | None:
        # runc's mount targets (/etc/hosts on an image without one...) are not the command's doing.
        skip = runtime_only_paths(upper, lowers)
        with os.scandir(upper) as it:
            if all(e.name in skip for e in it):
                return None
        diff_id, _, _ = self.store.import_diff(upper, self.store.top_layer(parent), skip)
        return diff_id

    # -- file steps ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def view(self, workdir: Path, image: ImageRecord | None) -> Iterator[Path]:
        """``image``'s files mounted read-only under ``workdir`` (an empty dir for none)."""
        token = secrets.token_hex(8)
        target = workdir / f"view-{token}"
        target.mkdir()
        top = self.store.top_layer(image) if image is not None else None
        key = f"{SNAPSHOT_PREFIX}view-{token}"
        try:
            if top is None:
                yield target
                return
            mounts = self.snapshotter.view(key, top)
            try:
                mount_all(mounts, target)
                try:
                    yield target
                finally:
                    unmount(target)
            finally:
                self.snapshotter.remove(key)
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()

    def change(self, workdir: Path, parent: ImageRecord | None, fn: Callable[[Path], None]) -> str | None:
        """Mount a writable snapshot of ``parent``, let ``fn`` change files, import the result."""
        token = secrets.token_hex(8)
        key = f"{SNAPSHOT_PREFIX}{token}"
        target = workdir / f"root-{token}"
        target.mkdir()
        parent_chain = self.store.top_layer(parent) if parent is not None else None
        try:
            mounts = self.snapshotter.prepare(key, parent_chain)
            try:
                mount_all(mounts, target)
                try:
                    fn(target)
                finally:
                    unmount(target)
                upper = self.snapshotter.upper_dir(key)
                if _is_empty(upper):
                    return None
                diff_id, _, _ = self.store.import_diff(upper, parent_chain)
                return diff_id
            finally:
                self.snapshotter.remove(key)
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()

    def recover(self) -> None:
        """Drop snapshots of builds interrupted by a crash."""
        for info in list(self.snapshotter.walk()):
            if info.key.startswith(SNAPSHOT_PREFIX) and info.kind != "committed":
                with contextlib.suppress(SkiffError):
                    self.snapshotter.remove(info.key)


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _is_empty(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def _lower_dirs(snapshotter: OverlaySnapshotter, image: ImageRecord) -> list[Path]:
    """The layer directories under an image, top first (for "did this exist before?")."""
    if not image.chain_ids:
        return []
    for m in snapshotter.mounts(image.chain_ids[-1]):
        for option in m.options:
            if option.startswith("lowerdir="):
                return [Path(p) for p in option[len("lowerdir=") :].split(":")]
        if m.type == "bind":
            return [Path(m.source)]
    return []
