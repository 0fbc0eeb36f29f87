"""``volume ls`` and ``volume prune`` filters, as pure predicates (dockerd's accepted keys)."""

from __future__ import annotations

import re

from skiff.errors import InvalidArgument
from skiff.types.volume import VolumeRecord

LIST_FILTERS = ("dangling", "driver", "label", "label!", "name")
PRUNE_FILTERS = ("label", "label!", "all")


def check_filters(filters: dict[str, list[str]], accepted: tuple[str, ...]) -> None:
    """InvalidArgument (400) for a key dockerd would not accept."""
    for key in filters:
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'")
    for key in ("dangling", "all"):
        for value in filters.get(key, []):
            bool_filter(key, value)


def bool_filter(key: str, value: str) -> bool:
    """``true``/``1`` or ``false``/``0``."""
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}'")


def _label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _name_matches(name: str, pattern: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def volume_matches(volume: VolumeRecord, in_use: bool, filters: dict[str, list[str]]) -> bool:
    """All keys must match; several ``name``/``driver`` values are alternatives, labels all apply."""
    labels = volume.labels or {}
    if dangling := filters.get("dangling"):
        if bool_filter("dangling", dangling[-1]) == in_use:
            return False
    if drivers := filters.get("driver"):
        if volume.driver not in drivers:
            return False
    if names := filters.get("name"):
        if not any(_name_matches(volume.name, n) for n in names):
            return False
    if wanted := filters.get("label"):
        if not all(_label_matches(labels, w) for w in wanted):
            return False
    if unwanted := filters.get("label!"):
        if any(_label_matches(labels, w) for w in unwanted):
            return False
    return True
