"""What a node's tasks hold: reserved CPU and memory, host ports, task counts.

A task holds its node's resources from ``assigned`` until it reaches a terminal state (a task
told to shut down still holds them until its agent reports it stopped). The leader's view keeps
one ``NodeUsage`` per node up to date as tasks change; the scheduler reads them and writes only
to its own copies (copy on write, per pass).
"""

from __future__ import annotations

from collections import Counter

from skiff.cluster.model import Task


class NodeUsage:
    """Totals over the tasks that hold resources on one node."""

    __slots__ = ("by_service", "memory_bytes", "nano_cpus", "ports", "tasks")

    def __init__(self) -> None:
        self.nano_cpus = 0
        self.memory_bytes = 0
        self.tasks = 0
        self.ports: Counter[tuple[str, int]] = Counter()
        self.by_service: Counter[str] = Counter()

    def add(self, task: Task) -> None:
        self._change(task, 1)

    def remove(self, task: Task) -> None:
        self._change(task, -1)

    def _change(self, task: Task, sign: int) -> None:
        r = task.template.resources.reservations
        self.nano_cpus += sign * r.nano_cpus
        self.memory_bytes += sign * r.memory_bytes
        self.tasks += sign
        self.by_service[task.service_id] += sign
        if self.by_service[task.service_id] <= 0:
            del self.by_service[task.service_id]
        for p in task.template.ports:
            if p.published:
                key = (p.protocol, p.published)
                self.ports[key] += sign
                if self.ports[key] <= 0:
                    del self.ports[key]

    def copy(self) -> NodeUsage:
        c = NodeUsage()
        c.nano_cpus, c.memory_bytes, c.tasks = self.nano_cpus, self.memory_bytes, self.tasks
        c.ports = Counter(self.ports)
        c.by_service = Counter(self.by_service)
        return c

    def __repr__(self) -> str:
        return f"NodeUsage(cpus={self.nano_cpus}, memory={self.memory_bytes}, tasks={self.tasks}, ports={dict(self.ports)})"


EMPTY = NodeUsage()  # for nodes without tasks; never mutated
