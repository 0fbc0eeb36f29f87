"""Docker's list/event filters, as pure predicates."""

from __future__ import annotations

import fnmatch

from skiff.engine.model import Container
from skiff.errors import InvalidArgument
from skiff.types import Event, ImageRecord

CONTAINER_FILTERS = {
    "id",
    "name",
    "label",
    "status",
    "ancestor",
    "before",
    "since",
    "exited",
    "health",
    "network",
    "volume",
    "is-task",
    "expose",
    "publish",
}
STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def _label_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def check_container_filters(filters: dict[str, list[str]]) -> None:
    for key in filters:
        if key not in CONTAINER_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    for status in filters.get("status", []):
        if status not in STATUSES:
            raise InvalidArgument(
                f"invalid filter 'status={status}': must be one of {', '.join(sorted(STATUSES))}"
            )


def container_matches(c: Container, filters: dict[str, list[str]], image_matches: object = None) -> bool:
    """All given keys must match; values of one key are alternatives (labels: all must match)."""
    if ids := filters.get("id"):
        if not any(c.id.startswith(v) for v in ids):
            return False
    if names := filters.get("name"):
        if not any(_name_match(c.name, v) for v in names):
            return False
    if labels := filters.get("label"):
        if not _label_match(c.spec.labels, labels):
            return False
    if statuses := filters.get("status"):
        if c.state.status not in statuses:
            return False
    if exited := filters.get("exited"):
        if c.state.status != "exited" or str(c.state.exit_code) not in exited:
            return False
    if health := filters.get("health"):
        status = c.state.health_status or "none"
        if status not in health:
            return False
    if networks := filters.get("network"):
        if c.spec.host.network_mode not in networks:
            return False
    if filters.get("volume"):
        return False  # volumes arrive with the volumes work
    return True


def _name_match(name: str, pattern: str) -> bool:
    pattern = pattern.lstrip("/")
    import re

    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def image_matches(image: ImageRecord, filters: dict[str, list[str]]) -> bool:
    for key in filters:
        if key not in ("dangling", "label", "reference", "before", "since"):
            raise InvalidArgument(f"invalid filter '{key}'")
    if dangling := filters.get("dangling"):
        want = dangling[0].lower() in ("true", "1")
        if want != (not image.repo_tags):
            return False
    if labels := filters.get("label"):
        if not _label_match(image.config.labels, labels):
            return False
    if refs := filters.get("reference"):
        ok = False
        for tag in image.repo_tags:
            repo = tag.rsplit(":", 1)[0]
            if any(fnmatch.fnmatchcase(tag, r) or fnmatch.fnmatchcase(repo, r) for r in refs):
                ok = True
        if not ok:
            return False
    return True


def event_matches(event: Event, filters: dict[str, list[str]]) -> bool:
    attrs = event.attributes
    for key, values in filters.items():
        if key == "type":
            ok = event.type in values
        elif key == "event":
            action = event.action.split(":", 1)[0]
            ok = action in values or event.action in values
        elif key in ("container", "image", "volume", "network"):
            if key == "image" and event.type == "container":
                ok = attrs.get("image") in values
            else:
                ok = event.type == key and (
                    event.actor_id in values
                    or any(event.actor_id.startswith(v) for v in values)
                    or attrs.get("name") in values
                )
        elif key == "label":
            ok = _label_match(attrs, values)
        elif key == "scope":
            ok = event.scope in values
        else:
            ok = True
        if not ok:
            return False
    return True
