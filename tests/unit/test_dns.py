"""The embedded DNS server's message handling, served on 127.0.0.1 in the test's own namespace.

``EmbeddedDNS.serve`` takes already bound sockets, so these tests need no root and no network
namespace; the upstream is a fake DNS server in the same process, on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from skiff.errors import RuntimeFailure
from skiff.network import dns as skiffdns
from skiff.network.dns import EmbeddedDNS, Upstream, host_nameservers, parse_upstream

T = TypeVar("T")

WEB = "10.210.0.2"
WEB_ID = "0123456789ab" + "c" * 52
DB = "10.210.0.3"
EXTERNAL = "192.0.2.7"  # what the fake upstream answers for example.test

# Who sees what: "asker" shares a network with web and db; "loner" shares none.
TABLE: dict[str, dict[str, list[str]]] = {
    "asker": {
        "web": [WEB],
        "web-alias": [WEB],
        WEB_ID[:12]: [WEB],
        "db": [DB],
        "pool": [WEB, DB],
        "many": [f"10.210.1.{i}" for i in range(1, 101)],
        "web.skiffnet": [WEB],
    },
    "loner": {},
}


class FakeResolver:
    """The engine's resolver callback over TABLE, recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, container_id: str, name: str) -> list[str] | None:
        self.calls.append((container_id, name))
        if name == "explode":
            raise RuntimeError("resolver bug")
        return TABLE.get(container_id, {}).get(name)


class FakeUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP, one port): example.test -> EXTERNAL, else NXDOMAIN.

    mode "servfail" answers SERVFAIL to everything, "silent" never answers.
    """

    def __init__(self, mode: str = "answer") -> None:
        self.mode = mode
        self.seen: list[tuple[str, dns.message.Message]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def reply(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        self.seen.append((transport, query))
        if self.mode == "silent":
            return None
        response = dns.message.make_response(query)
        if self.mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif query.question[0].name == dns.name.from_text("example.test") and query.question[0].rdtype == 1:
            response.answer.append(dns.rrset.from_text(query.question[0].name, 30, "IN", "A", EXTERNAL))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = _socket_pair()
        self.port = udp_sock.getsockname()[1]
        upstream = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                out = upstream.reply(data, "udp")
                if out is not None:
                    self.transport.sendto(out, addr)

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    out = upstream.reply(await reader.readexactly(size), "tcp")
                    if out is None:
                        await asyncio.sleep(3600)
                        continue
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        self._udp, _ = await loop.create_datagram_endpoint(Proto, sock=udp_sock)
        self._tcp = await asyncio.start_server(on_tcp, sock=tcp_sock)
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free port on 127.0.0.1."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise RuntimeError("no free port pair")


def _dead_address() -> str:
    """127.0.0.1:<port> where nothing listens (UDP and TCP)."""
    udp, tcp = _socket_pair()
    port = udp.getsockname()[1]
    udp.close()
    tcp.close()
    return f"127.0.0.1:{port}"


class Harness:
    """An EmbeddedDNS serving container ``cid`` on a loopback port."""

    def __init__(self, server: EmbeddedDNS, resolver: FakeResolver) -> None:
        self.server = server
        self.resolver = resolver
        self.ports: dict[str, int] = {}

    async def add(self, cid: str, upstreams: list[str]) -> int:
        udp, tcp = _socket_pair()
        self.ports[cid] = udp.getsockname()[1]
        await self.server.serve(cid, udp, tcp, upstreams)
        return self.ports[cid]

    async def query(
        self, name: str, rdtype: str = "A", *, cid: str = "asker", tcp: bool = False, **kw: Any
    ) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kw)
        send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
        return await send(q, "127.0.0.1", timeout=5, port=self.ports[cid])


def run(
    scenario: Callable[[Harness], Awaitable[T]],
    upstreams: list[str] | None = None,
    *,
    timeout: float = 2.0,
    reverse: Callable[[str, str], str | None] | None = None,
) -> T:
    async def main() -> T:
        resolver = FakeResolver()
        server = EmbeddedDNS(resolver, reverse=reverse, timeout=timeout, resolv_conf=Path("/nonexistent"))
        h = Harness(server, resolver)
        try:
            await h.add("asker", upstreams or [_dead_address()])
            return await asyncio.wait_for(scenario(h), 20)
        finally:
            await server.close()

    return asyncio.run(main())


def with_upstreams(
    modes: list[str], scenario: Callable[[Harness, list[FakeUpstream]], Awaitable[T]], **kw: Any
) -> T:
    """Run ``scenario`` with fake upstreams (a mode each, or "dead" for a closed port), in that order."""

    async def main() -> T:
        fakes = [await FakeUpstream(m).start() for m in modes if m != "dead"]
        it = iter(fakes)
        addresses = [_dead_address() if m == "dead" else next(it).address for m in modes]
        try:
            resolver = FakeResolver()
            server = EmbeddedDNS(resolver, resolv_conf=Path("/nonexistent"), **kw)
            h = Harness(server, resolver)
            try:
                await h.add("asker", addresses)
                return await asyncio.wait_for(scenario(h, fakes), 20)
            finally:
                await server.close()
        finally:
            for f in fakes:
                f.close()

    return asyncio.run(main())


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


# -- local names ----------------------------------------------------------------------------------


def test_container_name_resolves_to_its_address_with_dockers_ttl() -> None:
    async def scenario(h: Harness) -> None:
        reply = await h.query("web")
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == [WEB]
        assert reply.answer[0].ttl == 600
        assert reply.answer[0].name == dns.name.from_text("web")
        assert reply.flags & dns.flags.RA
        assert h.resolver.calls == [("asker", "web")]

    run(scenario)


def test_alias_and_short_id_resolve() -> None:
    async def scenario(h: Harness) -> None:
        assert addresses(await h.query("web-alias")) == [WEB]
        assert addresses(await h.query(WEB_ID[:12])) == [WEB]
        assert addresses(await h.query("db")) == [DB]

    run(scenario)


def test_alias_of_several_containers_answers_all_their_addresses() -> None:
    async def scenario(h: Harness) -> None:
        seen_orders = set()
        for _ in range(30):
            found = addresses(await h.query("pool"))
            assert sorted(found) == sorted([WEB, DB])
            seen_orders.add(tuple(found))
        assert len(seen_orders) == 2  # shuffled, as Docker does (round robin)

    run(scenario)


def test_names_are_case_insensitive_and_the_trailing_dot_is_ignored() -> None:
    async def scenario(h: Harness) -> None:
        reply = await h.query("WeB.")
        assert addresses(reply) == [WEB]
        # The answer's owner name is the question's, as asked (resolvers doing 0x20 compare it).
        assert reply.answer[0].name.to_text() == "WeB."
        reply = await h.query("Web.SkiffNet")
        assert addresses(reply) == [WEB]
        assert h.resolver.calls == [("asker", "web"), ("asker", "web.skiffnet")]

    run(scenario)


def test_aaaa_for_a_known_name_is_an_empty_noerror_answer() -> None:
    async def scenario(h: Harness) -> None:
        reply = await h.query("web", "AAAA")
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer == []

    run(scenario)


def test_names_are_looked_up_for_the_asking_container() -> None:
    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        await h.add("loner", [fakes[0].address])
        reply = await h.query("web", cid="loner")
        assert ("loner", "web") in h.resolver.calls
        # Not a container it can see: forwarded, and the upstream does not know it.
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert [q.question[0].name.to_text() for _, q in fakes[0].seen] == ["web."]
        assert addresses(await h.query("web", cid="asker")) == [WEB]

    with_upstreams(["answer"], scenario)


def test_big_answer_over_udp_is_truncated_and_complete_over_tcp() -> None:
    async def scenario(h: Harness) -> None:
        reply = await h.query("many")
        assert reply.flags & dns.flags.TC
        assert reply.answer == []
        reply = await h.query("many", tcp=True)
        assert not reply.flags & dns.flags.TC
        assert len(addresses(reply)) == 100
        # With a big enough EDNS buffer it fits in one datagram.
        reply = await h.query("many", use_edns=0, payload=4096)
        assert not reply.flags & dns.flags.TC
        assert len(addresses(reply)) == 100

    run(scenario)


def test_tcp_serves_several_queries_on_one_connection() -> None:
    async def scenario(h: Harness) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.ports["asker"])
        try:
            for name, want in (("web", WEB), ("db", DB), ("web-alias", WEB)):
                q = dns.message.make_query(name, "A")
                wire = q.to_wire()
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = dns.message.from_wire(await reader.readexactly(size))
                assert reply.id == q.id
                assert addresses(reply) == [want]
        finally:
            writer.close()

    run(scenario)


def test_ptr_for_a_container_address_uses_the_reverse_callback() -> None:
    names = {WEB: "web.skiffnet"}

    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        reply = await h.query(dns.reversename.from_address(WEB), "PTR")
        assert [rd.to_text() for rd in reply.answer[0]] == ["web.skiffnet."]
        assert fakes[0].seen == []
        reply = await h.query(dns.reversename.from_address("10.210.9.9"), "PTR")
        assert reply.rcode() == dns.rcode.NXDOMAIN  # not a container: the upstream's answer
        assert len(fakes[0].seen) == 1

    with_upstreams(["answer"], scenario, reverse=lambda cid, ip: names.get(ip) if cid == "asker" else None)


# -- errors ---------------------------------------------------------------------------------------


def test_malformed_query_gets_formerr_with_its_id_and_responses_are_ignored() -> None:
    async def scenario(h: Harness) -> None:
        junk = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03we"  # question cut short
        reply = dns.message.from_wire(await _must(h.server.answer("asker", junk)))
        assert reply.id == 0x1234
        assert reply.rcode() == dns.rcode.FORMERR
        response = dns.message.make_response(dns.message.make_query("web", "A")).to_wire()
        assert await h.server.answer("asker", response) is None
        assert await h.server.answer("asker", b"\x00\x01") is None

    run(scenario)


def test_a_failing_resolver_gives_servfail() -> None:
    async def scenario(h: Harness) -> None:
        reply = await h.query("explode")
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert addresses(await h.query("web")) == [WEB]  # and the server keeps serving

    run(scenario)


def test_answer_for_an_unknown_container_raises() -> None:
    async def scenario(h: Harness) -> None:
        with pytest.raises(RuntimeFailure):
            await h.server.answer("nobody", dns.message.make_query("web", "A").to_wire())

    run(scenario)


# -- forwarding -----------------------------------------------------------------------------------


def test_other_names_are_forwarded_over_udp_keeping_the_query_id() -> None:
    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        q = dns.message.make_query("example.test", "A")
        q.id = 0xBEEF
        reply = await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=h.ports["asker"])
        assert reply.id == 0xBEEF
        assert addresses(reply) == [EXTERNAL]
        assert [(t, m.id) for t, m in fakes[0].seen] == [("udp", 0xBEEF)]

    with_upstreams(["answer"], scenario)


def test_tcp_queries_are_forwarded_over_tcp() -> None:
    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        reply = await h.query("example.test", tcp=True)
        assert addresses(reply) == [EXTERNAL]
        assert [t for t, _ in fakes[0].seen] == ["tcp"]

    with_upstreams(["answer"], scenario)


def test_aaaa_for_an_unknown_name_is_forwarded() -> None:
    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        reply = await h.query("nosuch.test", "AAAA")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert [m.question[0].rdtype for _, m in fakes[0].seen] == [dns.rdatatype.AAAA]

    with_upstreams(["answer"], scenario)


def test_dead_and_failing_upstreams_are_skipped() -> None:
    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        for tcp in (False, True):
            reply = await h.query("example.test", tcp=tcp)
            assert addresses(reply) == [EXTERNAL]
        servfail, good = fakes
        assert len(servfail.seen) == 2 and len(good.seen) == 2

    with_upstreams(["dead", "servfail", "answer"], scenario)


def test_all_upstreams_dead_gives_servfail() -> None:
    async def scenario(h: Harness) -> None:
        for tcp in (False, True):
            reply = await h.query("example.test", tcp=tcp)
            assert reply.rcode() == dns.rcode.SERVFAIL

    run(scenario, [_dead_address(), _dead_address()])


def test_silent_upstream_times_out_then_servfail() -> None:
    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        for tcp in (False, True):
            start = time.monotonic()
            reply = await h.query("example.test", tcp=tcp)
            elapsed = time.monotonic() - start
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert 0.3 <= elapsed < 3  # two upstreams x 0.2 s
        assert len(fakes[0].seen) == 2 and len(fakes[1].seen) == 2

    with_upstreams(["silent", "silent"], scenario, timeout=0.2)


def test_too_many_queries_in_flight_are_refused_with_servfail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(skiffdns, "MAX_INFLIGHT", 2)

    async def scenario(h: Harness, fakes: list[FakeUpstream]) -> None:
        slow = [asyncio.create_task(h.query(f"slow{i}.test")) for i in range(2)]
        while len(fakes[0].seen) < 2:
            await asyncio.sleep(0.01)
        start = time.monotonic()
        reply = await h.query("third.test")
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert time.monotonic() - start < 0.5  # refused at once, not after the timeout
        assert len(fakes[0].seen) == 2
        for t in slow:
            assert (await t).rcode() == dns.rcode.SERVFAIL

    with_upstreams(["silent"], scenario, timeout=1.0)


# -- lifecycle ------------------------------------------------------------------------------------


def test_detach_closes_the_sockets_and_unknown_ids_are_fine() -> None:
    async def scenario(h: Harness) -> None:
        port = h.ports["asker"]
        assert h.server.attached("asker")
        await h.server.detach("asker")
        # Both ports are free the moment detach returns (no loop turn in between): a new
        # server can bind them at once.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        await h.server.detach("asker")
        await h.server.detach("never-attached")
        assert not h.server.attached("asker")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    run(scenario)


def test_close_detaches_everything() -> None:
    async def main() -> None:
        server = EmbeddedDNS(FakeResolver(), resolv_conf=Path("/nonexistent"))
        h = Harness(server, FakeResolver())
        await h.add("asker", [_dead_address()])
        await h.add("loner", [_dead_address()])
        await server.close()
        assert not server.attached("asker") and not server.attached("loner")
        for port in h.ports.values():
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)

    asyncio.run(main())


# -- upstream lists ---------------------------------------------------------------------------------


def test_parse_upstream() -> None:
    assert parse_upstream("10.210.0.1") == Upstream("10.210.0.1", 53)
    assert parse_upstream("127.0.0.1:5353") == Upstream("127.0.0.1", 5353)
    assert parse_upstream("::1") == Upstream("::1", 53)
    assert parse_upstream("[::1]:5353") == Upstream("::1", 5353)
    assert str(Upstream("::1", 5353)) == "[::1]:5353"
    for bad in ("dns.example", "1.2.3.4:x", "1.2.3.4:0", "1.2.3.4:70000", ""):
        with pytest.raises(RuntimeFailure):
            parse_upstream(bad)


def test_host_nameservers_reads_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# generated\nsearch example.test\nnameserver 127.0.0.53\n; comment\n"
        "nameserver bogus\nnameserver fd00::1\nnameserver 10.210.0.1\nnameserver 10.210.0.2\n"
        "options edns0\n"
    )
    assert host_nameservers(conf) == [
        Upstream("127.0.0.53", 53),
        Upstream("fd00::1", 53),
        Upstream("10.210.0.1", 53),
    ]
    conf.write_text("search example.test\n")
    assert host_nameservers(conf) == [Upstream("127.0.0.1", 53)]  # libc's default
    assert host_nameservers(tmp_path / "missing") == [Upstream("127.0.0.1", 53)]


async def _must(value: Awaitable[bytes | None]) -> bytes:
    out = await value
    assert out is not None
    return out
