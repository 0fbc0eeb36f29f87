"""The scheduler: one pass places tasks on nodes, and explains every decision.

Pure: it reads nodes and their usage (a read-only view the leader keeps) and returns
decisions; the leader turns them into a plan and commits it (``plan.py``). Within a pass it
remembers its own placements (copy-on-write usage), so a batch of tasks spreads correctly.

The chain for one task, as Nomad's (random -> feasibility -> limit -> rank -> max score):

1. static feasibility: node ready, availability active, constraints met — computed once per
   constraint set per pass, with the filtered nodes counted by reason;
2. a random walk over the feasible nodes, continuing where the previous task stopped, so
   consecutive tasks see different nodes;
3. dynamic feasibility on each node walked: free reserved CPU and memory, free host ports;
4. the walk stops after ``limit`` feasible nodes — max(floor, log2 N), Nomad's trick — so a
   placement costs O(log N) at 5,000 nodes, not O(N); small clusters are scored exhaustively;
5. rank (``rank.py``): placement preferences, spread of the service, fewest tasks; first best wins.

A task no node can take gets a message naming every reason: "no suitable node: 3 nodes —
insufficient memory on 2, constraint node.labels.ssd==true not met on 1".
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from skiff.cluster.model import Node, Task
from skiff.cluster.scheduler import filters, rank
from skiff.cluster.scheduler.constraints import parse_constraints, parse_preference
from skiff.cluster.scheduler.usage import EMPTY, NodeUsage

SAMPLE_FLOOR = 8  # nodes scored per placement at least (all of them in smaller clusters)
TOP_SCORES = 3  # scored nodes kept in an explanation


@dataclass(frozen=True)
class NodeScore:
    """A scored node: each ranker's value, lower is better, compared in order."""

    node_id: str
    components: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Explanation:
    """Why a task went where it went (or nowhere): Nomad's AllocMetric, in short."""

    nodes: int  # nodes in the cluster
    evaluated: int  # nodes the walk looked at (after static feasibility)
    filtered: tuple[tuple[str, int], ...]  # reason -> nodes, most common first
    scores: tuple[NodeScore, ...] = ()  # best first

    def message(self) -> str:
        """``no suitable node: 3 nodes — insufficient memory on 2, ...`` (or the chosen node)."""
        if self.scores:
            return f"scheduled on {self.scores[0].node_id} ({self.evaluated} of {self.nodes} nodes evaluated)"
        count = f"{self.nodes} node" + ("" if self.nodes == 1 else "s")
        if not self.filtered:
            return f"no suitable node: {count}"
        reasons = ", ".join(f"{reason} on {n}" for reason, n in self.filtered)
        return f"no suitable node: {count} — {reasons}"


@dataclass(frozen=True)
class Decision:
    task: Task
    node_id: str  # "" when no node can take it
    explanation: Explanation

    @property
    def placed(self) -> bool:
        return bool(self.node_id)


def _reasons(*counters: Counter[str]) -> tuple[tuple[str, int], ...]:
    total: Counter[str] = Counter()
    for c in counters:
        total.update(c)
    return tuple(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class _Candidates:
    """Nodes that pass the static filters for one constraint set, in a random order."""

    eligible: list[str]
    filtered: Counter[str]
    cursor: int = 0


@dataclass
class Scheduler:
    """One scheduling pass over ``nodes`` and their ``usage`` (neither is modified)."""

    nodes: Mapping[str, Node]
    usage: Mapping[str, NodeUsage]
    rng: random.Random = field(default_factory=random.Random)
    sample_floor: int = SAMPLE_FLOOR

    def __post_init__(self) -> None:
        self._mine: dict[str, NodeUsage] = {}  # copies of the usage of nodes placed on in this pass
        self._candidates: dict[tuple[str, ...], _Candidates] = {}
        self._hopeless: dict[object, Explanation] = {}  # task shapes no node can take (this pass)
        self._groups: dict[tuple[str, tuple[str, ...]], Counter[tuple[str, ...]]] = {}

    def place_all(self, tasks: Sequence[Task]) -> list[Decision]:
        return [self.place(t) for t in tasks]

    def node_usage(self, node_id: str) -> NodeUsage:
        """The node's usage including this pass's placements."""
        return self._mine.get(node_id) or self.usage.get(node_id, EMPTY)

    def place(self, task: Task) -> Decision:
        """The chain for one task (see module doc)."""
        if task.node_id:
            return self._place_on(task, task.node_id)
        tpl = task.template
        want, ports = tpl.resources.reservations, tpl.ports
        shape = (tpl.placement.constraints, want, ports)
        known = self._hopeless.get(shape)
        if known is not None:  # usage only grows within a pass: still no node for this shape
            return Decision(task, "", known)
        cands = self._feasible(tpl.placement.constraints)
        prefs = tuple(parse_preference(p) for p in tpl.placement.preferences)
        eligible = cands.eligible
        n = len(eligible)
        limit = max(self.sample_floor, math.ceil(math.log2(n))) if n else 0
        dynamic: Counter[str] = Counter()
        scored: list[tuple[tuple[int, ...], str]] = []
        best: tuple[tuple[int, ...], str] | None = None
        i, visited = cands.cursor, 0
        while visited < n and len(scored) < limit:
            node_id = eligible[i]
            i = (i + 1) % n
            visited += 1
            node, usage = self.nodes[node_id], self.node_usage(node_id)
            reason = filters.dynamic_reason(node, usage, want, ports)
            if reason:
                dynamic[reason] += 1
                continue
            key = self._rank(node, usage, task.service_id, prefs)
            scored.append((key, node_id))
            if best is None or key < best[0]:
                best = (key, node_id)
        cands.cursor = i
        if best is None:
            explanation = Explanation(len(self.nodes), visited, _reasons(cands.filtered, dynamic))
            self._hopeless[shape] = explanation
            return Decision(task, "", explanation)
        node_id = best[1]
        self._take(task, node_id, prefs)
        top = sorted(scored, key=lambda s: s[0])[:TOP_SCORES]
        names = self._score_names(prefs)
        explanation = Explanation(
            len(self.nodes),
            visited,
            _reasons(cands.filtered, dynamic),
            tuple(NodeScore(nid, tuple(zip(names, key, strict=True))) for key, nid in top),
        )
        return Decision(task, node_id, explanation)

    # --- steps of the chain

    def _feasible(self, constraint_texts: tuple[str, ...]) -> _Candidates:
        """Static feasibility for one constraint set, once per pass (step 1), shuffled (step 2)."""
        cands = self._candidates.get(constraint_texts)
        if cands is None:
            constraints = parse_constraints(constraint_texts)
            eligible, filtered = [], Counter[str]()
            for node in self.nodes.values():
                reason = filters.static_reason(node, constraints)
                if reason:
                    filtered[reason] += 1
                else:
                    eligible.append(node.id)
            eligible.sort()  # the shuffle alone decides the order: same seed, same placements
            self.rng.shuffle(eligible)
            cands = self._candidates[constraint_texts] = _Candidates(eligible, filtered)
        return cands

    def _rank(self, node: Node, usage: NodeUsage, service_id: str, prefs: tuple[str, ...]) -> tuple[int, ...]:
        """Step 5: the node's rank tuple (lower is better)."""
        key = [
            rank.preference(node, prefs[: k + 1], self._group_counts(service_id, prefs[: k + 1]))
            for k in range(len(prefs))
        ]
        key.append(rank.spread(usage, service_id))
        key.append(rank.fewest_tasks(usage))
        return tuple(key)

    @staticmethod
    def _score_names(prefs: tuple[str, ...]) -> tuple[str, ...]:
        return (*(f"spread=node.labels.{p}" for p in prefs), "spread", "tasks")

    def _place_on(self, task: Task, node_id: str) -> Decision:
        """A task bound to one node (global services): feasibility on that node alone."""
        node = self.nodes.get(node_id)
        tpl = task.template
        if node is None:
            return Decision(task, "", Explanation(len(self.nodes), 0, (("node is gone", 1),)))
        reason = filters.static_reason(
            node, parse_constraints(tpl.placement.constraints)
        ) or filters.dynamic_reason(node, self.node_usage(node_id), tpl.resources.reservations, tpl.ports)
        if reason:
            return Decision(task, "", Explanation(1, 1, ((reason, 1),)))
        self._take(task, node_id, ())
        usage = self.node_usage(node_id)
        score = NodeScore(node_id, (("spread", rank.spread(usage, task.service_id)), ("tasks", usage.tasks)))
        return Decision(task, node_id, Explanation(1, 1, (), (score,)))

    def _take(self, task: Task, node_id: str, prefs: tuple[str, ...]) -> None:
        """Record a placement in this pass's copy of the node's usage."""
        node = self.nodes[node_id]
        for k in range(len(prefs)):  # before the usage changes: the counts may be computed now
            labels = prefs[: k + 1]
            self._group_counts(task.service_id, labels)[rank.preference_group(node, labels)] += 1
        mine = self._mine.get(node_id)
        if mine is None:
            mine = self._mine[node_id] = self.usage.get(node_id, EMPTY).copy()
        mine.add(task)

    def _group_counts(self, service_id: str, labels: tuple[str, ...]) -> Counter[tuple[str, ...]]:
        """Tasks of the service per group of label values, counted once per pass (O(nodes))."""
        key = (service_id, labels)
        counts = self._groups.get(key)
        if counts is None:
            counts = Counter()
            for node_id, node in self.nodes.items():
                n = self.node_usage(node_id).by_service.get(service_id, 0)
                if n:
                    counts[rank.preference_group(node, labels)] += n
            self._groups[key] = counts
        return counts
