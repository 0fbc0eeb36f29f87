"""Cluster state stores: one protocol (``base.Store``), three backends.

``open_store(url)`` picks one: ``sqlite:///var/lib/skiff/cluster.db`` (the embedded default),
``etcd://h1:2379,h2:2379[?max-txn-ops=N]`` (HA on a real etcd cluster), ``memory://`` (tests).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from skiff.cluster.state.base import (
    Compacted,
    Compare,
    Delete,
    EventType,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    Put,
    RangeResult,
    Store,
    StoreError,
    TxnResult,
    Watch,
    WatchEvent,
)
from skiff.errors import InvalidArgument

__all__ = [
    "Compacted",
    "Compare",
    "Delete",
    "EventType",
    "KeyValue",
    "Lease",
    "LeaseNotFound",
    "Op",
    "Put",
    "RangeResult",
    "Store",
    "StoreError",
    "TxnResult",
    "Watch",
    "WatchEvent",
    "open_store",
]


def open_store(url: str) -> Store:
    """A store from its URL (see module doc)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        from skiff.cluster.state.memory import MemoryStore

        return MemoryStore()
    if parts.scheme == "sqlite":
        if not parts.path:
            raise InvalidArgument(f"store URL {url!r} names no file (sqlite:///path/to/cluster.db)")
        from skiff.cluster.state.sqlite import SQLiteStore

        return SQLiteStore(Path(parts.path))
    if parts.scheme in ("etcd", "http"):
        endpoints = [h for h in parts.netloc.split(",") if h]
        if not endpoints:
            raise InvalidArgument(f"store URL {url!r} names no etcd endpoint (etcd://host:2379,...)")
        try:
            max_ops = int(query.get("max-txn-ops", "128"))
        except ValueError:
            raise InvalidArgument(f"store URL {url!r}: max-txn-ops must be a number") from None
        from skiff.cluster.state.etcd import EtcdStore

        return EtcdStore([f"http://{h}" for h in endpoints], max_txn_ops=max_ops)
    raise InvalidArgument(
        f"unknown cluster store {url!r}: use sqlite:///path, etcd://host:port,... or memory://"
    )
