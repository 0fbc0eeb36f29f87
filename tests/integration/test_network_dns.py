"""The embedded DNS server on 127.0.0.11:53 inside real network namespaces (root only).

Each test makes its namespaces under /run/skiff-test-dns-<hex>/ and removes them afterwards.
Queries are sent from inside a namespace (a thread that setns-es there, or busybox nslookup
under nsenter); the fake upstream listens on the host's 127.0.0.1, which a namespace cannot
reach by itself, so an answer from it proves the forwarding happens from the host side.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from skiff.errors import RuntimeFailure
from skiff.network import netns
from skiff.network.dns import EmbeddedDNS
from tests.unit.test_dns import EXTERNAL, FakeUpstream

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

WEB = "10.211.0.2"
DB = "10.211.0.3"
VIEWS: dict[str, dict[str, list[str]]] = {
    "c-web": {"db": [DB], "db-alias": [DB]},
    "c-db": {"web": [WEB], "web-alias": [WEB], "0123456789ab": [WEB]},
}


def resolver(container_id: str, name: str) -> list[str] | None:
    return VIEWS.get(container_id, {}).get(name)


@pytest.fixture
def namespaces() -> Iterator[list[Path]]:
    """Two fresh network namespaces (lo up), removed afterwards."""
    base = Path(f"/run/skiff-test-dns-{secrets.token_hex(4)}")
    paths = [base / "ns-a", base / "ns-b"]
    made: list[Path] = []
    try:
        for p in paths:
            netns.create(p)
            made.append(p)
        yield paths
    finally:
        for p in made:
            netns.remove(p)
        shutil.rmtree(base, ignore_errors=True)


def query_in(path: Path, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    """Ask 127.0.0.11 from inside the namespace at ``path`` (blocking; run it off the event loop)."""

    def ask() -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        reply = send(q, "127.0.0.11", timeout=5)
        assert reply.id == q.id
        return reply

    return netns.run_in_netns(path, ask)


async def aquery(path: Path, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    # The server runs on this loop: query from another thread so it can answer.
    return await asyncio.to_thread(query_in, path, name, rdtype, tcp=tcp)


def port_53_state(path: Path) -> tuple[bool, bool]:
    """(TCP answers a connect, UDP port is taken) for 127.0.0.11:53 inside the namespace."""

    def probe() -> tuple[bool, bool]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            tcp_open = s.connect_ex(("127.0.0.11", 53)) == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.11", 53))
                udp_taken = False
            except OSError:
                udp_taken = True
        return tcp_open, udp_taken

    return netns.run_in_netns(path, probe)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def test_containers_resolve_each_other_inside_their_namespaces(namespaces: list[Path]) -> None:
    ns_web, ns_db = namespaces

    async def main() -> None:
        server = EmbeddedDNS(resolver)
        upstream = await FakeUpstream().start()
        try:
            await server.attach("c-web", str(ns_web), [upstream.address])
            await server.attach("c-db", str(ns_db), [upstream.address])
            reply = await aquery(ns_db, "web")
            assert addresses(reply) == [WEB]
            assert reply.answer[0].ttl == 600
            assert addresses(await aquery(ns_db, "WEB-alias.")) == [WEB]
            assert addresses(await aquery(ns_db, "0123456789ab", tcp=True)) == [WEB]
            assert addresses(await aquery(ns_web, "db")) == [DB]
            aaaa = await aquery(ns_db, "web", "AAAA")
            assert aaaa.rcode() == dns.rcode.NOERROR and aaaa.answer == []
            # Each namespace has its own server that knows who asks: c-web does not see "web".
            assert (await aquery(ns_web, "web")).rcode() == dns.rcode.NXDOMAIN
            assert [q.question[0].name.to_text() for _, q in upstream.seen] == ["web."]
        finally:
            await server.close()
            upstream.close()

    asyncio.run(main())


def test_forwarding_reaches_an_upstream_on_the_hosts_loopback(namespaces: list[Path]) -> None:
    ns = namespaces[0]

    async def main() -> None:
        server = EmbeddedDNS(resolver)
        upstream = await FakeUpstream().start()
        try:
            await server.attach("c-web", str(ns), [upstream.address])
            for tcp in (False, True):
                reply = await aquery(ns, "example.test", tcp=tcp)
                assert addresses(reply) == [EXTERNAL]
            assert [t for t, _ in upstream.seen] == ["udp", "tcp"]
            # The namespace itself cannot reach the host's loopback: the answer came through skiffd.
            with pytest.raises(OSError):
                await asyncio.to_thread(
                    netns.run_in_netns,
                    ns,
                    lambda: socket.create_connection(("127.0.0.1", upstream.port), timeout=2).close(),
                )
        finally:
            await server.close()
            upstream.close()

    asyncio.run(main())


def test_dead_upstream_gives_servfail_inside_the_namespace(namespaces: list[Path]) -> None:
    ns = namespaces[0]

    async def main() -> None:
        server = EmbeddedDNS(resolver)
        upstream = await FakeUpstream().start()
        dead = upstream.address
        upstream.close()
        try:
            await server.attach("c-web", str(ns), [dead])
            reply = await aquery(ns, "example.test")
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert reply.flags & dns.flags.RA
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.skipif(
    shutil.which("nsenter") is None or shutil.which("busybox") is None, reason="needs nsenter, busybox"
)
def test_busybox_nslookup_in_the_namespace(namespaces: list[Path]) -> None:
    ns = namespaces[1]

    async def main() -> None:
        server = EmbeddedDNS(resolver)
        upstream = await FakeUpstream().start()
        try:
            await server.attach("c-db", str(ns), [upstream.address])
            proc = await asyncio.create_subprocess_exec(
                "nsenter",
                f"--net={ns}",
                "busybox",
                "nslookup",
                "web",
                "127.0.0.11",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            text = out.decode()
            assert proc.returncode == 0, text
            assert f"Address: {WEB}" in text
        finally:
            await server.close()
            upstream.close()

    asyncio.run(main())


def test_attach_is_idempotent_and_detach_closes_the_port(namespaces: list[Path]) -> None:
    ns = namespaces[0]

    async def main() -> None:
        server = EmbeddedDNS(resolver)
        try:
            assert await asyncio.to_thread(port_53_state, ns) == (False, False)
            # Concurrent attaches of a new container (as a start racing a connect would do), then more.
            await asyncio.gather(*(server.attach("c-web", str(ns), ["127.0.0.1:9"]) for _ in range(3)))
            await server.attach("c-web", str(ns), ["127.0.0.1:9"])
            assert server.attached("c-web")
            assert await asyncio.to_thread(port_53_state, ns) == (True, True)
            assert addresses(await aquery(ns, "db")) == [DB]
            await server.detach("c-web")
            assert not server.attached("c-web")
            assert await asyncio.to_thread(port_53_state, ns) == (False, False)
            # And back again (no TIME_WAIT or stale socket in the way).
            await server.attach("c-web", str(ns), ["127.0.0.1:9"])
            assert addresses(await aquery(ns, "db", tcp=True)) == [DB]
        finally:
            await server.close()
        assert await asyncio.to_thread(port_53_state, ns) == (False, False)

    asyncio.run(main())


def test_attach_to_a_new_namespace_moves_the_server(namespaces: list[Path]) -> None:
    ns_a, ns_b = namespaces

    async def main() -> None:
        server = EmbeddedDNS(resolver)
        try:
            await server.attach("c-web", str(ns_a), ["127.0.0.1:9"])
            await server.attach("c-web", str(ns_b), ["127.0.0.1:9"])
            assert await asyncio.to_thread(port_53_state, ns_a) == (False, False)
            assert addresses(await aquery(ns_b, "db")) == [DB]
        finally:
            await server.close()

    asyncio.run(main())


def test_attach_failures_raise_runtime_failure(namespaces: list[Path]) -> None:
    ns = namespaces[0]

    async def main() -> None:
        server = EmbeddedDNS(resolver)
        try:
            with pytest.raises(RuntimeFailure):
                await server.attach("c-web", str(ns.parent / "missing"), ["127.0.0.1:9"])
            with pytest.raises(RuntimeFailure):
                await server.attach("c-web", str(ns), ["not-an-ip"])
            # Port 53 already taken in the namespace (TCP only, so the UDP bind succeeds first).
            blocker = await asyncio.to_thread(netns.run_in_netns, ns, _listen_tcp_53)
            try:
                with pytest.raises(RuntimeFailure, match="cannot bind"):
                    await server.attach("c-web", str(ns), ["127.0.0.1:9"])
                assert not server.attached("c-web")
            finally:
                blocker.close()
            # Nothing half-made was left behind: the UDP socket of the failed attach is closed.
            assert await asyncio.to_thread(port_53_state, ns) == (False, False)
        finally:
            await server.close()

    asyncio.run(main())


def _listen_tcp_53() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.11", 53))
    s.listen(1)
    return s
