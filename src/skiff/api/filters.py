"""Docker's list/event filters, as pure predicates."""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Mapping

from skiff.engine.model import Container
from skiff.errors import InvalidArgument
from skiff.types import Event, ImageRecord, NetworkRecord
from skiff.units import parse_rfc3339

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


def container_matches(
    c: Container,
    filters: dict[str, list[str]],
    image_matches: object = None,
    network_ids: Mapping[str, str] | None = None,
) -> bool:
    """All given keys must match; values of one key are alternatives (labels: all must match).

    ``network_ids`` maps network names to ids, so ``network=`` also matches an id (prefix).
    """
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
        if not _on_network(c, networks, network_ids or {}):
            return False
    if published := filters.get("publish"):
        wanted = port_filter_set("publish", published)
        bound = set(c.spec.host.port_bindings) | {f"{b.container_port}/{b.protocol}" for b in c.network.ports}
        if c.spec.host.publish_all_ports:
            bound |= set(c.spec.exposed_ports)
        if not wanted & bound:
            return False
    if exposed := filters.get("expose"):
        if not port_filter_set("expose", exposed) & set(c.spec.exposed_ports):
            return False
    if volumes := filters.get("volume"):
        # dockerd: a volume's name (a bind's source) or any mount's destination.
        if not any((m.name or m.source) in volumes or m.destination in volumes for m in c.mount_points):
            return False
    return True


def _on_network(c: Container, wanted: list[str], network_ids: Mapping[str, str]) -> bool:
    """docker's ``network`` filter: a network name, or a prefix of a network id."""
    names = set(c.spec.networks) or {c.spec.host.network_mode}
    ids = {network_ids[n] for n in names if n in network_ids}
    ids |= {ep.network_id for ep in c.network.endpoints}
    return any(v in names or any(i.startswith(v) for i in ids if v) for v in wanted)


def port_filter_set(key: str, values: list[str]) -> set[str]:
    """``publish``/``expose`` values (``80``, ``80/udp``, ``8000-8080/tcp``) -> ``{"80/tcp", ...}``."""
    out: set[str] = set()
    for value in values:
        if ":" in value:
            raise InvalidArgument(f"filter for '{key}' should not contain ':': {value}")
        port, _, proto = value.partition("/")
        start_s, sep, end_s = port.partition("-")
        try:
            start, end = int(start_s), int(end_s) if sep else int(start_s)
        except ValueError:
            raise InvalidArgument(f"invalid port {value!r} in filter '{key}'") from None
        if not (0 < start <= end <= 65535) or end - start > 65535:
            raise InvalidArgument(f"invalid port range {value!r} in filter '{key}'")
        out |= {f"{p}/{proto or 'tcp'}" for p in range(start, end + 1)}
    return out


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


NETWORK_FILTERS = {"dangling", "driver", "id", "label", "name", "scope", "type"}
NETWORK_PRUNE_FILTERS = {"label", "label!", "until"}


def _regex_match(value: str, pattern: str) -> bool:
    """docker's filters.Match: equal, or the value as a regular expression found in the field."""
    if value == pattern:
        return True
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False


def check_network_filters(filters: dict[str, list[str]]) -> None:
    for key in filters:
        if key not in NETWORK_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    for kind in filters.get("type", []):
        if kind not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{kind}'")
    dangling = filters.get("dangling", [])
    if len(dangling) > 1:
        raise InvalidArgument('got more than one value for filter key "dangling"')
    for value in dangling:
        if value.lower() not in ("0", "1", "false", "true"):
            raise InvalidArgument(
                'invalid value for filter \'dangling\', must be "true" (or "1"), or "false" (or "0")'
            )


def network_matches(rec: NetworkRecord, filters: dict[str, list[str]], in_use: bool) -> bool:
    """``GET /networks`` filters; ``in_use``: some container has an endpoint on it (for ``dangling``)."""
    if ids := filters.get("id"):
        if not any(_regex_match(rec.id, v) for v in ids):
            return False
    if names := filters.get("name"):
        if not any(_regex_match(rec.name, v) for v in names):
            return False
    if drivers := filters.get("driver"):
        if rec.driver not in drivers:
            return False
    if scopes := filters.get("scope"):
        if "local" not in scopes:
            return False
    if kinds := filters.get("type"):
        if ("builtin" if rec.builtin else "custom") not in kinds:
            return False
    if labels := filters.get("label"):
        if not _label_match(rec.labels, labels):
            return False
    if dangling := filters.get("dangling"):
        want_dangling = dangling[0].lower() in ("1", "true")
        is_dangling = not rec.builtin and not in_use
        if want_dangling != is_dangling:
            return False
    return True


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_until(value: str, now: float | None = None) -> float:
    """docker's ``until``: Unix seconds, an RFC 3339 time, or a Go duration before now (``24h``)."""
    now = time.time() if now is None else now
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_SECONDS[m.group(2)]
        pos = m.end()
    if text and pos == len(text):
        return now - total
    stamp = parse_rfc3339(text if "T" in text else text + "T00:00:00Z")
    if stamp is None:
        raise InvalidArgument(
            f"invalid value for filter 'until': {value!r} (a timestamp or a duration like 24h)"
        )
    return stamp


def network_prune_matcher(filters: dict[str, list[str]], now: float | None = None) -> _PruneMatch:
    """``POST /networks/prune`` filters as a predicate: True for a network that may go."""
    for key in filters:
        if key not in NETWORK_PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    until = [parse_until(v, now) for v in filters.get("until", [])]
    return _PruneMatch(filters.get("label", []), filters.get("label!", []), until)


class _PruneMatch:
    """Prune selection: every ``label`` matches, no ``label!`` matches, created before ``until``."""

    def __init__(self, labels: list[str], not_labels: list[str], until: list[float]) -> None:
        self.labels, self.not_labels, self.until = labels, not_labels, until

    def __call__(self, rec: NetworkRecord) -> bool:
        if self.labels and not _label_match(rec.labels, self.labels):
            return False
        if any(_label_match(rec.labels, [v]) for v in self.not_labels):
            return False
        if self.until:
            created = parse_rfc3339(rec.created)
            if created is None or not all(created < u for u in self.until):
                return False
        return True
