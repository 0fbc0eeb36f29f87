"""Rankers: among nodes that can take a task, which is best? Lower is better for each.

A node's rank is a tuple compared left to right, so an earlier ranker always wins over a later
one: placement preferences first (the user asked for them), then spreading the service's own
replicas, then the node's total task count.
"""

from __future__ import annotations

from collections import Counter

from skiff.cluster.model import Node
from skiff.cluster.scheduler.usage import NodeUsage


def preference_group(node: Node, labels: tuple[str, ...]) -> tuple[str, ...]:
    """The node's values of the preference labels (missing ones form their own group, "")."""
    return tuple(node.labels.get(label, "") for label in labels)


def preference(node: Node, labels: tuple[str, ...], counts: Counter[tuple[str, ...]]) -> int:
    """Tasks of this service already in the node's group for ``spread=node.labels.<labels[-1]>``
    (nested under the earlier preferences, as Swarm's preference tree)."""
    return counts[preference_group(node, labels)]


def spread(usage: NodeUsage, service_id: str) -> int:
    """Replicas of this service already on the node."""
    return usage.by_service.get(service_id, 0)


def fewest_tasks(usage: NodeUsage) -> int:
    """Tasks of any service on the node."""
    return usage.tasks
