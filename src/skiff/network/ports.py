"""Host port reservations for published ports (Docker's "port is already allocated").

``portmap`` DNATs a published port to its container, but nothing in the kernel stops a second
container or a host process from claiming the same port. So skiffd *owns* every published host
port: it holds one bound socket per port for as long as the container runs (TCP: bound, not
listening, so a connection that somehow escapes the DNAT is refused rather than left hanging;
UDP: bound). A host process that tries to bind the port then fails, and a port that is already
bound by someone else is refused here with Docker's wording.

TCP sockets are bound with ``SO_REUSEADDR``, as servers do, so a port with only TIME_WAIT
leftovers can be reserved while a live listener or bound socket blocks it. The option is cleared
right after ``bind``: Linux lets a newcomer with ``SO_REUSEADDR`` share a port with bound,
non-listening sockets that *also* have it, so keeping it would let a host server (they all set
it) bind and listen on a reserved port. Without it, that server's bind (or, on older kernels, its
listen) fails with EADDRINUSE. Clashes between skiff's own reservations (including 0.0.0.0
against a specific address) are found in the table here, before the kernel is asked. Sockets are
close-on-exec (Python's default) and live only in the daemon process.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from skiff.errors import Conflict, InvalidArgument, SkiffError, Unavailable
from skiff.types.network import PortBinding

log = logging.getLogger("skiff.network.ports")

PROTOCOLS = ("tcp", "udp")
_RANDOM_TRIES = 16


@dataclass(frozen=True)
class PortRequest:
    """One host port a container asks for (before a random port is chosen)."""

    container_port: int
    protocol: str  # tcp | udp
    host_ip: str = ""  # "" = all addresses (0.0.0.0)
    host_port: int = 0  # 0 = a free port chosen by the kernel


# --------------------------------------------------------------------------- parsing


def parse_port_bindings(
    port_bindings: Mapping[str, Sequence[tuple[str, str]]],
    exposed: Sequence[str],
    publish_all: bool,
) -> list[PortRequest]:
    """Turn ``HostConfig.PortBindings`` and ``-P`` into port requests.

    ``port_bindings`` maps "80/tcp" (or "80", tcp implied; or a range "8000-8001/udp") to
    ``(host_ip, host_port)`` pairs; host_port "" or "0" is a random port, a range "8080-8081"
    maps one to one onto an equally long container range. With ``publish_all`` every
    ``exposed`` port that has no binding gets a random port on all addresses (as dockerd).
    Exact duplicates are dropped.
    """
    out: list[PortRequest] = []
    bound: set[tuple[int, str]] = set()
    for key, pairs in port_bindings.items():
        first, last, proto = _parse_container_port(key)
        for host_ip, host_port in pairs or ():
            ip = _parse_host_ip(host_ip, key)
            hfirst, hlast = _parse_host_ports(host_port, key)
            if hfirst == 0:
                out += [PortRequest(p, proto, ip, 0) for p in range(first, last + 1)]
            elif last - first != hlast - hfirst:
                if first == last:
                    raise InvalidArgument(
                        f"invalid port binding {host_port}:{key}: a host port range needs an equally "
                        "long container port range (skiff does not pick one port out of a range)"
                    )
                raise InvalidArgument(
                    f"invalid port binding {host_port}:{key}: host and container port ranges differ in length"
                )
            else:
                out += [PortRequest(first + i, proto, ip, hfirst + i) for i in range(last - first + 1)]
            bound.update((p, proto) for p in range(first, last + 1))
    if publish_all:
        for key in exposed:
            first, last, proto = _parse_container_port(key)
            for p in range(first, last + 1):
                if (p, proto) not in bound:
                    out.append(PortRequest(p, proto))
                    bound.add((p, proto))
    return list(dict.fromkeys(out))


def _parse_container_port(key: str) -> tuple[int, int, str]:
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {proto!r} in port {key!r} (tcp or udp)")
    first, last = _parse_range(port, what=f"container port in {key!r}")
    if first == 0:
        raise InvalidArgument(f"invalid container port in {key!r}: must be between 1 and 65535")
    return first, last, proto


def _parse_host_ports(value: str, key: str) -> tuple[int, int]:
    value = (value or "").strip()
    if value == "":
        return 0, 0
    first, last = _parse_range(value, what=f"host port {value!r} for {key!r}")
    if first == 0 and last != 0:
        raise InvalidArgument(f"invalid host port range {value!r} for {key!r}")
    return first, last


def _parse_range(text: str, what: str) -> tuple[int, int]:
    lo, sep, hi = text.strip().partition("-")
    try:
        first = int(lo, 10)
        last = int(hi, 10) if sep else first
    except ValueError:
        raise InvalidArgument(f"invalid {what}: not a port number or range") from None
    if not (0 <= first <= 65535 and 0 <= last <= 65535):
        raise InvalidArgument(f"invalid {what}: ports are 0-65535")
    if last < first:
        raise InvalidArgument(f"invalid {what}: range end is below its start")
    return first, last


def _parse_host_ip(value: str, key: str) -> str:
    value = (value or "").strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if value == "":
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidArgument(f"invalid host IP {value!r} for port {key!r}") from None


# --------------------------------------------------------------------------- reservations


@dataclass
class _Held:
    binding: PortBinding
    sock: socket.socket


class PortReservations:
    """The host ports skiffd holds, per owner (a container id). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, list[_Held]] = {}

    def reserve(self, owner: str, requests: Sequence[PortRequest]) -> list[PortBinding]:
        """Bind every request for ``owner``, all or nothing; return what was bound, in order.

        A port held by skiff (any owner, this call included) raises ``Conflict("Bind for IP:PORT
        failed: port is already allocated")``; one held by another process raises
        ``Conflict("failed to bind port IP:PORT/PROTO: address already in use")``.
        """
        made: list[_Held] = []
        with self._lock:
            try:
                for req in requests:
                    made.append(self._bind_request(req, made))
            except BaseException:
                for h in made:
                    h.sock.close()
                raise
            self._held.setdefault(owner, []).extend(made)
        return [h.binding for h in made]

    def restore(self, owner: str, bindings: Sequence[PortBinding]) -> list[PortBinding]:
        """Rebind exactly ``bindings`` for ``owner`` (after a daemon restart).

        Returns the bindings that could not be bound again (each logged); the others are held.
        A binding ``owner`` already holds counts as restored.
        """
        failed: list[PortBinding] = []
        with self._lock:
            mine = self._held.setdefault(owner, [])
            for b in bindings:
                b = _normalized(b)
                if any(h.binding == b for h in mine):
                    continue
                try:
                    if self._clash(b, []) is not None:
                        raise _allocated(b.host_ip, b.host_port)
                    mine.append(_Held(b, _bind(b)))
                except SkiffError as e:
                    log.warning("cannot restore port %s for %s: %s", _describe(b), owner[:12], e)
                    failed.append(b)
            if not mine:
                del self._held[owner]
        return failed

    def release(self, owner: str) -> None:
        """Close every socket ``owner`` holds (nothing if it holds none)."""
        with self._lock:
            held = self._held.pop(owner, [])
        for h in held:
            h.sock.close()

    def held_by_skiff(self, req: PortRequest) -> bool:
        """Whether a fixed-port request clashes with a port some skiff owner holds now."""
        proto = req.protocol.lower()
        ip = _parse_host_ip(req.host_ip, f"{req.container_port}/{proto}") or "0.0.0.0"
        with self._lock:
            return self._clash(PortBinding(req.container_port, proto, ip, req.host_port), []) is not None

    def owned(self, owner: str) -> list[PortBinding]:
        """The bindings ``owner`` holds, in the order they were made."""
        with self._lock:
            return [h.binding for h in self._held.get(owner, [])]

    def owners(self) -> list[str]:
        """Every owner holding at least one port (for reconciliation at startup)."""
        with self._lock:
            return [o for o, held in self._held.items() if held]

    def close(self) -> None:
        """Release everything (daemon shutdown in tests)."""
        with self._lock:
            owners = list(self._held)
        for o in owners:
            self.release(o)

    # ------------------------------------------------------------------ internals

    def _bind_request(self, req: PortRequest, pending: list[_Held]) -> _Held:
        proto = req.protocol.lower()
        if proto not in PROTOCOLS:
            raise InvalidArgument(f"invalid protocol {req.protocol!r} (tcp or udp)")
        if not 0 <= req.host_port <= 65535 or not 1 <= req.container_port <= 65535:
            raise InvalidArgument(f"invalid port mapping {req.host_port}:{req.container_port}/{proto}")
        ip = _parse_host_ip(req.host_ip, f"{req.container_port}/{proto}") or "0.0.0.0"
        wanted = PortBinding(req.container_port, proto, ip, req.host_port)
        if req.host_port != 0:
            if self._clash(wanted, pending) is not None:
                raise _allocated(ip, req.host_port)
            return _Held(wanted, _bind(wanted))
        # A random port: the kernel avoids ports bound by anyone, but a port another skiff socket
        # holds on another family or address could still come back; keep such a socket open
        # while retrying so the kernel does not offer it again.
        spare: list[socket.socket] = []
        try:
            for _ in range(_RANDOM_TRIES):
                sock = _bind(wanted)
                got = PortBinding(req.container_port, proto, ip, sock.getsockname()[1])
                if self._clash(got, pending) is None:
                    return _Held(got, sock)
                spare.append(sock)
        finally:
            for s in spare:
                s.close()
        raise Unavailable(f"no free host port for {req.container_port}/{proto} on {ip}")

    def _clash(self, b: PortBinding, pending: list[_Held]) -> PortBinding | None:
        for held in [*(h for hs in self._held.values() for h in hs), *pending]:
            if _overlaps(held.binding, b):
                return held.binding
        return None


def _overlaps(a: PortBinding, b: PortBinding) -> bool:
    if a.protocol != b.protocol or a.host_port != b.host_port:
        return False
    fa, fb = _family(a.host_ip), _family(b.host_ip)
    if fa != fb:
        return False
    wild = "0.0.0.0" if fa == socket.AF_INET else "::"
    return a.host_ip == b.host_ip or wild in (a.host_ip, b.host_ip)


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _normalized(b: PortBinding) -> PortBinding:
    ip = _parse_host_ip(b.host_ip, f"{b.container_port}/{b.protocol}") or "0.0.0.0"
    return PortBinding(b.container_port, b.protocol.lower(), ip, b.host_port)


def _bind(b: PortBinding) -> socket.socket:
    family = _family(b.host_ip)
    tcp = b.protocol == "tcp"
    sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((b.host_ip, b.host_port))
        if tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)  # see the module docstring
    except OSError as e:
        sock.close()
        where = f"{_addr(b.host_ip, b.host_port)}/{b.protocol}"
        if e.errno == errno.EADDRINUSE:
            raise Conflict(f"failed to bind port {where}: address already in use") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"failed to bind port {where}: cannot assign requested address") from None
        raise Unavailable(f"failed to bind port {where}: {e.strerror}") from None
    return sock


def _allocated(ip: str, port: int) -> Conflict:
    return Conflict(f"Bind for {_addr(ip, port)} failed: port is already allocated")


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _describe(b: PortBinding) -> str:
    return f"{_addr(b.host_ip, b.host_port)}->{b.container_port}/{b.protocol}"
