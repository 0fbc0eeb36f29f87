"""Carry out a :class:`~skiff.compose.plan.Plan` through the Engine API.

Networks and volumes first, then every service once the services it depends on are
done, independent ones in parallel (``graph.walk``). Within a service: scale-down
removals, recreations (a new container under a temporary name, then the old one
stopped and removed and the new one renamed, as Compose does, so a failed create
leaves the old container running), new containers, then starts, each start after the
service's ``depends_on`` conditions hold. Each step is reported to the progress display.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skiff.compose import labels as L
from skiff.compose.convert import ContainerRequest, Peer, container_request, network_name, service_networks
from skiff.compose.graph import COMPLETED, HEALTHY, Dependency, dependencies, walk
from skiff.compose.handle import ProjectHandle
from skiff.compose.mounts import files_tar
from skiff.compose.observed import ObservedContainer, ObservedState
from skiff.compose.plan import ContainerAction, Plan, ResourceAction
from skiff.compose.progress import DONE, ERROR, WARNING
from skiff.compose.resources import create_network, create_volume
from skiff.errors import Conflict, NotFound, RuntimeFailure, SkiffError

HEALTH_POLL = 0.25  # seconds between health checks of a dependency, as Compose polls


class DependencyFailed(RuntimeFailure):
    """A ``depends_on`` condition can no longer hold (unhealthy, exited, failed)."""


@dataclass(frozen=True)
class Started:
    """A container ``up`` (or ``start``) made run, or found running."""

    id: str
    name: str
    service: str
    already_running: bool = False


AttachHook = Callable[[Started], None]


class Executor:
    """Applies plans for one project handle."""

    def __init__(
        self,
        handle: ProjectHandle,
        *,
        image_ids: Mapping[str, str] | None = None,
        timeout: int | None = None,
        inherit_volumes: bool = True,
        before_start: AttachHook | None = None,
        workers: int = 8,
    ) -> None:
        self.h = handle
        self.client = handle.client
        self.progress = handle.progress
        self.image_ids = dict(image_ids or {})
        self.timeout = timeout
        self.inherit_volumes = inherit_volumes
        self.before_start = before_start
        self.workers = workers
        self._lock = threading.Lock()
        self.peers: dict[str, list[Peer]] = {}
        self.containers: dict[str, list[str]] = {}  # service -> ids after the plan ran

    # -- resources ---------------------------------------------------------------------------
    def ensure_resources(self, plan: Plan) -> None:
        """Create the plan's networks and volumes; check external ones exist."""
        for net in plan.networks:
            self._network(net)
        for vol in plan.volumes:
            self._volume(vol)

    def _network(self, net: ResourceAction) -> None:
        if net.external:
            try:
                self.client.inspect_network(net.name)
            except NotFound:
                raise NotFound(f"network {net.name} declared as external, but could not be found") from None
            return
        self.progress.event("Network", net.name, "Creating")
        try:
            create_network(
                self.client, self.h.name, net.key, net.name, self.h.info.networks.get(net.key) or {}
            )
        except SkiffError as exc:
            self.progress.event("Network", net.name, "Error", ERROR, exc.message)
            raise
        self.progress.event("Network", net.name, "Created", DONE)

    def _volume(self, vol: ResourceAction) -> None:
        if vol.external:
            try:
                self.client.inspect_volume(vol.name)
            except NotFound:
                if vol.key in self.h.info.volumes:
                    raise NotFound(f"external volume {vol.name!r} not found") from None
                return  # an undeclared name: the daemon creates it at container create
            return
        self.progress.event("Volume", vol.name, "Creating")
        try:
            create_volume(self.client, self.h.name, vol.key, vol.name, self.h.info.volumes.get(vol.key) or {})
        except SkiffError as exc:
            self.progress.event("Volume", vol.name, "Error", ERROR, exc.message)
            raise
        self.progress.event("Volume", vol.name, "Created", DONE)

    # -- services ----------------------------------------------------------------------------
    def apply(
        self, plan: Plan, observed: ObservedState, *, start: bool = True, wait_deps: bool = True
    ) -> None:
        """Converge every service of the plan, dependencies first."""
        for service, found in observed.containers.items():
            self.peers[service] = [Peer(c.name, c.id) for c in sorted(found, key=lambda c: c.number)]
        for c in plan.orphans:
            self._remove(c)
        self.ensure_resources(plan)

        def one(name: str) -> None:
            if start and wait_deps:
                self.wait_dependencies(name, set(plan.services))
            self._converge(name, plan.services[name].actions, start)

        walk(plan.edges, one, workers=self.workers)

    def _converge(self, name: str, actions: Sequence[ContainerAction], start: bool) -> None:
        service = self.h.services[name]
        for a in actions:
            if a.kind == "remove" and a.container is not None:
                self._remove(a.container)
        ids: list[tuple[str, str]] = []  # (id, name)
        to_start: list[tuple[str, str, bool]] = []  # (id, name, already running)
        for a in actions:
            if a.kind == "remove":
                continue
            if a.kind == "recreate" and a.container is not None:
                cid, cname = self._recreate(name, service, a.container)
                to_start.append((cid, cname, False))
            elif a.kind == "create":
                cid, cname = self._create(name, service, a.number)
                to_start.append((cid, cname, False))
            else:
                assert a.container is not None
                cid, cname = a.container.id, a.container.name
                to_start.append((cid, cname, a.container.running and a.kind == "keep"))
            ids.append((cid, cname))
        with self._lock:
            self.peers[name] = [Peer(n, i) for i, n in ids]
            self.containers[name] = [i for i, _ in ids]
        if not start:
            return
        for cid, cname, running in to_start:
            started = Started(cid, cname, name, running)
            if running:
                if self.before_start:
                    self.before_start(started)
                self.progress.event("Container", cname, "Running", DONE)
                continue
            self.start_container(started)

    def start_container(self, started: Started) -> None:
        """Start one container (attaching first when ``up`` shows logs)."""
        if self.before_start:
            self.before_start(started)
        self.progress.event("Container", started.name, "Starting")
        try:
            self.client.start(started.id)
        except SkiffError as exc:
            self.progress.event("Container", started.name, "Error", ERROR, exc.message)
            raise
        self.progress.event("Container", started.name, "Started", DONE)

    def _request(
        self,
        name: str,
        service: Mapping[str, Any],
        number: int,
        cname: str | None = None,
        inherited: Mapping[str, str] | None = None,
    ) -> ContainerRequest:
        with self._lock:
            peers = {k: list(v) for k, v in self.peers.items()}
        return container_request(
            self.h.info,
            name,
            service,
            number,
            peers=peers,
            image_id=self.image_ids.get(name),
            name=cname,
            inherited=inherited,
        )

    def create_from(self, req: ContainerRequest, label: str) -> str:
        """Create a container from a request, connect its other networks, copy its files in."""
        self.progress.event("Container", label, "Creating")
        try:
            cid = str(self.client.create_container(req.body, req.name)["Id"])
            try:
                for net, endpoint in req.connect:
                    self.client.connect_network(net, cid, endpoint)
                if req.files:
                    self.client.put_archive(cid, "/", iter([files_tar(req.files)]))
            except SkiffError:
                self.client.remove_container(cid, force=True)
                raise
        except SkiffError as exc:
            self.progress.event("Container", label, "Error", ERROR, exc.message)
            raise
        self.progress.event("Container", label, "Created", DONE)
        return cid

    def _create(self, name: str, service: Mapping[str, Any], number: int) -> tuple[str, str]:
        req = self._request(name, service, number)
        return self.create_from(req, req.name), req.name

    def _inherited(self, service: Mapping[str, Any], old: ObservedContainer) -> dict[str, str]:
        if not self.inherit_volumes:
            return {}
        anonymous = {
            str(v.get("target"))
            for v in service.get("volumes") or []
            if isinstance(v, Mapping) and v.get("type", "volume") == "volume" and not v.get("source")
        }
        return {dst: src for kind, src, dst in old.mounts if kind == "volume" and dst in anonymous and src}

    def _recreate(self, name: str, service: Mapping[str, Any], old: ObservedContainer) -> tuple[str, str]:
        final = old.name
        self.progress.event("Container", final, "Recreate")
        # Aliases name the final container; only the create uses a temporary name.
        req = self._request(name, service, old.number, final, self._inherited(service, old))
        req.body.setdefault("Labels", {})[L.REPLACE] = final
        replaced = False
        try:
            try:
                cid = str(self.client.create_container(req.body, f"{old.id[:12]}_{final}")["Id"])
            except Conflict as exc:
                if "port is already allocated" not in exc.message:
                    raise
                # A daemon that checks published ports at create (skiffd does; dockerd only
                # at start) refuses the new container while the old one holds the port: the
                # old one goes first, and its successor takes the name directly.
                self._stop(old.id, final)
                self.client.remove_container(old.id, force=True)
                replaced = True
                cid = str(self.client.create_container(req.body, final)["Id"])
            for net, endpoint in req.connect:
                self.client.connect_network(net, cid, endpoint)
            if req.files:
                self.client.put_archive(cid, "/", iter([files_tar(req.files)]))
            if not replaced:
                self._stop(old.id, final)
                self.client.remove_container(old.id, force=True)
                self.client.rename(cid, final)
        except SkiffError as exc:
            self.progress.event("Container", final, "Error", ERROR, exc.message)
            raise
        self.progress.event("Container", final, "Recreated", DONE)
        return cid, final

    def _stop(self, cid: str, label: str) -> None:
        try:
            self.client.stop(cid, timeout=self.timeout)
        except NotFound:
            pass

    def _remove(self, c: ObservedContainer) -> None:
        label = c.name
        if c.running:
            self.progress.event("Container", label, "Stopping")
            self._stop(c.id, label)
            self.progress.event("Container", label, "Stopped", DONE)
        self.progress.event("Container", label, "Removing")
        try:
            self.client.remove_container(c.id, force=True)
        except NotFound:
            pass
        self.progress.event("Container", label, "Removed", DONE)

    # -- depends_on ----------------------------------------------------------------------------
    def wait_dependencies(self, name: str, in_plan: set[str]) -> None:
        """Block until every ``depends_on`` condition of ``name`` holds (Compose's waitDependencies)."""
        for dep in dependencies(self.h.services[name]).values():
            if dep.service not in in_plan:
                continue
            with self._lock:
                ids = list(self.containers.get(dep.service, []))
                peers = {p.id: p.name for p in self.peers.get(dep.service, [])}
            for cid in ids:
                try:
                    self._wait_one(dep, cid, peers.get(cid, cid[:12]))
                except DependencyFailed as exc:
                    if dep.required:
                        raise
                    self.progress.event(
                        "Container", peers.get(cid, cid[:12]), "Skipped", WARNING, exc.message
                    )

    def _wait_one(self, dep: Dependency, cid: str, cname: str) -> None:
        if dep.condition == COMPLETED:
            self.progress.event("Container", cname, "Waiting")
            code = int(self.client.wait(cid, "not-running").result().get("StatusCode", 0))
            if code != 0:
                self.progress.event("Container", cname, "Error", ERROR, f"exited ({code})")
                raise DependencyFailed(f'service "{dep.service}" didn\'t complete successfully: exit {code}')
            self.progress.event("Container", cname, "Exited", DONE)
            return
        if dep.condition != HEALTHY:
            return
        self.progress.event("Container", cname, "Waiting")
        while True:
            state = self.client.inspect_container(cid).get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if health is None:
                self.progress.event("Container", cname, "Error", ERROR)
                raise DependencyFailed(f"container {cname} has no healthcheck configured")
            if health == "healthy":
                self.progress.event("Container", cname, "Healthy", DONE)
                return
            if health == "unhealthy":
                self.progress.event("Container", cname, "Error", ERROR, "unhealthy")
                raise DependencyFailed(f"dependency failed to start: container {cname} is unhealthy")
            if state.get("Status") in ("exited", "dead"):
                status = state.get("ExitCode")
                self.progress.event("Container", cname, "Error", ERROR, f"exited ({status})")
                raise DependencyFailed(f"dependency failed to start: container {cname} exited ({status})")
            time.sleep(HEALTH_POLL)


def networks_of(handle: ProjectHandle, services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Daemon names of the networks ``services`` use."""
    keys = {key for svc in services.values() for key, _ in service_networks(svc)}
    return sorted(network_name(handle.info.networks, k, handle.name) for k in keys)
