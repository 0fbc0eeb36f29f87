"""Docker's stream protocols over aiohttp: hijacked connections, multiplexed frames, JSON lines.

Hijacking: aiohttp writes the ``101 UPGRADED`` (or ``200``) headers through a prepared
response; then the transport is handed to :class:`RawConnection`, an asyncio protocol of
our own. That gives what Docker clients need and aiohttp's protocol does not: a raw byte
stream both ways, and a client half-close (stdin EOF) that leaves our write side open.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

STDIN, STDOUT, STDERR, SYSTEM_ERR = 0, 1, 2, 3

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach-key grammar: comma-separated ``ctrl-<c>`` or single characters."""
    from skiff.errors import InvalidArgument

    out = bytearray()
    for key in (spec or DEFAULT_DETACH_KEYS).split(","):
        if len(key) == 1:
            out.append(ord(key))
            continue
        name = key.lower()
        if name.startswith("ctrl-") and len(name) == 6:
            c = name[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            specials = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if c in specials:
                out.append(specials[c])
                continue
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeProxy:
    """Watches stdin for the detach sequence, holding back bytes that may start it (moby/term)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, whether the sequence completed); after True, stop reading."""
        out = bytearray()
        for b in data:
            if b == self.keys[len(self._held)]:
                self._held.append(b)
                if len(self._held) == len(self.keys):
                    return bytes(out), True
                continue
            out += self._held
            self._held.clear()
            out.append(b)
        return bytes(out), False


def frame(stream: int, data: bytes) -> bytes:
    """One multiplexed frame: [stream, 0, 0, 0, uint32 BE length] + payload."""
    return struct.pack(">BxxxI", stream, len(data)) + data


class RawConnection(asyncio.Protocol):
    """The client's socket after the hijack."""

    def __init__(self, transport: asyncio.Transport, original: asyncio.BaseProtocol, tail: bytes) -> None:
        self.transport = transport
        self._original = original
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        if tail:
            self.incoming.put_nowait(tail)

    def data_received(self, data: bytes) -> None:
        self.incoming.put_nowait(data)

    def eof_received(self) -> bool:
        self.incoming.put_nowait(None)
        return True  # keep our write side open: output keeps flowing after stdin EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.incoming.put_nowait(None)
        self.closed.set()
        self._can_write.set()
        self._original.connection_lost(exc)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def write(self, data: bytes) -> bool:
        """Send bytes; False once the client is gone."""
        if self.closed.is_set() or self.transport.is_closing():
            return False
        self.transport.write(data)
        await self._can_write.wait()
        return not self.closed.is_set()

    async def read(self) -> bytes | None:
        """Next chunk from the client, or None at EOF."""
        return await self.incoming.get()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def wants_upgrade(request: web.Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    return "upgrade" in connection and request.headers.get("Upgrade", "").lower() == "tcp"


async def hijack(request: web.Request, *, multiplexed: bool) -> tuple[web.StreamResponse, RawConnection]:
    """Answer the attach/exec request and take over its connection."""
    content_type = MULTIPLEXED_STREAM if multiplexed and request_version(request) >= (1, 42) else RAW_STREAM
    if wants_upgrade(request):
        response = web.StreamResponse(
            status=101,
            reason="UPGRADED",
            headers={"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"},
        )
    else:
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    response.force_close()
    await response.prepare(request)
    transport = request.transport
    assert transport is not None and isinstance(transport, asyncio.Transport)
    original = transport.get_protocol()
    # Bytes that arrived after the request head, before the hand-over (aiohttp keeps them here).
    tail = bytes(getattr(original, "_message_tail", b"") or b"")
    if tail:
        original._message_tail = b""  # type: ignore[attr-defined]
    raw = RawConnection(transport, original, tail)
    transport.set_protocol(raw)
    if transport.is_reading() is False:
        transport.resume_reading()
    return response, raw


def request_version(request: web.Request) -> tuple[int, int]:
    text = request.match_info.get("version", "")
    if not text:
        return (1, 41)
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return (1, 41)


class JsonLines:
    """A chunked ``application/json`` stream of progress messages (pull, load, import, build)."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response

    @classmethod
    async def open(cls, request: web.Request) -> JsonLines:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        return cls(response)

    async def send(self, message: dict[str, Any]) -> None:
        await self.response.write(json.dumps(message).encode() + b"\r\n")

    async def error(self, message: str) -> None:
        await self.send({"errorDetail": {"message": message}, "error": message})

    async def close(self) -> None:
        await self.response.write_eof()


async def stream_json_lines(request: web.Request, items: AsyncIterator[dict[str, Any]]) -> web.StreamResponse:
    out = await JsonLines.open(request)
    async for item in items:
        await out.send(item)
    await out.close()
    return out.response
