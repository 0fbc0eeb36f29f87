"""A tiny asyncio wrapper over inotify (ctypes): wake waiters when a file appears in a directory."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
from collections.abc import Callable
from pathlib import Path

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT_HEADER = struct.Struct("iIII")

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


class DirectoryWatch:
    """Calls ``on_name(name)`` (on the event loop) whenever a file is created or renamed into ``path``.

    Falls back to nothing (``active`` False) when inotify is unavailable; callers then poll.
    """

    def __init__(self, path: Path, on_name: Callable[[str], None]) -> None:
        self._on_name = on_name
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            libc = _load_libc()
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd < 0:
                return
            mask = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
            if libc.inotify_add_watch(fd, os.fsencode(path), mask) < 0:
                os.close(fd)
                return
        except (OSError, AttributeError):
            return
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT_HEADER.size <= len(data):
            _wd, _mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
            raw = data[offset + _EVENT_HEADER.size : offset + _EVENT_HEADER.size + length]
            offset += _EVENT_HEADER.size + length
            name = raw.rstrip(b"\0").decode(errors="replace")
            if name:
                self._on_name(name)

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
