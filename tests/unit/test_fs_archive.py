"""docker cp archives (skiff.fs.archive): the stat header, entry names, safe extraction."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from skiff.errors import Forbidden, InvalidArgument
from skiff.fs.archive import (
    GO_MODE_DIR,
    GO_MODE_SYMLINK,
    ExtractOptions,
    PathStat,
    archive_source,
    base_name,
    container_path,
    extract_archive,
    extraction_point,
    go_file_mode,
    rebase_name,
    rfc3339_nano,
    stat_path,
    write_export,
)
from skiff.fs.scoped import Mounted, RootView


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_file_mode(stat.S_IFDIR | 0o755) == GO_MODE_DIR | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == GO_MODE_SYMLINK | 0o777
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert go_file_mode(stat.S_IFBLK | 0o660) == (1 << 26) | 0o660
    assert go_file_mode(stat.S_IFIFO | 0o600) == (1 << 25) | 0o600
    assert go_file_mode(stat.S_IFSOCK | 0o755) == (1 << 24) | 0o755
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFREG | stat.S_ISGID | 0o755) == (1 << 22) | 0o755
    assert go_file_mode(stat.S_IFDIR | stat.S_ISVTX | 0o777) == GO_MODE_DIR | (1 << 20) | 0o777


def test_rfc3339_nano_trims_like_go() -> None:
    assert rfc3339_nano(0) == "1970-01-01T00:00:00Z"
    assert rfc3339_nano(1_700_000_000_500_000_000) == "2023-11-14T22:13:20.5Z"
    assert rfc3339_nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_stat_header_is_base64_json_as_clients_decode_it() -> None:
    st = PathStat("data.txt", 38, 0o644, "2024-01-01T00:00:00Z", "")
    decoded = json.loads(base64.b64decode(st.header()))
    assert decoded == {
        "name": "data.txt",
        "size": 38,
        "mode": 0o644,
        "mtime": "2024-01-01T00:00:00Z",
        "linkTarget": "",
    }


@pytest.mark.parametrize(
    ("given", "abs_path", "name"),
    [
        ("etc/passwd", "/etc/passwd", "passwd"),
        ("/etc/", "/etc/", "etc"),
        ("/etc/.", "/etc/.", "."),
        ("/", "/", "/"),
        (".", "/.", "."),
        ("/a/../../b", "/b", "b"),
        ("//x//y/", "/x/y/", "y"),
    ],
)
def test_container_path_keeps_trailing_slash_and_dot(given: str, abs_path: str, name: str) -> None:
    assert container_path(given) == abs_path
    assert base_name(abs_path) == name


def test_rebase_name() -> None:
    assert rebase_name("data", "data", "copy") == "copy"
    assert rebase_name("data/x", "data", "copy") == "copy/x"
    assert rebase_name("database/x", "data", "copy") == "database/x"
    assert rebase_name("/bin/sh", "/", "out") == "out/bin/sh"
    assert rebase_name("./x", ".", "out") == "out/x"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "etc" / "hostname").write_text("box\n")
    os.link(r / "etc" / "passwd", r / "etc" / "passwd.link")
    (r / "data").mkdir()
    (r / "data" / "f").write_bytes(b"x" * 1000)
    (r / "lnk").symlink_to("/etc/passwd")
    (r / "dirlink").symlink_to("data")
    return r


def _names(source_bytes: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(source_bytes)) as tf:
        return [m.name + ("/" if m.isdir() else "") for m in tf]


def _archive(view: RootView, path: str) -> tuple[PathStat, bytes]:
    src = archive_source(view, path)
    out = io.BytesIO()
    try:
        src.write(out)
    finally:
        src.close()
    return src.stat, out.getvalue()


def test_stat_of_file_dir_and_symlink(root: Path) -> None:
    with RootView(root) as view:
        f = stat_path(view, "/etc/passwd")
        assert (f.name, f.size, f.mode, f.link_target) == ("passwd", 26, 0o644 & ~_umask(), "")
        d = stat_path(view, "/etc")
        assert d.is_dir and d.name == "etc"
        link = stat_path(view, "/lnk")
        assert link.mode & GO_MODE_SYMLINK and link.link_target == "/etc/passwd"
        followed = stat_path(view, "/dirlink/")  # a trailing slash follows the link
        assert followed.is_dir and followed.name == "dirlink"
        with pytest.raises(FileNotFoundError):
            stat_path(view, "/nope")
        with pytest.raises(NotADirectoryError):
            stat_path(view, "/etc/passwd/")


def test_archive_names_follow_dockerd(root: Path) -> None:
    with RootView(root) as view:
        st, data = _archive(view, "/etc/passwd")
        assert st.name == "passwd" and _names(data) == ["passwd"]
        _, data = _archive(view, "/etc")
        assert _names(data) == ["etc/", "etc/hostname", "etc/passwd", "etc/passwd.link"]
        _, data = _archive(view, "/etc/.")
        assert _names(data) == ["./", "./hostname", "./passwd", "./passwd.link"]
        _, data = _archive(view, "/lnk")  # the link itself, not its target
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            (m,) = tf.getmembers()
            assert m.issym() and m.linkname == "/etc/passwd"
        _, data = _archive(view, "/")
        names = _names(data)
        assert names[0] == "/" and "/etc/passwd" in names


def test_hard_links_stay_hard_links(root: Path) -> None:
    with RootView(root) as view:
        _, data = _archive(view, "/etc")
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        link = tf.getmember("etc/passwd.link")
        assert link.islnk() and link.linkname == "etc/passwd"


def test_archive_crosses_into_mounts(root: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in-volume").write_text("v")
    with RootView(root, [Mounted("/data/vol", str(vol))]) as view:
        _, data = _archive(view, "/data")
        assert "data/vol/in-volume" in _names(data)


def test_export_has_relative_names_and_no_mounts(root: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    with RootView(root) as view:
        write_export(view, out)
    names = _names(out.getvalue())
    assert "etc/passwd" in names and "lnk" in names
    assert not any(n.startswith(("/", "./")) for n in names)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _file(name: str, data: bytes = b"data", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def _entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.mode = 0o755
    return ti, None


def _extract(root: Path, path: str, tar: io.BytesIO, **options: object) -> None:
    with RootView(root) as view, extraction_point(view, path) as dest:
        extract_archive(view, dest, tar, ExtractOptions(**options))  # type: ignore[arg-type]


def test_extract_files_dirs_links_and_modes(root: Path) -> None:
    tar = _tar(
        _entry("new", tarfile.DIRTYPE),
        _file("new/a.txt", b"hello", 0o4755),
        _entry("new/sym", tarfile.SYMTYPE, "a.txt"),
        _entry("new/hard", tarfile.LNKTYPE, "new/a.txt"),
        _file("implied/parents/b.txt"),
    )
    _extract(root, "/data", tar)
    assert (root / "data/new/a.txt").read_bytes() == b"hello"
    assert stat.S_IMODE(os.stat(root / "data/new/a.txt").st_mode) == 0o4755  # setuid kept
    assert os.readlink(root / "data/new/sym") == "a.txt"
    assert os.stat(root / "data/new/hard").st_ino == os.stat(root / "data/new/a.txt").st_ino
    assert (root / "data/implied/parents/b.txt").exists()


def test_extract_refuses_dot_dot(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="outside of the destination"):
        _extract(root, "/data", _tar(_file("../../escape")))
    assert not (root / "escape").exists() and not (root.parent / "escape").exists()


def test_absolute_member_names_land_in_the_destination(root: Path) -> None:
    _extract(root, "/data", _tar(_file("/etc/passwd", b"not the real one")))
    assert (root / "data/etc/passwd").read_bytes() == b"not the real one"
    assert (root / "etc/passwd").read_text().startswith("root:")


def test_symlink_in_archive_cannot_redirect_out_of_destination(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tar = _tar(
        _entry("etc", tarfile.DIRTYPE),
        _entry("evil", tarfile.SYMTYPE, "/etc"),
        _file("evil/passwd", b"pwned"),
        _entry("up", tarfile.SYMTYPE, "../../../../.."),
        _file("up/y", b"pwned"),
    )
    _extract(root, "/data", tar)
    assert (root / "etc/passwd").read_text().startswith("root:")  # the container's own file
    assert (root / "data/etc/passwd").read_bytes() == b"pwned"  # /etc of the destination
    assert (root / "data/y").read_bytes() == b"pwned"  # .. stops at the destination
    # A link to a host directory names a path inside the destination, which does not exist.
    with pytest.raises(InvalidArgument, match="symlink to a missing directory"):
        _extract(
            root, "/data", _tar(_entry("evil2", tarfile.SYMTYPE, str(outside)), _file("evil2/x", b"pwned"))
        )
    assert not any(outside.iterdir())


def test_hard_link_cannot_point_out_of_destination(root: Path) -> None:
    # An absolute link name means the destination's path, which does not exist there.
    with pytest.raises(InvalidArgument, match="missing"):
        _extract(root, "/data", _tar(_entry("h", tarfile.LNKTYPE, "/etc/passwd")))
    with pytest.raises(InvalidArgument, match="outside of the destination"):
        _extract(root, "/data", _tar(_entry("h", tarfile.LNKTYPE, "../etc/passwd")))
    assert os.stat(root / "etc/passwd").st_nlink == 2  # passwd and passwd.link only


def test_extraction_writes_into_the_volume_mounted_there(root: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    with RootView(root, [Mounted("/vol1", str(vol))]) as view, extraction_point(view, "/vol1") as dest:
        extract_archive(view, dest, _tar(_file("copied.txt", b"into the volume")), ExtractOptions())
    assert (vol / "copied.txt").read_bytes() == b"into the volume"
    assert not (root / "vol1").exists()


def test_read_only_rootfs_and_volumes(root: Path, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    mounts = [Mounted("/ro", str(ro), writable=False), Mounted("/rw", str(rw))]
    with RootView(root, mounts) as view:
        with (
            extraction_point(view, "/data") as dest,
            pytest.raises(Forbidden, match="rootfs is marked read-only"),
        ):
            extract_archive(view, dest, _tar(_file("x")), ExtractOptions(readonly_rootfs=True))
        with (
            extraction_point(view, "/ro") as dest,
            pytest.raises(Forbidden, match="volume is marked read-only"),
        ):
            extract_archive(view, dest, _tar(_file("x")), ExtractOptions())
        with extraction_point(view, "/rw") as dest:  # a volume stays writable on a read-only rootfs
            extract_archive(view, dest, _tar(_file("x")), ExtractOptions(readonly_rootfs=True))
        with (
            extraction_point(view, "/") as dest,
            pytest.raises(Forbidden, match="volume is marked read-only"),
        ):
            extract_archive(view, dest, _tar(_file("ro/x")), ExtractOptions())
    assert (rw / "x").exists() and not (ro / "x").exists()


def test_no_overwrite_dir_non_dir(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        _extract(root, "/", _tar(_file("data")), no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
        _extract(root, "/etc", _tar(_entry("passwd", tarfile.DIRTYPE)), no_overwrite_dir_non_dir=True)
    # Without the flag a directory is replaced, as dockerd does.
    _extract(root, "/", _tar(_file("data", b"now a file")))
    assert (root / "data").read_bytes() == b"now a file"


def test_extraction_point_must_be_a_directory(root: Path) -> None:
    with RootView(root) as view:
        with pytest.raises(InvalidArgument, match="not a directory"):
            extraction_point(view, "/etc/passwd")
        with pytest.raises(FileNotFoundError):
            extraction_point(view, "/missing")
        with extraction_point(view, "/dirlink") as dest:  # a symlink to a directory is followed
            assert dest.path == "/data"


def test_extract_rebases_and_invalid_tars(root: Path) -> None:
    _extract(root, "/data", _tar(_file("srcname/x", b"1")), rebase=("srcname", "renamed"))
    assert (root / "data/renamed/x").read_bytes() == b"1"
    with pytest.raises(InvalidArgument, match="invalid tar"):
        _extract(root, "/data", io.BytesIO(b"this is not a tar archive at all" * 40))
    _extract(root, "/data", io.BytesIO(b""))  # an empty body is an empty archive


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
