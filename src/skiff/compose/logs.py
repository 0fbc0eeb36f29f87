"""Many containers' output as one stream of lines, each behind a coloured ``web-1  | `` prefix.

Compose's presenter: every container gets the next colour of a rainbow (cyan, yellow,
green, magenta, blue, then their bright forms) and a prefix padded to the longest name
plus one. Sources are read in threads: a hijacked attach (``up`` attaches before it
starts a container, so nothing is missed) or a ``/logs`` stream (``logs``, ``logs -f``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from skiff.client import Client
from skiff.client.streams import STDERR, SYSTEM_ERROR, FrameDecoder
from skiff.errors import SkiffError

_RAINBOW = ("36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1")


class LogPrinter:
    """Writes prefixed lines; thread-safe; colours only when asked (a terminal)."""

    def __init__(
        self,
        out: TextIO,
        err: TextIO | None = None,
        *,
        color: bool = False,
        prefix: bool = True,
        timestamps: bool = False,
    ) -> None:
        self.out = out
        self.err = err or out
        self.color = color
        self.prefix = prefix
        self.timestamps = timestamps
        self._lock = threading.Lock()
        self._colors: dict[str, str] = {}
        self._width = 0
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        """Keep lines back until :meth:`release` (``up`` prints "Attaching to ..." first)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def register(self, names: Iterable[str]) -> None:
        """Give each name its colour (in order) and widen the prefix to fit."""
        with self._lock:
            for name in names:
                if name not in self._colors:
                    self._colors[name] = _RAINBOW[len(self._colors) % len(_RAINBOW)]
                self._width = max(self._width, len(name) + 1)

    def _paint(self, name: str, text: str) -> str:
        if not self.color:
            return text
        return f"\x1b[{self._colors.get(name, '0')}m{text}\x1b[0m"

    def line(self, name: str, text: str, stderr: bool = False) -> None:
        """One line of ``name``'s output (without its newline)."""
        self.register([name])
        self._open.wait()
        with self._lock:
            head = self._paint(name, f"{name:<{self._width}} | ") if self.prefix else ""
            target = self.err if stderr else self.out
            target.write(f"{head}{text}\n")
            target.flush()

    def status(self, name: str, text: str) -> None:
        """A line about a container rather than from it: ``web-1 exited with code 0``."""
        self.register([name])
        self._open.wait()
        with self._lock:
            self.out.write(self._paint(name, f"{name} {text}") + "\n")
            self.out.flush()

    def consume(self, name: str, chunks: Iterable[bytes], tty: bool) -> None:
        """Print a container's raw (tty) or multiplexed byte stream line by line."""
        decoder = FrameDecoder()
        pending = {1: b"", 2: b""}

        def emit(kind: int, data: bytes) -> None:
            buf = pending[kind] + data
            *lines, pending[kind] = buf.split(b"\n")
            for raw in lines:
                self.line(name, raw.rstrip(b"\r").decode(errors="replace"), stderr=kind == 2)

        for chunk in chunks:
            if tty:
                emit(1, chunk)
                continue
            for kind, payload in decoder.feed(chunk):
                emit(2 if kind in (STDERR, SYSTEM_ERROR) else 1, payload)
        for kind, rest in pending.items():
            if rest:
                self.line(name, rest.decode(errors="replace"), stderr=kind == 2)


def log_chunks(client: Client, cid: str, params: dict[str, object]) -> Iterator[bytes]:
    """``GET /containers/{id}/logs`` bytes; a container removed meanwhile just ends the stream."""
    try:
        yield from client.logs(cid, dict(params))
    except SkiffError:
        return


class Followers:
    """Threads reading containers' streams into one printer; ``wait`` joins them all."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def add(self, key: str, target: Callable[[], None]) -> bool:
        """Run ``target`` in a thread unless ``key`` is already being followed."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            t = threading.Thread(target=target, name=f"compose-log-{key[:12]}", daemon=True)
            self._threads.append(t)
        t.start()
        return True

    def forget(self, key: str) -> None:
        """Allow ``key`` to be followed again (a container that restarted)."""
        with self._lock:
            self._seen.discard(key)

    def wait(self, timeout: float | None = None) -> None:
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return
            alive[0].join(timeout)
            if timeout is not None:
                return
