"""Paths inside a root directory, resolved the way the container sees them.

moby's ``FollowSymlinkInScope`` semantics: ``..`` stops at the root, an absolute symlink starts
again at the root, missing components are kept as written (the result may not exist yet).

The walk is done on file descriptors: each component is opened with ``O_PATH|O_NOFOLLOW``
relative to its parent's descriptor and symlinks are read and interpreted here, never by the
kernel. So a container that swaps a directory for a symlink while skiff is working in it (a
running container during ``docker cp``) can make a lookup fail, but never point it outside the
root. A :class:`RootView` may also carry *mounts* (volumes, binds, /etc/hosts): when the walk
reaches a mount's destination it continues in the mount's host source, as the kernel would in
the container's mount namespace.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import InvalidArgument

MAX_SYMLINKS = 255
_O_LOOKUP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def components(path: str) -> list[str]:
    """``path`` split on ``/`` without empty and ``.`` parts (``..`` is kept)."""
    return [p for p in path.split("/") if p and p != "."]


def join(parts: Sequence[str]) -> str:
    """Components back to an absolute container path (``/`` for none)."""
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class Mounted:
    """Host ``source`` shown at container path ``destination`` (a volume, a bind, /etc/hosts)."""

    destination: str
    source: str
    writable: bool = True


@dataclass
class Resolved:
    """A path resolved in a :class:`RootView`; owns ``fd`` and ``parent_fd`` (close it).

    ``path``: the container path with every symlink resolved (except a final one the lookup
    was told not to follow). ``fd``: an ``O_PATH`` descriptor of it, -1 if it does not exist.
    ``parent_fd``: the same for its parent directory (-1 for the root or a missing parent).
    ``mount``: the innermost mount the path is in (None: the root filesystem).
    """

    path: str
    fd: int
    parent_fd: int
    mount: Mounted | None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def exists(self) -> bool:
        return self.fd >= 0

    def stat(self) -> os.stat_result:
        """lstat of the path (FileNotFoundError if it does not exist)."""
        if self.fd < 0:
            raise FileNotFoundError(self.path)
        return os.fstat(self.fd)

    def close(self) -> None:
        for fd in (self.fd, self.parent_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.parent_fd = -1

    def __enter__(self) -> Resolved:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Step:
    name: str
    fd: int  # owned; -1: missing
    mount: Mounted | None


def reopen(fd: int, flags: int) -> int:
    """A real descriptor (for reading, listing, writing) of what ``O_PATH`` descriptor ``fd`` names.

    Through /proc/self/fd: the kernel re-opens the same inode, no path is walked again.
    """
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


class RootView:
    """A root directory plus the mounts over it; look paths up without leaving it.

    ``root``: the host directory that is the container's ``/``. ``mounts``: applied in order of
    depth, each destination resolved in the view built so far (as runc mounts them); a mount
    whose source is missing is left out.
    """

    def __init__(self, root: Path, mounts: Sequence[Mounted] = ()) -> None:
        self.root = Path(root)
        self.root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._mounts: dict[str, tuple[int, Mounted]] = {}
        try:
            for m in sorted(mounts, key=lambda m: len(components(m.destination))):
                with self.lookup(m.destination) as at:
                    where = at.path
                try:
                    fd = os.open(m.source, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                old = self._mounts.pop(where, None)
                if old is not None:
                    os.close(old[0])
                self._mounts[where] = (fd, m)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd, _ in self._mounts.values():
            os.close(fd)
        self._mounts.clear()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __enter__(self) -> RootView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- mounts --------------------------------------------------------------------------------

    def mount_at(self, path: str) -> Mounted | None:
        """The mount whose (resolved) destination is exactly ``path``."""
        entry = self._mounts.get(path)
        return entry[1] if entry is not None else None

    def mount_fd(self, path: str) -> int:
        """A new ``O_PATH`` descriptor of the source of the mount at ``path``."""
        return os.dup(self._mounts[path][0])

    def mounts_in(self, path: str) -> list[str]:
        """Names of the mount destinations directly inside directory ``path``."""
        prefix = path.rstrip("/") + "/"
        return sorted(
            where[len(prefix) :]
            for where in self._mounts
            if where.startswith(prefix) and "/" not in where[len(prefix) :]
        )

    def destinations(self) -> list[str]:
        """Every mount's resolved destination."""
        return sorted(self._mounts)

    # -- lookups -------------------------------------------------------------------------------

    def root_entry(self) -> Resolved:
        """The root itself as a :class:`Resolved`."""
        return Resolved("/", os.dup(self.root_fd), -1, None)

    def lookup(self, path: str, follow: bool = True) -> Resolved:
        """Resolve ``path`` from the root; a final symlink is followed only if ``follow``."""
        return self.lookup_from(self.root_entry(), path, follow, close_base=True)

    def lookup_from(
        self, base: Resolved, path: str, follow: bool = True, close_base: bool = False
    ) -> Resolved:
        """Resolve ``path`` (relative or absolute) with directory ``base`` acting as the root.

        ``..`` stops at ``base`` and absolute symlinks restart there: extraction into a
        directory stays inside that directory, as dockerd's chrooted untar does.
        """
        base_parts = components(base.path)
        stack: list[_Step] = []
        pending = components(path)
        links = 0
        try:
            while pending:
                part = pending.pop(0)
                if part == "..":
                    if stack:
                        _close(stack.pop().fd)
                    continue
                parent_fd = stack[-1].fd if stack else base.fd
                parent_mount = stack[-1].mount if stack else base.mount
                where = join([*base_parts, *(s.name for s in stack), part])
                mounted = self._mounts.get(where)
                if mounted is not None:
                    stack.append(_Step(part, os.dup(mounted[0]), mounted[1]))
                    continue
                if parent_fd < 0:
                    stack.append(_Step(part, -1, parent_mount))
                    continue
                try:
                    fd = os.open(part, _O_LOOKUP, dir_fd=parent_fd)
                except (FileNotFoundError, NotADirectoryError):
                    stack.append(_Step(part, -1, parent_mount))
                    continue
                if stat.S_ISLNK(os.fstat(fd).st_mode) and (pending or follow):
                    os.close(fd)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise InvalidArgument(f"too many levels of symbolic links in {path}")
                    target = os.readlink(part, dir_fd=parent_fd)
                    if target.startswith("/"):
                        while stack:
                            _close(stack.pop().fd)
                    pending = components(target) + pending
                    continue
                stack.append(_Step(part, fd, parent_mount))
            full = join([*base_parts, *(s.name for s in stack)])
            if not stack:
                return Resolved(
                    full, os.dup(base.fd) if base.fd >= 0 else -1, _dup(base.parent_fd), base.mount
                )
            last = stack.pop()
            if stack:
                parent = stack.pop()
                parent_fd = parent.fd
            else:
                parent_fd = os.dup(base.fd) if base.fd >= 0 else -1
            return Resolved(full, last.fd, parent_fd, last.mount)
        finally:
            for step in stack:
                _close(step.fd)
            if close_base:
                base.close()

    def resolve(self, path: str, follow: bool = True) -> str:
        """The container path ``path`` names, symlinks resolved inside the root."""
        with self.lookup(path, follow) as r:
            return r.path

    def scandir(self, directory: Resolved) -> Iterator[str]:
        """Names in ``directory`` (sorted), including mount points it hides or lacks."""
        names: set[str] = set()
        if directory.fd >= 0:
            fd = reopen(directory.fd, os.O_RDONLY | os.O_DIRECTORY)
            try:
                names.update(os.listdir(fd))
            finally:
                os.close(fd)
        names.update(self.mounts_in(directory.path))
        yield from sorted(names)

    def child(self, directory: Resolved, name: str) -> Resolved:
        """Entry ``name`` of ``directory`` without following it (a mount point yields the mount)."""
        where = join([*components(directory.path), name])
        mounted = self._mounts.get(where)
        if mounted is not None:
            return Resolved(where, os.dup(mounted[0]), _dup(directory.fd), mounted[1])
        fd = -1
        if directory.fd >= 0:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                fd = os.open(name, _O_LOOKUP, dir_fd=directory.fd)
        return Resolved(where, fd, _dup(directory.fd), directory.mount)


def rmtree_at(parent_fd: int, name: str) -> None:
    """Remove directory ``name`` in ``parent_fd`` and everything in it, never following a symlink."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                rmtree_at(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def _close(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def _dup(fd: int) -> int:
    return os.dup(fd) if fd >= 0 else -1


def resolve_in_root(root: Path, path: str) -> Path:
    """Host path of container path ``path`` under ``root``: symlinks and ``..`` never leave ``root``.

    For trees nothing else changes meanwhile (an image's files before the container starts:
    user lookup, volume copy-up). Components that do not exist are kept as written.
    """
    with RootView(root) as view:
        return Path(root, *components(view.resolve(path)))
