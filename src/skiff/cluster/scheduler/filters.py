"""Feasibility filters: can this node take this task? Each answers ``None`` (yes) or the reason.

Static filters depend only on the node and the task's placement (status, availability,
constraints): a pass computes them once per constraint set. Dynamic filters depend on what is
already on the node (reserved resources, host ports) and change with every placement.
The reasons are the words users read in ``service ps`` ("insufficient memory on 2").
"""

from __future__ import annotations

from skiff.cluster.model import Availability, Node, NodeStatus, PortConfig, Resources
from skiff.cluster.scheduler.constraints import Constraint
from skiff.cluster.scheduler.usage import NodeUsage

NODE_DOWN = "node is down"
NODE_PAUSED = "node availability is pause"
NODE_DRAINED = "node availability is drain"
NO_MEMORY = "insufficient memory"
NO_CPU = "insufficient cpu"


def node_ready(node: Node) -> str | None:
    return None if node.status is NodeStatus.READY else NODE_DOWN


def node_active(node: Node) -> str | None:
    if node.availability is Availability.ACTIVE:
        return None
    return NODE_DRAINED if node.availability is Availability.DRAIN else NODE_PAUSED


def constraints_met(node: Node, constraints: tuple[Constraint, ...]) -> str | None:
    for c in constraints:
        if not c.matches(node):
            return f"constraint {c.text} not met"
    return None


def static_reason(node: Node, constraints: tuple[Constraint, ...]) -> str | None:
    """Why ``node`` can never take tasks with these constraints right now (or None)."""
    return node_ready(node) or node_active(node) or constraints_met(node, constraints)


def resources_free(node: Node, usage: NodeUsage, want: Resources) -> str | None:
    if want.memory_bytes and usage.memory_bytes + want.memory_bytes > node.resources.memory_bytes:
        return NO_MEMORY
    if want.nano_cpus and usage.nano_cpus + want.nano_cpus > node.resources.nano_cpus:
        return NO_CPU
    return None


def ports_free(usage: NodeUsage, ports: tuple[PortConfig, ...]) -> str | None:
    for p in ports:
        if p.published and (p.protocol, p.published) in usage.ports:
            return f"host port {p.published}/{p.protocol} in use"
    return None


def dynamic_reason(
    node: Node, usage: NodeUsage, want: Resources, ports: tuple[PortConfig, ...]
) -> str | None:
    """Why ``node`` cannot take one more such task given what it already holds (or None).

    ``resources_free`` then ``ports_free``, written out: the scheduler asks this of ~log2(N)
    nodes per task."""
    have = node.resources
    if want.memory_bytes and usage.memory_bytes + want.memory_bytes > have.memory_bytes:
        return NO_MEMORY
    if want.nano_cpus and usage.nano_cpus + want.nano_cpus > have.nano_cpus:
        return NO_CPU
    return ports_free(usage, ports) if ports else None
