"""Container changes from an upper dir (skiff.fs.overlay), without root: adds, modifies, runtime paths.

Whiteouts and opaque directories need root (mknod, trusted.* xattrs): see
tests/integration/test_ctrfs.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from skiff.fs.overlay import CHANGE_ADD, CHANGE_MODIFY, Change, changes, runtime_only_paths


def _layers(tmp_path: Path) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in ("etc", "bin", "proc", "usr/lib"):
        (lower / d).mkdir(parents=True)
    (lower / "etc/passwd").write_text("root\n")
    (lower / "bin/sh").write_text("sh")
    upper.mkdir()
    return lower, upper


def _copy_up(lower: Path, upper: Path, rel: str) -> None:
    """What overlayfs does before writing below ``rel``: the directory with its attributes."""
    (upper / rel).mkdir(parents=True, exist_ok=True)
    shutil.copystat(lower / rel, upper / rel)
    st = os.stat(lower / rel)
    os.utime(upper / rel, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_added_and_modified(tmp_path: Path) -> None:
    lower, upper = _layers(tmp_path)
    (upper / "test").write_text("new")
    _copy_up(lower, upper, "etc")
    (upper / "etc/passwd").write_text("root\nme\n")
    os.utime(upper / "etc", ns=(os.stat(lower / "etc").st_atime_ns, os.stat(lower / "etc").st_mtime_ns))
    assert changes(upper, [lower]) == [Change("/etc/passwd", CHANGE_MODIFY), Change("/test", CHANGE_ADD)]


def test_parent_of_an_addition_is_modified_once(tmp_path: Path) -> None:
    lower, upper = _layers(tmp_path)
    _copy_up(lower, upper, "usr")
    _copy_up(lower, upper, "usr/lib")
    (upper / "usr/lib/a").write_text("a")
    (upper / "usr/lib/b").write_text("b")
    # Writing the entries changed the copied-up directory's mtime, as in a real upper dir.
    found = changes(upper, [lower])
    assert Change("/usr/lib/a", CHANGE_ADD) in found and Change("/usr/lib/b", CHANGE_ADD) in found
    assert [c.path for c in found].count("/usr/lib") == 1


def test_runtime_mount_targets_are_not_changes(tmp_path: Path) -> None:
    """runc creates /etc/hostname, /etc/hosts, /etc/resolv.conf (copying /etc up) and /proc
    contents are never in the upper dir: none of it is reported, nor committed."""
    lower, upper = _layers(tmp_path)
    _copy_up(lower, upper, "etc")
    for name in ("hostname", "hosts", "resolv.conf"):
        (upper / "etc" / name).write_text("")
    (upper / "dev").mkdir()  # an image without /dev: runc made the mount point
    (upper / "test").write_text("x")
    assert changes(upper, [lower]) == [Change("/test", CHANGE_ADD)]
    assert runtime_only_paths(upper, [lower]) == {"etc", "dev"}


def test_a_real_change_next_to_runtime_files_is_reported(tmp_path: Path) -> None:
    lower, upper = _layers(tmp_path)
    _copy_up(lower, upper, "etc")
    (upper / "etc/hosts").write_text("")
    (upper / "etc/motd").write_text("hello")
    found = changes(upper, [lower])
    assert Change("/etc/motd", CHANGE_ADD) in found
    assert not any(c.path == "/etc/hosts" for c in found)
    assert runtime_only_paths(upper, [lower]) == {"etc/hosts"}


def test_nearest_layer_wins_and_no_lowers(tmp_path: Path) -> None:
    lower, upper = _layers(tmp_path)
    top = tmp_path / "top"
    (top / "opt").mkdir(parents=True)
    (upper / "opt").mkdir()
    (upper / "opt/x").write_text("x")
    assert Change("/opt/x", CHANGE_ADD) in changes(upper, [top, lower])
    assert changes(upper, []) == [Change("/opt", CHANGE_ADD), Change("/opt/x", CHANGE_ADD)]
