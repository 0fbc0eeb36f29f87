"""Processes started with ``runc exec`` inside a running container.

runc stays our child for the life of the process, so the exit code comes from
``wait``. Without a tty the process inherits runc's pipes; with a tty runc finds our
pty slave as its host console and copies between it and the container's pty, and
forwards SIGWINCH as a resize.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import signal
import struct
import termios


class ExecProcess:
    """A running ``runc exec``: read (stream, bytes), write stdin, resize, wait for the exit code."""

    def __init__(self, proc: asyncio.subprocess.Process, pid: int, master_fd: int | None) -> None:
        self._proc = proc
        self.pid = pid
        self._master = master_fd
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._open_streams = 0
        self._tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        if master_fd is not None:
            self._open_streams = 1
            os.set_blocking(master_fd, False)
            loop.add_reader(master_fd, self._read_master)
        else:
            for stream_id, reader in ((1, proc.stdout), (2, proc.stderr)):
                if reader is not None:
                    self._open_streams += 1
                    self._tasks.append(asyncio.create_task(self._pump(stream_id, reader)))
        if self._open_streams == 0:
            self._queue.put_nowait(None)

    async def _pump(self, stream_id: int, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(32 * 1024):
            await self._queue.put((stream_id, chunk))
        self._stream_closed()

    def _read_master(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 32 * 1024)
        except BlockingIOError:
            return
        except OSError:  # EIO: the slave side is closed, the process is gone
            data = b""
        if data:
            self._queue.put_nowait((1, data))
            return
        asyncio.get_running_loop().remove_reader(self._master)
        self._stream_closed()

    def _stream_closed(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._queue.put_nowait(None)

    async def read(self) -> tuple[int, bytes] | None:
        """Next output chunk as (1 stdout | 2 stderr, data); None at EOF of all output."""
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        """Write to the process's stdin."""
        if self._master is not None:
            await asyncio.get_running_loop().run_in_executor(None, _write_all, self._master, data)
        elif self._proc.stdin is not None:
            self._proc.stdin.write(data)
            await self._proc.stdin.drain()

    def close_stdin(self) -> None:
        """EOF on stdin: close the pipe, or send ^D through the tty."""
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.write(self._master, b"\x04")
        elif self._proc.stdin is not None:
            self._proc.stdin.close()

    def resize(self, height: int, width: int) -> None:
        """Set the tty size; runc copies it into the container's pty on SIGWINCH."""
        if self._master is None:
            return
        fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, signal.SIGWINCH)

    async def wait(self) -> int:
        """The process's exit code (128 + signal number when killed by a signal)."""
        code = await self._proc.wait()
        for task in self._tasks:
            await task
        return 128 - code if code < 0 else code

    def close(self) -> None:
        """Release the tty; the process itself keeps running until it exits."""
        if self._master is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        view = view[written:]
