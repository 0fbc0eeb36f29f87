"""What a node's tasks hold: reserved CPU and memory, host ports, task counts.

A task holds its node's resources from ``assigned`` until it reaches a terminal state (a task
told to shut down still holds them until its agent reports it stopped). The leader's view keeps
one ``NodeUsage`` per node up to date as tasks change; the scheduler reads them and writes only
to its own copies (copy on write, per pass).
"""

from __future__ import annotations

from typing import TypeVar

from skiff.cluster.model import Task

K = TypeVar("K")


class NodeUsage:
    """Totals over the tasks that hold resources on one node."""

    __slots__ = ("by_service", "memory_bytes", "nano_cpus", "ports", "tasks")

    def __init__(self) -> None:
        self.nano_cpus = 0
        self.memory_bytes = 0
        self.tasks = 0
        self.ports: dict[tuple[str, int], int] = {}  # (protocol, published port) -> tasks
        self.by_service: dict[str, int] = {}  # service id -> tasks

    def add(self, task: Task) -> None:
        self._change(task, 1)

    def remove(self, task: Task) -> None:
        self._change(task, -1)

    def _change(self, task: Task, sign: int) -> None:
        r = task.template.resources.reservations
        self.nano_cpus += sign * r.nano_cpus
        self.memory_bytes += sign * r.memory_bytes
        self.tasks += sign
        _bump(self.by_service, task.service_id, sign)
        for p in task.template.ports:
            if p.published:
                _bump(self.ports, (p.protocol, p.published), sign)

    def copy(self) -> NodeUsage:
        c = NodeUsage.__new__(NodeUsage)
        c.nano_cpus, c.memory_bytes, c.tasks = self.nano_cpus, self.memory_bytes, self.tasks
        c.ports = dict(self.ports)
        c.by_service = dict(self.by_service)
        return c

    def __repr__(self) -> str:
        return f"NodeUsage(cpus={self.nano_cpus}, memory={self.memory_bytes}, tasks={self.tasks}, ports={self.ports})"


def _bump(counts: dict[K, int], key: K, sign: int) -> None:
    n = counts.get(key, 0) + sign
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)


EMPTY = NodeUsage()  # for nodes without tasks; never mutated
