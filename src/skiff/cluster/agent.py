"""The node agent: runs the tasks the leader assigned to this node on the local engine.

Every cluster node (manager or worker) runs one ``Agent``. It

- registers its ``Node`` (resources from the engine's ``/info``) with its liveness key under a
  lease, and keeps the lease alive every ``ttl / 3`` seconds. A lease found gone (a partition
  longer than the TTL, a store that lost it) is granted again and the node re-registered; the
  leader then sees the node ready again.
- follows ``/skiff/tasks/`` (a range, then a watch from the next revision; re-ranges after a
  compaction or a broken watch) for tasks whose ``node_id`` is this node, and the engine's
  container events (``die``, ``oom``, ``health_status``, ``destroy``).
- drives each task towards what its record says, level-triggered: every trigger (a task
  change, a container event, a periodic resync) re-reads the task and inspects its container,
  then does the next step. Desired ``running``: ``assigned -> preparing`` (pull the image if
  missing) ``-> starting`` (create, start) ``-> running``; the container's exit makes it
  ``complete`` (status 0) or ``failed`` ("task: non-zero exit (N)"), an unhealthy container is
  stopped and ``failed``. Desired ``shutdown``: the container is stopped and removed and the task
  reported ``shutdown``. A task deleted from the store loses its container too.
- reconciles at start: containers labelled for this node whose task is gone or not desired
  running are removed (stale after the node was away); the others are adopted.

Reports go through ``ops.report_task`` (compare-and-set on the task's revision, retried).
One task is handled at a time (per-task serialisation); different tasks concurrently, at most
``concurrency`` at once. Nothing here blocks the event loop.

The engine is reached through ``EngineClient`` (Engine API calls only, so any Docker-compatible
daemon serves); ``skiff.client.aio.HttpEngine`` implements it over the daemon's socket.
Containers are named ``<service>.<slot>.<task[:12]>`` (global services:
``<service>.<node[:12]>.<task[:12]>``), labelled with the task, service and node ids, and get
restart policy ``no``: the leader decides restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from skiff.client.aio import HttpEngine
from skiff.cluster import keys, ops
from skiff.cluster.model import (
    InvalidTransition,
    Node,
    NodeStatus,
    Resources,
    Task,
    TaskState,
    evolve,
    from_json,
    to_json,
)
from skiff.cluster.state.base import Compacted, Compare, LeaseNotFound, Put, Store
from skiff.errors import Conflict, NotFound, SkiffError

__all__ = [
    "LABEL_NODE",
    "LABEL_SERVICE_ID",
    "LABEL_SERVICE_NAME",
    "LABEL_TASK",
    "Agent",
    "EngineClient",
    "HttpEngine",
    "container_config",
    "container_name",
]

log = logging.getLogger(__name__)

LABEL_TASK = "com.skiff.cluster.task.id"
LABEL_SERVICE_ID = "com.skiff.cluster.service.id"
LABEL_SERVICE_NAME = "com.skiff.cluster.service.name"
LABEL_NODE = "com.skiff.cluster.node.id"
LABEL_TASK_NAME = "com.skiff.cluster.task.name"

EVENT_FILTERS = {"type": ["container"], "event": ["die", "oom", "health_status", "destroy"]}
_ORDER = {s: i for i, s in enumerate(TaskState)}
_BACKOFF_MAX = 10.0


class EngineClient(Protocol):
    """The engine calls a node agent makes. Containers and images are the Engine API's JSON
    objects, as dicts. ``skiff.client.aio.HttpEngine`` implements it over HTTP."""

    async def info(self) -> dict[str, Any]:
        """``GET /info`` (NCPU, MemTotal, Name, ...)."""
        ...

    async def image_exists(self, ref: str) -> bool: ...

    async def pull(self, ref: str) -> None:
        """Pull ``ref``, consuming the progress stream; an error line raises."""
        ...

    async def create(self, name: str, config: dict[str, Any]) -> str:
        """Create a container from an Engine API create body; returns its id."""
        ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, *, timeout: int) -> None: ...

    async def remove(self, container_id: str, *, force: bool = True) -> None: ...

    async def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every container (running or not) carrying all of ``labels``."""
        ...

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect JSON; None when there is no such container."""
        ...

    def events(
        self, filters: Mapping[str, list[str]], *, since: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The engine's event stream (until the connection ends)."""
        ...

    def logs(
        self, container_id: str, *, follow: bool = False, tail: str = "all", timestamps: bool = False
    ) -> AsyncIterator[tuple[str, bytes]]:
        """``(stream, line)`` pairs: stream is ``stdout`` or ``stderr``; lines keep their newline."""
        ...

    async def close(self) -> None: ...


def container_name(task: Task) -> str:
    """``web.2.<task[:12]>``, or ``web.<node[:12]>.<task[:12]>`` for a global task."""
    slot = str(task.slot) if task.slot else task.node_id[:12]
    return f"{task.service_name}.{slot}.{task.id[:12]}"


def task_labels(task: Task) -> dict[str, str]:
    """The labels marking a task's container (skiff's, and Swarm's for familiarity)."""
    return {
        LABEL_TASK: task.id,
        LABEL_TASK_NAME: task.name,
        LABEL_SERVICE_ID: task.service_id,
        LABEL_SERVICE_NAME: task.service_name,
        LABEL_NODE: task.node_id,
        "com.docker.swarm.task.id": task.id,
        "com.docker.swarm.task.name": task.name,
        "com.docker.swarm.service.id": task.service_id,
        "com.docker.swarm.service.name": task.service_name,
        "com.docker.swarm.node.id": task.node_id,
    }


def container_config(task: Task) -> dict[str, Any]:
    """The Engine API create body for ``task``. Restart policy ``no``: the cluster restarts."""
    tpl = task.template
    config: dict[str, Any] = {
        "Image": tpl.image,
        "Labels": {**tpl.labels, **task_labels(task)},
        "Env": list(tpl.env),
        "StopTimeout": max(0, math.ceil(tpl.stop_grace_period)),
    }
    if tpl.command:
        config["Cmd"] = list(tpl.command)
    if tpl.entrypoint:
        config["Entrypoint"] = list(tpl.entrypoint)
    if tpl.workdir:
        config["WorkingDir"] = tpl.workdir
    if tpl.user:
        config["User"] = tpl.user
    if tpl.healthcheck is not None:
        hc = tpl.healthcheck
        config["Healthcheck"] = {
            "Test": list(hc.test),
            "Interval": hc.interval,
            "Timeout": hc.timeout,
            "Retries": hc.retries,
            "StartPeriod": hc.start_period,
            "StartInterval": hc.start_interval,
        }
    host: dict[str, Any] = {"RestartPolicy": {"Name": "no"}}
    limits, reservations = tpl.resources.limits, tpl.resources.reservations
    if limits.memory_bytes:
        host["Memory"] = limits.memory_bytes
    if limits.nano_cpus:
        host["NanoCpus"] = limits.nano_cpus
    if reservations.memory_bytes and (
        not limits.memory_bytes or reservations.memory_bytes <= limits.memory_bytes
    ):
        host["MemoryReservation"] = reservations.memory_bytes
    if tpl.ports:
        exposed: dict[str, dict[str, Any]] = {}
        bindings: dict[str, list[dict[str, str]]] = {}
        for p in tpl.ports:
            port = f"{p.target}/{p.protocol}"
            exposed[port] = {}
            bindings.setdefault(port, []).append(
                {"HostIp": "", "HostPort": str(p.published) if p.published else ""}
            )
        config["ExposedPorts"] = exposed
        host["PortBindings"] = bindings
    config["HostConfig"] = host
    return config


def _health(info: dict[str, Any]) -> str:
    health = (info.get("State") or {}).get("Health") or {}
    status = health.get("Status") or ""
    return "" if status == "none" else str(status)


class Agent:
    """The node agent (see module doc)."""

    def __init__(
        self,
        store: Store,
        node: Node,
        engine: EngineClient,
        *,
        ttl: int = 5,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
        resync_interval: float = 30.0,
    ) -> None:
        self.store = store
        self.node = node
        self.engine = engine
        self.ttl = ttl
        self.clock = clock
        self.resync_interval = resync_interval
        self.lease_id = 0
        self.registrations = 0  # times the node was (re-)registered under a new lease
        self._sem = asyncio.Semaphore(concurrency)
        self._known: set[str] = set()  # ids of this node's tasks (as last seen in the store)
        self._containers: dict[str, str] = {}  # task id -> container id
        self._by_container: dict[str, str] = {}  # container id -> task id
        self._written: dict[str, Task] = {}  # the last record this agent wrote for a task
        self._dirty: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._marker = f'"node_id":"{node.id}"'.encode()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._since: float | None = None

    # --- lifecycle

    async def start(self) -> None:
        """Register, reconcile the engine's containers with the store, then follow both."""
        self._stopping = False
        self._since = time.time() - 1  # engine events from before the containers are listed
        info = await self.engine.info()
        node = self.node
        if not node.resources.nano_cpus and not node.resources.memory_bytes:
            node = replace(
                node,
                resources=Resources(
                    nano_cpus=int(info.get("NCPU") or 1) * 1_000_000_000,
                    memory_bytes=int(info.get("MemTotal") or 0),
                ),
            )
        if not node.hostname:
            node = replace(node, hostname=str(info.get("Name") or node.id))
        self.node = node
        await self._register()
        revision = await self._range_tasks()
        await self._adopt()
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._keepalive_loop(), name=f"skiff-agent-keepalive-{node.id}"),
            loop.create_task(self._watch_loop(revision), name=f"skiff-agent-watch-{node.id}"),
            loop.create_task(self._events_loop(), name=f"skiff-agent-events-{node.id}"),
            loop.create_task(self._resync_loop(), name=f"skiff-agent-resync-{node.id}"),
        ]
        for task_id in sorted(self._known):
            self._poke(task_id)

    async def stop(self, *, leave: bool = False) -> None:
        """Stop following. ``leave``: remove this node's containers, mark the node down and
        revoke its lease (the leader then reschedules its tasks elsewhere). Without ``leave``
        the containers keep running and the lease runs out on its own."""
        self._stopping = True
        for t in [*self._loops, *self._workers.values()]:
            t.cancel()
        for t in [*self._loops, *self._workers.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._loops = []
        self._workers.clear()
        self._dirty.clear()
        self._idle.set()
        if not leave:
            return
        with contextlib.suppress(SkiffError):
            for c in await self.engine.list_containers({LABEL_NODE: self.node.id}):
                with contextlib.suppress(NotFound):
                    await self.engine.remove(c["Id"], force=True)
        with contextlib.suppress(SkiffError, OSError):
            await self._set_node_status(NodeStatus.DOWN, "node left the cluster")
        if self.lease_id:
            with contextlib.suppress(LeaseNotFound, SkiffError, OSError):
                await self.store.revoke(self.lease_id)
            self.lease_id = 0

    async def settled(self) -> None:
        """Return once no task is being worked on (tests)."""
        while self._workers or self._dirty:
            self._idle.clear()
            await self._idle.wait()

    # --- the node and its lease

    async def _register(self) -> None:
        """A new lease, and the node record under it (merged with what the store has: the
        user's labels and availability and the leader's status stay)."""
        lease = await self.store.grant(self.ttl)
        for _ in range(20):
            now = self.clock()
            kv = await self.store.get(keys.node(self.node.id))
            if kv is None:
                record = replace(self.node, status=NodeStatus.READY, created_at=now, updated_at=now)
                compare = Compare(keys.node(self.node.id), 0)
            else:
                old = from_json(Node, kv.value)
                record = replace(
                    old,
                    hostname=self.node.hostname,
                    role=self.node.role,
                    resources=self.node.resources,
                    address=self.node.address,
                    updated_at=now,
                )
                compare = Compare(keys.node(self.node.id), kv.mod_revision)
            r = await self.store.txn(
                [compare],
                [
                    Put(keys.node(self.node.id), to_json(record)),
                    Put(keys.node_lease(self.node.id), self.node.address.encode(), lease.id),
                ],
            )
            if r.succeeded:
                self.lease_id = lease.id
                self.node = record
                self.registrations += 1
                return
        raise Conflict(f"node {self.node.id} keeps changing; try again")

    async def _set_node_status(self, status: NodeStatus, message: str) -> None:
        for _ in range(20):
            kv = await self.store.get(keys.node(self.node.id))
            if kv is None:
                return
            record = replace(
                from_json(Node, kv.value), status=status, status_message=message, updated_at=self.clock()
            )
            r = await self.store.txn(
                [Compare(keys.node(self.node.id), kv.mod_revision)],
                [Put(keys.node(self.node.id), to_json(record))],
            )
            if r.succeeded:
                return

    async def _keepalive_loop(self) -> None:
        interval = max(self.ttl / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.keepalive(self.lease_id)
            except LeaseNotFound:
                log.warning("node %s: lease %d is gone: registering again", self.node.id, self.lease_id)
                try:
                    await self._register()
                except Exception as exc:  # the store is unreachable: try again next tick
                    log.warning("node %s: re-registering failed: %s", self.node.id, exc)
                    continue
                self._resync_now()
            except Exception as exc:  # a store that does not answer now (network, failover)
                log.warning("node %s: keepalive failed: %s", self.node.id, exc)

    # --- following the store

    async def _range_tasks(self) -> int:
        """Load this node's tasks; poke the ones that appeared or disappeared. Returns the
        revision to watch after."""
        r = await self.store.range(keys.TASKS)
        mine: set[str] = set()
        for kv in r.kvs:
            if self._marker not in kv.value:
                continue
            task = from_json(Task, kv.value)
            if task.node_id == self.node.id:
                mine.add(task.id)
        gone = self._known - mine
        self._known = mine
        for task_id in gone:
            self._poke(task_id)
        return r.revision

    async def _watch_loop(self, revision: int) -> None:
        backoff = 0.1
        while True:
            try:
                async with self.store.watch(keys.TASKS, start_revision=revision + 1) as w:
                    async for events in w:
                        backoff = 0.1
                        for e in events:
                            revision = max(revision, e.kv.mod_revision)
                            self._on_task_event(e.type, e.kv.key, e.kv.value)
            except Compacted:
                log.info("node %s: task watch fell behind a compaction: reloading", self.node.id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s: task watch failed: %s", self.node.id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            try:
                revision = await self._range_tasks()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s: reloading tasks failed: %s", self.node.id, exc)
                continue
            for task_id in sorted(self._known):
                self._poke(task_id)

    def _on_task_event(self, kind: str, key: str, value: bytes) -> None:
        task_id = key.removeprefix(keys.TASKS)
        if kind != "put":
            if task_id in self._known:
                self._known.discard(task_id)
                self._poke(task_id)
            return
        if self._marker not in value:
            return
        task = from_json(Task, value)
        if task.node_id != self.node.id:
            return
        self._known.add(task_id)
        if self._written.get(task_id) == task:  # our own report coming back
            return
        self._poke(task_id)

    # --- following the engine

    async def _events_loop(self) -> None:
        since: float | None = self._since
        backoff = 0.1
        while True:
            try:
                async for event in self.engine.events(EVENT_FILTERS, since=since):
                    backoff = 0.1
                    if event.get("timeNano"):
                        since = int(event["timeNano"]) / 1e9
                    self._on_container_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s: engine events failed: %s", self.node.id, exc)
            await asyncio.sleep(backoff)  # the stream ended: events may have been missed
            backoff = min(backoff * 2, _BACKOFF_MAX)
            self._resync_now()

    def _on_container_event(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        cid = str(actor.get("ID") or event.get("id") or "")
        attrs = actor.get("Attributes") or {}
        task_id = self._by_container.get(cid)
        if task_id is None and attrs.get(LABEL_NODE) == self.node.id:
            task_id = attrs.get(LABEL_TASK)
        if task_id:
            self._poke(task_id)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            try:
                await self._resync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s: resync failed: %s", self.node.id, exc)

    def _resync_now(self) -> None:
        if self._stopping:
            return
        t = asyncio.get_running_loop().create_task(self._resync_quietly())
        self._loops.append(t)
        t.add_done_callback(lambda done: self._loops.remove(done) if done in self._loops else None)

    async def _resync_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._resync()

    async def _resync(self) -> None:
        """Look again at every container of this node and every known task (missed events)."""
        await self._adopt()
        for task_id in sorted(self._known | set(self._containers)):
            self._poke(task_id)

    async def _adopt(self) -> None:
        """Learn this node's containers; remove those whose task is gone or not desired running."""
        containers = await self.engine.list_containers({LABEL_NODE: self.node.id})
        seen: set[str] = set()
        for c in containers:
            cid = str(c["Id"])
            task_id = (c.get("Labels") or {}).get(LABEL_TASK)
            if not task_id:
                continue
            seen.add(cid)
            if task_id in self._workers:  # being worked on: its worker keeps the map right
                continue
            kv = await self.store.get(keys.task(task_id))
            task = from_json(Task, kv.value) if kv is not None else None
            if task is None or task.node_id != self.node.id or task.desired_state is not TaskState.RUNNING:
                if task is None or task.state.terminal:
                    log.info(
                        "node %s: removing stale container %s (task %s)", self.node.id, cid[:12], task_id
                    )
                    with contextlib.suppress(NotFound):
                        await self.engine.remove(cid, force=True)
                    self._forget_container(task_id, cid)
                    continue
                self._remember(task_id, cid)  # still live: its worker stops it and reports
                self._poke(task_id)
                continue
            self._remember(task_id, cid)
        for cid in set(self._by_container) - seen:
            task_id = self._by_container[cid]
            if task_id not in self._workers:
                self._forget_container(task_id, cid)

    def _remember(self, task_id: str, cid: str) -> None:
        old = self._containers.get(task_id)
        if old and old != cid:
            self._by_container.pop(old, None)
        self._containers[task_id] = cid
        self._by_container[cid] = task_id

    def _forget_container(self, task_id: str, cid: str | None = None) -> None:
        cid = cid or self._containers.get(task_id)
        if cid is not None:
            self._by_container.pop(cid, None)
            if self._containers.get(task_id) == cid:
                del self._containers[task_id]

    # --- per-task work

    def _poke(self, task_id: str) -> None:
        """Have ``task_id`` looked at: now, or after the work in progress on it."""
        if self._stopping:
            return
        self._dirty.add(task_id)
        if task_id not in self._workers:
            self._idle.clear()
            self._workers[task_id] = asyncio.get_running_loop().create_task(
                self._work(task_id), name=f"skiff-agent-task-{task_id[:12]}"
            )

    async def _work(self, task_id: str) -> None:
        backoff = 0.2
        try:
            while task_id in self._dirty:
                self._dirty.discard(task_id)
                try:
                    async with self._sem:
                        await self._converge(task_id)
                    backoff = 0.2
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("node %s: task %s: %s (retrying)", self.node.id, task_id, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    self._dirty.add(task_id)
        finally:
            self._workers.pop(task_id, None)
            if not self._workers and not self._dirty:
                self._idle.set()

    async def _converge(self, task_id: str) -> None:
        """One step towards what the task's record says (see module doc)."""
        kv = await self.store.get(keys.task(task_id))
        task = from_json(Task, kv.value) if kv is not None else None
        if task is None or task.node_id != self.node.id:
            self._known.discard(task_id)
            self._written.pop(task_id, None)
            await self._remove_container(task_id)
            return
        self._known.add(task_id)
        if task.desired_state is not TaskState.RUNNING:
            await self._shut_down(task)
            return
        if task.state.terminal or _ORDER[task.state] < _ORDER[TaskState.ASSIGNED]:
            return
        info = await self._inspect(task_id)
        if info is None:
            if task.state is TaskState.RUNNING or (task.state is TaskState.STARTING and task.container_id):
                await self._report(
                    task, TaskState.FAILED, "task: container removed", error="container removed"
                )
                return
            info = await self._prepare(task)
            if info is None:
                return
            task = self._written.get(task_id, task)
        cid = str(info["Id"])
        status = (info.get("State") or {}).get("Status", "")
        if status == "created":
            if _ORDER[task.state] < _ORDER[TaskState.STARTING]:
                moved = await self._report(task, TaskState.STARTING, "starting", container_id=cid)
                if moved is None:
                    return
                task = moved
            try:
                await self.engine.start(cid)
            except NotFound:
                self._forget_container(task_id, cid)
                self._poke(task_id)
                return
            except SkiffError as exc:
                await self._report(
                    task, TaskState.FAILED, f"starting container failed: {exc}", error=str(exc)
                )
                return
            info = await self._inspect(task_id)
            if info is None:
                self._poke(task_id)
                return
            status = (info.get("State") or {}).get("Status", "")
        if status in ("running", "paused", "restarting"):
            await self._running(task, info)
            return
        if status in ("exited", "dead"):
            await self._exited(task, info)
            return
        self._poke_later(task_id)  # removing, or a state the engine passes through

    async def _prepare(self, task: Task) -> dict[str, Any] | None:
        """Pull and create: the container's inspect JSON, or None (reported rejected)."""
        if task.state is TaskState.ASSIGNED:
            moved = await self._report(task, TaskState.PREPARING, "preparing")
            if moved is None:
                return None
            task = moved
        image = task.template.image
        try:
            if not await self.engine.image_exists(image):
                await self.engine.pull(image)
        except SkiffError as exc:
            await self._report(
                task, TaskState.REJECTED, f"pulling image {image} failed: {exc}", error=str(exc)
            )
            return None
        name = container_name(task)
        try:
            cid = await self.engine.create(name, container_config(task))
        except Conflict:
            existing = await self._find(task.id)  # made before a crash, or by a racing worker
            if existing is None:
                raise
            cid = existing
        except SkiffError as exc:
            state = (
                TaskState.REJECTED if _ORDER[task.state] < _ORDER[TaskState.STARTING] else TaskState.FAILED
            )
            await self._report(task, state, f"creating container failed: {exc}", error=str(exc))
            return None
        self._remember(task.id, cid)
        return await self.engine.inspect(cid)

    async def _running(self, task: Task, info: dict[str, Any]) -> None:
        cid = str(info["Id"])
        health = _health(info)
        if task.state is not TaskState.RUNNING:
            moved = await self._report(task, TaskState.RUNNING, "started", container_id=cid, health=health)
            if moved is None:
                return
            task = moved
        elif health != task.health or task.container_id != cid:
            moved = await self._set(task, health=health, container_id=cid)
            if moved is None:
                return
            task = moved
        if health == "unhealthy":
            await self._stop(cid, task)
            await self._report(
                task, TaskState.FAILED, "task: unhealthy container", error="unhealthy container"
            )

    async def _exited(self, task: Task, info: dict[str, Any]) -> None:
        state = info.get("State") or {}
        code = int(state.get("ExitCode") or 0)
        if _ORDER[task.state] < _ORDER[TaskState.STARTING]:
            moved = await self._report(task, TaskState.STARTING, "starting", container_id=str(info["Id"]))
            if moved is None:
                return
            task = moved
        if code == 0 and not state.get("OOMKilled"):
            await self._report(task, TaskState.COMPLETE, "finished", exit_code=0)
            return
        message = f"task: non-zero exit ({code})"
        error = message + (": OOM killed" if state.get("OOMKilled") else "")
        await self._report(task, TaskState.FAILED, message, error=error, exit_code=code)

    async def _shut_down(self, task: Task) -> None:
        """Stop and remove the task's container; report ``shutdown`` unless it already ended."""
        # An ended task's container is in the map if it exists (no worker is creating it): no
        # engine call for each old task at every resync.
        cid = self._containers.get(task.id) if task.state.terminal else await self._container_id(task.id)
        if cid is not None:
            await self._stop(cid, task)
            with contextlib.suppress(NotFound):
                await self.engine.remove(cid, force=True)
            self._forget_container(task.id, cid)
        if not task.state.terminal:
            await self._report(task, TaskState.SHUTDOWN, "shutdown")

    async def _stop(self, cid: str, task: Task) -> None:
        with contextlib.suppress(NotFound):
            await self.engine.stop(cid, timeout=max(0, math.ceil(task.template.stop_grace_period)))

    async def _remove_container(self, task_id: str) -> None:
        cid = await self._container_id(task_id)
        if cid is None:
            return
        with contextlib.suppress(NotFound):
            await self.engine.remove(cid, force=True)
        self._forget_container(task_id, cid)

    async def _container_id(self, task_id: str) -> str | None:
        """The task's container: known, or found by its label (one made while a resync was
        listing the engine's containers is not in the map)."""
        cid = self._containers.get(task_id)
        if cid is None:
            cid = await self._find(task_id)
            if cid is not None:
                self._remember(task_id, cid)
        return cid

    async def _inspect(self, task_id: str) -> dict[str, Any] | None:
        cid = await self._container_id(task_id)
        if cid is None:
            return None
        info = await self.engine.inspect(cid)
        if info is None:
            self._forget_container(task_id, cid)
        return info

    async def _find(self, task_id: str) -> str | None:
        for c in await self.engine.list_containers({LABEL_NODE: self.node.id, LABEL_TASK: task_id}):
            return str(c["Id"])
        return None

    def _poke_later(self, task_id: str, delay: float = 0.5) -> None:
        asyncio.get_running_loop().call_later(delay, self._poke, task_id)

    # --- reports

    async def _report(self, task: Task, state: TaskState, message: str, **changes: object) -> Task | None:
        """``ops.report_task``; None when the task is gone or moved on (it is looked at again)."""
        try:
            moved = await ops.report_task(
                self.store, task.id, state, now=self.clock(), message=message, **changes
            )
        except InvalidTransition:
            self._poke(task.id)  # the leader moved it meanwhile (orphaned, ...): start over
            return None
        if moved is None:
            self._poke(task.id)
            return None
        self._written[task.id] = moved
        return moved

    async def _set(self, task: Task, **changes: object) -> Task | None:
        """Change fields of a running task without a state change (health), compare-and-set."""
        for _ in range(20):
            kv = await self.store.get(keys.task(task.id))
            if kv is None:
                self._poke(task.id)
                return None
            current = from_json(Task, kv.value)
            if current.state is not TaskState.RUNNING:
                self._poke(task.id)
                return None
            moved = evolve(current, updated_at=self.clock(), **changes)
            r = await self.store.txn(
                [Compare(keys.task(task.id), kv.mod_revision)], [Put(keys.task(task.id), to_json(moved))]
            )
            if r.succeeded:
                self._written[task.id] = moved
                return moved
        raise Conflict(f"task {task.id} keeps changing; try again")
