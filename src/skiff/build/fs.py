"""Files into a root directory without ever leaving it: tar extraction and COPY/ADD copies.

Every destination path is resolved *inside* the root, the way a chroot would see it:
symlinks in parent directories are followed but cannot point out of the root, and the
final component is never followed (an existing entry that is in the way is replaced, an
existing directory is merged into). The roots are a build context being unpacked and an
image's root filesystem mounted for a COPY; nothing else runs in either meanwhile.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from skiff.errors import InvalidArgument
from skiff.fs.scoped import resolve_in_root

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Owner:
    """uid/gid for new files; None keeps what the source says (ADD of an archive)."""

    uid: int = 0
    gid: int = 0


def split(path: str) -> list[str]:
    """Components of a slash path, without empty and ``.`` parts."""
    return [p for p in path.split("/") if p and p != "."]


def ensure_dir(root: Path, path: str, owner: Owner | None = Owner(), mode: int = 0o755) -> Path:
    """``mkdir -p`` of ``path`` inside ``root``; new directories get ``owner`` and ``mode``.

    Symlinks on the way are followed inside the root first (a chroot's ``mkdir -p`` through a
    symlink to a missing directory creates that directory), then what is missing is made.
    """
    resolved = resolve_in_root(root, path).relative_to(root)
    current = Path(root)
    for part in resolved.parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, mode)
            os.chmod(current, mode)
            if owner is not None:
                os.lchown(current, owner.uid, owner.gid)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(
                f"cannot create directory {path}: {'/'.join(resolved.parts)} is not a directory"
            )
    return current


def _clear(target: Path, new_is_dir: bool) -> None:
    """Make room for a new entry at ``target`` (never following a symlink there)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if new_is_dir:
            return
        raise InvalidArgument(f"cannot overwrite directory {target.name!r} with non-directory")
    os.unlink(target)


def _place(root: Path, path: str, owner: Owner | None) -> Path:
    """The host path for entry ``path`` in ``root``: parents made and resolved, name not followed."""
    parts = split(path)
    if not parts:
        return Path(root)
    parent = ensure_dir(root, "/".join(parts[:-1]), owner) if len(parts) > 1 else Path(root)
    return parent / parts[-1]


def _finish(target: Path, mode: int, owner: Owner | None, uid: int, gid: int, mtime: float) -> None:
    if owner is not None:
        uid, gid = owner.uid, owner.gid
    os.lchown(target, uid, gid)
    if not os.path.islink(target):
        os.chmod(target, stat.S_IMODE(mode))
    os.utime(target, (mtime, mtime), follow_symlinks=False)


def clean_member_name(name: str) -> str:
    """A tar member name as a relative path; ``..`` leaving the root is refused."""
    parts: list[str] = []
    for part in split(name):
        if part == "..":
            if not parts:
                raise InvalidArgument(f"invalid path in archive: {name!r} leaves the root")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def extract_tar(stream: BinaryIO, root: Path, owner: Owner | None, dest: str = "/") -> int:
    """Unpack a (possibly compressed) tar into ``dest`` inside ``root``; returns entry count.

    ``owner`` None keeps the archive's owners (ADD of a local archive); device nodes and
    fifos are skipped, hard links must point at an entry already unpacked.
    """
    count = 0
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    base = split(dest)
    with tarfile.open(fileobj=stream, mode="r|*") as tf:
        for member in _members(tf):
            rel = clean_member_name(member.name)
            path = "/".join([*base, rel]) if rel else "/".join(base)
            if not rel and not member.isdir():
                continue
            target = _place(root, path, owner if owner is not None else Owner())
            if member.isdir():
                if rel:
                    _clear(target, True)
                    if not os.path.isdir(target):
                        os.mkdir(target, 0o700)
                dirs.append((target, member))
            elif member.isreg():
                _clear(target, False)
                src = tf.extractfile(member)
                assert src is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                _finish(target, member.mode, owner, member.uid, member.gid, member.mtime)
            elif member.issym():
                _clear(target, False)
                os.symlink(member.linkname, target)
                _finish(target, member.mode, owner, member.uid, member.gid, member.mtime)
            elif member.islnk():
                link_rel = clean_member_name(member.linkname)
                source = resolve_in_root(root, "/".join([*base, link_rel]))
                if not source.is_file() or source.is_symlink():
                    raise InvalidArgument(f"invalid hard link in archive: {member.name} -> {member.linkname}")
                _clear(target, False)
                os.link(source, target)
            else:
                continue  # devices, fifos: never from a build context or an ADD
            count += 1
    for target, member in reversed(dirs):  # deepest last written first: mtimes stay
        _finish(target, member.mode, owner, member.uid, member.gid, member.mtime)
    return count


def _members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members; a stream that ends right after the last member's data is complete.

    The docker CLI's context with ``-f -`` stops there (no padding, no end-of-archive blocks),
    and dockerd accepts it. A member whose *data* is cut short still fails (in its read).
    """
    last: tarfile.TarInfo | None = None
    while True:
        try:
            member = tf.next()
        except tarfile.ReadError:
            position = getattr(tf.fileobj, "pos", -1)
            if last is not None and position == last.offset_data + (last.size if last.isreg() else 0):
                return
            raise
        if member is None:
            return
        last = member
        yield member


# -- COPY / ADD ------------------------------------------------------------------------------


def walk(top: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under ``top``, parents before children, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        directory = top / rel if rel else top
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        children: list[str] = []
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                children.append(child)
        stack.extend(reversed(children))


def copy_entry(src: Path, st: os.stat_result, root: Path, path: str, owner: Owner, chmod: int | None) -> None:
    """Copy one file, directory or symlink at host ``src`` to ``path`` inside ``root``."""
    target = _place(root, path, owner)
    mode = chmod if chmod is not None else st.st_mode
    if stat.S_ISDIR(st.st_mode):
        _clear(target, True)
        if not os.path.isdir(target):
            os.mkdir(target, 0o700)
    elif stat.S_ISLNK(st.st_mode):
        _clear(target, False)
        os.symlink(os.readlink(src), target)
    elif stat.S_ISREG(st.st_mode):
        _clear(target, False)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    else:
        return  # sockets, fifos, devices are not copied
    _finish(target, mode, owner, 0, 0, st.st_mtime)


def copy_tree(src: Path, root: Path, dest: str, owner: Owner, chmod: int | None) -> None:
    """The *contents* of directory ``src`` into directory ``dest`` (made if missing)."""
    ensure_dir(root, dest, owner)
    dirs: list[tuple[str, os.stat_result]] = []
    for rel, st in walk(src):
        copy_entry(src / rel, st, root, f"{dest}/{rel}", owner, chmod)
        if stat.S_ISDIR(st.st_mode):
            dirs.append((rel, st))
    for rel, st in reversed(dirs):  # copying children changed the directories' mtimes
        target = resolve_in_root(root, f"{dest}/{rel}")
        os.utime(target, (st.st_mtime, st.st_mtime), follow_symlinks=False)


def is_dir_in_root(root: Path, path: str) -> bool:
    """True if ``path`` inside ``root`` (symlinks followed inside it) is a directory."""
    return resolve_in_root(root, path).is_dir()
