"""TLS for skiffd's TCP listeners: an asyncio protocol over a plain socket transport.

Why not ``loop.create_server(ssl=...)``: asyncio's TLS transport cannot half-close. When the
client ends its side (a ``close_notify`` alert or a TCP FIN) it shuts the whole connection down,
whatever the protocol's ``eof_received`` answers (CPython logs "returning true from
eof_received() has no effect when using ssl"). Docker clients end their side of a hijacked
attach or exec when stdin reaches EOF -- the docker CLI with ``close_notify``, docker-py with
``shutdown(SHUT_WR)`` -- and then keep reading the container's output. So skiffd terminates TLS
itself, with an :class:`ssl.SSLObject` over memory BIOs: after the client's EOF our write side
stays open, exactly as on a unix socket.

The same protocol answers a plain-HTTP request on the TLS port the way Go's server (so dockerd)
does, with a 400 that the docker CLI prints, rather than a bare handshake failure.

    server = await loop.create_server(lambda: TLSServerProtocol(context, runner.server), host, port)
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("skiffd.tls")

# What net/http writes to a plain-HTTP client on a TLS port; the docker CLI shows the body as
# "Error response from daemon: Client sent an HTTP request to an HTTPS server."
PLAIN_HTTP_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
_HANDSHAKE_RECORD = 0x16  # the first byte of every TLS ClientHello
HANDSHAKE_TIMEOUT = 30.0
_READ_SIZE = 256 * 1024


def server_context(cert: str, key: str, ca: str | None, verify_clients: bool) -> ssl.SSLContext:
    """dockerd's server settings: TLS 1.2+, and with ``verify_clients`` a client certificate
    signed by ``ca`` (only that CA, never the system's) is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if verify_clients:
        if ca is None:
            raise ValueError("verifying clients needs a CA certificate")
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca)
    return context


class TLSServerProtocol(asyncio.Protocol):
    """One accepted TCP connection: the handshake, then decrypted bytes to the app's protocol.

    The app protocol (aiohttp's request handler, later a hijacked stream) sees a
    :class:`TLSTransport`. A client EOF reaches it as ``eof_received``; if that returns true the
    connection stays open for our writes until the app closes the transport.
    """

    def __init__(self, context: ssl.SSLContext, app_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._context = context
        self._app_factory = app_factory
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.raw: asyncio.Transport | None = None
        self.app: asyncio.Protocol | None = None
        self.transport: TLSTransport | None = None
        self.reading_paused = False
        self._first_bytes = True
        self._peer_eof = False
        self._timeout: asyncio.TimerHandle | None = None

    # -- the socket side -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        self._timeout = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        assert self.raw is not None
        if self._first_bytes:
            self._first_bytes = False
            if data and data[0] != _HANDSHAKE_RECORD:
                log.info("plain HTTP on the TLS port from %s: answered 400", self._peer())
                self.raw.write(PLAIN_HTTP_ANSWER)
                self.raw.close()
                return
        self._incoming.write(data)
        if self.app is None:
            self._handshake()
        else:
            self.read_app_data()

    def eof_received(self) -> bool:
        if self.app is None:
            return False  # EOF during the handshake: close
        self.read_app_data()
        self._app_eof()
        return True  # the raw transport stays open; the app (or _app_eof) decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
        if self.transport is not None:
            self.transport.closing = True
        if self.app is not None:
            app, self.app = self.app, None
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # -- TLS -------------------------------------------------------------------------------

    def _handshake(self) -> None:
        assert self.raw is not None
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self.flush()
            return
        except (ssl.SSLError, OSError) as exc:
            self.flush()  # the alert tells the client why
            log.info("TLS handshake with %s failed: %s", self._peer(), _reason(exc))
            self.raw.close()
            return
        self.flush()
        if self._timeout is not None:
            self._timeout.cancel()
        self.transport = TLSTransport(self)
        app = self._app_factory()
        assert isinstance(app, asyncio.Protocol)
        self.app = app
        app.connection_made(self.transport)
        self.read_app_data()  # application data that came with the handshake's last flight

    def read_app_data(self) -> None:
        """Hand every decrypted byte to the app protocol (which may change under us: hijack)."""
        while self.app is not None and not self.reading_paused and not self._peer_eof:
            try:
                chunk = self.sslobj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError as exc:
                log.info("TLS error from %s: %s", self._peer(), _reason(exc))
                if self.raw is not None:
                    self.raw.abort()
                return
            if not chunk:  # close_notify: the client has ended its side
                self.flush()
                self._app_eof()
                return
            self.app.data_received(chunk)
        self.flush()  # TLS 1.3 key updates and session tickets write too

    def _app_eof(self) -> None:
        if self._peer_eof or self.app is None:
            return
        self._peer_eof = True
        if not self.app.eof_received() and self.transport is not None:
            self.transport.close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self.sslobj.write(view) :]
        except ssl.SSLError as exc:
            log.info("TLS error writing to %s: %s", self._peer(), _reason(exc))
            if self.raw is not None:
                self.raw.abort()
            return
        self.flush()

    def flush(self) -> None:
        data = self._outgoing.read()
        if data and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)

    def close(self) -> None:
        """Send close_notify, then close the socket once what we wrote has gone out."""
        try:
            self.sslobj.unwrap()
        except (ssl.SSLError, OSError):
            pass  # want-read (we do not wait for the client's alert) or a broken session
        self.flush()
        if self.raw is not None:
            self.raw.close()

    def _handshake_timed_out(self) -> None:
        if self.app is None and self.raw is not None:
            log.info("TLS handshake with %s timed out", self._peer())
            self.raw.abort()

    def _peer(self) -> str:
        peer = self.raw.get_extra_info("peername") if self.raw is not None else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


class TLSTransport(asyncio.Transport):
    """What the app protocol writes to: plain bytes in, TLS records out on the socket."""

    def __init__(self, conn: TLSServerProtocol) -> None:
        super().__init__()
        self._conn = conn
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._conn.sslobj.context
        if name == "ssl_object":
            return self._conn.sslobj
        if name == "peercert":
            return self._conn.sslobj.getpeercert()
        if name == "cipher":
            return self._conn.sslobj.cipher()
        raw = self._conn.raw
        return raw.get_extra_info(name, default) if raw is not None else default

    def is_closing(self) -> bool:
        raw = self._conn.raw
        return self.closing or raw is None or raw.is_closing()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self._conn.close()

    def abort(self) -> None:
        self.closing = True
        if self._conn.raw is not None:
            self._conn.raw.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.is_closing() and data:
            self._conn.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS connection cannot half-close its write side here")

    def pause_reading(self) -> None:
        self._conn.reading_paused = True
        if self._conn.raw is not None:
            self._conn.raw.pause_reading()

    def resume_reading(self) -> None:
        if not self._conn.reading_paused:
            return
        self._conn.reading_paused = False
        if self._conn.raw is not None:
            self._conn.raw.resume_reading()
        # Records decrypted-but-undelivered while paused would otherwise wait for more bytes.
        asyncio.get_running_loop().call_soon(self._conn.read_app_data)

    def is_reading(self) -> bool:
        return not self._conn.reading_paused and not self.is_closing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._conn.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._conn.app is not None
        return self._conn.app

    def get_write_buffer_size(self) -> int:
        return self._conn.raw.get_write_buffer_size() if self._conn.raw is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._conn.raw is not None:
            self._conn.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._conn.raw.get_write_buffer_limits() if self._conn.raw is not None else (0, 0)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__
