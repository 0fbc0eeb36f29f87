"""Scalar values of the canonical compose form: Go durations, byte sizes, CPUs.

The loader prints durations as Go does (``1m30s``, ``500ms``) and sizes as byte counts
(numbers, or strings of digits as ``docker compose config --format json`` does); a
hand-written file may still hold ``64m`` or a bare number of seconds, so both are read.
"""

from __future__ import annotations

import re
from typing import Any

from skiff.errors import InvalidArgument
from skiff.units import parse_size

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_NS["d"] = 24 * _NS["h"]


def duration_ns(value: Any, what: str = "duration") -> int:
    """A Go duration (``1m30s``) or a number of seconds, in nanoseconds."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid {what}: {value!r}")
    if isinstance(value, int | float):
        return int(value * 10**9)
    text = str(value).strip()
    if text in ("0", "-0", "+0"):
        return 0
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _NS[m.group(2)]
        pos = m.end()
    if pos != len(body) or not body:
        raise InvalidArgument(f"invalid {what}: {value!r} (use e.g. 30s, 1m30s, 500ms)")
    return sign * int(total)


def duration_seconds(value: Any, what: str = "duration") -> int:
    """A duration rounded down to whole seconds (``StopTimeout`` is seconds)."""
    return duration_ns(value, what) // 10**9


def size_bytes(value: Any, what: str = "size") -> int:
    """A byte count: an int, a string of digits, or docker's ``64m``/``1g``."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid {what}: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return parse_size(text)
    except InvalidArgument:
        raise InvalidArgument(f"invalid {what}: {value!r}") from None


def nano_cpus(value: Any) -> int:
    """``cpus: 0.5`` (number or string) as NanoCPUs."""
    if value is None or value == "":
        return 0
    try:
        return round(float(value) * 1e9)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid cpus value: {value!r}") from None
