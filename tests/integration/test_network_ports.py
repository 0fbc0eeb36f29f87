"""Host port reservations with fixed, privileged and IPv6 ports (root only).

Each test works inside a network namespace of its own (/run/skiff-test-ports-<hex>/ns), where
every port is free, so the fixed port numbers a user would publish (80, 443, 53) can be used
without touching the host's. A socket stays in the namespace it was created in, so reservations
made by a thread that entered the namespace live there. "Foreign processes" are real processes
started inside the namespace with nsenter.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from skiff.errors import Conflict, InvalidArgument
from skiff.network import netns
from skiff.network.ports import PortRequest, PortReservations
from skiff.types.network import PortBinding

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

T = TypeVar("T")

# A process that binds (and for TCP listens on) an address as a typical server does;
# prints "ok" and waits for stdin to close, or prints the errno name and exits 1.
SERVER = """
import errno, socket, sys
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((ip, port))
    if proto == "tcp":
        s.listen()
except OSError as e:
    print(errno.errorcode[e.errno], flush=True)
    sys.exit(1)
print("ok", flush=True)
sys.stdin.read()
"""


class Space:
    """One private network namespace; ``run`` calls a function inside it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, fn: Callable[[], T]) -> T:
        return netns.run_in_netns(self.path, fn)

    def ip(self, *args: str) -> None:
        subprocess.run(["nsenter", f"--net={self.path}", "ip", *args], check=True, capture_output=True)

    def server(self, proto: str, ip: str, port: int) -> subprocess.Popen[str]:
        """Start a foreign server process in the namespace; its first line says ok or why not."""
        return subprocess.Popen(
            ["nsenter", f"--net={self.path}", sys.executable, "-c", SERVER, proto, ip, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def space() -> Iterator[Space]:
    base = Path(f"/run/skiff-test-ports-{secrets.token_hex(4)}")
    path = base / "ns"
    netns.create(path)
    try:
        yield Space(path)
    finally:
        netns.remove(path)
        try:
            base.rmdir()
        except OSError:
            pass


@pytest.fixture
def ports() -> Iterator[PortReservations]:
    r = PortReservations()
    yield r
    r.close()


def test_fixed_privileged_ports(space: Space, ports: PortReservations) -> None:
    got = space.run(
        lambda: ports.reserve(
            "web",
            [
                PortRequest(80, "tcp", "", 80),
                PortRequest(443, "tcp", "", 443),
                PortRequest(53, "udp", "", 53),
            ],
        )
    )
    assert got == [
        PortBinding(80, "tcp", "0.0.0.0", 80),
        PortBinding(443, "tcp", "0.0.0.0", 443),
        PortBinding(53, "udp", "0.0.0.0", 53),
    ]
    # the same port on the other protocol is free
    assert space.run(lambda: ports.reserve("dns", [PortRequest(53, "tcp", "", 53)])) == [
        PortBinding(53, "tcp", "0.0.0.0", 53)
    ]
    with pytest.raises(Conflict, match=r"^Bind for 127\.0\.0\.1:80 failed: port is already allocated$"):
        space.run(lambda: ports.reserve("other", [PortRequest(8080, "tcp", "127.0.0.1", 80)]))
    ports.release("web")
    assert space.run(lambda: ports.reserve("other", [PortRequest(8080, "tcp", "127.0.0.1", 80)]))


def test_foreign_process_conflicts_both_ways(space: Space, ports: PortReservations) -> None:
    server = space.server("tcp", "0.0.0.0", 8080)
    try:
        assert first_line(server) == "ok"
        with pytest.raises(
            Conflict, match=r"^failed to bind port 0\.0\.0\.0:8080/tcp: address already in use$"
        ):
            space.run(lambda: ports.reserve("c1", [PortRequest(80, "tcp", "", 8080)]))
        assert ports.owned("c1") == []
    finally:
        stop(server)

    space.run(
        lambda: ports.reserve("c1", [PortRequest(80, "tcp", "", 8080), PortRequest(53, "udp", "", 5353)])
    )
    for proto, ip, port in (("tcp", "0.0.0.0", 8080), ("tcp", "127.0.0.1", 8080), ("udp", "0.0.0.0", 5353)):
        late = space.server(proto, ip, port)
        try:
            assert first_line(late) == "EADDRINUSE", (proto, ip, port)
        finally:
            stop(late)


def test_specific_host_addresses(space: Space, ports: PortReservations) -> None:
    space.ip("addr", "add", "10.236.250.1/32", "dev", "lo")
    with pytest.raises(InvalidArgument, match="cannot assign requested address"):
        space.run(lambda: ports.reserve("c1", [PortRequest(80, "tcp", "10.236.250.2", 80)]))
    [b] = space.run(lambda: ports.reserve("c1", [PortRequest(80, "tcp", "10.236.250.1", 80)]))
    assert b == PortBinding(80, "tcp", "10.236.250.1", 80)
    # another address of the host, same port: fine; all addresses: taken
    space.run(lambda: ports.reserve("c2", [PortRequest(80, "tcp", "127.0.0.1", 80)]))
    with pytest.raises(Conflict, match="already allocated"):
        space.run(lambda: ports.reserve("c3", [PortRequest(80, "tcp", "", 80)]))


def test_ipv6_addresses(space: Space, ports: PortReservations) -> None:
    if not Path("/proc/net/if_inet6").exists():
        pytest.skip("no IPv6 in this kernel")
    [v6] = space.run(lambda: ports.reserve("c1", [PortRequest(80, "tcp", "::1", 80)]))
    assert v6 == PortBinding(80, "tcp", "::1", 80)
    with pytest.raises(Conflict, match=r"^Bind for \[::\]:80 failed: port is already allocated$"):
        space.run(lambda: ports.reserve("c2", [PortRequest(80, "tcp", "::", 80)]))
    # IPv4 all-addresses does not clash with an IPv6 address (v6 sockets are V6ONLY)
    assert space.run(lambda: ports.reserve("c3", [PortRequest(80, "tcp", "", 80)]))
    late = space.server("tcp", "::1", 80)
    try:
        assert first_line(late) == "EADDRINUSE"
    finally:
        stop(late)


def test_restore_after_restart(space: Space) -> None:
    before = PortReservations()
    held = space.run(
        lambda: before.reserve("c1", [PortRequest(80, "tcp", "", 80), PortRequest(53, "udp", "", 53)])
    )
    before.close()  # skiffd died: the kernel closed its sockets

    squatter = space.server("udp", "0.0.0.0", 53)  # a host process took one port meanwhile
    after = PortReservations()
    try:
        assert first_line(squatter) == "ok"
        failed = space.run(lambda: after.restore("c1", held))
        assert failed == [held[1]]
        assert after.owned("c1") == [held[0]]
        late = space.server("tcp", "0.0.0.0", 80)
        try:
            assert first_line(late) == "EADDRINUSE"
        finally:
            stop(late)
    finally:
        stop(squatter)
        after.close()
