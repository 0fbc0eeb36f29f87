"""Resolve ``--user`` against the container's own /etc/passwd and /etc/group.

Paths inside the rootfs are resolved with symlinks interpreted *inside* the rootfs
(:func:`skiff.fs.scoped.resolve_in_root`): an image cannot make skiff read host files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import InvalidArgument
from skiff.fs.scoped import resolve_in_root

_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _read_lines(rootfs: Path, path: str) -> list[list[str]]:
    file = resolve_in_root(rootfs, path)
    try:
        text = file.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _passwd(rootfs: Path) -> list[_PasswdEntry]:
    entries = []
    for f in _read_lines(rootfs, "/etc/passwd"):
        if len(f) >= 4 and f[2].isdigit() and f[3].isdigit():
            entries.append(_PasswdEntry(f[0], int(f[2]), int(f[3])))
    return entries


def _groups(rootfs: Path) -> list[_GroupEntry]:
    entries = []
    for f in _read_lines(rootfs, "/etc/group"):
        if len(f) >= 3 and f[2].isdigit():
            members = tuple(m for m in (f[3].split(",") if len(f) > 3 else []) if m)
            entries.append(_GroupEntry(f[0], int(f[2]), members))
    return entries


def _numeric(value: str, what: str) -> int | None:
    if not value.isdigit():
        return None
    number = int(value)
    if number > _MAX_ID:
        raise InvalidArgument(f"{what} {value} is out of range (max {_MAX_ID})")
    return number


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """``user`` ("", "name", "uid", "uid:gid", "name:group") -> (uid, gid, supplementary gids).

    Follows runc's ``GetExecUser``: a name must exist in passwd; a numeric uid need not.
    Supplementary groups come from /etc/group membership when the group is not given.
    """
    user_part, _, group_part = user.partition(":")
    passwd = _passwd(rootfs)
    uid, gid, name = 0, 0, ""
    root_entry = next((e for e in passwd if e.uid == 0), None)
    if root_entry is not None:
        gid, name = root_entry.gid, root_entry.name
    if user_part:
        number = _numeric(user_part, "uid")
        if number is None:
            entry = next((e for e in passwd if e.name == user_part), None)
            if entry is None:
                raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
        else:
            entry = next((e for e in passwd if e.uid == number), None)
            if entry is None:
                uid, gid, name = number, 0, ""
        if entry is not None:
            uid, gid, name = entry.uid, entry.gid, entry.name
    groups = _groups(rootfs)
    if group_part:
        number = _numeric(group_part, "gid")
        if number is None:
            group = next((g for g in groups if g.name == group_part), None)
            if group is None:
                raise InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
            number = group.gid
        return uid, number, []
    extra = [g.gid for g in groups if name and name in g.members and g.gid != gid]
    return uid, gid, sorted(set(extra))


def resolve_groups(rootfs: Path, names: Sequence[str]) -> list[int]:
    """``--group-add`` values (names or numbers) -> gids, looked up in the image's /etc/group."""
    groups = _groups(rootfs)
    gids = []
    for name in names:
        number = _numeric(name, "gid")
        if number is None:
            group = next((g for g in groups if g.name == name), None)
            if group is None:
                raise InvalidArgument(f"unable to find group {name}: no matching entries in group file")
            number = group.gid
        gids.append(number)
    return gids
