"""The scheduler: pure functions and one pass object, no I/O (see ``chain.py``)."""

from __future__ import annotations

from skiff.cluster.scheduler.chain import Decision, Explanation, NodeScore, Scheduler
from skiff.cluster.scheduler.usage import NodeUsage

__all__ = ["Decision", "Explanation", "NodeScore", "NodeUsage", "Scheduler"]
