"""Client side of conmon's attach socket (SOCK_SEQPACKET).

Each packet conmon sends starts with one byte naming the pipe (2 stdout, 3 stderr);
what we send is written to the container's stdin; shutting down our write side makes
conmon close the container's stdin (unless it runs with ``--leave-stdin-open``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from skiff.errors import NotFound

_CONMON_STDOUT = 2
_CONMON_STDERR = 3
_BUF = 8192 + 1


class AttachStream:
    """A live connection to a container's stdio through conmon."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, path: Path) -> AttachStream:
        """Connect to ``path``; long paths go through /proc/self/fd to dodge the 108-byte sun_path limit."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            dir_fd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            sock.close()
            raise NotFound(f"attach socket {path} does not exist: is the container running?") from exc
        try:
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dir_fd}/{path.name}")
        except OSError as exc:
            sock.close()
            raise NotFound(f"cannot attach through {path}: {exc.strerror or exc}") from exc
        finally:
            os.close(dir_fd)
        return cls(sock)

    async def read(self) -> tuple[int, bytes] | None:
        """Next chunk as (1 stdout | 2 stderr, data); None once the container's output is closed."""
        while True:
            try:
                packet = await self._loop.sock_recv(self._sock, _BUF)
            except (ConnectionResetError, OSError):
                return None
            if not packet:
                return None
            kind, data = packet[0], packet[1:]
            if kind == _CONMON_STDOUT:
                return 1, data
            if kind == _CONMON_STDERR:
                return 2, data
            # Other pipe ids are control traffic; skip them.

    async def write(self, data: bytes) -> None:
        """Send bytes to the container's stdin."""
        # conmon reads one packet into an 8 KiB buffer: larger packets would be truncated.
        for start in range(0, len(data), _BUF - 1):
            await self._loop.sock_sendall(self._sock, data[start : start + _BUF - 1])

    def close_stdin(self) -> None:
        """Signal EOF on stdin (conmon closes the container's stdin)."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()
