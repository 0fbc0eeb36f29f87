"""OCI image configuration JSON (image-spec config.md) and chain IDs.

The image ID is the sha256 of these exact bytes, so the form is canonical: keys sorted,
no insignificant whitespace, UTF-8, empty optional fields left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skiff.errors import InvalidArgument
from skiff.types.container import HealthConfig
from skiff.types.image import HistoryEntry, ImageConfig


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def chain_id(parent_chain_id: str | None, diff_id: str) -> str:
    """The chain ID of layer ``diff_id`` on top of ``parent_chain_id``."""
    if parent_chain_id is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent_chain_id} {diff_id}".encode()).hexdigest()


def _health(h: HealthConfig) -> dict[str, Any]:
    d: dict[str, Any] = {"Test": list(h.test)}
    for key, value in (
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
        ("Retries", h.retries),
    ):
        if value:
            d[key] = value
    return d


def config_section(c: ImageConfig) -> dict[str, Any]:
    """The ``config`` object of an OCI image config (Docker's field names)."""
    d: dict[str, Any] = {}
    if c.user:
        d["User"] = c.user
    if c.exposed_ports:
        d["ExposedPorts"] = {p: {} for p in c.exposed_ports}
    if c.env:
        d["Env"] = list(c.env)
    if c.entrypoint is not None:
        d["Entrypoint"] = list(c.entrypoint)
    if c.cmd is not None:
        d["Cmd"] = list(c.cmd)
    if c.volumes:
        d["Volumes"] = {v: {} for v in c.volumes}
    if c.working_dir:
        d["WorkingDir"] = c.working_dir
    if c.labels:
        d["Labels"] = dict(c.labels)
    if c.stop_signal:
        d["StopSignal"] = c.stop_signal
    if c.healthcheck is not None:
        d["Healthcheck"] = _health(c.healthcheck)
    if c.shell is not None:
        d["Shell"] = list(c.shell)
    if c.on_build:
        d["OnBuild"] = list(c.on_build)
    return d


def _history(h: HistoryEntry) -> dict[str, Any]:
    d: dict[str, Any] = {"created": h.created}
    if h.created_by:
        d["created_by"] = h.created_by
    if h.comment:
        d["comment"] = h.comment
    if h.author:
        d["author"] = h.author
    if h.empty_layer:
        d["empty_layer"] = True
    return d


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class ConfigDocument:
    """Everything an OCI image config says, parsed into skiff's types."""

    config: ImageConfig
    diff_ids: tuple[str, ...]
    history: tuple[HistoryEntry, ...]
    created: str
    author: str
    comment: str
    architecture: str
    os: str
    parent: str


def build_config(doc: ConfigDocument) -> bytes:
    """The canonical OCI image config bytes for ``doc``."""
    obj: dict[str, Any] = {
        "architecture": doc.architecture,
        "os": doc.os,
        "created": doc.created,
        "config": config_section(doc.config),
        "rootfs": {"type": "layers", "diff_ids": list(doc.diff_ids)},
        "history": [_history(h) for h in doc.history],
    }
    if doc.author:
        obj["author"] = doc.author
    if doc.comment:
        obj["comment"] = doc.comment
    if doc.parent:
        obj["parent"] = doc.parent
    return canonical_json(obj)


def _str_tuple(v: Any, field: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"invalid image config: {field} must be a list of strings")
    return tuple(v)


# A config may come from anywhere (load, pull): every field is checked for its type, so a
# hostile one is a 400 with the field's name, never a crash.


def _obj(v: Any, field: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidArgument(f"invalid image config: {field} must be an object")
    return v


def _str(v: Any, field: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InvalidArgument(f"invalid image config: {field} must be a string")
    return v


def _int(v: Any, field: str) -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v in (float("inf"), float("-inf")):
        raise InvalidArgument(f"invalid image config: {field} must be a number")
    return int(v)


def _keys(v: Any, field: str) -> tuple[str, ...]:
    return tuple(sorted(_obj(v, field).keys()))


def _labels(v: Any) -> dict[str, str]:
    labels = _obj(v, "Labels")
    if not all(isinstance(x, str) for x in labels.values()):
        raise InvalidArgument("invalid image config: Labels must map strings to strings")
    return dict(labels)


def parse_config(data: bytes) -> ConfigDocument:
    """Parse an OCI/Docker image config blob (as pulled or loaded) into skiff's types."""
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid image config JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument("invalid image config: not a JSON object")
    c = _obj(obj.get("config") or obj.get("container_config"), "config")
    hc = c.get("Healthcheck")
    health = None
    if hc is not None:
        hc = _obj(hc, "Healthcheck")
        health = HealthConfig(
            test=_str_tuple(hc.get("Test"), "Healthcheck.Test"),
            interval=_int(hc.get("Interval"), "Healthcheck.Interval"),
            timeout=_int(hc.get("Timeout"), "Healthcheck.Timeout"),
            retries=_int(hc.get("Retries"), "Healthcheck.Retries"),
            start_period=_int(hc.get("StartPeriod"), "Healthcheck.StartPeriod"),
            start_interval=_int(hc.get("StartInterval"), "Healthcheck.StartInterval"),
        )
    config = ImageConfig(
        user=_str(c.get("User"), "User"),
        env=_str_tuple(c.get("Env"), "Env"),
        entrypoint=None if c.get("Entrypoint") is None else _str_tuple(c["Entrypoint"], "Entrypoint"),
        cmd=None if c.get("Cmd") is None else _str_tuple(c["Cmd"], "Cmd"),
        working_dir=_str(c.get("WorkingDir"), "WorkingDir"),
        exposed_ports=_keys(c.get("ExposedPorts"), "ExposedPorts"),
        volumes=_keys(c.get("Volumes"), "Volumes"),
        labels=_labels(c.get("Labels")),
        stop_signal=_str(c.get("StopSignal"), "StopSignal"),
        healthcheck=health,
        shell=None if c.get("Shell") is None else _str_tuple(c["Shell"], "Shell"),
        on_build=_str_tuple(c.get("OnBuild"), "OnBuild"),
    )
    rootfs = _obj(obj.get("rootfs"), "rootfs")
    raw_history = obj.get("history")
    if raw_history is not None and not isinstance(raw_history, list):
        raise InvalidArgument("invalid image config: history must be a list")
    history = tuple(
        HistoryEntry(
            created=_str(h.get("created"), "history.created"),
            created_by=_str(h.get("created_by"), "history.created_by"),
            comment=_str(h.get("comment"), "history.comment"),
            author=_str(h.get("author"), "history.author"),
            empty_layer=bool(h.get("empty_layer", False)),
        )
        for h in raw_history or ()
        if isinstance(h, dict)
    )
    return ConfigDocument(
        config=config,
        diff_ids=_str_tuple(rootfs.get("diff_ids"), "rootfs.diff_ids"),
        history=history,
        created=_str(obj.get("created"), "created"),
        author=_str(obj.get("author"), "author"),
        comment=_str(obj.get("comment"), "comment"),
        architecture=_str(obj.get("architecture", "amd64"), "architecture"),
        os=_str(obj.get("os", "linux"), "os"),
        parent=_str(obj.get("parent"), "parent"),
    )
