"""VolumeService: named volumes, and every mount a container gets.

Who uses a volume is kept in memory, rebuilt from the container records at startup:

- *references*: containers (in any state) whose mount points name the volume. A referenced
  volume cannot be removed; ``dangling`` means unreferenced.
- *active users*: containers between start and exit. A local volume with mount options
  (``type=tmpfs``, bind-style, ...) is mounted on ``_data`` when its first user starts and
  unmounted when the last one stops, as dockerd's local driver does.

ContainerService calls the hooks: :meth:`resolve` at create, :meth:`prepare_for_start` when
the root filesystem is mounted, :meth:`release` when the container's runtime is gone, and
:meth:`forget` when the container is removed. Each is idempotent where a crash can repeat it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from skiff.engine.events import EventBus
from skiff.engine.model import Container
from skiff.errors import Conflict, InvalidArgument, NotFound, SkiffError
from skiff.fs.scoped import resolve_in_root
from skiff.store.metadata import MetadataDB
from skiff.types import ContainerSpec, Mount
from skiff.types.codec import decode, to_plain
from skiff.types.volume import ANONYMOUS_LABEL, MountPoint, VolumeRecord
from skiff.volumes import local
from skiff.volumes.copyup import copy_up
from skiff.volumes.filters import volume_matches
from skiff.volumes.local import LocalDriver, needs_mount
from skiff.volumes.specs import plan_mounts

log = logging.getLogger("skiff.engine.volumes")


def created_now() -> str:
    """Docker's volume ``CreatedAt``: RFC 3339 in the daemon's time zone, whole seconds."""
    now = datetime.now().astimezone().replace(microsecond=0)
    if now.utcoffset() == timedelta(0):
        return now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return now.isoformat()


class VolumeService:
    """Create, list, remove and prune volumes; resolve and mount a container's mounts."""

    def __init__(self, *, root: Path, db: MetadataDB, events: EventBus) -> None:
        self.driver = LocalDriver(root / "volumes")
        self.db = db
        self.events = events
        self._volumes: dict[str, VolumeRecord] = {}
        self._refs: dict[str, set[str]] = {}
        self._active: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._purges: set[asyncio.Task[None]] = set()
        for name, data in db.list_volumes():
            try:
                self._volumes[name] = decode(VolumeRecord, json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("skipping unreadable volume record %s: %s", name, exc)

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> VolumeRecord:
        rec = self._volumes.get(name)
        if rec is None:
            raise NotFound(f"get {name}: no such volume")
        return rec

    def list(self) -> builtins.list[VolumeRecord]:
        return [self._volumes[n] for n in sorted(self._volumes)]

    def users(self, name: str) -> builtins.list[str]:
        """Ids of the containers that reference ``name`` (any state)."""
        return sorted(self._refs.get(name, ()))

    def mountpoint(self, name: str) -> str:
        return str(self.driver.data(name))

    def size(self, name: str) -> int:
        """Bytes in the volume (walks it: call from a thread)."""
        return self.driver.size(name)

    def matches(self, rec: VolumeRecord, filters: dict[str, builtins.list[str]]) -> bool:
        return volume_matches(rec, bool(self._refs.get(rec.name)), filters)

    # ----------------------------------------------------------------- create
    def create(
        self,
        name: str = "",
        driver: str = "",
        options: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> VolumeRecord:
        """A new volume, or the existing one of that name (as dockerd: create is idempotent)."""
        driver = driver or local.DRIVER
        if not name:
            # dockerd names an anonymous volume with a random id and labels it as such.
            name = secrets.token_hex(32)
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        if driver != local.DRIVER:
            raise NotFound(
                f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found'
            )
        try:
            local.validate_name(name)
            local.validate_options(options or {})
        except InvalidArgument as exc:
            raise InvalidArgument(f"create {name}: {exc.message}") from None
        existing = self._volumes.get(name)
        if existing is not None:
            if existing.driver != driver:
                raise Conflict(
                    f'create {name}: a volume with the name {name} already exists with driver "{existing.driver}"'
                )
            return existing
        rec = VolumeRecord(name=name, driver=driver, created_at=created_now(), labels=labels, options=options)
        # Directory first, record second: a crash in between leaves a directory without a
        # record, which startup removes; a record never points at nothing.
        self.driver.create(name)
        if not self.db.insert_volume(name, json.dumps(to_plain(rec), separators=(",", ":"))):
            raise Conflict(f"create {name}: volume already exists")
        self._volumes[name] = rec
        self.events.publish("volume", "create", name, driver=driver)
        return rec

    # ----------------------------------------------------------------- remove
    async def remove(self, name: str, force: bool = False) -> None:
        """Remove an unused volume (``force``: a missing one is no error; in use still is)."""
        self._retire(name, force)
        await self.drain()

    def _retire(self, name: str, force: bool = False) -> None:
        """Take the volume away now; its data is deleted in the background (see :meth:`drain`)."""
        rec = self._volumes.get(name)
        if rec is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self._refs.get(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(sorted(users))}]")
        # Directory aside first: a crash after it leaves a record without a directory, which
        # startup drops; the reverse order could leave data no record accounts for.
        trash = self.driver.retire(name)
        self.db.delete_volume(name)
        self._volumes.pop(name, None)
        self._active.pop(name, None)
        self._locks.pop(name, None)
        self.events.publish("volume", "destroy", name, driver=rec.driver)
        if trash is not None:
            self._purge_later(trash)

    def _purge_later(self, trash: Path) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the daemon's loop (tools, tests): delete now
            self.driver.purge(trash)
            return
        fut = loop.create_task(asyncio.to_thread(self.driver.purge, trash))
        self._purges.add(fut)
        fut.add_done_callback(self._purged)

    def _purged(self, fut: asyncio.Task[None]) -> None:
        self._purges.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("deleting a removed volume's data failed: %s", fut.exception())

    async def drain(self) -> None:
        """Wait until removed volumes' data is deleted."""
        while self._purges:
            await asyncio.gather(*list(self._purges), return_exceptions=True)

    async def prune(
        self, filters: dict[str, builtins.list[str]], all_volumes: bool
    ) -> tuple[builtins.list[str], int]:
        """Remove unreferenced volumes (only anonymous ones unless ``all_volumes``): (names, bytes)."""
        deleted: builtins.list[str] = []
        reclaimed = 0
        for rec in self.list():
            if self._refs.get(rec.name) or not (all_volumes or rec.anonymous):
                continue
            if not volume_matches(rec, False, filters):
                continue
            size = await asyncio.to_thread(self.driver.size, rec.name)
            try:
                self._retire(rec.name)
            except SkiffError as exc:  # used meanwhile, or a mount refused to go
                log.warning("prune: keeping volume %s: %s", rec.name, exc)
                continue
            deleted.append(rec.name)
            reclaimed += size
        await self.drain()
        self.events.publish("volume", "prune", "", reclaimed=str(reclaimed))
        return deleted, reclaimed

    # -------------------------------------------------------- container hooks
    def resolve(
        self, cid: str, spec: ContainerSpec, volumes_of: Callable[[str], Sequence[MountPoint]]
    ) -> tuple[MountPoint, ...]:
        """The mount points of a container being created; creates the volumes they name.

        ``volumes_of(ref)`` gives another container's mount points (``--volumes-from``).
        On failure, anonymous volumes made here are removed again.
        """
        created: builtins.list[str] = []
        points: builtins.list[MountPoint] = []
        try:
            for req in plan_mounts(spec.host, spec.volumes, volumes_of):
                point = req.point
                if point.type == "volume":
                    rec = self._volumes.get(point.name) if point.name else None
                    if rec is None:
                        rec = self.create(point.name, req.driver, req.volume_options, req.volume_labels)
                        if rec.anonymous and not point.name:
                            created.append(rec.name)
                    point = replace(point, name=rec.name, source=self.mountpoint(rec.name), driver=rec.driver)
                points.append(point)
        except BaseException:
            for name in created:
                with contextlib.suppress(SkiffError, OSError):
                    self._retire(name)
            raise
        for point in points:
            if point.type == "volume":
                self._refs.setdefault(point.name, set()).add(cid)
        return tuple(points)

    def forget(self, c: Container, remove_anonymous: bool) -> None:
        """The container is gone: drop its references; ``remove_anonymous`` (``rm -v``, ``--rm``,
        a failed create) also removes its anonymous volumes no other container uses."""
        self.release(c.id)
        for point in c.mount_points:
            if point.type != "volume":
                continue
            users = self._refs.get(point.name)
            if users is not None:
                users.discard(c.id)
                if not users:
                    del self._refs[point.name]
            if remove_anonymous and point.anonymous and not self._refs.get(point.name):
                try:
                    self._retire(point.name, force=True)
                except SkiffError as exc:
                    log.warning("keeping anonymous volume %s: %s", point.name, exc)

    async def prepare_for_start(self, c: Container, rootfs: Path) -> builtins.list[Mount]:
        """Mount what the container's volumes need and populate new ones from the image
        (``rootfs`` is its mounted root); returns the mounts for the OCI spec."""
        mounts: builtins.list[Mount] = []
        try:
            for point in c.mount_points:
                if point.type == "volume":
                    await self._activate(c.id, point, rootfs)
                    mounts.append(Mount("bind", point.source, point.destination, read_only=not point.rw))
                elif point.type == "bind":
                    if point.create_source and not os.path.lexists(point.source):
                        os.makedirs(point.source, 0o755, exist_ok=True)
                    mounts.append(
                        Mount(
                            "bind",
                            point.source,
                            point.destination,
                            read_only=not point.rw,
                            options=(point.propagation,) if point.propagation else (),
                        )
                    )
                elif point.type == "tmpfs":
                    mounts.append(
                        Mount(
                            "tmpfs",
                            "",
                            point.destination,
                            read_only=not point.rw,
                            options=point.tmpfs_options,
                        )
                    )
        except BaseException:
            self.release(c.id)
            raise
        return mounts

    async def _activate(self, cid: str, point: MountPoint, rootfs: Path) -> None:
        rec = self.get(point.name)
        lock = self._locks.setdefault(point.name, asyncio.Lock())
        async with lock:
            users = self._active.setdefault(point.name, set())
            if needs_mount(rec.options) and not users:
                self.driver.mount(point.name, rec.options or {})
            # Registered before the first await below: a concurrent stop of another user
            # must not unmount it under us.
            users.add(cid)
            if point.copy_data:
                src = resolve_in_root(rootfs, point.destination)
                await asyncio.to_thread(copy_up, src, self.driver.data(point.name))
        self.events.publish(
            "volume",
            "mount",
            point.name,
            container=cid,
            destination=point.destination,
            driver=rec.driver,
            propagation=point.propagation,
            **{"read/write": "true" if point.rw else "false"},
        )

    def release(self, cid: str) -> None:
        """The container no longer runs: unmount volumes it was the last user of."""
        for name in [n for n, users in self._active.items() if cid in users]:
            users = self._active[name]
            users.discard(cid)
            rec = self._volumes.get(name)
            if rec is not None:
                self.events.publish("volume", "unmount", name, container=cid, driver=rec.driver)
            if users:
                continue
            del self._active[name]
            if rec is not None and needs_mount(rec.options):
                try:
                    self.driver.unmount(name)
                except SkiffError as exc:
                    log.error("unmounting volume %s failed: %s", name, exc)

    # --------------------------------------------------------------- recovery
    def recover(self, containers: Iterable[Container] | None = None) -> None:
        """At startup, before containers recover: drop half-removed volumes, delete leftover
        directories, and count references (all records) and users (running ones)."""
        for name in list(self._volumes):
            if not self.driver.path(name).is_dir():
                log.info("dropping volume %s: its directory is gone (a crash during rm)", name)
                self.db.delete_volume(name)
                del self._volumes[name]
        for trash in self.driver.leftovers(self._volumes):
            log.info("deleting leftover volume directory %s", trash.name)
            with contextlib.suppress(SkiffError, OSError):
                self.driver.purge(trash)
        if containers is None:
            containers = self._stored_containers()
        self._refs.clear()
        self._active.clear()
        for c in containers:
            running = c.state.status in ("running", "paused")
            for point in c.mount_points:
                if point.type != "volume" or point.name not in self._volumes:
                    continue
                self._refs.setdefault(point.name, set()).add(c.id)
                if running:
                    self._active.setdefault(point.name, set()).add(c.id)

    def _stored_containers(self) -> Iterable[Container]:
        for cid, _, data in self.db.list_containers():
            try:
                yield Container.from_json(data)
            except (ValueError, KeyError, TypeError):
                log.error("volumes: skipping unreadable container record %s", cid)

    def reconcile(self) -> None:
        """After containers recovered: unmount volume mounts that no running container uses
        (left by a crash), so the next user mounts them afresh."""
        for name, rec in self._volumes.items():
            if needs_mount(rec.options) and not self._active.get(name):
                try:
                    self.driver.unmount(name)
                except SkiffError as exc:
                    log.error("unmounting volume %s failed: %s", name, exc)
