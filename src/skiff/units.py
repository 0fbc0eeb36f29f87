"""Docker's human-readable units (go-units): sizes, durations, timestamps; shared by API and CLI."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: 1000-based, ``4.26MB``, ``512B``."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{_DECIMAL[i]}"


def bytes_size(size: float) -> str:
    """go-units BytesSize: 1024-based with two decimals, ``1.5GiB`` (used by stats)."""
    i = 0
    while size >= 1024 and i < len(_BINARY) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{_BINARY[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: ``Less than a second``, ``5 seconds``, ``About an hour``, ``3 weeks``."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def since(timestamp: float, now: float | None = None) -> str:
    """``5 seconds ago`` for a unix timestamp."""
    now = time.time() if now is None else now
    return human_duration(now - timestamp) + " ago"


def parse_rfc3339(text: str) -> float | None:
    """Unix time of an RFC 3339 timestamp with nanoseconds (Docker's ``StartedAt``); None if unset."""
    if not text or text.startswith("0001-01-01"):
        return None
    main, _, frac = text.rstrip("Z").partition(".")
    tz = "+00:00"
    for sep in ("+", "-"):
        if sep in frac:
            frac, _, rest = frac.partition(sep)
            tz = sep + rest
    if len(main) > 19:  # offset without fraction
        main, tz = main[:19], main[19:]
    try:
        base = datetime.fromisoformat(main + tz).timestamp()
    except ValueError:
        return None
    return base + (float("0." + frac) if frac.isdigit() else 0.0)


def go_time(timestamp: float) -> str:
    """Go's ``time.Unix(t).String()`` in UTC: ``2024-01-02 15:04:05 +0000 UTC``."""
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(value: str) -> int:
    """docker's RAMInBytes: ``64m``, ``1g``, ``512k``, ``100b``, ``1.5g`` (1024-based)."""
    from skiff.errors import InvalidArgument

    m = _SIZE.match(value.strip())
    if not m:
        raise InvalidArgument(f"invalid size: {value!r} (use a number with an optional unit: b, k, m, g)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
