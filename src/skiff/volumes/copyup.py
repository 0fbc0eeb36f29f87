"""Copy-up: a new, empty volume gets the image's content at its mount path (as dockerd does).

The copy keeps what a container relies on: owners, modes (setuid too), extended attributes
(file capabilities included), timestamps, symlinks as symlinks, hard links as hard links,
device nodes and fifos. Sockets are skipped. The source is read through the container's
mounted root filesystem; the path is resolved inside it, so an image's symlinks cannot point
the copy at the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path


def is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def _copy_xattrs(src: str, dst: str, is_link: bool) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if is_link and name.startswith("user."):
            continue  # the kernel refuses user.* on symlinks
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)


def _copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    is_link = stat.S_ISLNK(st.st_mode)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not is_link:
        # After chown, which clears setuid/setgid bits.
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    # After chown too: it drops security.capability.
    _copy_xattrs(src, dst, is_link)
    with contextlib.suppress(NotImplementedError, OSError):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_dir_contents(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        s = entry.path
        d = os.path.join(dst, entry.name)
        st = os.lstat(s)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir_contents(s, d, links)
        elif stat.S_ISSOCK(mode):
            continue
        elif not stat.S_ISLNK(mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
            os.link(links[(st.st_dev, st.st_ino)], d)
            continue
        elif stat.S_ISREG(mode):
            shutil.copyfile(s, d, follow_symlinks=False)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(d, mode, st.st_rdev)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(d, 0o600)
        else:
            continue
        if not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode) and st.st_nlink > 1:
            links[(st.st_dev, st.st_ino)] = d
        _copy_metadata(s, d, st)


def copy_up(src: Path, dst: Path) -> bool:
    """Copy the directory ``src`` into the empty directory ``dst``; the owner and mode of
    ``src`` go to ``dst`` as well. False (nothing done) if ``src`` is not a directory or
    ``dst`` is not empty.
    """
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or not is_empty_dir(dst):
        return False
    _copy_dir_contents(str(src), str(dst), {})
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    return True
