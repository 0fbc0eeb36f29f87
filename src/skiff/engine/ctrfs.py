"""ContainerFS: a container's files over the API -- ``docker cp``, ``diff``, ``export``, ``commit``.

Where the files are: a running (or paused) container's root filesystem is already mounted at
``containers/<id>/rootfs``; a created or exited one has its overlay snapshot mounted there for
the duration of the request, under the container's lifecycle lock (so no start can mount it
at the same time) and unmounted afterwards, also on error; a crash in between leaves a mount
that startup recovery removes like any stopped container's. Volumes, binds and the
hostname/hosts/resolv.conf files are not mounted on the host: the :class:`RootView` maps
their destinations to their host sources, so ``docker cp`` into a volume's path writes the
volume, as with dockerd. A stopped container's volumes are activated first (mounted if their
driver options say so, and populated from the image if new), as a start would.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from skiff import failpoints
from skiff.engine.containers import ContainerService
from skiff.engine.events import EventBus
from skiff.engine.model import Container
from skiff.engine.volumes import VolumeService
from skiff.errors import Conflict, Forbidden, InvalidArgument, NotFound, SkiffError, Unavailable
from skiff.fs.archive import (
    ExtractOptions,
    PathStat,
    archive_source,
    extract_archive,
    extraction_point,
    stat_path,
    write_export,
)
from skiff.fs.overlay import Change, changes, runtime_only_paths
from skiff.fs.scoped import Mounted, RootView
from skiff.images.changes import apply_changes
from skiff.images.imagestore import ImageStore, utc_now
from skiff.images.layers import decompressed
from skiff.images.reference import normalize_tag
from skiff.runtime.user import resolve_user
from skiff.store.snapshots import OverlaySnapshotter, mount_all, unmount
from skiff.types import ImageConfig, ImageRecord
from skiff.types.image import HistoryEntry

log = logging.getLogger("skiff.engine.ctrfs")

_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl: a pipe's capacity (Linux)
_NETWORK_FILES = ("hostname", "hosts", "resolv.conf")
_HOST_TROUBLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM})


@dataclass(frozen=True)
class CommitRequest:
    """``POST /commit``: ``config`` (the body) overrides the container's config before ``changes``."""

    repo: str = ""
    tag: str = ""
    comment: str = ""
    author: str = ""
    pause: bool = True
    changes: tuple[str, ...] = ()
    config: ImageConfig | None = None


class PipeStream:
    """Bytes a worker thread writes (a tar) handed to the event loop through a pipe.

    The pipe gives back-pressure for free; :meth:`aclose` before the end (the client went away)
    closes the read side, so the writer fails with EPIPE and its thread ends.
    """

    def __init__(self, produce: Callable[[BinaryIO], None]) -> None:
        r, w = os.pipe()
        with contextlib.suppress(OSError):  # bigger hops between the thread and the loop
            fcntl.fcntl(w, _F_SETPIPE_SZ, _CHUNK)
        self._r = r
        self._error: BaseException | None = None

        def run() -> None:
            try:
                with open(w, "wb", buffering=_CHUNK) as out:
                    produce(out)
            except BrokenPipeError:
                pass
            except BaseException as e:  # re-raised on the loop side after the last chunk
                self._error = e

        self._thread = threading.Thread(target=run, name="skiff-ctrfs-tar", daemon=True)
        self._thread.start()

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            data = await asyncio.to_thread(os.read, self._r, _CHUNK)
            if not data:
                break
            yield data
        await self.aclose()
        if self._error is not None:
            raise _as_skiff(self._error)

    async def aclose(self) -> None:
        if self._r >= 0:
            os.close(self._r)
            self._r = -1
        await asyncio.to_thread(self._thread.join)


def _as_skiff(exc: BaseException) -> BaseException:
    """OSErrors from working in a container's files, in Docker's classes."""
    if isinstance(exc, SkiffError) or not isinstance(exc, OSError):
        return exc
    if exc.errno == errno.EROFS:
        return Forbidden("container rootfs is marked read-only")
    if exc.errno in _HOST_TROUBLE:
        return Unavailable(f"cannot write the container's files: {exc.strerror}")
    return InvalidArgument(f"cannot copy: {exc.strerror}" + (f": {exc.filename}" if exc.filename else ""))


def _not_found(path: str, ref: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {ref}")


def _layer_dirs(snapshotter: OverlaySnapshotter, key: str) -> tuple[Path, list[Path]]:
    """(upper dir, lower dirs nearest first) of an active snapshot, from its mounts."""
    upper = snapshotter.upper_dir(key)
    lowers: list[Path] = []
    for spec in snapshotter.mounts(key):
        for opt in spec.options:
            if opt.startswith("lowerdir="):
                lowers = [Path(p) for p in opt[len("lowerdir=") :].split(":")]
    return upper, lowers


def container_config(c: Container, image: ImageConfig) -> ImageConfig:
    """The container's config (Docker's ``container.Config``) as an image config."""
    spec = c.spec
    return ImageConfig(
        user=spec.user,
        env=spec.env,
        entrypoint=spec.entrypoint or None,
        cmd=spec.cmd or None,
        working_dir=spec.working_dir,
        exposed_ports=spec.exposed_ports,
        volumes=spec.volumes,
        labels=dict(spec.labels),
        stop_signal=spec.stop_signal,
        healthcheck=spec.healthcheck,
        shell=image.shell,
    )


def merge_commit_config(user: ImageConfig, base: ImageConfig) -> ImageConfig:
    """dockerd's commit ``merge(userConf, containerConf)``: unset fields of ``user`` from ``base``."""
    env = list(user.env)
    keys = {e.split("=", 1)[0] for e in env}
    env += [e for e in base.env if e.split("=", 1)[0] not in keys]
    entrypoint, cmd = user.entrypoint, user.cmd
    if not entrypoint:
        if not cmd:
            cmd = base.cmd
        if entrypoint is None:
            entrypoint = base.entrypoint
    return replace(
        user,
        user=user.user or base.user,
        exposed_ports=tuple(dict.fromkeys((*user.exposed_ports, *base.exposed_ports))),
        env=tuple(env),
        labels={**base.labels, **user.labels},
        entrypoint=entrypoint,
        cmd=cmd,
        healthcheck=user.healthcheck if user.healthcheck is not None else base.healthcheck,
        working_dir=user.working_dir or base.working_dir,
        volumes=tuple(dict.fromkeys((*user.volumes, *base.volumes))),
        stop_signal=user.stop_signal or base.stop_signal,
        shell=user.shell if user.shell is not None else base.shell,
    )


class ContainerFS:
    """Stat, archive, extract, export, changes and commit of a container's files."""

    def __init__(
        self,
        *,
        containers: ContainerService,
        images: ImageStore,
        snapshotter: OverlaySnapshotter,
        volumes: VolumeService | None,
        events: EventBus,
    ) -> None:
        self.containers = containers
        self.images = images
        self.snapshotter = snapshotter
        self.volumes = volumes
        self.events = events

    # -- the view ------------------------------------------------------------------------------

    def _mounts(self, c: Container) -> list[Mounted]:
        """Volumes and binds (not tmpfs: nothing to reach from the host), then the network files."""
        out = [
            Mounted(p.destination, p.source, p.rw)
            for p in c.mount_points
            if p.type in ("volume", "bind") and p.source
        ]
        files = self.containers.bundle(c.id) / "files"
        for name in _NETWORK_FILES:
            if (files / name).exists():
                out.append(Mounted(f"/etc/{name}", str(files / name), True))
        return out

    @contextlib.asynccontextmanager
    async def view(self, ref: str, with_mounts: bool = True) -> AsyncIterator[tuple[Container, RootView]]:
        """The container's files, running or not; see the module docstring."""
        c = self.containers.get(ref)
        lock = self.containers.lifecycle_lock(c.id)
        rootfs = self.containers.bundle(c.id) / "rootfs"
        async with contextlib.AsyncExitStack() as stack:
            await lock.acquire()
            stack.callback(lock.release)
            c = self.containers.get(c.id)
            if c.state.status in ("removing", "dead"):
                raise Conflict(f"container {c.id} is marked for removal and cannot be used")
            mounts = self._mounts(c) if with_mounts else []
            if c.state.status in ("running", "paused"):
                view = await asyncio.to_thread(RootView, rootfs, mounts)
                # The open descriptors keep the root reachable even if the container exits now;
                # the lock would only hold up recording that exit.
                stack.pop_all()
                lock.release()
                try:
                    yield c, view
                finally:
                    view.close()
                return
            unmount(rootfs)
            mount_all(self.snapshotter.mounts(c.id), rootfs)
            stack.callback(unmount, rootfs)
            if with_mounts and self.volumes is not None:
                stack.callback(self.volumes.release, c.id)
                await self.volumes.prepare_for_start(c, rootfs)
            view = await asyncio.to_thread(RootView, rootfs, mounts)
            stack.callback(view.close)
            failpoints.hit("ctrfs-after-mount")
            yield c, view

    # -- docker cp -----------------------------------------------------------------------------

    async def stat(self, ref: str, path: str) -> PathStat:
        """``HEAD /containers/{id}/archive?path=``."""
        async with self.view(ref) as (_, view):
            try:
                return await asyncio.to_thread(stat_path, view, path)
            except (FileNotFoundError, NotADirectoryError):
                raise _not_found(path, ref) from None
            except OSError as e:
                raise _as_skiff(e) from None

    @contextlib.asynccontextmanager
    async def archive(self, ref: str, path: str) -> AsyncIterator[tuple[PathStat, AsyncIterator[bytes]]]:
        """``GET /containers/{id}/archive?path=``: the stat, then the tar's bytes."""
        async with self.view(ref) as (c, view):
            try:
                source = await asyncio.to_thread(archive_source, view, path)
            except (FileNotFoundError, NotADirectoryError):
                raise _not_found(path, ref) from None
            except OSError as e:
                raise _as_skiff(e) from None
            stream = PipeStream(source.write)
            try:
                self.containers.publish(c, "archive-path")
                yield source.stat, stream.chunks()
            finally:
                await stream.aclose()
                source.close()

    async def extract(
        self,
        ref: str,
        path: str,
        body: BinaryIO,
        *,
        no_overwrite_dir_non_dir: bool = False,
        copy_uid_gid: bool = False,
    ) -> None:
        """``PUT /containers/{id}/archive?path=``: extract a (possibly compressed) tar there."""
        async with self.view(ref) as (c, view):

            def work() -> None:
                try:
                    dest = extraction_point(view, path)
                except (FileNotFoundError, NotADirectoryError):
                    raise _not_found(path, ref) from None
                with dest:
                    owner = None
                    if copy_uid_gid and c.spec.user:
                        uid, gid, _ = resolve_user(view.root, c.spec.user)
                        owner = (uid, gid)
                    options = ExtractOptions(
                        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                        owner=owner,
                        readonly_rootfs=c.spec.host.readonly_rootfs,
                    )
                    extract_archive(view, dest, decompressed(body), options)

            try:
                await asyncio.to_thread(work)
            except OSError as e:
                raise _as_skiff(e) from None
            self.containers.publish(c, "extract-to-dir")

    # -- export, diff --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def export(self, ref: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """``GET /containers/{id}/export``: the root filesystem (without volumes) as a tar."""
        async with self.view(ref, with_mounts=False) as (c, view):
            stream = PipeStream(lambda out: write_export(view, out))
            try:
                self.containers.publish(c, "export")
                yield stream.chunks()
            finally:
                await stream.aclose()

    async def changes(self, ref: str) -> list[Change]:
        """``GET /containers/{id}/changes``: the container's upper dir against its image."""
        c = self.containers.get(ref)
        async with self.containers.lifecycle_lock(c.id):
            c = self.containers.get(c.id)  # NotFound if removed meanwhile
            upper, lowers = _layer_dirs(self.snapshotter, c.id)
            return await asyncio.to_thread(changes, upper, lowers)

    # -- commit --------------------------------------------------------------------------------

    async def commit(self, ref: str, req: CommitRequest) -> ImageRecord:
        """``POST /commit``: the container's changes as a new layer on its image."""
        c = self.containers.get(ref)
        if c.state.status in ("removing", "dead"):
            raise Conflict(f"Container {c.name} is marked for removal and cannot be committed")
        tags: tuple[str, ...] = ()
        if req.repo:
            tags = (normalize_tag(f"{req.repo}:{req.tag}" if req.tag else req.repo),)
        elif req.tag:
            raise InvalidArgument("tag is specified without a repository")
        image = self.images.get(c.image_id)
        base = container_config(c, image.config)
        config = merge_commit_config(apply_changes(req.config or base, _change_lines(req.changes)), base)
        paused_here = False
        if req.pause and c.state.status == "running":
            with contextlib.suppress(Conflict):  # it stopped meanwhile: nothing to pause
                await self.containers.pause(c.id)
                paused_here = True
        try:
            async with self.containers.lifecycle_lock(c.id):
                c = self.containers.get(c.id)
                diff_id = await asyncio.to_thread(self._commit_layer, c.id, self.images.top_layer(image))
            now = utc_now()
            entry = HistoryEntry(
                created=now,
                created_by=" ".join(c.spec.cmd),
                comment=req.comment,
                author=req.author,
                empty_layer=diff_id is None,
            )
            record = await asyncio.to_thread(
                self.images.create_image,
                config,
                [*image.diff_ids, *([diff_id] if diff_id else [])],
                history=(*image.history, entry),
                author=req.author,
                comment=req.comment,
                parent=image.id,
                created=now,
                repo_tags=tags,
                architecture=image.architecture,
                os_name=image.os,
            )
            self.containers.publish(
                c, "commit", comment=req.comment, imageID=record.id, imageRef=tags[0] if tags else ""
            )
            for tag in tags:
                self.events.publish("image", "tag", record.id, name=tag)
        finally:
            # As dockerd, whose deferred unpause follows the commit event.
            if paused_here:
                with contextlib.suppress(SkiffError):
                    await self.containers.unpause(c.id)
        return record

    def _commit_layer(self, cid: str, parent_chain: str | None) -> str | None:
        """The diff_id of the container's changes as a committed layer; None if there are none."""
        upper, lowers = _layer_dirs(self.snapshotter, cid)
        skip = runtime_only_paths(upper, lowers)
        with os.scandir(upper) as it:
            if all(e.name in skip for e in it):
                return None  # as dockerd: an unchanged container commits an empty layer
        diff_id, _, _ = self.images.import_diff(upper, parent_chain, skip)
        return diff_id


def _change_lines(changes: Sequence[str]) -> list[str]:
    """``changes`` values may hold several instructions, one per line (dockerd joins them)."""
    return [line for value in changes for line in value.splitlines() if line.strip()]
