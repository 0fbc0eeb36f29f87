"""Containers under conmon + runc, the way podman runs them.

conmon double-forks and outlives skiffd: it holds the container's stdio, writes the
k8s-file log, and records the exit code (and an ``oom`` marker) on disk, so a
restarted daemon reads what happened while it was away. runc keeps its state under
our own ``--root``, so we never see or touch other runc users' containers.

Files per container (``state_dir/<cid>/``): ``bundle`` (path of the OCI bundle),
``conmon.pid``, ``pid`` (container init), ``exit`` and ``oom`` (conmon's persist dir),
``conmon.log``. Exit files also land in ``state_dir/exits/<cid>``, one directory
watched with inotify for every container.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import struct
import termios
import tty as tty_mod
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skiff.errors import Conflict, NotFound, RuntimeFailure, Unavailable
from skiff.runtime._inotify import DirectoryWatch
from skiff.runtime.attach import AttachStream
from skiff.runtime.exec import ExecProcess

__all__ = ["AttachStream", "ExecProcess", "ExitStatus", "Runtime", "RuntimeState"]

_POLL_SECONDS = 0.02
_CREATE_TIMEOUT = 60.0
_LOGRUS_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class RuntimeState:
    """runc's view: status is created|running|paused|stopped; pid 0 when stopped."""

    status: str
    pid: int


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended, as conmon recorded it."""

    exit_code: int
    oom_killed: bool
    finished_at: str  # RFC3339 with nanoseconds, UTC


def rfc3339_nano(ns: int) -> str:
    """Docker's timestamp format: ``2024-01-02T03:04:05.123456789Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def runtime_message(text: str) -> str:
    """runc's own words from its (logrus) output, without timestamps and levels."""
    found = _LOGRUS_MSG.findall(text)
    if found:
        return "; ".join(m.encode().decode("unicode_escape") for m in found)
    return text.strip()


class Runtime:
    """Drives runc through conmon. One instance per daemon; safe to recreate after a restart."""

    def __init__(
        self,
        *,
        state_dir: Path,
        runtime: str = "runc",
        conmon: str = "conmon",
        runtime_root: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.runtime_root = runtime_root or Path("/run/skiff/runc")
        self._runtime_name = runtime
        self._conmon_name = conmon
        self._exits = self.state_dir / "exits"
        self._sockets = self.state_dir / "sock"
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._watch: DirectoryWatch | None = None

    # -- paths -------------------------------------------------------------------------------
    def _dir(self, cid: str) -> Path:
        return self.state_dir / cid

    def _bundle(self, cid: str) -> Path:
        try:
            return Path((self._dir(cid) / "bundle").read_text())
        except FileNotFoundError as exc:
            raise NotFound(f"No such container: {cid}") from exc

    def attach_socket(self, cid: str) -> Path:
        """conmon's attach socket (in the bundle, as with ``--full-attach``)."""
        return self._bundle(cid) / "attach"

    def ctl_fifo(self, cid: str) -> Path:
        """conmon's control fifo: ``1 <h> <w>`` resizes the tty, ``2 0 0`` reopens the log."""
        return self._bundle(cid) / "ctl"

    def conmon_pid(self, cid: str) -> int | None:
        """Pid of the container's conmon if it is still alive."""
        try:
            pid = int((self._dir(cid) / "conmon.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid if b"conmon" in cmdline.split(b"\0", 1)[0] and cid.encode() in cmdline else None

    def _binary(self, name: str) -> str:
        found = shutil.which(name)
        if found is None:
            raise Unavailable(f"{name} is not installed: install the Debian package '{name}'")
        return found

    # -- runc commands -----------------------------------------------------------------------
    async def _runc(self, *args: str, stdin: bytes | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            self._binary(self._runtime_name),
            f"--root={self.runtime_root}",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin)
        if proc.returncode != 0:
            message = runtime_message(err.decode(errors="replace") or out.decode(errors="replace"))
            if "does not exist" in message:
                raise NotFound(f"No such container: {args[-1]}")
            if "not running" in message or "process already finished" in message:
                raise Conflict(f"container {args[-1]} is not running")
            raise RuntimeFailure(f"{self._runtime_name} {args[0]} failed: {message}")
        return out.decode(errors="replace")

    async def create(
        self,
        cid: str,
        bundle: Path,
        *,
        tty: bool,
        stdin: bool,
        log_path: Path,
        log_max_size: int = -1,
        stdin_once: bool = False,
    ) -> int:
        """Start conmon, which runs ``runc create``; return the container's pid once created."""
        cdir = self._dir(cid)
        cdir.mkdir(parents=True, exist_ok=True)
        for d in (self._exits, self._sockets):
            d.mkdir(parents=True, exist_ok=True)
        # A restarted container reuses its id: stale exit markers would end it at once.
        for stale in (cdir / "exit", cdir / "oom", self._exits / cid, cdir / "pid"):
            stale.unlink(missing_ok=True)
        (cdir / "bundle").write_text(str(Path(bundle).resolve()))
        args = [
            self._binary(self._conmon_name),
            "--api-version", "1",
            "-c", cid, "-u", cid, "-n", cid,
            "-r", self._binary(self._runtime_name),
            "-b", str(Path(bundle).resolve()),
            "-p", str(cdir / "pid"),
            "--conmon-pidfile", str(cdir / "conmon.pid"),
            "--exit-dir", str(self._exits),
            "-0", str(cdir),
            "--socket-dir-path", str(self._sockets),
            "--full-attach",
            "-l", f"k8s-file:{log_path}",
            "--log-level", "warning",
            "--runtime-arg", f"--root={self.runtime_root}",
        ]  # fmt: skip
        if log_max_size > 0:
            args += ["--log-size-max", str(log_max_size)]
        if tty:
            args.append("-t")
        if stdin:
            args.append("-i")
            if not stdin_once:
                args.append("--leave-stdin-open")
        sync_r, sync_w = os.pipe()
        try:
            with open(cdir / "conmon.log", "ab") as conmon_log:
                # conmon also drops an "oom" marker into its working directory (CRI-O's
                # convention), so it runs in the container's state dir, never skiffd's cwd.
                proc = await asyncio.create_subprocess_exec(
                    *args,
                    cwd=str(cdir),
                    env={**os.environ, "_OCI_SYNCPIPE": str(sync_w)},
                    pass_fds=(sync_w,),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=conmon_log,
                    stderr=conmon_log,
                )
            os.close(sync_w)
            sync_w = -1
            line = await asyncio.wait_for(_read_line(sync_r), _CREATE_TIMEOUT)
            await proc.wait()
        finally:
            os.close(sync_r)
            if sync_w >= 0:
                os.close(sync_w)
        try:
            reply: dict[str, Any] = json.loads(line) if line else {}
        except json.JSONDecodeError:
            reply = {}
        pid = int(reply.get("data", -1))
        if pid <= 0:
            detail = str(reply.get("message") or "") or _tail(cdir / "conmon.log")
            raise RuntimeFailure(f"OCI runtime create failed: {runtime_message(detail)}")
        return pid

    async def start(self, cid: str) -> None:
        """``runc start``: run the user's process in the created container."""
        await self._runc("start", cid)

    async def kill(self, cid: str, signal: int, all_processes: bool = False) -> None:
        """Send ``signal`` to the init (or every process with ``all_processes``)."""
        await self._runc("kill", *(["--all"] if all_processes else []), cid, str(signal))

    async def delete(self, cid: str, force: bool = False) -> None:
        """``runc delete`` and remove conmon's files. Idempotent. Read exit_status first."""
        # runc (and crun) keep <root>/<id>/ while they know a container: skip the process spawn
        # (several ms of Go start-up) when there is nothing to delete.
        if self.has_runtime_state(cid):
            with contextlib.suppress(NotFound):
                await self._runc("delete", *(["--force"] if force else []), cid)
        shutil.rmtree(self._dir(cid), ignore_errors=True)
        (self._exits / cid).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError, OSError):
            (self._sockets / cid).unlink()

    def has_runtime_state(self, cid: str) -> bool:
        """True while the OCI runtime keeps state for ``cid`` (created, running or stopped)."""
        return (self.runtime_root / cid).exists()

    async def state(self, cid: str) -> RuntimeState | None:
        """runc's state of the container; None if runc does not know it."""
        try:
            data = json.loads(await self._runc("state", cid))
        except NotFound:
            return None
        return RuntimeState(status=str(data.get("status", "unknown")), pid=int(data.get("pid", 0)))

    async def pause(self, cid: str) -> None:
        """Freeze every process of the container."""
        await self._runc("pause", cid)

    async def resume(self, cid: str) -> None:
        """Thaw a paused container."""
        await self._runc("resume", cid)

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        """Change limits of a live container: ``resources`` is an OCI ``linux.resources`` object."""
        await self._runc("update", "--resources", "-", cid, stdin=json.dumps(resources).encode())

    # -- exit --------------------------------------------------------------------------------
    def exit_status(self, cid: str) -> ExitStatus | None:
        """The exit conmon recorded, or None while the container has not exited."""
        exit_file = self._exits / cid
        if not exit_file.exists():
            exit_file = self._dir(cid) / "exit"
        try:
            text = exit_file.read_text().strip()
            mtime = exit_file.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if not text:
            return None  # being written; conmon fills it at once
        oom = (self._dir(cid) / "oom").exists()
        return ExitStatus(exit_code=int(text), oom_killed=oom, finished_at=rfc3339_nano(mtime))

    async def wait_exit(self, cid: str) -> ExitStatus:
        """Wait until conmon records the exit (works for containers started before a restart)."""
        self._exits.mkdir(parents=True, exist_ok=True)
        if self._watch is None:
            self._watch = DirectoryWatch(self._exits, self._on_exit_file)
        while True:
            status = self.exit_status(cid)
            if status is not None:
                return status
            if not self._watch.active:
                await asyncio.sleep(_POLL_SECONDS)
                continue
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(cid, []).append(fut)
            try:
                # Re-check after registering: the file may have appeared in between.
                if self.exit_status(cid) is None:
                    # A bounded wait also covers conmon dying without writing the file.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(fut), 1.0)
            finally:
                waiters = self._waiters.get(cid, [])
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    self._waiters.pop(cid, None)

    def _on_exit_file(self, name: str) -> None:
        for fut in self._waiters.pop(name, []):
            if not fut.done():
                fut.set_result(None)

    # -- stdio -------------------------------------------------------------------------------
    async def resize(self, cid: str, height: int, width: int) -> None:
        """Resize the container's tty through conmon's control fifo."""
        try:
            fd = os.open(self.ctl_fifo(cid), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise Conflict(f"container {cid} is not running: cannot resize its tty") from exc
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        finally:
            os.close(fd)

    async def attach(self, cid: str) -> AttachStream:
        """Connect to the container's stdio via conmon."""
        return await AttachStream.connect(self.attach_socket(cid))

    async def exec(self, cid: str, process: dict[str, Any], *, tty: bool, detach: bool) -> ExecProcess:
        """Run ``process`` (an OCI process object) in the container with ``runc exec``."""
        cdir = self._dir(cid)
        if not cdir.exists():
            raise NotFound(f"No such container: {cid}")
        name = f"exec-{uuid.uuid4().hex[:12]}"
        spec_file, pid_file = cdir / f"{name}.json", cdir / f"{name}.pid"
        spec_file.write_text(json.dumps({**process, "terminal": tty}))
        args = [
            self._binary(self._runtime_name),
            f"--root={self.runtime_root}",
            "exec",
            "--process", str(spec_file),
            "--pid-file", str(pid_file),
            cid,
        ]  # fmt: skip
        master: int | None = None
        try:
            if detach:
                proc = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            elif tty:
                master, slave = os.openpty()
                # Raw from the start: runc makes its host console raw too, but only after the
                # process may have written, and a cooked slave turns "\r\n" into "\r\r\n".
                tty_mod.setraw(slave)
                size = process.get("consoleSize")
                if size:  # runc exec -t copies its own terminal's size into the container's pty
                    winsize = struct.pack("HHHH", int(size["height"]), int(size["width"]), 0, 0)
                    fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
                    )
                finally:
                    os.close(slave)
            else:
                proc = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            pid = await _wait_pid_file(pid_file, proc)
        except BaseException:
            if master is not None:
                os.close(master)
            raise
        finally:
            spec_file.unlink(missing_ok=True)
        if pid is None:
            code = await proc.wait()
            err = b""
            if proc.stderr is not None:
                err = await proc.stderr.read()
            elif master is not None:
                with contextlib.suppress(OSError):
                    err = os.read(master, 65536)
            if master is not None:
                os.close(master)
            message = runtime_message(err.decode(errors="replace")) or f"exit status {code}"
            raise RuntimeFailure(f"OCI runtime exec failed: {message}")
        pid_file.unlink(missing_ok=True)
        return ExecProcess(proc, pid, master)

    # -- restart -----------------------------------------------------------------------------
    async def recover(self) -> list[str]:
        """Container ids runc or conmon still know about (after a skiffd restart)."""
        ids: set[str] = set()
        if self.runtime_root.exists():
            out = await self._runc("list", "--format", "json")
            for item in json.loads(out or "null") or []:
                ids.add(str(item["id"]))
        if self.state_dir.exists():
            for entry in self.state_dir.iterdir():
                if entry.is_dir() and (entry / "bundle").exists():
                    ids.add(entry.name)
        return sorted(ids)

    def close(self) -> None:
        """Stop watching the exit directory."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None


async def _read_line(fd: int) -> str:
    """One line from conmon's sync pipe without blocking the loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buf = b""
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        while b"\n" not in buf:
            await ready.wait()
            ready.clear()
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                break
            buf += chunk
    finally:
        loop.remove_reader(fd)
    return buf.split(b"\n", 1)[0].decode(errors="replace")


async def _wait_pid_file(path: Path, proc: asyncio.subprocess.Process) -> int | None:
    """The exec'd process's pid once runc wrote it; None if runc exited first (a failure)."""
    while True:
        exited = proc.returncode is not None  # sample before reading: no lost race
        try:
            text = path.read_text().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        if exited:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 0.01)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except FileNotFoundError:
        return "conmon exited without a reply"
