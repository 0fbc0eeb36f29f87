"""What changed in a container: its overlay upper directory against the image's layers.

:func:`changes` is moby's ``changes()`` with overlay's delete rule, entry by entry:

- a whiteout (character device 0/0) is a deletion of its path;
- an opaque directory that exists below is reported deleted (its entries then appear as added);
- anything else is an addition, or a modification if a lower layer has the path -- except a
  directory equal below in mode, size and mtime, which is there only because something inside
  it changed; the parent of an addition or deletion is reported modified once.

dockerd keeps the mount targets the runtime needs (``/etc/hosts``, ``/proc``...) in a separate
*init* layer below the container's own, so they never show up in ``docker diff`` or in a
commit. skiff has no init layer: runc creates missing targets in the upper directory, and
:data:`RUNTIME_PATHS` names them so that they -- and directories holding nothing else, such as a
copied-up ``/etc`` -- are left out of both.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHANGE_MODIFY = 0
CHANGE_ADD = 1
CHANGE_DELETE = 2
KIND_LETTERS = {CHANGE_MODIFY: "C", CHANGE_ADD: "A", CHANGE_DELETE: "D"}

# dockerd's init layer (daemon/initlayer): what the runtime creates as mount targets.
RUNTIME_PATHS = frozenset(
    {
        "/dev",
        "/proc",
        "/sys",
        "/.dockerenv",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/etc/mtab",
    }
)
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


@dataclass(frozen=True)
class Change:
    """One entry of ``GET /containers/{id}/changes``: Kind 0 modified, 1 added, 2 deleted."""

    path: str
    kind: int


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _entries(directory: Path) -> list[tuple[str, os.stat_result]]:
    with os.scandir(directory) as it:
        found = [(e.name, e.stat(follow_symlinks=False)) for e in it]
    return sorted(found)


def _below(lowers: Sequence[Path], rel: str) -> os.stat_result | None:
    for layer in lowers:
        try:
            return os.lstat(layer / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return None


class _Walk:
    def __init__(self, upper: Path, lowers: Sequence[Path], ignore: frozenset[str]) -> None:
        self.upper = upper
        self.lowers = lowers
        self.ignore = ignore
        self._runtime_only: dict[str, bool] = {}

    def runtime_only(self, path: str, st: os.stat_result) -> bool:
        """True if ``path`` is a runtime mount target, or a directory holding only those and
        (if the image has it) otherwise as the image had it."""
        if path in self.ignore:
            return True
        if not stat.S_ISDIR(st.st_mode):
            return False
        cached = self._runtime_only.get(path)
        if cached is not None:
            return cached
        full = self.upper / path.lstrip("/")
        result = not is_opaque(full)
        if result:
            below = _below(self.lowers, path.lstrip("/"))
            if below is not None and (
                not stat.S_ISDIR(below.st_mode)
                or below.st_mode != st.st_mode
                or (below.st_uid, below.st_gid) != (st.st_uid, st.st_gid)
            ):
                result = False
        if result:
            entries = _entries(full)
            result = bool(entries) and all(self.runtime_only(f"{path}/{name}", est) for name, est in entries)
        self._runtime_only[path] = result
        return result

    def entries(self, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
        """Every upper entry (``/path``, lstat), pre-order, sorted; runtime-only ones left out."""
        for name, st in _entries(self.upper / rel if rel else self.upper):
            path = f"/{rel}/{name}" if rel else f"/{name}"
            if self.runtime_only(path, st):
                continue
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                yield from self.entries(path.lstrip("/"))


def changes(upper: Path, lowers: Sequence[Path], ignore: frozenset[str] = RUNTIME_PATHS) -> list[Change]:
    """The changes in ``upper`` over ``lowers`` (nearest layer first), in walk order."""
    walk = _Walk(upper, lowers, ignore)
    out: list[Change] = []
    changed_dirs: set[str] = set()
    for path, st in walk.entries():
        rel = path.lstrip("/")
        kind = CHANGE_ADD
        deleted_dir = stat.S_ISDIR(st.st_mode) and is_opaque(upper / rel) and _below(lowers, rel) is not None
        if is_whiteout(st) or deleted_dir:
            kind = CHANGE_DELETE
        else:
            below = _below(lowers, rel)
            if below is not None:
                if (
                    stat.S_ISDIR(st.st_mode)
                    and stat.S_ISDIR(below.st_mode)
                    and below.st_mode == st.st_mode
                    and below.st_size == st.st_size
                    and _same_time(below.st_mtime_ns, st.st_mtime_ns)
                ):
                    continue  # only there because something below it changed
                kind = CHANGE_MODIFY
        if stat.S_ISDIR(st.st_mode) and not is_whiteout(st):
            changed_dirs.add(path)
        if kind in (CHANGE_ADD, CHANGE_DELETE):
            parent = path.rsplit("/", 1)[0]
            if parent and parent not in changed_dirs:
                out.append(Change(parent, CHANGE_MODIFY))
                changed_dirs.add(parent)
        out.append(Change(path, kind))
    return out


def _same_time(a: int, b: int) -> bool:
    # moby's sameFsTime: equal, or equal seconds where one side has no sub-second part.
    if a == b:
        return True
    return a // 1_000_000_000 == b // 1_000_000_000 and (a % 1_000_000_000 == 0 or b % 1_000_000_000 == 0)


def runtime_only_paths(
    upper: Path, lowers: Sequence[Path], ignore: frozenset[str] = RUNTIME_PATHS
) -> frozenset[str]:
    """Upper entries (relative, no leading ``/``) a commit leaves out: runtime mount targets
    and directories holding nothing else; see the module docstring."""
    walk = _Walk(upper, lowers, ignore)
    skip: set[str] = set()

    def visit(rel: str) -> None:
        for name, st in _entries(upper / rel if rel else upper):
            path = f"/{rel}/{name}" if rel else f"/{name}"
            if walk.runtime_only(path, st):
                skip.add(path.lstrip("/"))
            elif stat.S_ISDIR(st.st_mode):
                visit(path.lstrip("/"))

    visit("")
    return frozenset(skip)
