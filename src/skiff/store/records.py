"""ImageRecord <-> JSON for the metadata database (skiff's own format, not OCI's).

The OCI image config JSON (what the image ID hashes) is built in ``skiff.images.oci``.
"""

from __future__ import annotations

import json
from typing import Any

from skiff.types.container import HealthConfig
from skiff.types.image import HistoryEntry, ImageConfig, ImageRecord


def _health_to_json(h: HealthConfig | None) -> dict[str, Any] | None:
    if h is None:
        return None
    return {
        "test": list(h.test),
        "interval": h.interval,
        "timeout": h.timeout,
        "retries": h.retries,
        "start_period": h.start_period,
        "start_interval": h.start_interval,
    }


def _health_from_json(d: dict[str, Any] | None) -> HealthConfig | None:
    if d is None:
        return None
    return HealthConfig(
        test=tuple(d.get("test", ())),
        interval=int(d.get("interval", 0)),
        timeout=int(d.get("timeout", 0)),
        retries=int(d.get("retries", 0)),
        start_period=int(d.get("start_period", 0)),
        start_interval=int(d.get("start_interval", 0)),
    )


def _opt_tuple(v: list[str] | None) -> tuple[str, ...] | None:
    return None if v is None else tuple(v)


def config_to_json(c: ImageConfig) -> dict[str, Any]:
    """ImageConfig as a JSON-able dict (field names as in the dataclass)."""
    return {
        "user": c.user,
        "env": list(c.env),
        "entrypoint": None if c.entrypoint is None else list(c.entrypoint),
        "cmd": None if c.cmd is None else list(c.cmd),
        "working_dir": c.working_dir,
        "exposed_ports": list(c.exposed_ports),
        "volumes": list(c.volumes),
        "labels": dict(c.labels),
        "stop_signal": c.stop_signal,
        "healthcheck": _health_to_json(c.healthcheck),
        "shell": None if c.shell is None else list(c.shell),
        "on_build": list(c.on_build),
    }


def config_from_json(d: dict[str, Any]) -> ImageConfig:
    """Inverse of :func:`config_to_json`."""
    return ImageConfig(
        user=d.get("user", ""),
        env=tuple(d.get("env", ())),
        entrypoint=_opt_tuple(d.get("entrypoint")),
        cmd=_opt_tuple(d.get("cmd")),
        working_dir=d.get("working_dir", ""),
        exposed_ports=tuple(d.get("exposed_ports", ())),
        volumes=tuple(d.get("volumes", ())),
        labels=dict(d.get("labels", {})),
        stop_signal=d.get("stop_signal", ""),
        healthcheck=_health_from_json(d.get("healthcheck")),
        shell=_opt_tuple(d.get("shell")),
        on_build=tuple(d.get("on_build", ())),
    )


def record_to_json(rec: ImageRecord) -> str:
    """The record minus repo_tags (tags live in their own table) as compact JSON."""
    return json.dumps(
        {
            "id": rec.id,
            "config": config_to_json(rec.config),
            "diff_ids": list(rec.diff_ids),
            "chain_ids": list(rec.chain_ids),
            "created": rec.created,
            "author": rec.author,
            "comment": rec.comment,
            "architecture": rec.architecture,
            "os": rec.os,
            "history": [
                {
                    "created": h.created,
                    "created_by": h.created_by,
                    "comment": h.comment,
                    "author": h.author,
                    "empty_layer": h.empty_layer,
                }
                for h in rec.history
            ],
            "size": rec.size,
            "parent": rec.parent,
            "repo_digests": list(rec.repo_digests),
            "manifest_digest": rec.manifest_digest,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def record_from_json(data: str, repo_tags: tuple[str, ...] = ()) -> ImageRecord:
    """Inverse of :func:`record_to_json`; ``repo_tags`` supplied by the caller."""
    d = json.loads(data)
    return ImageRecord(
        id=d["id"],
        config=config_from_json(d.get("config", {})),
        diff_ids=tuple(d.get("diff_ids", ())),
        chain_ids=tuple(d.get("chain_ids", ())),
        created=d.get("created", ""),
        author=d.get("author", ""),
        comment=d.get("comment", ""),
        architecture=d.get("architecture", "amd64"),
        os=d.get("os", "linux"),
        history=tuple(
            HistoryEntry(
                created=h.get("created", ""),
                created_by=h.get("created_by", ""),
                comment=h.get("comment", ""),
                author=h.get("author", ""),
                empty_layer=bool(h.get("empty_layer", False)),
            )
            for h in d.get("history", ())
        ),
        size=int(d.get("size", 0)),
        parent=d.get("parent", ""),
        repo_tags=repo_tags,
        repo_digests=tuple(d.get("repo_digests", ())),
        manifest_digest=d.get("manifest_digest", ""),
    )
