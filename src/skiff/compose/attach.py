"""``up`` in the foreground: every container's output through one :class:`LogPrinter`.

Each container is attached before it starts (the executor's ``before_start`` hook), so
no output is lost; an already running one is attached as it is. When a stream ends the
container is inspected: restarted by its policy -> attached again, otherwise
``web-1 exited with code 0`` is printed and the exit recorded. An event watcher attaches
to project containers started by someone else meanwhile (a restart policy after a
pause, another ``up --scale``). ``wait`` returns when every container has exited, or,
with ``abort_on_exit``, at the first exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skiff.client import Client
from skiff.compose import labels as L
from skiff.compose.executor import Started
from skiff.compose.logs import Followers, LogPrinter
from skiff.errors import SkiffError


@dataclass(frozen=True)
class Exit:
    """A container that ended: which, and its exit code."""

    started: Started
    code: int


class AttachedSession:
    """Follows a project's containers while ``up`` runs attached."""

    def __init__(
        self,
        client: Client,
        project: str,
        services: Mapping[str, Mapping[str, Any]],
        printer: LogPrinter,
        *,
        attach_to: set[str] | None = None,
    ) -> None:
        self.client = client
        self.project = project
        self.services = services
        self.printer = printer
        self.attach_to = attach_to
        self.followers = Followers()
        self.exits: queue.Queue[Exit | None] = queue.Queue()
        self._active: set[str] = set()
        self._pending = 0  # streams being read or about to be: ``wait`` ends at 0
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    @staticmethod
    def short(name: str, project: str) -> str:
        return name[len(project) + 1 :] if name.startswith(project + "-") else name

    def hook(self, started: Started) -> None:
        """Attach to ``started`` (call before starting it)."""
        if self.attach_to is not None and started.service not in self.attach_to:
            return
        with self._lock:
            if started.id in self._active:
                return
            self._active.add(started.id)
            self._pending += 1
        self.printer.register([self.short(started.name, self.project)])
        tty = bool((self.services.get(started.service) or {}).get("tty"))
        try:
            stream = self.client.attach(started.id, stdin=False)
        except SkiffError:
            self._done(started.id)
            return
        self.followers.forget(started.id)
        self.followers.add(started.id, lambda: self._pump(started, stream, tty))

    def _done(self, cid: str) -> None:
        with self._lock:
            self._active.discard(cid)
            self._pending -= 1

    def _pump(self, started: Started, stream: Any, tty: bool) -> None:
        name = self.short(started.name, self.project)
        try:
            try:
                self.printer.consume(name, stream, tty)
            finally:
                stream.close()
            try:
                state = self.client.inspect_container(started.id).get("State") or {}
            except SkiffError:
                state = {}
            with self._lock:
                self._active.discard(started.id)
            if (state.get("Restarting") or state.get("Running")) and not self.stopping.is_set():
                self.hook(started)  # counted before this pump's count is released
                return
            code = int(state.get("ExitCode") or 0)
            self.printer.status(name, f"exited with code {code}")
            self.exits.put(Exit(started, code))
        finally:
            with self._lock:
                self._pending -= 1

    def watch_events(self) -> None:
        """Attach to project containers started by others from now on (a daemon thread)."""
        filters = {"type": ["container"], "event": ["start"], "label": [f"{L.PROJECT}={self.project}"]}

        def run() -> None:
            try:
                for ev in self.client.events(filters=filters):
                    if self.stopping.is_set():
                        return
                    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                    if attrs.get(L.ONEOFF) == "True":
                        continue
                    cid = str(ev.get("id") or (ev.get("Actor") or {}).get("ID") or "")
                    name = str(attrs.get("name") or cid[:12])
                    self.hook(Started(cid, name, str(attrs.get(L.SERVICE, "")), True))
            except SkiffError:
                return

        threading.Thread(target=run, name="compose-events", daemon=True).start()

    def active(self) -> int:
        with self._lock:
            return self._pending

    def wait(self, abort_on_exit: bool = False, exit_code_from: str | None = None) -> tuple[int, bool]:
        """Block until all containers exit (or the first, with ``abort_on_exit``).

        Returns (exit code, aborted): the code is that of ``exit_code_from``'s container,
        else of the first container that exited when aborting, else 0.
        """
        code = 0
        while True:
            if self.active() == 0 and self.exits.empty():
                return code, False
            try:
                ex = self.exits.get(timeout=0.5)
            except queue.Empty:
                continue
            if ex is None:
                continue
            if exit_code_from is not None:
                if ex.started.service == exit_code_from:
                    return ex.code, True
                if not abort_on_exit:
                    continue
            if abort_on_exit:
                if exit_code_from is None:
                    return ex.code, True
                code = ex.code
