"""Layer tars: safe extraction into an overlay upper dir, and diffs of an upper dir back to a tar.

Extraction never follows a symlink: every path is walked component by component from a
directory fd with O_NOFOLLOW, ``..`` is refused, leading ``/`` is dropped, and hard links may
only point at entries already inside the target. A member that would pass through a symlink
is refused (the layer is rejected), so a hostile tar cannot write outside ``target``.

OCI whiteouts become overlayfs whiteouts: ``.wh.<name>`` -> a 0/0 character device ``<name>``;
``.wh..wh..opq`` -> ``trusted.overlay.opaque=y`` on its directory. :func:`diff_tar` does the reverse.
A layer's own ``trusted.overlay.*`` xattrs are dropped: overlayfs reads them (redirects, metacopy,
opaque), so only the whiteout conversion above may set them.

Everything else a tar can hold is kept, as dockerd does when it runs as root: owners, setuid and
setgid bits, file capabilities, device nodes (a container reaches a device only through its
cgroup's device rules, which deny these by default). A member the kernel refuses (a hard link to
a directory, a name too long) rejects the layer with a 400, never a 500.

With a :class:`~skiff.images.tarsplit.SplitRecorder`, :func:`apply_layer` also records what it
takes to rebuild the tar byte for byte later (``save``/``push`` must reproduce the diff_id).
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import lzma
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from skiff.errors import InvalidArgument
from skiff.fs.scoped import rmtree_at
from skiff.images.tarsplit import SplitRecorder

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
# Errors that say the host is in trouble, not the layer: reported as they are.
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ApplyResult:
    """``diff_id``: sha256 of the uncompressed tar; ``size``: bytes of file content it holds."""

    diff_id: str
    size: int


class _HashingReader:
    """Passes reads through and hashes every byte (the diff_id covers the whole stream)."""

    def __init__(self, raw: BinaryIO, split: SplitRecorder | None = None) -> None:
        self._raw = raw
        self._split = split
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.hash.update(data)
        self.count += len(data)
        if self._split is not None and data:
            self._split.feed(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


class _PeekReader:
    """A reader whose first bytes have already been read (to sniff compression)."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)


def decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` uncompressed: gzip, bzip2 and xz are detected by their magic bytes."""
    head = stream.read(6)
    peek: BinaryIO = _PeekReader(head, stream)  # type: ignore[assignment]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=peek, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(peek, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(peek, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise InvalidArgument("zstd-compressed layers are not supported; recompress the layer with gzip")
    return peek


def _clean_name(name: str) -> list[str]:
    """Split a member name into safe components; refuse ``..``."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArgument(f"refusing layer: member {name!r} contains '..' (would escape the root)")
    return parts


class _Extractor:
    """Holds the root dir fd and a cache of opened parent dirs for one extraction."""

    def __init__(self, target: Path, split: SplitRecorder | None = None) -> None:
        self.split = split
        self.root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        self.cache: dict[tuple[str, ...], int] = {}
        self.is_root = os.geteuid() == 0
        self.dir_attrs: list[tuple[tuple[str, ...], tarfile.TarInfo]] = []

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()
        os.close(self.root_fd)

    def forget(self, prefix: tuple[str, ...]) -> None:
        """Drop cached fds at or under ``prefix`` (it was removed or replaced)."""
        for key in [k for k in self.cache if k[: len(prefix)] == prefix]:
            os.close(self.cache.pop(key))

    def dir_fd(self, parts: tuple[str, ...], create: bool = True) -> int:
        """fd of directory ``parts`` under root, creating missing ones (0755), never following symlinks."""
        if not parts:
            return self.root_fd
        cached = self.cache.get(parts)
        if cached is not None:
            return cached
        parent = self.dir_fd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(
                    f"refusing layer: {'/'.join(parts)!r} is not a directory (a symlink or file);"
                    " writing through it could escape the root"
                ) from None
            raise
        self.cache[parts] = fd
        return fd

    def remove(self, parent_fd: int, name: str, parts: tuple[str, ...]) -> None:
        """Remove ``name`` (any type, recursively) if present."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if self.split is not None:
            self.split.removed(parts)
        if stat.S_ISDIR(st.st_mode):
            self.forget(parts)
            rmtree_at(parent_fd, name)
        else:
            os.unlink(name, dir_fd=parent_fd)


def _set_attrs(ex: _Extractor, parent_fd: int, name: str, m: tarfile.TarInfo) -> None:
    """Owner, xattrs, mode and mtime, in that order (chown clears setuid bits)."""
    if ex.is_root:
        os.chown(name, m.uid, m.gid, dir_fd=parent_fd, follow_symlinks=False)
    for key, value in m.pax_headers.items():
        if key.startswith("SCHILY.xattr.") and not key.startswith("SCHILY.xattr." + OVERLAY_XATTR_PREFIX):
            try:
                os.setxattr(
                    f"/proc/self/fd/{parent_fd}/{name}",
                    key[len("SCHILY.xattr.") :],
                    value.encode("utf-8", "surrogateescape"),
                    follow_symlinks=False,
                )
            except OSError:
                pass  # e.g. security.* without privilege, or a filesystem without xattrs
    if not m.issym():
        os.chmod(name, m.mode & 0o7777, dir_fd=parent_fd)
    os.utime(name, ns=(int(m.mtime * 1e9),) * 2, dir_fd=parent_fd, follow_symlinks=False)


def _extract_member(ex: _Extractor, tf: tarfile.TarFile, m: tarfile.TarInfo) -> int:
    """Create one member; returns content bytes written."""
    parts = tuple(_clean_name(m.name))
    if not parts:
        if m.isdir():  # "./" itself: the root's attributes are the snapshot's, not the layer's
            return 0
        raise InvalidArgument(f"refusing layer: member {m.name!r} has an empty name")
    base = parts[-1]
    parent_parts = parts[:-1]
    parent_fd = ex.dir_fd(parent_parts)
    if base == OPAQUE_WHITEOUT:
        if parent_parts:
            os.setxattr(f"/proc/self/fd/{parent_fd}", OPAQUE_XATTR, b"y")
        return 0
    if base.startswith(WHITEOUT_PREFIX):
        victim = base[len(WHITEOUT_PREFIX) :]
        if not victim or victim in (".", ".."):
            raise InvalidArgument(f"refusing layer: invalid whiteout {m.name!r}")
        ex.remove(parent_fd, victim, (*parent_parts, victim))
        os.mknod(victim, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)
        # The header's mtime, not the time of extraction: regenerating the tar from the
        # snapshot (save/push) must give the same diff_id whenever it runs.
        os.utime(victim, ns=(int(m.mtime * 1e9),) * 2, dir_fd=parent_fd, follow_symlinks=False)
        return 0
    if m.isdir():
        try:
            st = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                ex.remove(parent_fd, base, parts)
                os.mkdir(base, 0o755, dir_fd=parent_fd)
        except FileNotFoundError:
            os.mkdir(base, 0o755, dir_fd=parent_fd)
        # Mode and mtime last: adding children changes the mtime, and a 0555 dir blocks non-root.
        ex.dir_attrs.append((parts, m))
        return 0
    ex.remove(parent_fd, base, parts)
    written = 0
    if m.isreg():
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent_fd)
        if ex.split is not None and not m.issparse():
            # Sparse members are stored packed; their bytes stay in the split as they are.
            ex.split.content(m.offset_data, m.size, parts)
        try:
            src = tf.extractfile(m)
            assert src is not None
            while chunk := src.read(_CHUNK):
                os.write(fd, chunk)
                written += len(chunk)
        finally:
            os.close(fd)
    elif m.issym():
        os.symlink(m.linkname, base, dir_fd=parent_fd)
    elif m.islnk():
        link_parts = tuple(_clean_name(m.linkname))
        if not link_parts:
            raise InvalidArgument(f"refusing layer: hard link {m.name!r} has an empty target")
        try:
            link_parent = ex.dir_fd(link_parts[:-1], create=False)
            os.link(link_parts[-1], base, src_dir_fd=link_parent, dst_dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidArgument(
                f"refusing layer: hard link {m.name!r} points at {m.linkname!r}, which is not in this layer"
            ) from None
        return 0  # a hard link shares its target's attributes; setting them again is redundant
    elif m.ischr() or m.isblk():
        if not ex.is_root:
            return 0  # device nodes need root; an unprivileged extraction skips them
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=parent_fd)
    elif m.isfifo():
        os.mkfifo(base, 0o600, dir_fd=parent_fd)
    else:
        return 0  # unknown types (e.g. GNU volume headers) carry no file
    _set_attrs(ex, parent_fd, base, m)
    return written


def apply_layer(tar_stream: BinaryIO, target: Path, split: SplitRecorder | None = None) -> ApplyResult:
    """Extract a (possibly compressed) layer tar into ``target`` safely; see the module docstring.

    With ``split``, the uncompressed stream is recorded into it as well (the caller finishes it).
    """
    hashing = _HashingReader(decompressed(tar_stream), split)
    ex = _Extractor(target, split)
    size = 0
    try:
        try:
            tf = tarfile.open(fileobj=hashing, mode="r|", errorlevel=2, bufsize=_CHUNK)  # type: ignore[call-overload]
        except tarfile.ReadError as e:
            if hashing.count == 0:
                tf = None  # an empty stream is an empty layer
            else:
                raise InvalidArgument(f"invalid layer tar: {e}") from None
        if tf is not None:
            try:
                for m in tf:
                    try:
                        size += _extract_member(ex, tf, m)
                    except OSError as e:
                        if e.errno in _HOST_ERRNOS:
                            raise
                        raise InvalidArgument(
                            f"refusing layer: cannot extract {m.name!r}: {e.strerror or e}"
                        ) from None
            except tarfile.TarError as e:
                raise InvalidArgument(f"invalid layer tar: {e}") from None
            for parts, m in reversed(ex.dir_attrs):
                try:
                    _set_attrs(ex, ex.dir_fd(parts[:-1], create=False), parts[-1], m)
                except FileNotFoundError:
                    pass  # removed again later in the same layer
        hashing.drain()  # the diff_id covers the end-of-archive padding too
    finally:
        ex.close()
    return ApplyResult("sha256:" + hashing.hash.hexdigest(), size)


# -- upper dir -> tar ------------------------------------------------------------------------


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()

    def write(self, b: bytes) -> int:
        self.hash.update(b)
        self._out.write(b)
        return len(b)


def _walk_sorted(
    root: Path, rel: str = "", skip: frozenset[str] = frozenset()
) -> Iterator[tuple[str, os.stat_result]]:
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        path = f"{rel}/{e.name}" if rel else e.name
        if path in skip:
            continue
        st = e.stat(follow_symlinks=False)
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_sorted(root, path, skip)


def _xattrs(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        if name.startswith("trusted.overlay."):
            continue  # overlay's own bookkeeping, never part of a layer
        try:
            out["SCHILY.xattr." + name] = os.getxattr(path, name, follow_symlinks=False).decode(
                "utf-8", "surrogateescape"
            )
        except OSError:
            continue
    return out


def diff_tar(upper: Path, out: BinaryIO, skip: frozenset[str] = frozenset()) -> ApplyResult:
    """Write ``upper`` (an overlay upper dir or a committed layer) as an OCI layer tar to ``out``.

    Deterministic for the same tree: sorted entries, numeric owners only, PAX format.
    ``skip``: relative paths left out with everything below them (a container's runtime mount
    targets, see :mod:`skiff.fs.overlay`).
    """
    sink = _HashingWriter(out)
    size = 0
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for rel, st in _walk_sorted(upper, skip=skip):
            full = upper / rel
            head, _, name = rel.rpartition("/")
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                ti = tarfile.TarInfo(f"{head}/{WHITEOUT_PREFIX}{name}" if head else WHITEOUT_PREFIX + name)
                ti.mtime = int(st.st_mtime)
                tf.addfile(ti)
                continue
            ti = tarfile.TarInfo(rel)
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            ti.mtime = int(st.st_mtime)
            ti.pax_headers = _xattrs(full)
            fileobj = None
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
                else:
                    links[key] = rel
                    ti.size = st.st_size
                    fileobj = open(full, "rb")
                    size += st.st_size
            elif stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
            else:
                continue  # sockets cannot be archived
            try:
                tf.addfile(ti, fileobj)
            finally:
                if fileobj is not None:
                    fileobj.close()
            if stat.S_ISDIR(st.st_mode):
                try:
                    opaque = os.getxattr(full, OPAQUE_XATTR, follow_symlinks=False) == b"y"
                except OSError:
                    opaque = False
                if opaque:
                    wh = tarfile.TarInfo(f"{rel}/{OPAQUE_WHITEOUT}")
                    wh.mtime = int(st.st_mtime)
                    tf.addfile(wh)
    return ApplyResult("sha256:" + sink.hash.hexdigest(), size)
