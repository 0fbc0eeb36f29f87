"""Raw byte streams of the Engine API: hijacked sockets and multiplexed frames.

Non-TTY attach, exec and logs streams are framed: an 8-byte header
``[stream, 0, 0, 0, uint32 big-endian length]`` then the payload; stream 1 is
stdout, 2 stderr, 3 a system error. TTY streams are raw bytes.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterator
from typing import Any

STDOUT = 1
STDERR = 2
SYSTEM_ERROR = 3
_HEADER = struct.Struct(">BxxxL")


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get ``(stream, payload)`` frames out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Append ``data`` and return every frame that is now complete."""
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buf) >= _HEADER.size:
            stream, length = _HEADER.unpack_from(self._buf)
            end = _HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append((stream, bytes(self._buf[_HEADER.size : end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buf)


def encode_frame(stream: int, payload: bytes) -> bytes:
    """One multiplexed frame (used by tests and fakes)."""
    return _HEADER.pack(stream, len(payload)) + payload


class HijackedStream:
    """A hijacked (``101 UPGRADED``) connection: raw bytes both ways.

    Wraps the socket docker-py hands back and keeps its HTTP response alive (a
    collected response would close the socket). ``close_write`` half-closes so the
    container sees EOF on stdin while its output keeps flowing back.
    """

    def __init__(self, raw: Any, leftover: bytes = b"") -> None:
        self._raw = raw
        sock = getattr(raw, "_sock", raw)
        if not isinstance(sock, socket.socket):
            raise TypeError(f"hijacked stream is not a socket: {type(sock).__name__}")
        self.sock: socket.socket = sock
        self._leftover = leftover

    def fileno(self) -> int:
        """The socket's descriptor, for select()."""
        return self.sock.fileno()

    def recv(self, size: int = 65536) -> bytes:
        """Up to ``size`` bytes; ``b""`` at end of stream."""
        if self._leftover:
            data, self._leftover = self._leftover, b""
            return data
        try:
            return self.sock.recv(size)
        except ConnectionResetError:
            return b""

    @property
    def has_buffered(self) -> bool:
        """True when bytes are waiting that select() would not report."""
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return bool(self._leftover) or pending > 0  # decrypted TLS bytes are invisible to select()

    def sendall(self, data: bytes) -> None:
        """Send stdin bytes to the container."""
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: the container's stdin gets EOF."""
        try:
            # socket.socket's own shutdown, also for a TLS socket: ssl.SSLSocket.shutdown drops
            # the TLS session, and the output still to come would then be read undecrypted.
            # skiffd takes the bare TCP FIN as the end of stdin.
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        """Close both directions."""
        try:
            self.sock.close()
        finally:
            close = getattr(self._raw, "close", None)
            if callable(close):
                close()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.recv()
            if not data:
                return
            yield data
