"""Convergence as pure functions: desired project + observed state -> a plan.

Compose's rules (``reconcile.go``): a service wants ``replicas`` containers; existing
ones are sorted up-to-date first, lowest numbers first, so scaling down removes the
obsolete and the highest-numbered; a container is obsolete when its config hash or
image differs from what is wanted, or a service whose namespace or volumes it shares
is itself recreated. ``--force-recreate`` and ``--no-recreate`` override the hash for the
services named (``recreate``) and, separately, for their dependencies (``recreate_deps``).
New containers take numbers after the highest in use. Nothing here talks to a daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from skiff.compose.convert import config_hash, network_name, replicas, service_networks
from skiff.compose.graph import graph, order
from skiff.compose.mounts import volume_name
from skiff.compose.observed import ObservedContainer, ObservedState
from skiff.errors import InvalidArgument

DIVERGED, FORCE, NEVER = "diverged", "force", "never"
Kind = Literal["create", "recreate", "start", "keep", "remove"]


@dataclass(frozen=True)
class ContainerAction:
    """What happens to one container slot of a service."""

    kind: Kind
    number: int
    container: ObservedContainer | None = None
    reason: str = ""


@dataclass
class ServicePlan:
    """A service's container actions, in the order they are carried out."""

    service: str
    actions: list[ContainerAction] = field(default_factory=list)

    def changes(self) -> bool:
        return any(a.kind != "keep" for a in self.actions)


@dataclass(frozen=True)
class ResourceAction:
    """A network or volume to create (``key`` in the file, ``name`` on the daemon)."""

    key: str
    name: str
    external: bool = False


@dataclass
class Plan:
    """Everything ``up`` will do: resources first, then services in dependency order."""

    networks: list[ResourceAction] = field(default_factory=list)
    volumes: list[ResourceAction] = field(default_factory=list)
    services: dict[str, ServicePlan] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    edges: dict[str, set[str]] = field(default_factory=dict)
    orphans: list[ObservedContainer] = field(default_factory=list)

    def describe(self) -> list[str]:
        """One line per change: what a dry run prints, and what tests compare."""
        out = [f"create network {n.name}" for n in self.networks if not n.external]
        out += [f"create volume {v.name}" for v in self.volumes if not v.external]
        for name in self.order:
            for a in self.services[name].actions:
                if a.kind != "keep":
                    target = a.container.name if a.container else f"{name}#{a.number}"
                    out.append(f"{a.kind} {target}" + (f" ({a.reason})" if a.reason else ""))
        out += [f"remove orphan {c.name}" for c in self.orphans]
        return out


@dataclass(frozen=True)
class PlanOptions:
    """The ``up`` flags that shape a plan."""

    services: tuple[str, ...] = ()  # named on the command line (empty: all)
    recreate: str = DIVERGED  # for the named services
    recreate_deps: str = DIVERGED  # for the services pulled in as dependencies
    scale: Mapping[str, int] = field(default_factory=dict)
    remove_orphans: bool = False
    start: bool = True


def _used_networks(services: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {key for svc in services.values() for key, _ in service_networks(svc)}


def _used_volumes(services: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {
        str(v["source"])
        for svc in services.values()
        for v in svc.get("volumes") or []
        if isinstance(v, Mapping) and v.get("type", "volume") == "volume" and v.get("source")
    }


def resources_plan(
    project_name: str,
    networks: Mapping[str, Any],
    volumes: Mapping[str, Any],
    services: Mapping[str, Mapping[str, Any]],
    observed: ObservedState,
) -> tuple[list[ResourceAction], list[ResourceAction]]:
    """Networks and volumes the services use that the daemon does not have yet (or external ones)."""
    nets = []
    for key in sorted(_used_networks(services)):
        spec = networks.get(key) or {}
        name = network_name(networks, key, project_name)
        external = bool(spec.get("external"))
        if external or name not in observed.networks:
            nets.append(ResourceAction(key, name, external))
    vols = []
    for key in sorted(_used_volumes(services)):
        spec = volumes.get(key) or {}
        name = volume_name(volumes, key) if key in volumes else key
        external = bool(spec.get("external")) or key not in volumes
        if external or name not in observed.volumes:
            vols.append(ResourceAction(key, name, external))
    return nets, vols


def _parents(service: Mapping[str, Any]) -> set[str]:
    """Services whose containers this one joins (namespaces, volumes_from)."""
    out = set()
    for key in ("network_mode", "ipc", "pid"):
        mode = service.get(key)
        if isinstance(mode, str) and mode.startswith("service:"):
            out.add(mode[len("service:") :])
    for vf in service.get("volumes_from") or []:
        text = str(vf)
        if not text.startswith("container:"):
            out.add(text.split(":", 1)[0])
    return out


def must_recreate(
    c: ObservedContainer, wanted_hash: str, image_id: str | None, policy: str, parent_recreated: bool
) -> str:
    """Why ``c`` must be replaced ("" if it need not be)."""
    if policy == NEVER:
        return ""
    if policy == FORCE:
        return "forced"
    if parent_recreated:
        return "a service it joins is recreated"
    if c.config_hash != wanted_hash:
        return "configuration changed"
    if image_id and c.image_label and c.image_label != image_id:
        return "image changed"
    return ""


def service_plan(
    name: str,
    service: Mapping[str, Any],
    existing: list[ObservedContainer],
    *,
    wanted: int,
    image_id: str | None,
    policy: str,
    parent_recreated: bool,
    start: bool,
) -> ServicePlan:
    """The actions for one service (Compose's ``reconcileService``)."""
    wanted_hash = config_hash(service)
    why = {c.id: must_recreate(c, wanted_hash, image_id, policy, parent_recreated) for c in existing}
    # Up-to-date first, then lowest numbers: the tail is what scaling down removes.
    ranked = sorted(existing, key=lambda c: (bool(why[c.id]), c.number, c.created))
    plan = ServicePlan(name)
    for i, c in enumerate(ranked):
        if i >= wanted:
            plan.actions.append(ContainerAction("remove", c.number, c, "scale down"))
        elif why[c.id]:
            plan.actions.append(ContainerAction("recreate", c.number, c, why[c.id]))
        elif start and not c.running:
            plan.actions.append(ContainerAction("start", c.number, c, "not running"))
        else:
            plan.actions.append(ContainerAction("keep", c.number, c))
    next_number = max((c.number for c in existing), default=0) + 1
    for i in range(max(0, wanted - len(existing))):
        plan.actions.append(ContainerAction("create", next_number + i))
    return plan


def make_plan(
    project_name: str,
    services: Mapping[str, Mapping[str, Any]],
    networks: Mapping[str, Any],
    volumes: Mapping[str, Any],
    observed: ObservedState,
    image_ids: Mapping[str, str],
    options: PlanOptions,
) -> Plan:
    """The whole ``up`` plan for ``services`` (already narrowed to the named ones + dependencies)."""
    edges = graph(services)
    plan = Plan(edges=edges, order=order(edges))
    plan.networks, plan.volumes = resources_plan(project_name, networks, volumes, services, observed)
    recreated: set[str] = set()
    for name in plan.order:
        svc = services[name]
        named = not options.services or name in options.services
        policy = options.recreate if named else options.recreate_deps
        wanted = options.scale.get(name, replicas(svc))
        if svc.get("container_name") and wanted > 1:
            raise InvalidArgument(
                f'service "{name}" has specified a custom container name, scaling to {wanted} is not possible'
            )
        sp = service_plan(
            name,
            svc,
            observed.of(name),
            wanted=wanted,
            image_id=image_ids.get(name),
            policy=policy,
            parent_recreated=bool(_parents(svc) & recreated),
            start=options.start,
        )
        if any(a.kind == "recreate" for a in sp.actions):
            recreated.add(name)
        plan.services[name] = sp
    if options.remove_orphans:
        plan.orphans = list(observed.orphans)
    return plan
