"""``--filter key=value`` flags -> the Engine API's ``filters`` JSON ({"key": ["value", ...]})."""

from __future__ import annotations

from skiff.errors import InvalidArgument


def parse_filters(flags: tuple[str, ...]) -> dict[str, list[str]]:
    """Group repeated ``key=value`` flags by key."""
    result: dict[str, list[str]] = {}
    for flag in flags:
        key, sep, value = flag.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {flag!r}")
        result.setdefault(key.strip().lower(), []).append(value)
    return result
