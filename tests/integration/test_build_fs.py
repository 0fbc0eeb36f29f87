"""COPY/ADD file placement into an image root (root: owners), never leaving the root."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from skiff.build.context import resolve_sources
from skiff.build.fs import Owner, copy_entry, copy_tree, ensure_dir, extract_tar
from skiff.errors import InvalidArgument


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """A small root: /usr/bin, /bin -> usr/bin, /etc, /abs -> /etc (absolute, must stay inside)."""
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin").symlink_to("usr/bin")
    (root / "abs").symlink_to("/etc")
    (root / "etc" / "existing").write_text("old")
    return root


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app" / "sub").mkdir(parents=True)
    (ctx / "app" / "main.sh").write_text("#!/bin/sh\n")
    os.chmod(ctx / "app" / "main.sh", 0o755)
    (ctx / "app" / "sub" / "data").write_text("data")
    (ctx / "app" / "link").symlink_to("main.sh")
    (ctx / "file").write_text("file")
    return ctx


def test_directory_contents_through_image_symlinks(image_root: Path, context: Path) -> None:
    copy_tree(context / "app", image_root, "/bin/app", Owner(), None)
    target = image_root / "usr" / "bin" / "app"
    assert (target / "sub" / "data").read_text() == "data"
    assert os.stat(target / "main.sh").st_mode & 0o777 == 0o755
    assert os.readlink(target / "link") == "main.sh"  # symlinks inside a directory stay links
    st = os.lstat(target / "sub" / "data")
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_absolute_symlink_in_the_image_is_followed_inside_the_root(image_root: Path, context: Path) -> None:
    st = os.lstat(context / "file")
    copy_entry(context / "file", st, image_root, "/abs/file", Owner(1000, 1001), 0o600)
    placed = image_root / "etc" / "file"
    assert placed.read_text() == "file"
    pst = os.lstat(placed)
    assert (pst.st_uid, pst.st_gid, pst.st_mode & 0o777) == (1000, 1001, 0o600)
    assert not Path("/etc/file").exists() or Path("/etc/file").read_text() != "file"


def test_replacing_entries_and_refusing_dir_over_file(image_root: Path, context: Path) -> None:
    st = os.lstat(context / "file")
    copy_entry(context / "file", st, image_root, "/etc/existing", Owner(), None)
    assert (image_root / "etc" / "existing").read_text() == "file"
    (image_root / "etc" / "dir").mkdir()
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        copy_entry(context / "file", st, image_root, "/etc/dir", Owner(), None)
    with pytest.raises(InvalidArgument, match="not a directory"):
        ensure_dir(image_root, "/etc/existing/below")


def test_archive_extraction_keeps_owners_and_stays_inside(image_root: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("pkg/owned")
        info.size, info.uid, info.gid, info.mode = 2, 123, 456, 0o640
        tf.addfile(info, io.BytesIO(b"ok"))
        evil = tarfile.TarInfo("pkg/escape")
        evil.type, evil.linkname = tarfile.SYMTYPE, "/"
        tf.addfile(evil)
        through = tarfile.TarInfo("pkg/escape/tmp/pwned")
        through.size = 1
        tf.addfile(through, io.BytesIO(b"x"))
    buf.seek(0)
    extract_tar(buf, image_root, None, "/opt")
    st = os.lstat(image_root / "opt" / "pkg" / "owned")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (123, 456, 0o640)
    assert (image_root / "tmp" / "pwned").exists()  # "/" resolved as the image's root
    assert not Path("/tmp/pwned").exists()


def test_sources_from_a_stage_root(image_root: Path) -> None:
    found = resolve_sources(image_root, ["/bin"], "COPY")
    assert found[0].is_dir and found[0].path == image_root / "usr" / "bin"
    assert found[0].name == "bin"
