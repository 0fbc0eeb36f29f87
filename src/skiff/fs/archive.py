"""The tars of ``docker cp`` and ``docker export``, over a :class:`~skiff.fs.scoped.RootView`.

Reading (``GET /containers/{id}/archive``, export): the path is resolved as dockerd's
``ResolvePath`` does (symlinks before the last component followed inside the root, the last one
kept), and the tree is walked by file descriptor, crossing into mounts (volumes, binds).
Entry names start with the path's base name, as dockerd's ``TarResourceRebase`` writes them:
``data.txt``, ``etc/passwd``, ``./passwd`` for ``/etc/.``, ``/bin/sh`` for ``/``.

Writing (``PUT .../archive``): a cp archive is not an image layer (no whiteouts). Member
names are cleaned; one that climbs out with ``..`` is refused. The directories on a member's
path are resolved with the destination directory acting as the root (dockerd untars in a
chroot of it): a symlink in the archive or in the container can redirect a later member only
to somewhere inside the destination. Hard links must point inside it too. Owners, modes
(setuid included), times, file capabilities, device nodes and fifos are kept, as dockerd keeps
them. Attributes are set through descriptors of the very inode written, never by path, so a
running container that swaps a file for a symlink meanwhile cannot redirect a chmod or chown.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import errno
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from skiff.errors import Forbidden, InvalidArgument
from skiff.fs.scoped import Resolved, RootView, components, reopen, rmtree_at

_CHUNK = 1 << 20
_DIR_CACHE = 256
# Only the file capability travels, as with dockerd's archives (no user.* or security.selinux).
_CAPABILITY_XATTR = "security.capability"
_OVERLAY_XATTRS = "trusted.overlay."

# Go's os.FileMode type bits (the ``mode`` of X-Docker-Container-Path-Stat).
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20
GO_MODE_IRREGULAR = 1 << 19


def go_file_mode(st_mode: int) -> int:
    """A stat ``st_mode`` as Go's ``os.FileMode`` (permission bits plus Go's own type bits)."""
    mode = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= GO_MODE_DIR
    elif stat.S_ISLNK(st_mode):
        mode |= GO_MODE_SYMLINK
    elif stat.S_ISFIFO(st_mode):
        mode |= GO_MODE_NAMED_PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= GO_MODE_SOCKET
    elif stat.S_ISCHR(st_mode):
        mode |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif stat.S_ISBLK(st_mode):
        mode |= GO_MODE_DEVICE
    elif not stat.S_ISREG(st_mode):
        mode |= GO_MODE_IRREGULAR
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def rfc3339_nano(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction dropped."""
    secs, frac = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class PathStat:
    """Docker's ``ContainerPathStat``: what ``HEAD /containers/{id}/archive`` reports."""

    name: str
    size: int
    mode: int  # Go os.FileMode
    mtime: str
    link_target: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        }

    def header(self) -> str:
        """The ``X-Docker-Container-Path-Stat`` value: base64 (standard) of the JSON."""
        return base64.b64encode(json.dumps(self.to_json()).encode()).decode()

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & GO_MODE_DIR)


def container_path(path: str) -> str:
    """``path`` as an absolute clean container path, keeping a trailing ``/`` or ``/.``.

    Go's ``PreserveTrailingDotOrSeparator(filepath.Join("/", path), path)``.
    """
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    if path.endswith("/.") or path == ".":
        return cleaned.rstrip("/") + "/."
    if path.endswith("/") and not cleaned.endswith("/"):
        return cleaned + "/"
    return cleaned


def _asserts_dir(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.")


def base_name(path: str) -> str:
    """Go's ``filepath.Base``: the last element, ``/`` for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def _lookup_last_kept(view: RootView, abs_path: str) -> Resolved:
    """dockerd's ``ResolvePath``: follow symlinks up to the last component, keep the last one.

    A path that ends in ``/`` or ``/.`` names the directory itself, which must be one.
    """
    if _asserts_dir(abs_path):
        found = view.lookup(abs_path, follow=True)
        if found.exists and not stat.S_ISDIR(found.stat().st_mode):
            found.close()
            raise NotADirectoryError(abs_path)
        return found
    head, _, last = abs_path.rpartition("/")
    with view.lookup(head or "/", follow=True) as parent:
        return view.child(parent, last)


def stat_path(view: RootView, path: str) -> PathStat:
    """Stat ``path`` (FileNotFoundError if missing), as dockerd's ``StatPath``."""
    abs_path = container_path(path)
    with _lookup_last_kept(view, abs_path) as found:
        st = found.stat()
    link_target = view.resolve(abs_path) if stat.S_ISLNK(st.st_mode) else ""
    return PathStat(
        base_name(abs_path), st.st_size, go_file_mode(st.st_mode), rfc3339_nano(st.st_mtime_ns), link_target
    )


# -- reading ---------------------------------------------------------------------------------


class _Exactly:
    """Reads exactly ``size`` bytes: a file that shrank (a running container) is padded with NULs."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n < 0 else min(n, self._left)
        data = os.read(self._fd, want) if self._fd >= 0 else b""
        if not data:
            data = b"\0" * want
        self._left -= len(data)
        return data


def _capability(fd: int, st: os.stat_result) -> dict[str, str]:
    if stat.S_ISLNK(st.st_mode):
        return {}
    try:
        value = os.getxattr(f"/proc/self/fd/{fd}", _CAPABILITY_XATTR)
    except OSError:
        return {}
    return {"SCHILY.xattr." + _CAPABILITY_XATTR: value.decode("utf-8", "surrogateescape")}


class GoTarFile(tarfile.TarFile):
    """A tar that ends as Go's ``archive/tar`` ends one: two zero blocks, without Python's padding
    to a 10 KiB record, so sizes docker prints ("Successfully copied 2.05kB") match dockerd's."""

    def close(self) -> None:
        if getattr(self, "closed", False):
            return
        self.closed: bool = True
        fileobj = self.fileobj
        assert fileobj is not None
        try:
            if self.mode in ("a", "w", "x"):
                fileobj.write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
                self.offset += tarfile.BLOCKSIZE * 2
        finally:
            if not getattr(self, "_extfileobj", True):
                fileobj.close()


class _TreeWriter:
    """Writes entries of a RootView into a tar stream; hard links stay hard links."""

    def __init__(self, view: RootView, tf: tarfile.TarFile) -> None:
        self.view = view
        self.tf = tf
        self.links: dict[tuple[int, int], str] = {}

    def add(self, entry: Resolved, name: str, emit_self: bool = True) -> None:
        """``entry`` (and, for a directory, everything below it) under archive name ``name``."""
        st = entry.stat()
        if emit_self:
            self._add_one(entry, name, st)
        if stat.S_ISDIR(st.st_mode):
            prefix = name.rstrip("/") + "/" if name else ""
            for child_name in self.view.scandir(entry):
                with self.view.child(entry, child_name) as child:
                    if child.exists:
                        self.add(child, prefix + child_name)

    def _add_one(self, entry: Resolved, name: str, st: os.stat_result) -> None:
        mode = st.st_mode
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.mtime = st.st_mtime_ns // 1_000_000_000
        ti.pax_headers = _capability(entry.fd, st)
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                ti.type, ti.linkname = tarfile.LNKTYPE, self.links[key]
                self.tf.addfile(ti)
                return
            if st.st_nlink > 1:
                self.links[key] = name
            ti.size = st.st_size
            fd = reopen(entry.fd, os.O_RDONLY)
            try:
                self.tf.addfile(ti, _Exactly(fd, st.st_size))
            finally:
                os.close(fd)
            return
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=entry.fd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        else:
            return  # sockets cannot be archived
        self.tf.addfile(ti)


@dataclass
class ArchiveSource:
    """A path ready to be archived: ``stat`` goes in the header, :meth:`write` sends the tar."""

    view: RootView
    stat: PathStat
    entry: Resolved
    rebase: str

    def write(self, out: BinaryIO) -> None:
        with GoTarFile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            _TreeWriter(self.view, tf).add(self.entry, self.rebase)

    def close(self) -> None:
        self.entry.close()


def archive_source(view: RootView, path: str) -> ArchiveSource:
    """Prepare ``GET .../archive?path=``: FileNotFoundError if the path does not exist."""
    abs_path = container_path(path)
    found = _lookup_last_kept(view, abs_path)
    try:
        st = found.stat()
        link_target = view.resolve(abs_path) if stat.S_ISLNK(st.st_mode) else ""
        name = base_name(abs_path)
        info = PathStat(name, st.st_size, go_file_mode(st.st_mode), rfc3339_nano(st.st_mtime_ns), link_target)
        return ArchiveSource(view, info, found, "/" if name == "/" else name)
    except BaseException:
        found.close()
        raise


def write_export(view: RootView, out: BinaryIO) -> None:
    """The whole root (no mounts in ``view`` for export) as a tar; names without a leading ``/``."""
    with view.root_entry() as root, GoTarFile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        _TreeWriter(view, tf).add(root, "", emit_self=False)


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractOptions:
    """How to extract.

    ``no_overwrite_dir_non_dir``: refuse to replace a directory by a non-directory or back.
    ``owner``: every entry gets this uid/gid (``copyUIDGID``); ``chown=False`` leaves entries
    owned by whoever extracts (the docker CLI's local side). ``readonly_rootfs``: the container's
    root filesystem is read-only (its volumes may still be written). ``rebase``: (old, new)
    replaces the first name component ``old`` by ``new`` (the CLI's ``RebaseArchiveEntries``).
    """

    no_overwrite_dir_non_dir: bool = False
    owner: tuple[int, int] | None = None
    chown: bool = True
    readonly_rootfs: bool = False
    rebase: tuple[str, str] | None = None


def rebase_name(name: str, old: str, new: str) -> str:
    """``name`` with its first component ``old`` renamed ``new`` (``old`` "" or "/": prepend)."""
    if old in ("", "/"):
        return new + "/" + name.lstrip("/")
    if name == old or name.startswith(old + "/"):
        return new + name[len(old) :]
    return name


def _member_parts(name: str) -> list[str]:
    cleaned = posixpath.normpath("/" + name.lstrip("/")) if name.startswith("/") else posixpath.normpath(name)
    parts = components(cleaned)
    if parts and parts[0] == "..":
        raise InvalidArgument(f"refusing archive: member {name!r} is outside of the destination directory")
    return parts


def _open_path(parent_fd: int, name: str) -> int:
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)


class _Unpacker:
    """One extraction: the destination, a small cache of resolved directories, deferred dir attrs."""

    def __init__(self, view: RootView, dest: Resolved, options: ExtractOptions) -> None:
        self.view = view
        self.dest = dest
        self.options = options
        self.is_root = os.geteuid() == 0
        self.cache: collections.OrderedDict[str, Resolved] = collections.OrderedDict()
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []

    def close(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Drop cached directories (something they lead through was removed or replaced)."""
        while self.cache:
            self.cache.popitem()[1].close()

    def _check_writable(self, where: Resolved) -> None:
        mount = where.mount
        if mount is not None and not mount.writable:
            raise Forbidden("mounted volume is marked read-only")
        if mount is None and self.options.readonly_rootfs:
            raise Forbidden("container rootfs is marked read-only")

    def directory(self, parts: list[str]) -> Resolved:
        """The directory ``parts`` below the destination, created (0755) if missing.

        Symlinks on the way are followed with the destination as the root.
        """
        if not parts:
            return self.dest
        key = "/".join(parts)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache.move_to_end(key)
            return cached
        parent = self.directory(parts[:-1])
        entry = self.view.child(parent, parts[-1])
        try:
            if entry.exists and stat.S_ISLNK(entry.stat().st_mode):
                entry.close()
                entry = self.view.lookup_from(self.dest, key, follow=True)
                if not entry.exists:  # as dockerd: implied directories are not made through a link
                    raise InvalidArgument(f"cannot extract below {key!r}: a symlink to a missing directory")
            elif not entry.exists:
                self._check_writable(entry)
                os.mkdir(entry.name, 0o755, dir_fd=entry.parent_fd)
                fd = _open_path(entry.parent_fd, entry.name)
                entry.fd = fd
                uid, gid = self.options.owner or (0, 0)
                if self.is_root and self.options.chown:
                    os.chown(f"/proc/self/fd/{fd}", uid, gid)
            if not stat.S_ISDIR(entry.stat().st_mode):
                raise InvalidArgument(f"cannot extract below {key!r}: not a directory")
        except BaseException:
            entry.close()
            raise
        self.cache[key] = entry
        if len(self.cache) > _DIR_CACHE:
            self.cache.popitem(last=False)[1].close()
        return entry

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        if self.options.rebase is not None:
            old, new = self.options.rebase
            m.name = rebase_name(m.name, old, new)
            if m.islnk():
                m.linkname = rebase_name(m.linkname, old, new)
        parts = _member_parts(m.name)
        if not parts:
            if m.isdir():
                return  # the destination itself keeps its attributes
            raise InvalidArgument(f"refusing archive: member {m.name!r} would replace the destination")
        parent = self.directory(parts[:-1])
        name = parts[-1]
        stale = False
        with self.view.child(parent, name) as existing:
            where = existing.path
            if self.view.mount_at(where) is not None:
                if not m.isdir():
                    raise InvalidArgument(f"cannot replace mount point {where} with a non-directory")
                self.dirs.append(("/".join(parts), m))
                return
            self._check_writable(parent)
            if existing.exists:
                is_dir = stat.S_ISDIR(existing.stat().st_mode)
                if self.options.no_overwrite_dir_non_dir:
                    if is_dir and not m.isdir():
                        raise InvalidArgument(
                            f"cannot overwrite directory {where!r} with non-directory {m.name!r}"
                        )
                    if not is_dir and m.isdir():
                        raise InvalidArgument(
                            f"cannot overwrite non-directory {where!r} with directory {m.name!r}"
                        )
                if is_dir and m.isdir():
                    self.dirs.append(("/".join(parts), m))
                    return
                if is_dir:
                    rmtree_at(parent.fd, name)
                    stale = True
                else:
                    os.unlink(name, dir_fd=parent.fd)
        self._create(tf, m, parent, name, parts)
        if stale:
            self.forget()  # cached directories may lead through what was removed

    def _create(
        self, tf: tarfile.TarFile, m: tarfile.TarInfo, parent: Resolved, name: str, parts: list[str]
    ) -> None:
        pfd = parent.fd
        if m.isreg():
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd
            )
            try:
                src = tf.extractfile(m)
                assert src is not None
                while chunk := src.read(_CHUNK):
                    os.write(fd, chunk)
                self._attrs(f"/proc/self/fd/{fd}", m)
            finally:
                os.close(fd)
            return
        if m.isdir():
            os.mkdir(name, 0o755, dir_fd=pfd)
            self.dirs.append(("/".join(parts), m))
            return
        if m.islnk():
            self._hard_link(m, pfd, name)
            return
        if m.issym():
            os.symlink(m.linkname, name, dir_fd=pfd)
        elif m.ischr() or m.isblk():
            if not self.is_root:
                return  # device nodes need root
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
        else:
            return  # other types (GNU volume headers...) carry no file
        fd = _open_path(pfd, name)
        try:
            if m.issym():
                # lchown by name: a symlink has no descriptor that chown could follow safely.
                self._owner(lambda uid, gid: os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False), m)
                os.utime(name, ns=(_mtime_ns(m),) * 2, dir_fd=pfd, follow_symlinks=False)
            else:
                self._attrs(f"/proc/self/fd/{fd}", m)
        finally:
            os.close(fd)

    def _hard_link(self, m: tarfile.TarInfo, pfd: int, name: str) -> None:
        target = _member_parts(m.linkname)
        if not target:
            raise InvalidArgument(f"refusing archive: hard link {m.name!r} has no target")
        head = "/".join(target[:-1])
        with self.view.lookup_from(self.dest, head, follow=True) as tdir:
            if not tdir.exists:
                raise InvalidArgument(
                    f"refusing archive: hard link {m.name!r} points at missing {m.linkname!r}"
                )
            try:
                os.link(target[-1], name, src_dir_fd=tdir.fd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                raise InvalidArgument(
                    f"refusing archive: hard link {m.name!r} points at missing {m.linkname!r}"
                ) from None
            except OSError as e:
                if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise InvalidArgument(
                        f"cannot hard link {m.name!r} to {m.linkname!r}: {e.strerror}"
                    ) from None
                raise

    def _owner(self, chown: Callable[[int, int], None], m: tarfile.TarInfo) -> None:
        if self.is_root and self.options.chown:
            uid, gid = self.options.owner or (m.uid, m.gid)
            chown(uid, gid)

    def _attrs(self, path: str, m: tarfile.TarInfo) -> None:
        """Owner, file capability, mode, mtime; ``path`` is a /proc/self/fd link of the inode."""
        self._owner(lambda uid, gid: os.chown(path, uid, gid), m)
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr.") and not key.startswith("SCHILY.xattr." + _OVERLAY_XATTRS):
                with contextlib.suppress(OSError):
                    os.setxattr(path, key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape"))
        # After chown, which clears setuid/setgid.
        os.chmod(path, m.mode & 0o7777)
        os.utime(path, ns=(_mtime_ns(m),) * 2)

    def finish(self) -> None:
        """Directory attributes last: adding entries changes mtimes, and 0555 would block writes."""
        for rel, m in reversed(self.dirs):
            with self.view.lookup_from(self.dest, rel, follow=False) as d:
                if not d.exists or not stat.S_ISDIR(d.stat().st_mode):
                    continue
                self._attrs(f"/proc/self/fd/{d.fd}", m)


def _mtime_ns(m: tarfile.TarInfo) -> int:
    return int(m.mtime * 1_000_000_000)


def extraction_point(view: RootView, path: str) -> Resolved:
    """The directory ``PUT .../archive?path=`` extracts into, every symlink followed.

    NotFound-style FileNotFoundError if missing, InvalidArgument if not a directory.
    """
    found = view.lookup(container_path(path), follow=True)
    if not found.exists:
        found.close()
        raise FileNotFoundError(path)
    if not stat.S_ISDIR(found.stat().st_mode):
        found.close()
        raise InvalidArgument("extraction point is not a directory")
    return found


def extract_archive(view: RootView, dest: Resolved, stream: BinaryIO, options: ExtractOptions) -> None:
    """Extract the uncompressed tar ``stream`` into directory ``dest`` (see the module docstring)."""
    unpacker = _Unpacker(view, dest, options)
    if dest.mount is not None and not dest.mount.writable:
        raise Forbidden("mounted volume is marked read-only")
    if dest.mount is None and options.readonly_rootfs:
        raise Forbidden("container rootfs is marked read-only")
    try:
        try:
            tf = tarfile.open(fileobj=stream, mode="r|")
        except tarfile.ReadError as e:
            if "empty file" in str(e):
                return
            raise InvalidArgument(f"invalid tar archive: {e}") from None
        try:
            for m in tf:
                unpacker.member(tf, m)
        except tarfile.TarError as e:
            raise InvalidArgument(f"invalid tar archive: {e}") from None
        unpacker.finish()
    finally:
        unpacker.close()
