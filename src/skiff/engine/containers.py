"""ContainerService: the container lifecycle, combining images, snapshots and the runtime.

Concurrency: one asyncio lock per container serialises lifecycle changes; waiting for an
exit happens outside the lock (the exit monitor needs the lock to record the exit).
Persistence: every state change is one SQLite write of the whole record.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import shutil
import signal as signal_mod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff import failpoints
from skiff.engine.events import EventBus
from skiff.engine.merge import (
    merge_image_config,
    new_container_id,
    parse_signal,
    random_name,
    validate_name,
    validate_spec,
)
from skiff.engine.model import Container, now_rfc3339
from skiff.engine.rootfs import hosts_text, rewrite_hosts, write_container_files
from skiff.errors import Conflict, InvalidArgument, NotFound, NotModified, RuntimeFailure, SkiffError
from skiff.images.imagestore import ImageStore
from skiff.runtime.runc import AttachStream, ExitStatus, Runtime
from skiff.runtime.spec import generate_spec, linux_resources, resolve_groups, resolve_user
from skiff.store.metadata import MetadataDB
from skiff.store.snapshots import OverlaySnapshotter, mount_all, unmount
from skiff.types import ContainerSpec, Endpoint, HostConfig, NetworkState
from skiff.units import parse_size

if TYPE_CHECKING:
    from skiff.engine.networks import NetworkService
    from skiff.engine.volumes import VolumeService

log = logging.getLogger("skiff.engine")

_NO_ENDPOINT = Endpoint(
    network_id="",
    network_name="",
    endpoint_id="",
    ifname="",
    ip_address="",
    prefix_len=0,
    gateway="",
    mac_address="",
)

DEFAULT_STOP_TIMEOUT = 10


@dataclass
class AttachRequest:
    """An attach waiting for the container's next start (the docker CLI attaches before start)."""

    stream: asyncio.Future[AttachStream] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ContainerService:
    """Create, start, stop, remove, wait for and look up containers."""

    def __init__(
        self,
        *,
        root: Path,
        db: MetadataDB,
        images: ImageStore,
        snapshotter: OverlaySnapshotter,
        runtime: Runtime,
        events: EventBus,
        cgroup_parent: str = "skiff",
    ) -> None:
        self.root = root
        self.db = db
        self.images = images
        self.snapshotter = snapshotter
        self.runtime = runtime
        self.events = events
        self.cgroup_parent = cgroup_parent
        self._containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._exit_waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._remove_waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._pending_attach: dict[str, list[AttachRequest]] = {}
        self._restart_tasks: dict[str, asyncio.Task[None]] = {}
        self.on_started: list[Any] = []  # callbacks(container) - health checks hook in here
        self.on_exited: list[Any] = []
        self.networks: NetworkService | None = None  # wired by the Engine
        self.volumes: VolumeService | None = None  # wired by the Engine
        (root / "containers").mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- lookup
    def load(self) -> None:
        for cid, name, data in self.db.list_containers():
            try:
                container = Container.from_json(data)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("skipping unreadable container record %s: %s", cid, exc)
                continue
            self._containers[cid] = container
            self._names[name] = cid

    def list(self) -> builtins.list[Container]:
        return sorted(self._containers.values(), key=lambda c: c.created, reverse=True)

    def get(self, ref: str) -> Container:
        """Find by full id, name (with or without '/'), or unique id prefix."""
        if ref in self._containers:
            return self._containers[ref]
        name = ref.lstrip("/")
        if name in self._names:
            return self._containers[self._names[name]]
        if ref:
            matches = [cid for cid in self._containers if cid.startswith(ref)]
            if len(matches) == 1:
                return self._containers[matches[0]]
            if len(matches) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def bundle(self, cid: str) -> Path:
        return self.root / "containers" / cid

    def log_path(self, cid: str) -> Path:
        return self.bundle(cid) / "container.log"

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def lifecycle_lock(self, cid: str) -> asyncio.Lock:
        """The lock that serialises start, exit and removal of ``cid`` (not reentrant).

        Held by work on a container's files that must not race them, such as ``docker cp``
        on a stopped container while its root filesystem is mounted for the copy.
        """
        return self._lock(cid)

    def _save(self, container: Container) -> Container:
        self.db.put_container(container.id, container.name, container.created, container.to_json())
        self._containers[container.id] = container
        return container

    def _attrs(self, c: Container, **extra: str) -> dict[str, str]:
        return {**c.spec.labels, "image": c.spec.image, "name": c.name, **extra}

    def _publish(self, c: Container, action: str, **extra: str) -> None:
        self.events.publish("container", action, c.id, **self._attrs(c, **extra))

    def publish(self, c: Container, action: str, **extra: str) -> None:
        """A ``container`` event with Docker's attributes (labels, image, name) plus ``extra``."""
        self._publish(c, action, **extra)

    # ----------------------------------------------------------------- create
    async def create(self, spec: ContainerSpec, name: str | None = None) -> Container:
        validate_spec(spec)
        image = self.images.get(spec.image)
        merged = merge_image_config(spec, image.config)
        cid = new_container_id()
        if self.networks is not None:
            merged = self.networks.normalize(merged, cid)
        elif merged.host.network_mode not in ("none", "host"):
            merged = replace(merged, host=replace(merged.host, network_mode="none"))
        # The name is reserved before the first await, so concurrent creates cannot take it twice.
        name = self._reserve_name(name, cid)
        args = (*merged.entrypoint, *merged.cmd)
        container = Container(
            id=cid,
            name=name,
            created=now_rfc3339(),
            image_id=image.id,
            spec=merged,
            path=args[0],
            args=tuple(args[1:]),
            hostname=merged.hostname or cid[:12],
            cgroups_path=f"/{self.cgroup_parent}/{cid}",
        )
        bundle = self.bundle(cid)
        try:
            if self.volumes is not None:  # creates the volumes it names; --volumes-from looks up others
                points = self.volumes.resolve(cid, merged, lambda ref: self.get(ref).mount_points)
                container = replace(container, mount_points=points)
            bundle.mkdir(parents=True)
            (bundle / "rootfs").mkdir()
            await asyncio.to_thread(self.snapshotter.prepare, cid, self.images.top_layer(image))
            self._save(container)
        except BaseException:
            if self.volumes is not None:
                self.volumes.forget(container, remove_anonymous=True)
            if self._names.get(name) == cid:
                del self._names[name]
            self._containers.pop(cid, None)
            with contextlib.suppress(SkiffError, OSError):
                self.snapshotter.remove(cid)
            shutil.rmtree(bundle, ignore_errors=True)
            raise
        self._publish(container, "create")
        return container

    def _reserve_name(self, name: str | None, cid: str) -> str:
        """Claim ``name`` (or a free random one) for ``cid``; Docker's Conflict when taken."""
        if name:
            name = validate_name(name)
            if name in self._names:
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{self._names[name]}". You have to remove (or rename) that container to be able to reuse that name.'
                )
        else:
            name = random_name()
            while name in self._names:
                name = random_name()
        self._names[name] = cid
        return name

    # ------------------------------------------------------------------ start
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            if c.state.status == "paused":
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.state.status == "running":
                raise NotModified("container already started")
            if c.state.status == "removing":
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            self._cancel_restart(c.id)
            try:
                await self._start_locked(c)
                return
            except SkiffError as exc:
                if not c.spec.host.auto_remove:
                    raise
                error = exc
        # As dockerd: a container that was to be removed on exit is removed when it cannot start.
        with contextlib.suppress(SkiffError):
            await self.remove(c.id, force=True)
        raise error

    async def _start_locked(self, c: Container) -> None:
        bundle = self.bundle(c.id)
        rootfs = bundle / "rootfs"
        nets = self.networks
        attaching: asyncio.Task[NetworkState] | None = None
        network = NetworkState()
        try:
            netns_path = nets.namespace_for(c) if nets is not None else None
            if nets is not None and netns_path and c.spec.networks:
                # CNI ADD runs while runc creates the container; both finish before start.
                attaching = asyncio.create_task(nets.attach(c, netns_path))
            mounts = self.snapshotter.mounts(c.id)
            unmount(rootfs)
            mount_all(mounts, rootfs)
            uid, gid, gids = resolve_user(rootfs, c.spec.user)
            gids = list(dict.fromkeys([*gids, *resolve_groups(rootfs, c.spec.host.group_add)]))
            # Volume mounts (tmpfs/bind-style) and copy-up into new volumes need the mounted root.
            volume_mounts = (
                await self.volumes.prepare_for_start(c, rootfs) if self.volumes is not None else []
            )
            spec = c.spec
            link_hosts: list[tuple[str, str]] = []
            if nets is not None and c.spec.host.links:
                link_hosts = nets.hosts_entries(c, self._linked_state(c))
                spec = replace(spec, env=(*nets.link_env(c), *spec.env))
            binds = write_container_files(
                bundle / "files",
                c.spec,
                c.hostname,
                extra_hosts=link_hosts,
                embedded_dns=nets is not None and nets.uses_embedded_dns(c),
            )
            oci = generate_spec(
                spec,
                container_id=c.id,
                rootfs=str(rootfs),
                hostname=c.hostname,
                netns_path=netns_path,
                cgroups_path=c.cgroups_path,
                extra_mounts=[*binds, *volume_mounts],
                uid=uid,
                gid=gid,
                additional_gids=gids,
            )
            tmp = bundle / "config.json.tmp"
            tmp.write_text(json.dumps(oci))
            os.replace(tmp, bundle / "config.json")
            if self.runtime.has_runtime_state(c.id):  # left over from a crash mid-start
                await self.runtime.delete(c.id, force=True)
            pid = await self.runtime.create(
                c.id,
                bundle,
                tty=c.spec.tty,
                stdin=c.spec.open_stdin,
                stdin_once=c.spec.stdin_once,
                log_path=self.log_path(c.id),
                log_max_size=parse_size(c.spec.host.log_options["max-size"])
                if c.spec.host.log_options.get("max-size")
                else 0,
            )
            if attaching is not None:
                network = await attaching
                attaching = None
                # Visible at once (in memory; the record is written after the start): the
                # process may ask the embedded DNS server about itself before that.
                self._containers[c.id] = replace(c, network=network)
                if network.endpoints:
                    ep = network.endpoints[0]
                    rewrite_hosts(bundle / "files", hosts_text(c.spec, c.hostname, ep.ip_address, link_hosts))
            failpoints.hit("start-after-runtime-create")
            await self._connect_pending_attaches(c.id)
            await self.runtime.start(c.id)
        except (SkiffError, OSError) as exc:
            err = (
                exc
                if isinstance(exc, SkiffError)
                else RuntimeFailure(f"failed to start container {c.id[:12]}: {exc}")
            )
            if attaching is not None:
                try:
                    network = await attaching
                except SkiffError as net_exc:
                    # The network failed while runc was creating the container (a published
                    # port already held, say), and its teardown can fail runc too: the
                    # network's error is the cause the user must see.
                    err = net_exc
                except BaseException:  # the start's own error is the one reported
                    pass
            if nets is not None:
                await nets.release(c, network)
            await self._cleanup_failed_start(c, err)
            if err is exc:
                raise
            raise err from exc
        c = replace(
            c.with_state(
                status="running",
                pid=pid,
                exit_code=0,
                error="",
                oom_killed=False,
                started_at=now_rfc3339(),
                health_status="starting" if self._has_health(c) else "",
                health_failing_streak=0,
            ),
            manually_stopped=False,
            has_been_started=True,
            network=network,
        )
        self._save(c)
        self._publish(c, "start")
        self._watch(c.id)
        for callback in self.on_started:
            callback(c)

    @staticmethod
    def _has_health(c: Container) -> bool:
        hc = c.spec.healthcheck
        return hc is not None and bool(hc.test) and hc.test[0] != "NONE"

    async def _cleanup_failed_start(self, c: Container, exc: SkiffError) -> None:
        for req in self._pending_attach.pop(c.id, []):
            if not req.stream.done():
                req.stream.set_exception(exc)
        with contextlib.suppress(SkiffError, OSError):
            await self.runtime.delete(c.id, force=True)
        with contextlib.suppress(OSError):
            unmount(self.bundle(c.id) / "rootfs")
        if self.volumes is not None:
            self.volumes.release(c.id)
        message = str(exc)
        lowered = message.lower()
        code = 128
        if "not found" in lowered or "no such file" in lowered:
            code = 127
        elif "permission denied" in lowered or "is a directory" in lowered:
            code = 126
        self._save(
            c.with_state(
                status="created" if not c.has_been_started else "exited", exit_code=code, error=message
            )
        )
        self._resolve_exit_waiters(c.id, code)

    async def _connect_pending_attaches(self, cid: str) -> None:
        for req in self._pending_attach.pop(cid, []):
            if req.stream.done():
                continue
            try:
                req.stream.set_result(await self.runtime.attach(cid))
            except SkiffError as exc:
                req.stream.set_exception(exc)

    # ---------------------------------------------------------------- monitor
    def _watch(self, cid: str) -> None:
        old = self._monitors.get(cid)
        if old is not None and not old.done():
            return
        self._monitors[cid] = asyncio.create_task(self._monitor(cid), name=f"monitor-{cid[:12]}")

    async def _monitor(self, cid: str) -> None:
        try:
            status = await self.runtime.wait_exit(cid)
        except asyncio.CancelledError:
            raise
        except Exception:  # the runtime lost track of it: record an unknown exit
            log.exception("waiting for container %s failed", cid[:12])
            status = ExitStatus(exit_code=255, oom_killed=False, finished_at=now_rfc3339())
        await self._on_exit(cid, status)

    async def _on_exit(self, cid: str, status: ExitStatus) -> None:
        async with self._lock(cid):
            c = self._containers.get(cid)
            if c is None:
                return
            for callback in self.on_exited:
                callback(c)
            # Record and announce the exit first; the runtime cleanup below still holds the
            # lock, so a start or rm that follows a wait cannot overtake it.
            c = self._save(
                c.with_state(
                    status="exited",
                    pid=0,
                    exit_code=status.exit_code,
                    oom_killed=status.oom_killed,
                    finished_at=status.finished_at or now_rfc3339(),
                    health_status="unhealthy" if c.state.health_status else "",
                )
            )
            if not c.spec.host.auto_remove and self._should_restart(c):
                # As dockerd: "restarting" (still counted as running by rm and wait) until
                # the policy's back-off has passed and the process is back.
                c = self._save(c.with_state(status="restarting"))
            if status.oom_killed:
                self._publish(c, "oom")
            self._publish(c, "die", exitCode=str(status.exit_code))
            self._resolve_exit_waiters(cid, status.exit_code)
            if not c.spec.host.auto_remove:  # remove() cleans up an auto-removed one
                await self._release_runtime(cid)
        if c.spec.host.auto_remove:
            with contextlib.suppress(SkiffError):
                await self.remove(cid, force=True)
            return
        self._maybe_restart(c)

    async def _release_runtime(self, cid: str) -> None:
        """Drop the runtime's state and the network of an exited container; unmount its root."""

        async def runtime() -> None:
            with contextlib.suppress(SkiffError, OSError):
                await self.runtime.delete(cid, force=True)

        c = self._containers.get(cid)
        if self.networks is not None and c is not None:
            await asyncio.gather(runtime(), self.networks.release(c))
            current = self._containers.get(cid)
            if current is not None and current.network != NetworkState():
                self._save(replace(current, network=NetworkState()))
        else:
            await runtime()
        with contextlib.suppress(OSError):
            unmount(self.bundle(cid) / "rootfs")
        if self.volumes is not None:  # unmounts volume mounts this was the last user of
            self.volumes.release(cid)

    def _linked_state(self, c: Container) -> NetworkState:
        """The endpoints a starting container will have, as far as links need them (the networks)."""
        assert self.networks is not None
        eps = []
        for name in c.spec.networks:
            rec = self.networks.get(name)
            eps.append(replace(_NO_ENDPOINT, network_id=rec.id, network_name=rec.name))
        return NetworkState(endpoints=tuple(eps))

    def _resolve_exit_waiters(self, cid: str, code: int) -> None:
        for fut in self._exit_waiters.pop(cid, []):
            if not fut.done():
                fut.set_result(code)

    # ---------------------------------------------------------- restart policy
    def _should_restart(self, c: Container) -> bool:
        policy = c.spec.host.restart_policy
        if c.manually_stopped or policy.name in ("no", ""):
            return False
        if policy.name == "on-failure":
            if c.state.exit_code == 0:
                return False
            return policy.maximum_retry_count == 0 or c.state.restart_count < policy.maximum_retry_count
        return True

    def _maybe_restart(self, c: Container) -> None:
        if not self._should_restart(c):
            return
        # Docker's back-off: 100 ms doubling per consecutive restart, capped at one minute.
        delay = min(0.1 * (2 ** min(c.state.restart_count, 10)), 60.0)
        self._restart_tasks[c.id] = asyncio.create_task(self._restart_later(c.id, delay))

    async def _restart_later(self, cid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock(cid):
            c = self._containers.get(cid)
            if c is None or c.state.status in ("running", "paused", "removing") or c.manually_stopped:
                return
            c = self._save(c.with_state(restart_count=c.state.restart_count + 1))
            try:
                await self._start_locked(c)
            except SkiffError as exc:
                log.warning("restart of %s failed: %s", cid[:12], exc)
                failed = self._containers[cid]
                if failed.state.status == "restarting":
                    failed = self._save(failed.with_state(status="exited"))
                self._maybe_restart(failed)

    def _cancel_restart(self, cid: str) -> None:
        task = self._restart_tasks.pop(cid, None)
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    # ------------------------------------------------------------ stop / kill
    def _stop_signal(self, c: Container, override: str | None) -> int:
        return parse_signal(override or c.spec.stop_signal or "SIGTERM")

    async def kill(self, ref: str, signal: str = "SIGKILL") -> None:
        c = self.get(ref)
        signum = parse_signal(signal)
        if c.state.status not in ("running", "paused"):
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        if signum in (signal_mod.SIGKILL, self._stop_signal(c, None)):
            c = self._save(replace(c, manually_stopped=True))
        waiter = self._exit_future(c.id) if signum == signal_mod.SIGKILL else None
        await self.runtime.kill(c.id, signum, all_processes=signum == signal_mod.SIGKILL)
        if c.state.status == "paused" and signum == signal_mod.SIGKILL:
            with contextlib.suppress(SkiffError):
                await self.runtime.resume(c.id)
        self._publish(c, "kill", signal=str(signum))
        if waiter is not None:
            # As dockerd: a SIGKILL returns once the exit is recorded and its resources are
            # released (inspect right after shows the container stopped), or after 10 s at most.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), 10)
                async with self._lock(c.id):
                    pass

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.get(ref)
        self._cancel_restart(c.id)
        if c.state.status == "restarting":
            self._save(replace(c.with_state(status="exited"), manually_stopped=True))
            return
        if not c.running:
            raise NotModified("container already stopped")
        c = self._save(replace(c, manually_stopped=True))
        if timeout is None:
            timeout = c.spec.stop_timeout if c.spec.stop_timeout is not None else DEFAULT_STOP_TIMEOUT
        signum = self._stop_signal(c, signal)
        waiter = self._exit_future(c.id)
        with contextlib.suppress(SkiffError):
            await self.runtime.kill(c.id, signum)
            self._publish(c, "kill", signal=str(signum))
        if c.state.status == "paused":
            with contextlib.suppress(SkiffError):
                await self.runtime.resume(c.id)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), None if timeout < 0 else timeout)
        except TimeoutError:
            with contextlib.suppress(SkiffError):
                await self.runtime.kill(c.id, signal_mod.SIGKILL, all_processes=True)
                self._publish(c, "kill", signal=str(int(signal_mod.SIGKILL)))
            await waiter
        # The exit handler answers waiters first and then releases the network and ports under
        # the container's lock: return once that is done, as dockerd does (a create right after a
        # stop may reuse the ports).
        async with self._lock(c.id):
            pass
        self._publish(self._containers.get(c.id, c), "stop")

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        if c.running:
            await self.stop(c.id, timeout)
        await self.start(c.id)
        self._publish(self.get(c.id), "restart")

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            if c.state.status == "paused":
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != "running":
                raise Conflict(f"Container {c.id} is not running")
            await self.runtime.pause(c.id)
            c = self._save(c.with_state(status="paused"))
        self._publish(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            if c.state.status != "paused":
                raise Conflict(f"Container {c.id} is not paused")
            await self.runtime.resume(c.id)
            c = self._save(c.with_state(status="running"))
        self._publish(c, "unpause")

    # ----------------------------------------------------------------- remove
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.running and not force:
            state = c.state.status if c.state.status in ("paused", "restarting") else "running"
            raise Conflict(
                f"You cannot remove a {state} container {c.id}. "
                "Stop the container before attempting removal or force remove"
            )
        self._cancel_restart(c.id)
        if c.state.status == "restarting":
            c = self._save(replace(c.with_state(status="exited"), manually_stopped=True))
        if c.running:
            c = self._save(replace(c, manually_stopped=True))
            waiter = self._exit_future(c.id)
            with contextlib.suppress(SkiffError):
                await self.runtime.kill(c.id, signal_mod.SIGKILL, all_processes=True)
                if c.state.status == "paused":
                    await self.runtime.resume(c.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, 15)
        async with self._lock(c.id):
            current = self._containers.get(c.id)
            if current is None:
                return  # removed concurrently (AutoRemove)
            c = self._save(current.with_state(status="removing"))
            bundle = self.bundle(c.id)
            unmount(bundle / "rootfs")
            # runc delete (a process) and the snapshot's removal (disk) overlap.
            await asyncio.gather(self._release_runtime(c.id), asyncio.to_thread(self._remove_snapshot, c.id))
            await asyncio.to_thread(shutil.rmtree, bundle, True)
            self.db.delete_container(c.id)
            if self.volumes is not None:  # after the record: a crash never leaves it naming a lost volume
                self.volumes.forget(c, remove_anonymous=volumes or c.spec.host.auto_remove)
            self._containers.pop(c.id, None)
            self._names.pop(c.name, None)
            self._locks.pop(c.id, None)
            monitor = self._monitors.pop(c.id, None)
            if monitor is not None and not monitor.done() and monitor is not asyncio.current_task():
                monitor.cancel()
        self._publish(c, "destroy")
        for fut in self._remove_waiters.pop(c.id, []):
            if not fut.done():
                fut.set_result(c.state.exit_code)

    def _remove_snapshot(self, cid: str) -> None:
        with contextlib.suppress(NotFound):
            self.snapshotter.remove(cid)

    # ------------------------------------------------------------------- wait
    def _exit_future(self, cid: str) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._exit_waiters.setdefault(cid, []).append(fut)
        return fut

    def wait_future(self, ref: str, condition: str = "not-running") -> asyncio.Future[int]:
        """A future for the container's exit code; registered now, so a later start cannot be missed."""
        c = self.get(ref)
        if condition in ("", "not-running"):
            if not c.running:
                fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                fut.set_result(c.state.exit_code)
                return fut
            return self._exit_future(c.id)
        if condition == "next-exit":
            return self._exit_future(c.id)
        if condition == "removed":
            fut = asyncio.get_running_loop().create_future()
            self._remove_waiters.setdefault(c.id, []).append(fut)
            return fut
        raise InvalidArgument(f'invalid condition: "{condition}"')

    # ----------------------------------------------------------------- attach
    async def attach(self, ref: str) -> AttachStream:
        """Attach to a running container now, or to its next start (as ``docker run`` does)."""
        c = self.get(ref)
        self._publish(c, "attach")  # as dockerd: one event per client attach
        if c.state.status in ("running", "paused"):
            return await self.runtime.attach(c.id)
        return await self.attach_at_start(c.id)

    def attach_at_start(self, ref: str) -> asyncio.Future[AttachStream]:
        """An attach connected when the container next starts (before its process runs, so no
        output is lost); a failed start fails it. Registered now, before any await."""
        c = self.get(ref)
        req = AttachRequest()
        self._pending_attach.setdefault(c.id, []).append(req)
        return req.stream

    async def settled(self, ref: str) -> None:
        """Wait until no lifecycle change of the container is in progress: after its exit has
        been reported, until the runtime is released and its root filesystem unmounted."""
        c = self.get(ref)
        async with self._lock(c.id):
            pass

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        await self.runtime.resize(c.id, height, width)

    # --------------------------------------------------------- rename, update
    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new_name = validate_name(new_name)
        if new_name == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        if new_name in self._names:
            raise Conflict(
                f'Conflict. The container name "/{new_name}" is already in use by container '
                f'"{self._names[new_name]}". You have to remove (or rename) that container to be able to reuse that name.'
            )
        old = c.name
        self.db.rename_container(c.id, new_name)
        self._names.pop(old, None)
        self._names[new_name] = c.id
        c = self._save(replace(c, name=new_name))
        self._publish(c, "rename", oldName="/" + old)

    async def remove_link(self, parent_ref: str, alias: str) -> None:
        """``docker rm --link PARENT/ALIAS``: drop a legacy link; both containers stay."""
        c = self.get(parent_ref)
        kept = tuple(link for link in c.spec.host.links if link.partition(":")[2] != alias)
        if len(kept) == len(c.spec.host.links):
            raise NotFound(f"Could not find link {alias!r} of container /{c.name}")
        async with self._lock(c.id):
            c = self.get(c.id)
            self._save(replace(c, spec=replace(c.spec, host=replace(c.spec.host, links=kept))))

    async def update(self, ref: str, host: HostConfig) -> builtins.list[str]:
        """Apply new resource limits / restart policy (``docker update``); returns warnings."""
        c = self.get(ref)
        spec = replace(c.spec, host=host)
        validate_spec(spec)
        async with self._lock(c.id):
            c = self.get(c.id)
            if c.state.status in ("running", "paused"):
                await self.runtime.update(c.id, linux_resources(spec.host))
            c = self._save(replace(c, spec=spec))
        self._publish(c, "update")
        return []

    # --------------------------------------------------------------- recovery
    async def recover(self) -> None:
        """After a (possibly crashed) restart: reattach to live containers, record missed exits."""
        self.load()
        known = set(self._containers)
        for entry in (self.root / "containers").iterdir():
            if entry.name not in known:
                log.info("removing half-made container directory %s", entry.name)
                unmount(entry / "rootfs")
                shutil.rmtree(entry, ignore_errors=True)
        for info in list(self.snapshotter.walk()):
            if info.kind == "active" and len(info.key) == 64 and info.key not in known:
                with contextlib.suppress(SkiffError):
                    self.snapshotter.remove(info.key)
        for cid in await self.runtime.recover():
            if cid not in known:  # runtime state without a record: nothing can use it
                log.info("removing runtime state of unknown container %s", cid[:12])
                await self._release_runtime(cid)
        to_restart: list[Container] = []
        for c in list(self._containers.values()):
            if c.state.status == "removing":
                await self.remove(c.id, force=True)
                continue
            if c.state.status not in ("running", "paused", "restarting"):
                # A crash between `runc create` and the record of the start leaves a created
                # runtime container (a waiting `runc init`): drop it with the mount.
                await self._release_runtime(c.id)
                if self._restart_on_boot(c):
                    to_restart.append(c)
                continue
            live = await self.runtime.state(c.id)
            if live is not None and live.status in ("running", "paused"):
                self._save(c.with_state(status=live.status, pid=live.pid))
                self._watch(c.id)
                for callback in self.on_started:
                    callback(self._containers[c.id])
                continue
            status = self.runtime.exit_status(c.id) or ExitStatus(
                exit_code=255, oom_killed=False, finished_at=now_rfc3339()
            )
            await self._on_exit(c.id, status)
        if self.networks is not None:
            await self.networks.recover()
        for c in to_restart:
            with contextlib.suppress(SkiffError):
                await self.start(c.id)

    @staticmethod
    def _restart_on_boot(c: Container) -> bool:
        name = c.spec.host.restart_policy.name
        return c.has_been_started and not c.manually_stopped and name in ("always", "unless-stopped")

    async def shutdown(self) -> None:
        """Stop watching (containers keep running under conmon)."""
        tasks: builtins.list[asyncio.Task[None]] = [*self._monitors.values(), *self._restart_tasks.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
