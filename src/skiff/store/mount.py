"""mount(2)/umount2(2) through ctypes: no subprocess per container start."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import InvalidArgument, RuntimeFailure

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

_FLAG_OPTIONS = {
    "ro": MS_RDONLY,
    "rw": 0,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "bind": MS_BIND,
    "rbind": MS_BIND | MS_REC,
}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclass(frozen=True)
class MountSpec:
    """One mount to perform: ``type`` is ``overlay`` or ``bind``; options as in mount(8)."""

    type: str
    source: str
    options: tuple[str, ...]


def mount_errno(source: str | None, target: Path, fstype: str | None, flags: int, data: str | None) -> int:
    """mount(2); 0 on success, else the errno (callers word their own errors)."""
    rc = _libc.mount(
        source.encode() if source is not None else None,
        os.fsencode(target),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    return ctypes.get_errno() if rc != 0 else 0


def _mount(source: str, target: Path, fstype: str | None, flags: int, data: str | None) -> None:
    err = mount_errno(source, target, fstype, flags, data)
    if err:
        raise RuntimeFailure(
            f"mount {fstype or 'bind'} {source} on {target} failed: {os.strerror(err)}"
            + (f" (options {data!r})" if data else "")
        )


def mount_one(spec: MountSpec, target: Path) -> None:
    """Perform one mount on ``target``."""
    flags = 0
    data: list[str] = []
    for opt in spec.options:
        if opt in _FLAG_OPTIONS:
            flags |= _FLAG_OPTIONS[opt]
        else:
            data.append(opt)
    if spec.type == "bind":
        flags |= MS_BIND
    elif flags & MS_BIND:
        raise InvalidArgument(f"mount type {spec.type!r} cannot take bind options")
    data_s = ",".join(data) or None
    if len(data_s or "") >= os.sysconf("SC_PAGE_SIZE"):
        raise InvalidArgument(
            f"mount options for {target} are {len(data_s or '')} bytes, over the kernel's page-size limit;"
            " the image has too many layers"
        )
    if flags & MS_BIND:
        _mount(spec.source, target, None, flags & (MS_BIND | MS_REC), None)
        extra = flags & ~(MS_BIND | MS_REC)
        if extra:
            # A bind mount ignores ro/nosuid/...; they take effect only on a remount.
            _mount("none", target, None, MS_BIND | MS_REMOUNT | extra, None)
        return
    _mount(spec.source, target, spec.type, flags, data_s)


def mount_all(mounts: Sequence[MountSpec], target: Path) -> None:
    """Mount ``mounts`` on ``target`` in order (as returned by the snapshotter)."""
    done = 0
    try:
        for spec in mounts:
            mount_one(spec, target)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target)
        raise


def unmount(target: Path) -> None:
    """Lazily unmount ``target`` (umount2 MNT_DETACH). Not mounted / missing is fine."""
    rc = _libc.umount2(os.fsencode(target), MNT_DETACH)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise RuntimeFailure(f"unmount {target} failed: {os.strerror(err)}")


def is_mountpoint(path: Path) -> bool:
    """True if ``path`` is a mount point (per /proc/self/mountinfo)."""
    want = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and _unescape(fields[4]) == want:
                return True
    return False


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
