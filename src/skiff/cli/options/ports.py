"""``-p/--publish`` and ``--expose``: docker's port specification syntax."""

from __future__ import annotations

from skiff.errors import InvalidArgument


def _port_range(text: str, value: str) -> list[int]:
    start_s, sep, end_s = text.partition("-")
    try:
        start = int(start_s)
        end = int(end_s) if sep else start
    except ValueError:
        raise InvalidArgument(f"invalid port {text!r} in {value!r}") from None
    if not (0 < start <= 65535 and 0 < end <= 65535) or end < start:
        raise InvalidArgument(f"invalid port range {text!r} in {value!r}")
    return list(range(start, end + 1))


def parse_expose(value: str) -> list[str]:
    """``--expose 80[-81][/proto]`` -> ``["80/tcp", "81/tcp"]``."""
    port, _, proto = value.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid protocol {proto!r} in {value!r}")
    return [f"{p}/{proto}" for p in _port_range(port, value)]


def parse_publish(value: str) -> dict[str, list[dict[str, str]]]:
    """``[ip:][hostport:]containerport[/proto]`` (ranges allowed) -> PortBindings entries."""
    spec, _, proto = value.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid protocol {proto!r} in --publish {value!r}")
    ip, host = "", ""
    if spec.startswith("["):  # [ipv6]:host:container
        close = spec.find("]")
        ip, spec = spec[1:close], spec[close + 2 :]
    parts = spec.rsplit(":", 2) if not ip else ["", *spec.split(":")]
    if len(parts) == 3:
        ip = ip or parts[0]
        host, container = parts[1], parts[2]
    elif len(parts) == 2:
        host, container = parts
    else:
        container = parts[0]
    if not container:
        raise InvalidArgument(f"no port specified in --publish {value!r}: use [ip:][hostport:]containerport")
    cports = _port_range(container, value)
    hports: list[str] = [""] * len(cports)
    if host:
        hrange = _port_range(host, value)
        if len(hrange) == len(cports):
            hports = [str(p) for p in hrange]
        elif len(cports) == 1:
            hports = [host]  # a host range for one container port: the daemon picks one
        else:
            raise InvalidArgument(f"port ranges don't match in --publish {value!r}")
    result: dict[str, list[dict[str, str]]] = {}
    for cport, hport in zip(cports, hports, strict=True):
        result.setdefault(f"{cport}/{proto}", []).append({"HostIp": ip, "HostPort": hport})
    return result
