"""Placement constraints and preferences: Swarm's grammar, parsed once and cached.

Constraints: ``node.id``, ``node.hostname``, ``node.role`` or ``node.labels.<key>``, then
``==`` or ``!=``, then a value; values compare case-insensitively (as swarmkit does), and a
node without the label fails ``==`` and passes ``!=``. Preferences: ``spread=node.labels.<key>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from skiff.cluster.model import Node
from skiff.errors import InvalidArgument

_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S.*?)\s*$")
_FIELDS = ("node.id", "node.hostname", "node.role")


@dataclass(frozen=True)
class Constraint:
    text: str  # as the user wrote it, for messages
    field: str  # node.id | node.hostname | node.role | node.labels
    label: str  # the label key when field is node.labels
    equal: bool  # == (True) or != (False)
    value: str  # lower case

    def matches(self, node: Node) -> bool:
        if self.field == "node.labels":
            have: str | None = node.labels.get(self.label)
        elif self.field == "node.id":
            have = node.id
        elif self.field == "node.hostname":
            have = node.hostname
        else:
            have = str(node.role)
        same = have is not None and have.lower() == self.value
        return same if self.equal else not same


@lru_cache(maxsize=4096)
def parse_constraint(text: str) -> Constraint:
    """One constraint; a bad one is an InvalidArgument naming what is accepted."""
    m = _CONSTRAINT.match(text)
    if not m:
        raise InvalidArgument(f"invalid constraint {text!r}: expected <key>==<value> or <key>!=<value>")
    key, op, value = m.groups()
    if key.startswith("node.labels."):
        label = key.removeprefix("node.labels.")
        if not label:
            raise InvalidArgument(f"invalid constraint {text!r}: empty label name")
        field = "node.labels"
    elif key in _FIELDS:
        field, label = key, ""
    else:
        raise InvalidArgument(
            f"invalid constraint {text!r}: unknown key {key!r} (use node.id, node.hostname, node.role "
            "or node.labels.<name>)"
        )
    if field == "node.role" and value.lower() not in ("manager", "worker"):
        raise InvalidArgument(f"invalid constraint {text!r}: node.role is manager or worker")
    return Constraint(text.strip(), field, label, op == "==", value.lower())


@lru_cache(maxsize=4096)
def parse_constraints(texts: tuple[str, ...]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t) for t in texts)


@lru_cache(maxsize=4096)
def parse_preference(text: str) -> str:
    """``spread=node.labels.zone`` -> ``zone`` (the label whose values tasks spread over)."""
    strategy, _, target = text.partition("=")
    if strategy.strip() != "spread" or not target.strip().startswith("node.labels."):
        raise InvalidArgument(f"invalid placement preference {text!r}: expected spread=node.labels.<name>")
    label = target.strip().removeprefix("node.labels.")
    if not label:
        raise InvalidArgument(f"invalid placement preference {text!r}: empty label name")
    return label
