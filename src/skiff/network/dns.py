"""skiff's embedded DNS server: Docker's ``127.0.0.11`` on user-defined networks.

Each container on a user-defined network gets ``nameserver 127.0.0.11`` in its resolv.conf.
:meth:`EmbeddedDNS.attach` opens a UDP and a TCP socket bound to ``127.0.0.11:53`` *inside* the
container's network namespace (a short-lived thread ``setns``-es there, binds, and hands the
sockets back; a socket stays in the namespace it was made in) and serves both from skiffd's
event loop. Every container has its own pair of sockets, so the server always knows who asks.

What it answers, as Docker's embedded DNS does:

- A for a name the resolver callback knows (container name, network alias, short id on a
  network shared with the asking container): the IPv4 addresses, TTL 600, in random order (an
  alias shared by several containers is DNS round robin, as in Docker).
- Any other type for a known name (AAAA in practice): an empty NOERROR answer, so musl and
  glibc do not take the name for nonexistent (IPv6 addresses are not published in DNS yet).
- PTR for a container address, when a reverse callback is given and knows the address.
- Everything else is forwarded, raw, to the upstream servers: the container's ``--dns``
  servers, else the host's resolv.conf nameservers (at most three, as Docker; with none, the
  host's own libc default ``127.0.0.1``). UDP queries go out over UDP and TCP over TCP, from
  the host's namespace, so loopback resolvers such as systemd-resolved's 127.0.0.53 work. Each
  upstream gets 2 s; a timeout, a refused connection, SERVFAIL or REFUSED moves on to the next;
  when all fail the answer is SERVFAIL. The reply's bytes go back unchanged (same query id).

Deviations from Docker:

- Docker binds random ports in the namespace and DNATs ``127.0.0.11:53`` to them with
  iptables rules in the container's namespace; skiff binds ``127.0.0.11:53`` directly, which
  needs no iptables at all (port 53 inside the container's own namespace is free).
- Docker resolves ``name.network`` too; here that is up to the resolver callback. Names are
  matched exactly (lowercase, without the trailing dot); search domains are not stripped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from skiff.errors import RuntimeFailure
from skiff.network.netns import run_in_netns

log = logging.getLogger("skiff.network.dns")

Resolver = Callable[[str, str], list[str] | None]
"""``resolver(container_id, name)`` -> IPv4 addresses if ``name`` (lowercase, no trailing dot) is a
container visible to that container, else None (the query is forwarded). Cheap and synchronous."""

ReverseResolver = Callable[[str, str], str | None]
"""``reverse(container_id, ipv4)`` -> the name to answer a PTR query with, or None (forward it)."""

DNS_ADDRESS = "127.0.0.11"
DNS_PORT = 53
TTL = 600
UPSTREAM_TIMEOUT = 2.0
MAX_UPSTREAMS = 3  # Docker's maxExtDNS, glibc's MAXNS
MAX_INFLIGHT = 100  # forwarded queries per container at once (Docker's maxConcurrent)
TCP_IDLE = 10.0  # seconds a client's TCP connection may sit idle between queries
_OUR_PAYLOAD = 1232  # EDNS buffer size we advertise (DNS flag day 2020)


@dataclass(frozen=True)
class Upstream:
    """A server queries are forwarded to."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """``"ip"``, ``"ip:port"``, ``"v6"`` or ``"[v6]:port"`` -> Upstream; RuntimeFailure if it is neither."""
    host, port = text.strip(), 53
    try:
        if host.startswith("["):
            host, _, rest = host[1:].partition("]")
            if rest:
                port = int(rest.removeprefix(":"))
        elif host.count(":") == 1:
            host, _, p = host.partition(":")
            port = int(p)
        ipaddress.ip_address(host)
    except ValueError:
        raise RuntimeFailure(f"invalid DNS server address {text!r}: want ip or ip:port") from None
    if not 0 < port < 65536:
        raise RuntimeFailure(f"invalid DNS server address {text!r}: port out of range")
    return Upstream(host, port)


def host_nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[Upstream]:
    """The host's nameservers (the first three, as libc uses them); ``127.0.0.1`` if it lists none."""
    servers: list[Upstream] = []
    try:
        text = resolv_conf.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append(Upstream(str(ipaddress.ip_address(fields[1])), 53))
            except ValueError:
                continue
    return servers[:MAX_UPSTREAMS] or [Upstream("127.0.0.1", 53)]


def bind_sockets(address: str = DNS_ADDRESS, port: int = DNS_PORT) -> tuple[socket.socket, socket.socket]:
    """A bound UDP socket and a listening TCP socket on ``address:port`` in the calling thread's netns."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind((address, port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # A re-attach must not fail on connections of the last server still in TIME_WAIT.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((address, port))
            tcp.listen(64)
        except BaseException:
            tcp.close()
            raise
    except BaseException:
        udp.close()
        raise
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


class EmbeddedDNS:
    """The embedded DNS servers of all containers, served from one event loop.

    ``resolver`` decides which names are local; ``reverse`` (optional) answers PTR queries for
    container addresses. ``resolv_conf`` and ``timeout`` exist for tests.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        reverse: ReverseResolver | None = None,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        timeout: float = UPSTREAM_TIMEOUT,
    ) -> None:
        self.resolver = resolver
        self.reverse = reverse
        self.resolv_conf = resolv_conf
        self.timeout = timeout
        self._servers: dict[str, _Server] = {}
        # One lock per container id while an attach or detach of it runs (gone when unused).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, container_id: str) -> asyncio.Lock:
        lock = self._locks.get(container_id)
        if lock is None:
            lock = self._locks[container_id] = asyncio.Lock()
        return lock

    def attached(self, container_id: str) -> bool:
        """True if a server for ``container_id`` is running."""
        return container_id in self._servers

    async def attach(self, container_id: str, netns_path: str, upstreams: Sequence[str] = ()) -> None:
        """Open a UDP and a TCP socket bound to 127.0.0.11:53 *inside* the netns at netns_path and serve them.

        upstreams: "ip" or "ip:port" strings; empty -> the host's resolv.conf nameservers.
        Idempotent (attach twice = once). Raises skiff.errors.RuntimeFailure on failure.
        """
        servers = [parse_upstream(u) for u in upstreams][:MAX_UPSTREAMS] or host_nameservers(self.resolv_conf)
        async with self._lock(container_id):
            current = self._servers.get(container_id)
            if current is not None and current.netns_path == str(netns_path):
                current.upstreams = servers
                return
            if current is not None:  # the container has a new namespace: move
                await self._stop(container_id)
            try:
                # Binding takes a fraction of a millisecond; the thread's join is all that blocks.
                udp, tcp = run_in_netns(netns_path, bind_sockets)
            except OSError as e:
                raise RuntimeFailure(
                    f"embedded DNS for {container_id[:12]}: cannot bind {DNS_ADDRESS}:{DNS_PORT} "
                    f"in {netns_path}: {e.strerror or e}"
                ) from e
            await self._start(container_id, udp, tcp, servers, str(netns_path))

    async def serve(
        self,
        container_id: str,
        udp: socket.socket,
        tcp: socket.socket,
        upstreams: Sequence[str] = (),
    ) -> None:
        """Serve already bound sockets for ``container_id`` (the seam tests use: any netns, any port).

        ``tcp`` must be bound; it is put into listening state if it is not. Ownership of both
        sockets passes to the server.
        """
        servers = [parse_upstream(u) for u in upstreams][:MAX_UPSTREAMS] or host_nameservers(self.resolv_conf)
        async with self._lock(container_id):
            await self._stop(container_id)
            await self._start(container_id, udp, tcp, servers, "")

    async def detach(self, container_id: str) -> None:
        """Close its sockets; unknown id is fine."""
        async with self._lock(container_id):
            await self._stop(container_id)

    async def close(self) -> None:
        """Detach everything."""
        for cid in list(self._servers):
            await self.detach(cid)

    async def answer(self, container_id: str, wire: bytes, *, tcp: bool = False) -> bytes | None:
        """The reply to one DNS message from ``container_id`` (None: no reply), as its server sends it."""
        server = self._servers.get(container_id)
        if server is None:
            raise RuntimeFailure(f"no embedded DNS server for {container_id[:12]}")
        return await server.answer(wire, tcp)

    async def _start(
        self, cid: str, udp: socket.socket, tcp: socket.socket, upstreams: list[Upstream], netns_path: str
    ) -> None:
        server = _Server(self, cid, upstreams, netns_path)
        loop = asyncio.get_running_loop()
        try:
            udp.setblocking(False)
            tcp.setblocking(False)
            transport, protocol = await loop.create_datagram_endpoint(lambda: _UDPProtocol(server), sock=udp)
            server.udp, server.udp_protocol = transport, protocol
            server.tcp = await asyncio.start_server(server.serve_tcp_connection, sock=tcp)
        except BaseException as e:
            await server.stop()
            udp.close()
            tcp.close()
            if isinstance(e, OSError):
                raise RuntimeFailure(f"embedded DNS for {cid[:12]}: {e}") from e
            raise
        self._servers[cid] = server

    async def _stop(self, cid: str) -> None:
        server = self._servers.pop(cid, None)
        if server is not None:
            await server.stop()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        # The transport closes its socket one loop turn after close(); stop() waits for that so a
        # detach really frees the port when it returns.
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to clients that went away; nothing to do.
        pass


class _Server:
    """One container's server: its sockets, upstreams and in-flight work."""

    def __init__(self, owner: EmbeddedDNS, cid: str, upstreams: list[Upstream], netns_path: str) -> None:
        self.owner = owner
        self.cid = cid
        self.upstreams = upstreams
        self.netns_path = netns_path
        self.udp: asyncio.DatagramTransport | None = None
        self.udp_protocol: _UDPProtocol | None = None
        self.tcp: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.inflight = 0

    async def stop(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()  # closes the listening socket at once
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.tcp is not None:
            await self.tcp.wait_closed()
        if self.udp_protocol is not None:
            await self.udp_protocol.closed

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- serving -----------------------------------------------------------------------------

    def on_datagram(self, wire: bytes, addr: tuple[str | Any, int]) -> None:
        reply, query = self.decide(wire, tcp=False)
        if reply is not None:
            self._send_udp(reply, addr)
        elif query is not None:
            self._spawn(self._forward_udp(query, wire, addr))

    async def _forward_udp(
        self, query: dns.message.Message, wire: bytes, addr: tuple[str | Any, int]
    ) -> None:
        self._send_udp(await self.forward(query, wire, tcp=False), addr)

    def _send_udp(self, reply: bytes, addr: tuple[str | Any, int]) -> None:
        if self.udp is not None and not self.udp.is_closing():
            self.udp.sendto(reply, addr)

    async def serve_tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                reply = await self.answer(wire, tcp=True)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            if task is not None:
                self.tasks.discard(task)

    async def answer(self, wire: bytes, tcp: bool) -> bytes | None:
        reply, query = self.decide(wire, tcp)
        if reply is None and query is not None:
            reply = await self.forward(query, wire, tcp)
        return reply

    # -- answering ---------------------------------------------------------------------------

    def decide(self, wire: bytes, tcp: bool) -> tuple[bytes | None, dns.message.Message | None]:
        """``(reply, None)``: answer now; ``(None, query)``: forward it; ``(None, None)``: drop it."""
        if len(wire) < 12 or wire[2] & 0x80:  # no header, or a response: never answer those
            return None, None
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            bare = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
            bare.flags = dns.flags.QR | dns.flags.RA
            bare.set_rcode(dns.rcode.FORMERR)
            return bare.to_wire(), None
        if query.opcode() != dns.opcode.QUERY:
            return self._error(query, dns.rcode.NOTIMP), None
        if len(query.question) == 1 and query.question[0].rdclass == dns.rdataclass.IN:
            try:
                local = self._local(query, tcp)
            except Exception as e:
                log.warning(
                    "embedded DNS for %s: resolving %s failed: %s", self.cid[:12], query.question[0].name, e
                )
                return self._error(query, dns.rcode.SERVFAIL), None
            if local is not None:
                return local, None
        return None, query

    def _local(self, query: dns.message.Message, tcp: bool) -> bytes | None:
        """The answer if the question is about a container, else None."""
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        if qtype == dns.rdatatype.PTR:
            return self._local_ptr(query, tcp)
        name = qname.to_text(omit_final_dot=True).lower()
        if not name or name == ".":
            return None
        addresses = self.owner.resolver(self.cid, name)
        if addresses is None:
            return None
        response = dns.message.make_response(query, recursion_available=True, our_payload=_OUR_PAYLOAD)
        if qtype == dns.rdatatype.A and addresses:
            # dnspython shuffles an RRset's records when it renders them: round robin, as Docker.
            response.answer.append(dns.rrset.from_text_list(qname, TTL, "IN", "A", addresses))
        return _render(response, query, tcp)

    def _local_ptr(self, query: dns.message.Message, tcp: bool) -> bytes | None:
        if self.owner.reverse is None:
            return None
        qname = query.question[0].name
        try:
            address = dns.reversename.to_address(qname)
        except (dns.exception.DNSException, ValueError):
            return None
        if ":" in address:
            return None
        target = self.owner.reverse(self.cid, address)
        if target is None:
            return None
        response = dns.message.make_response(query, recursion_available=True, our_payload=_OUR_PAYLOAD)
        response.answer.append(dns.rrset.from_text_list(qname, TTL, "IN", "PTR", [target.rstrip(".") + "."]))
        return _render(response, query, tcp)

    def _error(self, query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
        response = dns.message.make_response(query, recursion_available=True, our_payload=_OUR_PAYLOAD)
        response.set_rcode(rcode)
        return _render(response, query, tcp=True)

    # -- forwarding --------------------------------------------------------------------------

    async def forward(self, query: dns.message.Message, wire: bytes, tcp: bool) -> bytes:
        """The first usable upstream reply to ``wire`` (unchanged bytes), else SERVFAIL."""
        if self.inflight >= MAX_INFLIGHT:
            log.warning("embedded DNS for %s: more than %d queries in flight", self.cid[:12], MAX_INFLIGHT)
            return self._error(query, dns.rcode.SERVFAIL)
        self.inflight += 1
        try:
            for upstream in list(self.upstreams):
                exchange = _exchange_tcp if tcp else _exchange_udp
                try:
                    async with asyncio.timeout(self.owner.timeout):
                        reply, rcode = await exchange(upstream, query, wire)
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
                    log.debug("embedded DNS for %s: upstream %s: %r", self.cid[:12], upstream, e)
                    continue
                if rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                    log.debug("embedded DNS for %s: upstream %s said %s", self.cid[:12], upstream, rcode.name)
                    continue
                return reply
            return self._error(query, dns.rcode.SERVFAIL)
        finally:
            self.inflight -= 1


def _render(response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
    """Wire form within the client's limit (512, or its EDNS size over UDP); TC set if it does not fit."""
    limit = 65535 if tcp else max(512, query.payload) if query.edns >= 0 else 512
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer = []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def _match(query: dns.message.Message, data: bytes) -> dns.rcode.Rcode | None:
    """The reply's rcode if ``data`` answers ``query``, else None (ignore it)."""
    try:
        reply = dns.message.from_wire(data, question_only=True)
    except Exception:
        return None
    return reply.rcode() if query.is_response(reply) else None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def _exchange_udp(
    upstream: Upstream, query: dns.message.Message, wire: bytes
) -> tuple[bytes, dns.rcode.Rcode]:
    # A fresh connected socket per query: a random source port, and the kernel drops datagrams
    # from any other address; a refused port shows up as ConnectionRefusedError at once.
    loop = asyncio.get_running_loop()
    with socket.socket(_family(upstream.host), socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (upstream.host, upstream.port))
        await loop.sock_sendall(sock, wire)
        while True:
            data = await loop.sock_recv(sock, 65535)
            rcode = _match(query, data)
            if rcode is not None:
                return data, rcode


async def _exchange_tcp(
    upstream: Upstream, query: dns.message.Message, wire: bytes
) -> tuple[bytes, dns.rcode.Rcode]:
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        while True:
            size = int.from_bytes(await reader.readexactly(2), "big")
            data = await reader.readexactly(size)
            rcode = _match(query, data)
            if rcode is not None:
                return data, rcode
    finally:
        writer.close()
