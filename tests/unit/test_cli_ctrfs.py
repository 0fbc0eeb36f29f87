"""docker cp's client-side rules (skiff.cli.ctrfs) and commit's config merge (skiff.engine.ctrfs)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from skiff.cli.ctrfs import (
    CopyInfo,
    local_destination,
    local_source,
    prepare_copy,
    preserve_trailing,
    rebase_name,
    split_cp_arg,
    split_dir_entry,
)
from skiff.engine.ctrfs import _change_lines, merge_commit_config
from skiff.errors import InvalidArgument
from skiff.fs.archive import archive_source
from skiff.fs.scoped import RootView
from skiff.types import ImageConfig
from skiff.units import human_size


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("c1:/etc/passwd", ("c1", "/etc/passwd")),
        ("/abs/with:colon", ("", "/abs/with:colon")),
        ("./file:name.txt", ("", "./file:name.txt")),
        ("file.txt", ("", "file.txt")),
        ("c1:", ("c1", "")),
        ("-", ("", "-")),
    ],
)
def test_split_cp_arg(arg: str, expected: tuple[str, str]) -> None:
    assert split_cp_arg(arg) == expected


def test_path_helpers_match_moby() -> None:
    assert preserve_trailing("/a/b", "b/.") == "/a/b/."
    assert preserve_trailing("/a/b", "b/") == "/a/b/"
    assert preserve_trailing("/a/b", "b") == "/a/b"
    assert split_dir_entry("/a/b/.") == ("/a/b", ".")
    assert split_dir_entry("/a/b/") == ("/a", "b")
    assert split_dir_entry("/") == ("/", "/")
    assert rebase_name("/x/link/", "/real/target") == ("/real/target/", "link")
    assert rebase_name("/x/link", "/real/link") == ("/real/link", "")
    assert rebase_name("/x/link/.", "/real/t") == ("/real/t/.", "")


def test_prepare_copy_cases() -> None:
    src_file = CopyInfo("/h/f.txt", True, False)
    src_dir = CopyInfo("/h/dir", True, True)
    # Into an existing directory: unchanged names, extracted there.
    assert prepare_copy(src_file, "f.txt", CopyInfo("/d", True, True)) == ("/d", "f.txt")
    # Onto an existing file / a new name: renamed to the destination's base, in its parent.
    assert prepare_copy(src_file, "f.txt", CopyInfo("/d/other", True, False)) == ("/d", "other")
    assert prepare_copy(src_dir, "dir", CopyInfo("/d/new")) == ("/d", "new")
    with pytest.raises(InvalidArgument, match="cannot copy directory"):
        prepare_copy(src_dir, "dir", CopyInfo("/d/file", True, False))
    with pytest.raises(InvalidArgument, match="no such directory"):
        prepare_copy(src_file, "f.txt", CopyInfo("/d/missing/"))


def test_local_source_and_destination(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real/f").write_text("x")
    (tmp_path / "link").symlink_to("real")
    src = local_source(str(tmp_path / "link"), follow=False)
    assert src.path == str(tmp_path / "link") and not src.is_dir  # the link itself
    followed = local_source(str(tmp_path / "link"), follow=True)
    assert followed.path == str(tmp_path / "real") and followed.is_dir and followed.rebase == "link"
    assert local_destination(str(tmp_path / "link")) == CopyInfo(str(tmp_path / "real"), True, True)
    assert local_destination(str(tmp_path / "new")) == CopyInfo(str(tmp_path / "new"))
    with pytest.raises(InvalidArgument):
        local_destination(str(tmp_path / "missing/new"))
    with pytest.raises(InvalidArgument, match="lstat"):
        local_source(str(tmp_path / "missing"), follow=False)


def test_archives_end_like_go_s_so_sizes_match_docker_s(tmp_path: Path) -> None:
    # One small file: header, one data block, two end blocks -- no padding to a 10 KiB record.
    (tmp_path / "f").write_text("abc")
    with RootView(tmp_path) as view:
        src = archive_source(view, "/f")
        out = io.BytesIO()
        src.write(out)
        src.close()
    assert len(out.getvalue()) == 2048
    assert human_size(len(out.getvalue())) == "2.05kB"
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.extractfile("f").read() == b"abc"  # type: ignore[union-attr]


def test_commit_config_merge_follows_dockerd() -> None:
    base = ImageConfig(
        user="app",
        env=("PATH=/bin", "A=1"),
        cmd=("sh",),
        entrypoint=None,
        labels={"a": "1"},
        exposed_ports=("80/tcp",),
        working_dir="/srv",
    )
    user = ImageConfig(env=("A=2",), cmd=("bash",), labels={"b": "2"}, exposed_ports=("8000/tcp",))
    merged = merge_commit_config(user, base)
    assert merged.env == ("A=2", "PATH=/bin")
    assert merged.cmd == ("bash",)
    assert merged.user == "app" and merged.working_dir == "/srv"
    assert merged.labels == {"a": "1", "b": "2"}
    assert set(merged.exposed_ports) == {"80/tcp", "8000/tcp"}
    # No entrypoint and no cmd given: both from the container.
    assert merge_commit_config(ImageConfig(), base).cmd == ("sh",)
    # An entrypoint given alone keeps its (empty) cmd.
    ep = merge_commit_config(ImageConfig(entrypoint=("/run",)), base)
    assert ep.entrypoint == ("/run",) and ep.cmd is None


def test_change_values_may_hold_several_lines() -> None:
    assert _change_lines(['EXPOSE 80\nCMD ["sh"]', "", "ENV A=1"]) == ["EXPOSE 80", 'CMD ["sh"]', "ENV A=1"]
