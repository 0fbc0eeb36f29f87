"""Merging canonical files and services by the Compose Specification's rules (merge.md).

Used for several ``-f`` files (each merged over the ones before) and for ``extends``
(the service merged over its base). Mappings merge key by key, the later value winning;
scalars are replaced; sequences are concatenated, then kept unique by a per-key identity,
the later entry taking the earlier one's place (compose-go's ``EnforceUnicity``):

====================================  =========================================
ports                                 host_ip, published, target and protocol
volumes, devices                      the target path
secrets, configs                      the target (default ``/run/secrets/<src>``, ``/<src>``)
expose, dns*, tmpfs, cap_*, links,    the value (``name`` of ``name=value``)
profiles, security_opt, extra_hosts
env_file                              the path
====================================  =========================================

``command``, ``entrypoint`` and ``healthcheck.test`` are replaced, never concatenated;
``!reset`` drops the earlier value and ``!override`` replaces it whole.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

Path = tuple[str, ...]

_REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}


def _port_key(p: Any) -> str:
    return (
        f"{p.get('host_ip', '0.0.0.0')}:{p.get('published', '')}:{p.get('target')}/{p.get('protocol', 'tcp')}"
    )


def _by_value(v: Any) -> str:
    return str(v).split("=", 1)[0] if isinstance(v, str) else repr(v)


_UNIQUE: dict[Path, Callable[[Any], str]] = {
    ("ports",): _port_key,
    ("volumes",): lambda v: str(v.get("target")),
    ("devices",): lambda v: str(v.get("target")),
    ("secrets",): lambda v: str(v.get("target") or f"/run/secrets/{v.get('source')}"),
    ("configs",): lambda v: str(v.get("target") or f"/{v.get('source')}"),
    ("expose",): _by_value,
    ("dns",): _by_value,
    ("dns_search",): _by_value,
    ("dns_opt",): _by_value,
    ("tmpfs",): _by_value,
    ("cap_add",): _by_value,
    ("cap_drop",): _by_value,
    ("links",): lambda v: str(v),
    ("profiles",): _by_value,
    ("security_opt",): lambda v: str(v),
    ("extra_hosts",): lambda v: str(v),
    ("env_file",): lambda v: str(v.get("path")),
    ("build", "tags"): lambda v: str(v),
    ("build", "cache_from"): lambda v: str(v),
    ("build", "extra_hosts"): lambda v: str(v),
}


def unique(items: Iterable[Any], key: Callable[[Any], str]) -> list[Any]:
    """Entries kept once per identity: first position, last value."""
    out: list[Any] = []
    index: dict[str, int] = {}
    for item in items:
        k = key(item)
        if k in index:
            out[index[k]] = item
        else:
            index[k] = len(out)
            out.append(item)
    return out


def _strip_service_path(path: Path) -> Path:
    """``services.web.ports`` -> ``ports`` (rules are written per service)."""
    return path[2:] if len(path) >= 2 and path[0] == "services" else path


def merge_values(base: Any, over: Any, path: Path = ()) -> Any:
    """``over`` merged onto ``base`` (both canonical); neither argument is modified."""
    if over is None:
        return copy.deepcopy(base)
    if base is None:
        return copy.deepcopy(over)
    rel = _strip_service_path(path) if path[:1] == ("services",) else ()
    if rel in _REPLACED:
        return copy.deepcopy(over)
    if isinstance(base, dict) and isinstance(over, dict):
        if path[:1] == ("services",) and len(path) == 4 and path[2] == "networks":
            return _merge_service_network(base, over)
        if path[:1] == ("networks",) and path[2:] == ("ipam", "config"):
            return copy.deepcopy(over)
        if rel == ("logging",) and base.get("driver") not in (None, over.get("driver")) and "driver" in over:
            return copy.deepcopy(over)
        out = copy.deepcopy(base)
        for k, v in over.items():
            out[k] = merge_values(base.get(k), v, (*path, k)) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(over, list):
        combined = copy.deepcopy(base) + copy.deepcopy(over)
        key = _UNIQUE.get(rel)
        if key is not None:
            return unique(combined, key)
        if path[:1] == ("networks",) and path[2:] == ("ipam", "config"):
            return unique(combined, lambda v: str(v.get("subnet")))
        return combined
    return copy.deepcopy(over)


def _merge_service_network(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k in ("aliases", "link_local_ips") and isinstance(out.get(k), list):
            out[k] = list(dict.fromkeys([*out[k], *v]))
        else:
            out[k] = copy.deepcopy(v)
    return out


def _delete(data: dict[str, Any], path: Path) -> None:
    node: Any = data
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _get(data: dict[str, Any], path: Path) -> tuple[bool, Any]:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(data: dict[str, Any], path: Path, value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def merge_with_tags(
    base: dict[str, Any],
    over: dict[str, Any],
    resets: Iterable[Path] = (),
    overrides: Iterable[Path] = (),
    prefix: Path = (),
) -> dict[str, Any]:
    """Merge ``over`` onto ``base`` honouring ``!reset``/``!override`` paths of ``over``.

    ``prefix`` is the path of ``base``/``over`` in the file (``services.web`` for extends),
    so the merge rules and the tag paths line up.
    """
    base = copy.deepcopy(base)
    n = len(prefix)
    for path in resets:
        if path[:n] == prefix and len(path) > n:
            _delete(base, path[n:])
    merged: dict[str, Any] = merge_values(base, over, prefix)
    for path in overrides:
        if path[:n] == prefix and len(path) > n:
            found, value = _get(over, path[n:])
            if found:
                _set(merged, path[n:], copy.deepcopy(value))
    return merged
