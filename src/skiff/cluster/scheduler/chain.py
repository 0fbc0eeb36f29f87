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

import functools
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
    ranked: tuple[tuple[tuple[int, ...], str], ...] = ()  # (rank, node) of the best, best first
    rankers: tuple[str, ...] = ()  # names of the rank components

    @property
    def scores(self) -> tuple[NodeScore, ...]:
        """The best nodes with each ranker's value (built on demand: most are never read)."""
        return tuple(NodeScore(nid, tuple(zip(self.rankers, key, strict=True))) for key, nid in self.ranked)

    def message(self) -> str:
        """``no suitable node: 3 nodes — insufficient memory on 2, ...`` (or the chosen node)."""
        if self.ranked:
            return f"scheduled on {self.ranked[0][1]} ({self.evaluated} of {self.nodes} nodes evaluated)"
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


def _first(item: tuple[tuple[int, ...], str]) -> tuple[int, ...]:
    return item[0]


def _reasons(*counters: Counter[str] | None) -> tuple[tuple[str, int], ...]:
    total: Counter[str] = Counter()
    for c in counters:
        if c:
            total.update(c)
    return tuple(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class _Candidates:
    """Nodes that pass the static filters for one constraint set, in a random order."""

    eligible: list[str]
    filtered: Counter[str]
    cursor: int = 0

    def __post_init__(self) -> None:
        self.reasons = _reasons(self.filtered)  # the static part of every explanation


class NodeIndex:
    """What depends on the nodes alone (static feasibility per constraint set, each node's
    preference group), kept across passes while the nodes do not change: the leader makes a
    new one when a node changes. At 5,000 nodes this is most of a pass's fixed cost."""

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self.nodes = nodes
        self._feasible: dict[tuple[str, ...], tuple[list[str], Counter[str]]] = {}
        self._groups: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {}

    def feasible(self, constraint_texts: tuple[str, ...]) -> tuple[list[str], Counter[str]]:
        """Nodes passing the static filters (sorted), and the others counted by reason."""
        hit = self._feasible.get(constraint_texts)
        if hit is None:
            constraints = parse_constraints(constraint_texts)
            eligible, filtered = [], Counter[str]()
            for node in self.nodes.values():
                reason = filters.static_reason(node, constraints)
                if reason:
                    filtered[reason] += 1
                else:
                    eligible.append(node.id)
            eligible.sort()  # the shuffle alone decides the order: same seed, same placements
            hit = self._feasible[constraint_texts] = (eligible, filtered)
        return hit

    def groups(self, labels: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Each node's group for preference ``labels`` (``rank.preference_group``)."""
        hit = self._groups.get(labels)
        if hit is None:
            hit = self._groups[labels] = {n.id: rank.preference_group(n, labels) for n in self.nodes.values()}
        return hit


@dataclass
class Scheduler:
    """One scheduling pass over ``nodes`` and their ``usage`` (neither is modified)."""

    nodes: Mapping[str, Node]
    usage: Mapping[str, NodeUsage]
    rng: random.Random = field(default_factory=random.Random)
    sample_floor: int = SAMPLE_FLOOR
    index: NodeIndex | None = None  # reuse across passes while ``nodes`` is unchanged

    def __post_init__(self) -> None:
        if self.index is None or self.index.nodes is not self.nodes:
            self.index = NodeIndex(self.nodes)
        self._index: NodeIndex = self.index
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
        levels = [
            (self._index.groups(prefs[: k + 1]), self._group_counts(task.service_id, prefs[: k + 1]))
            for k in range(len(prefs))
        ]
        # The walk below runs ~log2(N) times per task: it reads what it needs into locals, and
        # the rankers (rank.py) are written out inline, in their order.
        sid, nodes, mine, base = task.service_id, self.nodes, self._mine, self.usage
        mem, cpu = want.memory_bytes, want.nano_cpus
        # one preference (the common case): its key without building a list per node
        one = levels[0] if len(levels) == 1 else None
        dynamic: Counter[str] | None = None  # made on the first filtered node only (rare)
        scored: list[tuple[tuple[int, ...], str]] = []
        best: tuple[int, ...] | None = None
        best_id = ""
        i, visited = cands.cursor, 0
        while visited < n and len(scored) < limit:
            node_id = eligible[i]
            i = i + 1 if i + 1 < n else 0
            visited += 1
            node = nodes[node_id]
            usage = mine.get(node_id) or base.get(node_id, EMPTY)
            have = node.resources  # filters.dynamic_reason's tests, inline; it names the reason
            if (
                (mem and usage.memory_bytes + mem > have.memory_bytes)
                or (cpu and usage.nano_cpus + cpu > have.nano_cpus)
                or (ports and filters.ports_free(usage, ports))
            ):
                reason = filters.dynamic_reason(node, usage, want, ports) or "unknown"
                dynamic = dynamic or Counter()
                dynamic[reason] += 1
                continue
            # rank: placement preferences, then spread of this service, then fewest tasks
            spread, tasks = usage.by_service.get(sid, 0), usage.tasks
            key: tuple[int, ...]
            if one is not None:
                key = (one[1][one[0][node_id]], spread, tasks)
            elif levels:
                key = (*[counts[groups[node_id]] for groups, counts in levels], spread, tasks)
            else:
                key = (spread, tasks)
            scored.append((key, node_id))
            if best is None or key < best:
                best, best_id = key, node_id
        cands.cursor = i
        reasons = _reasons(cands.filtered, dynamic) if dynamic else cands.reasons
        if best is None:
            explanation = Explanation(len(self.nodes), visited, reasons)
            self._hopeless[shape] = explanation
            return Decision(task, "", explanation)
        self._take(task, best_id, prefs)
        scored.sort(key=_first)
        return Decision(
            task,
            best_id,
            Explanation(
                len(self.nodes), visited, reasons, tuple(scored[:TOP_SCORES]), self._score_names(prefs)
            ),
        )

    # --- steps of the chain

    def _feasible(self, constraint_texts: tuple[str, ...]) -> _Candidates:
        """Static feasibility for one constraint set, once per pass (step 1), shuffled (step 2)."""
        cands = self._candidates.get(constraint_texts)
        if cands is None:
            eligible, filtered = self._index.feasible(constraint_texts)
            eligible = list(eligible)
            self.rng.shuffle(eligible)
            cands = self._candidates[constraint_texts] = _Candidates(eligible, filtered)
        return cands

    @staticmethod
    @functools.cache
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
        ranked = (((rank.spread(usage, task.service_id), rank.fewest_tasks(usage)), node_id),)
        return Decision(task, node_id, Explanation(1, 1, (), ranked, ("spread", "tasks")))

    def _take(self, task: Task, node_id: str, prefs: tuple[str, ...]) -> None:
        """Record a placement in this pass's copy of the node's usage."""
        for k in range(len(prefs)):  # before the usage changes: the counts may be computed now
            labels = prefs[: k + 1]
            self._group_counts(task.service_id, labels)[self._index.groups(labels)[node_id]] += 1
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
            for node_id, group in self._index.groups(labels).items():
                n = self.node_usage(node_id).by_service.get(service_id, 0)
                if n:
                    counts[group] += n
            self._groups[key] = counts
        return counts
