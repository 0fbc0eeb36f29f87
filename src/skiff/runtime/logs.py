"""Reading the k8s-file log format conmon writes.

Each line is ``<RFC3339Nano time> <stdout|stderr> <P|F> <data>``: ``P`` marks a
partial line (conmon splits long lines and lines cut by a flush), ``F`` the final
piece; a logical line is the P pieces joined with the following F, plus ``\\n``.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class LogLine:
    """One logical output line; stream is ``stdout`` or ``stderr``; data keeps its newline."""

    time_nano: int
    stream: str
    data: bytes


def parse_time(stamp: bytes) -> int:
    """``2024-01-02T03:04:05.123456789+00:00`` (or ``Z``) -> nanoseconds since the epoch."""
    text = stamp.decode()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, _, rest = text.partition(".")
    frac = ""
    tz = ""
    if rest:
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                frac, tz = rest[:i], rest[i:]
                break
        else:
            frac = rest
    else:
        for sign in ("+", "-"):
            idx = main.rfind(sign)
            if idx > 10:
                main, tz = main[:idx], main[idx:]
                break
    seconds = int(datetime.fromisoformat(main + (tz or "+00:00")).timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9])


class _Assembler:
    """Joins P pieces with their F piece, per stream."""

    def __init__(self) -> None:
        self._partial: dict[str, tuple[int, bytes]] = {}

    def feed(self, raw: bytes) -> LogLine | None:
        parts = raw.split(b" ", 3)
        if len(parts) < 3:
            return None
        try:
            time_nano = parse_time(parts[0])
        except ValueError:
            return None
        stream = parts[1].decode(errors="replace")
        tag = parts[2]
        data = parts[3] if len(parts) == 4 else b""
        first_time, pending = self._partial.pop(stream, (time_nano, b""))
        if tag.startswith(b"P"):
            self._partial[stream] = (first_time, pending + data)
            return None
        return LogLine(first_time, stream, pending + data + b"\n")

    def flush(self) -> list[LogLine]:
        """Pieces still waiting for their end: output without a newline (``printf abc``),
        shown as Docker shows a partial message."""
        out = [LogLine(t, stream, data) for stream, (t, data) in self._partial.items() if data]
        self._partial.clear()
        return sorted(out, key=lambda line: line.time_nano)


def _in_range(line: LogLine, since_nano: int | None, until_nano: int | None) -> bool:
    if since_nano is not None and line.time_nano < since_nano:
        return False
    return until_nano is None or line.time_nano <= until_nano


def iter_log(
    path: Path,
    *,
    since_nano: int | None = None,
    until_nano: int | None = None,
    tail: int | None = None,
) -> Iterator[LogLine]:
    """Every complete logical line in ``path`` (oldest first), filtered like ``docker logs``."""
    asm = _Assembler()
    lines, _ = _read_from(Path(path), 0, asm)
    lines += asm.flush()
    selected = (line for line in lines if _in_range(line, since_nano, until_nano))
    if tail is not None and tail >= 0:
        yield from deque(selected, maxlen=tail) if tail > 0 else ()
        return
    yield from selected


def _read_from(path: Path, offset: int, asm: _Assembler) -> tuple[list[LogLine], int]:
    """Complete lines from ``offset``; returns the offset after the last complete raw line."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out = []
    for raw in data[:end].split(b"\n"):
        line = asm.feed(raw)
        if line is not None:
            out.append(line)
    return out, offset + end + 1


async def follow_log(
    path: Path,
    stop: asyncio.Event,
    *,
    since_nano: int | None = None,
    until_nano: int | None = None,
    tail: int | None = None,
) -> AsyncIterator[LogLine]:
    """Existing lines (as ``iter_log``) then new ones as the file grows, until ``stop`` is set.

    After ``stop`` one last read drains what conmon wrote before the exit. Truncation or
    rotation (a smaller file or a new inode) restarts reading at the new file's beginning.
    """
    path = Path(path)
    asm = _Assembler()
    lines, offset = _read_from(path, 0, asm)
    inode = _inode(path)
    selected = [line for line in lines if _in_range(line, since_nano, until_nano)]
    if tail is not None and tail >= 0:
        selected = selected[-tail:] if tail > 0 else []
    for line in selected:
        yield line
    while True:
        stopping = stop.is_set()
        current = _inode(path)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        if current != inode or size < offset:
            inode, offset, asm = current, 0, _Assembler()
        lines, offset = _read_from(path, offset, asm)
        for line in lines:
            if until_nano is not None and line.time_nano > until_nano:
                return
            if since_nano is None or line.time_nano >= since_nano:
                yield line
        if stopping:
            for line in asm.flush():
                if _in_range(line, since_nano, until_nano):
                    yield line
            return
        with_timeout = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({with_timeout}, timeout=_POLL_SECONDS)
        finally:
            with_timeout.cancel()


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1
