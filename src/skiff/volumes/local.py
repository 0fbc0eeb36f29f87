"""The ``local`` volume driver, on dockerd's layout: ``<root>/volumes/<name>/_data``.

A volume created with ``--opt type=... --opt device=... [--opt o=...]`` is a mount (tmpfs,
a bind of a host directory, any filesystem mount(2) takes) that the engine mounts on
``_data`` while containers use it, as dockerd's local driver does. Everything else is a
plain directory. Nothing here knows about containers; ``VolumeService`` counts users.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from skiff.errors import InvalidArgument, RuntimeFailure
from skiff.store.mount import is_mountpoint, mount_errno, unmount

DRIVER = "local"
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME_RE = re.compile(rf"^{NAME_CHARS}+$")
_VALID_OPTIONS = ("type", "device", "o", "size")
# An option that needs others alongside (moby's mandatoryOpts).
_MANDATORY = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_TRASH = ".trash-"  # volume names start with [a-zA-Z0-9]: no volume can be called this

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# option -> (clear instead of set, flag): mount(8)'s names, as moby's mount package parses ``o``.
_FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "suid": (True, MS_NOSUID),
    "nosuid": (False, MS_NOSUID),
    "dev": (True, MS_NODEV),
    "nodev": (False, MS_NODEV),
    "exec": (True, MS_NOEXEC),
    "noexec": (False, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME),
    "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
}
_PROPAGATION_FLAGS = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}


def validate_name(name: str) -> None:
    """dockerd's local driver rule: two or more of ``[a-zA-Z0-9][a-zA-Z0-9_.-]``."""
    if len(name) == 1:
        raise InvalidArgument(
            "volume name is too short, names should be at least two alphanumeric characters"
        )
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            f'"{name}" includes invalid characters for a local volume name, only "{NAME_CHARS}" are allowed.'
            " If you intended to pass a host directory, use absolute path"
        )


def validate_options(opts: dict[str, str]) -> None:
    """Options the local driver takes: ``type``, ``device`` and ``o`` (moby's ``validateOpts``)."""
    for key in opts:
        if key not in _VALID_OPTIONS:
            raise InvalidArgument(f'invalid option: "{key}"')
    if "size" in opts:
        raise InvalidArgument("quota size requested but no quota support")
    for key, needs in _MANDATORY.items():
        if key in opts:
            for other in needs:
                if other not in opts:
                    raise InvalidArgument(f'missing required option: "{other}"')
    flags, _, _ = parse_mount_options(opts.get("o", ""))
    if flags & MS_BIND and not opts.get("device", "").startswith("/"):
        raise InvalidArgument(
            f"a bind-style volume needs an absolute host path as device: {opts.get('device')!r}"
        )


def needs_mount(opts: dict[str, str] | None) -> bool:
    """True for a volume that is a mount on ``_data`` (tmpfs, bind-style, ...)."""
    return bool(opts and opts.get("type"))


def parse_mount_options(o: str) -> tuple[int, list[str], int]:
    """``o=...`` -> (mount flags, data options, propagation flags)."""
    flags = 0
    data: list[str] = []
    propagation = 0
    for opt in (x.strip() for x in o.split(",")):
        if not opt:
            continue
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION_FLAGS:
            propagation |= _PROPAGATION_FLAGS[opt]
        else:
            data.append(opt)
    return flags, data, propagation


def _mount(source: str | None, target: Path, fstype: str | None, flags: int, data: str | None) -> None:
    err = mount_errno(source, target, fstype, flags, data)
    if err:
        raise RuntimeFailure(
            f"failed to mount local volume: mount {source}:{target}, flags: {flags:#x}: {os.strerror(err)}"
        )


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            point = point.replace("\\134", "\\")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


class LocalDriver:
    """Directories (and mounts) of local volumes under one ``volumes`` directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # dockerd's volumes directory is 0701: others may traverse to a _data, not list names.
        os.chmod(root, 0o701)

    def path(self, name: str) -> Path:
        return self.root / name

    def data(self, name: str) -> Path:
        """The volume's ``_data``: what containers see, and Docker's ``Mountpoint``."""
        return self.root / name / "_data"

    def create(self, name: str) -> None:
        """Make the volume's directories (an existing one is kept)."""
        (self.root / name).mkdir(mode=0o755, exist_ok=True)
        self.data(name).mkdir(mode=0o755, exist_ok=True)

    def is_mounted(self, name: str) -> bool:
        return is_mountpoint(self.data(name))

    def mount(self, name: str, opts: dict[str, str]) -> None:
        """Mount the volume's filesystem on ``_data`` (no-op when already mounted)."""
        target = self.data(name)
        target.mkdir(parents=True, exist_ok=True)
        if self.is_mounted(name):
            return
        flags, data, propagation = parse_mount_options(opts.get("o", ""))
        device = opts.get("device", "")
        fstype = opts.get("type", "")
        try:
            if flags & MS_BIND:
                _mount(device, target, None, flags & (MS_BIND | MS_REC), None)
                extra = flags & ~(MS_BIND | MS_REC)
                if extra:  # a bind ignores ro/nosuid/...: they take a remount
                    _mount(None, target, None, MS_BIND | MS_REMOUNT | extra, None)
            else:
                _mount(device, target, fstype, flags, ",".join(data) or None)
            if propagation:
                _mount(None, target, None, propagation, None)
        except BaseException:
            with contextlib.suppress(RuntimeFailure):
                unmount(target)
            raise

    def unmount(self, name: str) -> None:
        """Unmount ``_data`` if something is mounted there."""
        target = self.data(name)
        while self.is_mounted(name):
            unmount(target)

    def retire(self, name: str) -> Path | None:
        """Unmount, then move the volume's directory aside; returns it for :meth:`purge`.

        Moving first makes the name free at once (a new volume of that name gets a fresh
        directory) while the old data is deleted in the background.
        """
        self.unmount(name)
        path = self.path(name)
        if not path.exists():
            return None
        left = mounts_under(path)
        if left:
            raise RuntimeFailure(
                f"remove {name}: something is still mounted in the volume: {', '.join(left)}"
            )
        trash = self.root / f"{_TRASH}{name}-{secrets.token_hex(4)}"
        os.rename(path, trash)
        return trash

    @staticmethod
    def purge(trash: Path) -> None:
        """Delete a retired directory, never through a mount."""
        if mounts_under(trash):
            raise RuntimeFailure(f"refusing to delete {trash}: something is mounted in it")
        shutil.rmtree(trash, ignore_errors=True)

    def leftovers(self, known: Iterable[str]) -> list[Path]:
        """Retire directories without a record (a crash mid-create or mid-remove) and old trash."""
        names = set(known)
        out = []
        for entry in self.root.iterdir():
            if not entry.is_dir() or entry.name in names:
                continue
            if entry.name.startswith(_TRASH):
                out.append(entry)
                continue
            trash = self.retire(entry.name)
            if trash is not None:
                out.append(trash)
        return out

    def size(self, name: str) -> int:
        """Bytes of the files in the volume (hard links counted once), as ``system df`` shows."""
        total = 0
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(self.data(name)):
            for entry in (*dirnames, *filenames):
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, entry))
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                    if not stat.S_ISDIR(st.st_mode):
                        total += st.st_size
        return total
