"""The Store protocol as JSON, shared by the managers' store gateway and ``RemoteStore``.

Keys are strings, values base64 (they are bytes). Errors travel as ``{"message", "error"}``
where ``error`` names the exception class to raise again on the other side.
"""

from __future__ import annotations

import binascii
from typing import Any

from skiff.cluster.state.base import (
    Compacted,
    Compare,
    Delete,
    EventType,
    KeyValue,
    LeaseNotFound,
    Op,
    Put,
    StoreError,
    WatchEvent,
)
from skiff.errors import Conflict, InvalidArgument, NotFound, SkiffError, Unauthorized, Unavailable


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def unb64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text) if text else b""
    except binascii.Error:
        raise InvalidArgument("invalid base64 value") from None


def kv_out(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": kv.key,
        "value": b64(kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


def kv_in(d: dict[str, Any]) -> KeyValue:
    return KeyValue(
        str(d["key"]),
        unb64(d.get("value") or ""),
        int(d.get("create_revision", 0)),
        int(d.get("mod_revision", 0)),
        int(d.get("version", 0)),
        int(d.get("lease", 0)),
    )


def event_out(e: WatchEvent) -> dict[str, Any]:
    return {"type": e.type.value, "kv": kv_out(e.kv)}


def event_in(d: dict[str, Any]) -> WatchEvent:
    return WatchEvent(EventType(d["type"]), kv_in(d["kv"]))


def op_out(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        return {"put": {"key": op.key, "value": b64(op.value), "lease": op.lease}}
    return {"delete": {"key": op.key}}


def op_in(d: dict[str, Any]) -> Op:
    if not isinstance(d, dict):
        raise InvalidArgument("a transaction operation is an object")
    if "put" in d:
        p = d["put"]
        return Put(str(p["key"]), unb64(p.get("value") or ""), int(p.get("lease", 0)))
    if "delete" in d:
        return Delete(str(d["delete"]["key"]))
    raise InvalidArgument('a transaction operation is {"put": ...} or {"delete": ...}')


def compare_out(c: Compare) -> dict[str, Any]:
    return {"key": c.key, "mod_revision": c.mod_revision}


def compare_in(d: dict[str, Any]) -> Compare:
    return Compare(str(d["key"]), int(d["mod_revision"]))


def error_out(exc: SkiffError) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a store error."""
    if isinstance(exc, Compacted):
        return 409, {"message": exc.message, "error": "compacted", "compact_revision": exc.compact_revision}
    if isinstance(exc, LeaseNotFound):
        return 404, {"message": exc.message, "error": "lease_not_found"}
    if isinstance(exc, StoreError):
        return 409, {"message": exc.message, "error": "store"}
    return exc.status, {"message": exc.message, "error": type(exc).__name__}


def error_in(status: int, body: dict[str, Any]) -> SkiffError:
    """The exception a gateway's error answer stands for."""
    message = str(body.get("message") or f"store gateway answered {status}")
    kind = body.get("error")
    if kind == "compacted":
        return Compacted(int(body.get("compact_revision", 0)))
    if kind == "lease_not_found":
        return LeaseNotFound(message)
    if kind == "store":
        return StoreError(message)
    if status == 400:
        return InvalidArgument(message)
    if status == 401:
        return Unauthorized(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    return Unavailable(message)
