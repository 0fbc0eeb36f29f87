"""Compose's short syntaxes, parsed as compose-go parses them.

- ports: ``[ip:][host[-range]:]container[-range][/proto]`` (docker/go-connections'
  ``ParsePortSpec``), one long-syntax dict per container port, sorted as compose sorts.
- volumes: ``[source:]target[:options]`` (compose-go's ``ParseVolume``): a source that
  starts with ``.``, ``/`` or ``~`` is a bind, anything else a named volume.
- Go durations (``1m30s``) both ways, and go-units sizes (``512m``) to bytes.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from skiff.errors import InvalidArgument
from skiff.units import parse_size

# --- durations ------------------------------------------------------------------

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds, with its error messages."""
    orig = text
    quoted = f'"{orig}"'
    neg = text.startswith("-")
    if text[:1] in "+-":
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise InvalidArgument(f"time: invalid duration {quoted}")
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _DUR_PART.match(text, pos)
        if m is None or not m.group(1) or m.group(1) == ".":
            raise InvalidArgument(f"time: invalid duration {quoted}")
        number, unit = m.group(1), m.group(2)
        if not unit:
            raise InvalidArgument(f"time: missing unit in duration {quoted}")
        if unit not in _UNIT_NS:
            raise InvalidArgument(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(number) * _UNIT_NS[unit]
        pos = m.end()
    ns = round(total)
    return -ns if neg else ns


def _frac(value: int, digits: int) -> str:
    """``value / 10**digits`` with trailing zeros (and a bare point) removed."""
    whole, rest = divmod(value, 10**digits)
    if rest == 0:
        return str(whole)
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``1m30s``, ``500ms``, ``1h0m0s``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_frac(u, 3)}µs"
    if u < 10**9:
        return f"{sign}{_frac(u, 6)}ms"
    hours, rest = divmod(u, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _frac(rest, 9) + "s"


def duration(value: Any, where: str) -> str:
    """A duration value in compose's canonical form (Go's string)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgument(f"{where} must be a duration string such as 30s or 1m30s")
    try:
        return format_go_duration(parse_go_duration(str(value)))
    except InvalidArgument as e:
        raise InvalidArgument(f"{where}: {e}") from None


def size(value: Any, where: str) -> int:
    """A byte size (``512m``, ``1g``, a number) as an int, like compose's UnitBytes."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{where}: invalid size: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        return parse_size(text)
    except InvalidArgument:
        raise InvalidArgument(f"{where}: invalid size: '{value}'") from None


# --- ports ------------------------------------------------------------------------


def _port_range(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    if not start.isdigit() or (sep and not end.isdigit()):
        raise ValueError(text)
    lo, hi = int(start), int(end) if sep else int(start)
    if hi < lo or hi > 65535:
        raise ValueError(text)
    return lo, hi


def parse_port(spec: str) -> list[dict[str, Any]]:
    """One short-syntax port as long-syntax dicts (``docker compose config``'s form)."""
    parts = spec.split(":")
    container = parts[-1]
    if len(parts) == 1:
        ip, host = "", ""
    elif len(parts) == 2:
        ip, host = "", parts[0]
    else:
        ip, host = ":".join(parts[:-2]), parts[-2]
    proto = "tcp"
    if "/" in container:
        container, proto = container.split("/", 1)
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {ip}") from None
    if not container:
        raise InvalidArgument(f"no port specified: {spec}<empty>")
    try:
        start, end = _port_range(container)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {container}") from None
    hstart = hend = 0
    if host:
        try:
            hstart, hend = _port_range(host)
        except ValueError:
            raise InvalidArgument(f"invalid hostPort: {host}") from None
        if end - start != hend - hstart and end != start:
            raise InvalidArgument(
                f"invalid ranges specified for container and host Ports: {container} and {host}"
            )
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    entries: list[tuple[str, dict[str, Any]]] = []
    for i in range(end - start + 1):
        published = ""
        if host:
            published = str(hstart + i)
            if start == end and hstart != hend:
                published = f"{hstart}-{hend}"
        port: dict[str, Any] = {"mode": "ingress"}
        if ip:
            port["host_ip"] = ip
        port["target"] = start + i
        if published:
            port["published"] = published
        port["protocol"] = proto.lower()
        entries.append((f"{start + i}/{proto.lower()}", port))
    # compose-go sorts the port keys as strings ("10000/tcp" < "9000/tcp").
    entries.sort(key=lambda e: e[0])
    return [p for _, p in entries]


def long_port(value: dict[str, Any]) -> dict[str, Any]:
    """A long-syntax port with compose's defaults and ``published`` as a string."""
    port = dict(value)
    if "published" in port:
        if port["published"] is None or port["published"] == "":
            port.pop("published")
        else:
            port["published"] = str(port["published"])
    port.setdefault("mode", "ingress")
    port.setdefault("protocol", "tcp")
    return port


# --- volumes ----------------------------------------------------------------------

_PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")


def _is_path(source: str) -> bool:
    return source[:1] in (".", "/", "~")


def parse_volume(spec: str) -> dict[str, Any]:
    """compose-go's ``ParseVolume``: a short-syntax volume as the long syntax."""
    if not spec:
        raise InvalidArgument("invalid empty volume spec")
    vol: dict[str, Any] = {}
    if len(spec) <= 2:
        return {"type": "volume", "target": spec, "volume": {}}
    fields = spec.split(":")
    for i, text in enumerate(fields):
        last = i == len(fields) - 1
        if not text:
            raise InvalidArgument(f"invalid spec: {spec}: empty section between colons")
        if "source" not in vol and last and "target" not in vol:
            vol["target"] = text
        elif "source" not in vol:
            vol["source"] = text
        elif "target" not in vol:
            vol["target"] = text
        elif not last:
            raise InvalidArgument(f"invalid spec: {spec}: too many colons")
        else:
            for option in text.split(","):
                if option == "ro":
                    vol["read_only"] = True
                elif option == "rw":
                    vol.pop("read_only", None)
                elif option == "nocopy":
                    vol["volume"] = {"nocopy": True}
                elif option in _PROPAGATIONS:
                    vol.setdefault("bind", {})["propagation"] = option
                elif option in ("z", "Z"):
                    vol.setdefault("bind", {})["selinux"] = option
    source = vol.get("source", "")
    out: dict[str, Any]
    if source and _is_path(source):
        out = {"type": "bind", **vol}
        out["bind"] = {**out.get("bind", {}), "create_host_path": True}
        out.pop("volume", None)
    else:
        out = {"type": "volume", **vol}
        out.setdefault("volume", {})
        out.pop("bind", None)
    return out
