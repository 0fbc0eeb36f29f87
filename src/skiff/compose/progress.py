"""Compose v2's progress display: one status line per network, volume, image and container.

On a terminal a live block (``[+] Running 3/3`` over lines such as
``✔ Container demo-web-1  Started  0.4s``) is redrawn as events arrive from the worker
threads; elsewhere each event is one plain line (``Container demo-web-1  Starting``,
``✔ Container demo-web-1  Started``). Progress goes to stderr, as Compose's does.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

WORKING, DONE, ERROR, WARNING = "working", "done", "error", "warning"


class Progress(Protocol):
    """Where the runtime reports what it is doing."""

    def event(self, kind: str, name: str, status: str, state: str = WORKING, detail: str = "") -> None:
        """``kind`` is Network/Volume/Image/Container/Service; ``state`` working/done/error/warning."""


class NoProgress:
    """Reports nothing (``--progress quiet``)."""

    def event(self, kind: str, name: str, status: str, state: str = WORKING, detail: str = "") -> None:
        return None


@dataclass
class _Line:
    kind: str
    name: str
    status: str
    state: str
    detail: str
    started: float
    ended: float | None = None


class ProgressPrinter:
    """The display; use as a context manager around one command's work."""

    def __init__(self, mode: str = "auto", stream: IO[str] | None = None, title: str = "Running") -> None:
        self.stream = stream or sys.stderr
        self.tty = mode == "tty" or (mode == "auto" and self.stream.isatty())
        self.quiet = mode == "quiet"
        self.title = title
        self._lines: dict[tuple[str, str], _Line] = {}
        self._lock = threading.Lock()
        self._console = Console(file=self.stream, highlight=False, force_terminal=self.tty or None)
        self._live: Live | None = None

    def __enter__(self) -> ProgressPrinter:
        if self.tty and not self.quiet:
            self._live = Live(self._render(), console=self._console, refresh_per_second=10, transient=False)
            self._live.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Draw the final state and stop the live display."""
        with self._lock:
            live, self._live = self._live, None
            if live is not None:
                live.update(self._render(final=True))
                live.stop()

    def event(self, kind: str, name: str, status: str, state: str = WORKING, detail: str = "") -> None:
        if self.quiet:
            return
        now = time.monotonic()
        with self._lock:
            line = self._lines.get((kind, name))
            if line is None:
                line = _Line(kind, name, status, state, detail, now)
                self._lines[(kind, name)] = line
            line.status, line.state, line.detail = status, state, detail
            line.ended = None if state == WORKING else now
            if self._live is not None:
                self._live.update(self._render())
                return
            icon = {DONE: "✔ ", ERROR: "✘ ", WARNING: "! "}.get(state, " ")
            text = f"{icon}{kind} {name}  {status}" + (f" {detail}" if detail else "")
            print(text, file=self.stream, flush=True)

    def _render(self, final: bool = False) -> Group:
        lines = list(self._lines.values())
        done = sum(1 for ln in lines if ln.state != WORKING)
        failed = any(ln.state == ERROR for ln in lines)
        head = Text(f"[+] {self.title} {done}/{len(lines)}", style="bold red" if failed else "bold")
        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column()
        table.add_column()
        table.add_column(justify="right")
        now = time.monotonic()
        width = max((len(ln.kind) + 1 + len(ln.name) for ln in lines), default=0)
        for ln in lines:
            icon: Spinner | Text
            if ln.state == WORKING and not final:
                icon = Spinner("dots", style="blue")
            else:
                mark = {DONE: ("✔", "green"), ERROR: ("✘", "red"), WARNING: ("!", "yellow")}
                symbol, style = mark.get(ln.state, ("-", "dim"))
                icon = Text(symbol, style=style)
            label = f"{ln.kind} {ln.name}".ljust(width)
            status = Text(
                ln.status + (f" {ln.detail}" if ln.detail else ""), style="red" if ln.state == ERROR else ""
            )
            elapsed = (ln.ended or now) - ln.started
            table.add_row(icon, label, status, Text(f"{elapsed:.1f}s", style="blue"))
        return Group(head, table)
