"""Published-port parsing and host port reservations (real sockets on 127.0.0.1, no root)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator

import pytest

from skiff.errors import Conflict, InvalidArgument
from skiff.network.ports import PortRequest, PortReservations, parse_port_bindings
from skiff.types.network import PortBinding

LO = "127.0.0.1"

# --------------------------------------------------------------------------- parse_port_bindings


def test_parse_single_ports_ips_and_protocols() -> None:
    got = parse_port_bindings(
        {"80/tcp": (("", "8080"),), "53/udp": (("127.0.0.1", "5353"), ("", ""))},
        exposed=["80/tcp", "53/udp"],
        publish_all=False,
    )
    assert got == [
        PortRequest(80, "tcp", "", 8080),
        PortRequest(53, "udp", "127.0.0.1", 5353),
        PortRequest(53, "udp", "", 0),
    ]


def test_parse_defaults_protocol_to_tcp_and_normalizes_ipv6() -> None:
    got = parse_port_bindings({"443": (("[::1]", "8443"),), "22/TCP": (("0:0::0", "0"),)}, [], False)
    assert got == [PortRequest(443, "tcp", "::1", 8443), PortRequest(22, "tcp", "::", 0)]


def test_parse_ranges_map_one_to_one() -> None:
    got = parse_port_bindings({"8000-8002/udp": (("", "9000-9002"),)}, [], False)
    assert got == [PortRequest(8000 + i, "udp", "", 9000 + i) for i in range(3)]
    random = parse_port_bindings({"8000-8001/tcp": (("", ""),)}, [], False)
    assert random == [PortRequest(8000, "tcp"), PortRequest(8001, "tcp")]


@pytest.mark.parametrize(
    ("bindings", "fragment"),
    [
        ({"80/sctp": (("", "80"),)}, "protocol"),
        ({"80/bogus": (("", "80"),)}, "protocol"),
        ({"http/tcp": (("", "80"),)}, "container port"),
        ({"0/tcp": (("", "80"),)}, "container port"),
        ({"70000/tcp": (("", "80"),)}, "0-65535"),
        ({"80/tcp": (("", "65536"),)}, "0-65535"),
        ({"80/tcp": (("", "-1"),)}, "host port"),
        ({"80/tcp": (("", "eighty"),)}, "host port"),
        ({"80/tcp": (("localhost", "80"),)}, "host IP"),
        ({"80/tcp": (("1.2.3.4.5", "80"),)}, "host IP"),
        ({"90-80/tcp": (("", ""),)}, "below its start"),
        ({"80-81/tcp": (("", "9000-9002"),)}, "differ in length"),
        ({"80/tcp": (("", "9000-9001"),)}, "equally long"),
        ({"80-81/tcp": (("", "9000"),)}, "differ in length"),
    ],
)
def test_parse_rejects_bad_values(bindings: dict[str, tuple[tuple[str, str], ...]], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_port_bindings(bindings, [], False)


def test_publish_all_adds_random_ports_for_exposed_without_binding() -> None:
    got = parse_port_bindings(
        {"80/tcp": (("", "8080"),), "81/tcp": ()},
        exposed=["80/tcp", "81/tcp", "53/udp", "9000-9001/tcp"],
        publish_all=True,
    )
    assert got == [
        PortRequest(80, "tcp", "", 8080),
        PortRequest(81, "tcp"),
        PortRequest(53, "udp"),
        PortRequest(9000, "tcp"),
        PortRequest(9001, "tcp"),
    ]


def test_exposed_ports_are_ignored_without_publish_all() -> None:
    assert parse_port_bindings({}, ["80/tcp", "53/udp"], False) == []


def test_publish_all_rejects_bad_exposed_port() -> None:
    with pytest.raises(InvalidArgument):
        parse_port_bindings({}, ["80/icmp"], True)


def test_parse_drops_exact_duplicates() -> None:
    got = parse_port_bindings({"80/tcp": (("", "8080"), ("", "8080"), ("", "8081"))}, [], False)
    assert got == [PortRequest(80, "tcp", "", 8080), PortRequest(80, "tcp", "", 8081)]


# --------------------------------------------------------------------------- reservations


@pytest.fixture
def ports() -> Iterator[PortReservations]:
    r = PortReservations()
    yield r
    r.close()


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LO, 0))
        port: int = s.getsockname()[1]
        return port


def _bind_plain(port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((LO, port))
    except OSError:
        s.close()
        raise
    return s


def _assert_port_taken(port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> None:
    with pytest.raises(OSError) as exc:
        _bind_plain(port, kind).close()
    assert exc.value.errno == errno.EADDRINUSE


def test_random_port_is_bound_and_owned(ports: PortReservations) -> None:
    [b] = ports.reserve("c1", [PortRequest(80, "tcp", LO)])
    assert b.container_port == 80 and b.protocol == "tcp" and b.host_ip == LO
    assert 0 < b.host_port <= 65535
    assert ports.owned("c1") == [b]
    assert ports.owners() == ["c1"]
    _assert_port_taken(b.host_port)


def test_random_ports_differ(ports: PortReservations) -> None:
    got = ports.reserve("c1", [PortRequest(80, "tcp", LO), PortRequest(81, "tcp", LO)])
    got += ports.reserve("c2", [PortRequest(80, "tcp", LO)])
    assert len({b.host_port for b in got}) == 3


def test_all_addresses_are_reported_as_0000(ports: PortReservations) -> None:
    [b] = ports.reserve("c1", [PortRequest(80, "udp")])
    assert b.host_ip == "0.0.0.0" and b.protocol == "udp"
    _assert_port_taken(b.host_port, socket.SOCK_DGRAM)


def test_port_of_another_owner_is_already_allocated(ports: PortReservations) -> None:
    [b] = ports.reserve("c1", [PortRequest(80, "tcp", LO)])
    with pytest.raises(Conflict) as exc:
        ports.reserve("c2", [PortRequest(8080, "tcp", LO, b.host_port)])
    assert str(exc.value) == f"Bind for 127.0.0.1:{b.host_port} failed: port is already allocated"
    assert ports.owned("c2") == []


def test_wildcard_and_specific_address_clash_both_ways(ports: PortReservations) -> None:
    [b] = ports.reserve("c1", [PortRequest(80, "tcp", LO)])
    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{b.host_port} failed: port is already allocated"):
        ports.reserve("c2", [PortRequest(80, "tcp", "", b.host_port)])
    [w] = ports.reserve("c3", [PortRequest(80, "tcp")])
    with pytest.raises(Conflict, match="port is already allocated"):
        ports.reserve("c4", [PortRequest(80, "tcp", LO, w.host_port)])


def test_same_port_tcp_and_udp_do_not_clash(ports: PortReservations) -> None:
    for _ in range(10):  # the UDP port may be held by some host process; try another
        [t] = ports.reserve("c1", [PortRequest(53, "tcp", LO)])
        try:
            [u] = ports.reserve("c2", [PortRequest(53, "udp", LO, t.host_port)])
        except Conflict as e:
            assert "address already in use" in str(e)
            ports.release("c1")
            continue
        assert u.host_port == t.host_port
        return
    pytest.fail("no port free for both tcp and udp")


def test_release_frees_the_port(ports: PortReservations) -> None:
    [b] = ports.reserve("c1", [PortRequest(80, "tcp", LO)])
    ports.release("c1")
    assert ports.owned("c1") == [] and ports.owners() == []
    _bind_plain(b.host_port).close()
    [again] = ports.reserve("c2", [PortRequest(80, "tcp", LO, b.host_port)])
    assert again.host_port == b.host_port
    ports.release("nobody")  # no error


def test_reserve_is_all_or_nothing(ports: PortReservations) -> None:
    [held] = ports.reserve("c1", [PortRequest(80, "tcp", LO)])
    free = _free_port()
    with pytest.raises(Conflict, match="already allocated"):
        ports.reserve(
            "c2",
            [
                PortRequest(81, "tcp", LO, free),
                PortRequest(82, "udp", LO),
                PortRequest(80, "tcp", LO, held.host_port),
            ],
        )
    assert ports.owned("c2") == []
    _bind_plain(free).close()  # the first socket of the failed call was closed


def test_clash_inside_one_request_list(ports: PortReservations) -> None:
    free = _free_port()
    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{free} failed: port is already allocated"):
        ports.reserve("c1", [PortRequest(80, "tcp", LO, free), PortRequest(81, "tcp", "", free)])
    assert ports.owned("c1") == []


@pytest.mark.parametrize("reuse", [False, True])
def test_port_of_a_foreign_tcp_socket_is_in_use(ports: PortReservations, reuse: bool) -> None:
    with socket.socket() as foreign:
        if reuse:  # a typical server: SO_REUSEADDR and listening
            foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        foreign.bind((LO, 0))
        if reuse:
            foreign.listen()
        port = foreign.getsockname()[1]
        with pytest.raises(Conflict) as exc:
            ports.reserve("c1", [PortRequest(80, "tcp", LO, port)])
        assert str(exc.value) == f"failed to bind port 127.0.0.1:{port}/tcp: address already in use"
    assert ports.owned("c1") == []


def test_port_of_a_foreign_udp_socket_is_in_use(ports: PortReservations) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as foreign:
        foreign.bind((LO, 0))
        port = foreign.getsockname()[1]
        with pytest.raises(
            Conflict, match=f"failed to bind port 127.0.0.1:{port}/udp: address already in use"
        ):
            ports.reserve("c1", [PortRequest(53, "udp", LO, port)])


def test_reserved_port_keeps_host_servers_out(ports: PortReservations) -> None:
    """A host server (SO_REUSEADDR, then listen) cannot take a reserved TCP port."""
    [b] = ports.reserve("c1", [PortRequest(80, "tcp", LO)])
    for addr in (LO, "0.0.0.0"):
        with socket.socket() as server, pytest.raises(OSError) as exc:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((addr, b.host_port))
            server.listen()
        assert exc.value.errno == errno.EADDRINUSE


def test_reserved_tcp_port_refuses_connections(ports: PortReservations) -> None:
    """Bound, not listening: without portmap's DNAT a connection is refused, not left hanging."""
    [b] = ports.reserve("c1", [PortRequest(80, "tcp", LO)])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LO, b.host_port), timeout=2).close()


def test_time_wait_does_not_block_a_reservation(ports: PortReservations) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LO, 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection((LO, port))
        conn, _ = listener.accept()
        conn.close()  # the server side closes first: its socket (local port = port) goes TIME_WAIT
        time.sleep(0.05)
        client.close()
    _assert_port_taken(port)  # the TIME_WAIT socket is there: a plain bind fails
    [b] = ports.reserve("c1", [PortRequest(80, "tcp", LO, port)])
    assert b.host_port == port


def _open_sockets() -> set[int]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                found.add(int(fd))
        except FileNotFoundError:  # the directory listing's own descriptor
            pass
    return found


def test_sockets_are_close_on_exec(ports: PortReservations) -> None:
    before = _open_sockets()
    ports.reserve("c1", [PortRequest(80, "tcp", LO), PortRequest(53, "udp", LO)])
    sockets = _open_sockets() - before
    assert len(sockets) == 2
    for fd in sockets:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_invalid_request_values(ports: PortReservations) -> None:
    with pytest.raises(InvalidArgument):
        ports.reserve("c1", [PortRequest(80, "sctp", LO)])
    with pytest.raises(InvalidArgument):
        ports.reserve("c1", [PortRequest(0, "tcp", LO)])
    with pytest.raises(InvalidArgument):
        ports.reserve("c1", [PortRequest(80, "tcp", "not-an-ip")])


def test_restore_rebinds_and_reports_failures(ports: PortReservations) -> None:
    [b1, b2] = ports.reserve("old", [PortRequest(80, "tcp", LO), PortRequest(53, "udp", LO)])
    ports.release("old")  # as if skiffd restarted

    with socket.socket() as foreign:
        foreign.bind((LO, 0))
        taken = PortBinding(81, "tcp", LO, foreign.getsockname()[1])
        failed = ports.restore("c1", [b1, b2, taken])
        assert failed == [taken]
    assert ports.owned("c1") == [b1, b2]
    _assert_port_taken(b1.host_port)
    _assert_port_taken(b2.host_port, socket.SOCK_DGRAM)

    assert ports.restore("c1", [b1]) == []  # already held by the same owner
    assert ports.owned("c1") == [b1, b2]
    assert ports.restore("c2", [b1]) == [b1]  # held by another owner
    assert ports.owned("c2") == [] and ports.owners() == ["c1"]
