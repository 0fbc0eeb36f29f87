"""Layer extraction against hostile tars, whiteouts through a real overlay, and diff_tar (root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import secrets
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument
from skiff.images.layers import apply_layer, diff_tar
from skiff.store.snapshots import OverlaySnapshotter, mount_all, unmount

pytestmark = pytest.mark.root


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"data", mode: int = 0o644, **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, data


def _entry(
    name: str, kind: bytes, linkname: str = "", mode: int = 0o755, **kw: object
) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, linkname, mode
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, None


@pytest.fixture
def target(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root (device nodes, chown, trusted xattrs)")
    t = tmp_path / "target"
    t.mkdir()
    return t


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    o = tmp_path / f"skiff-outside-{secrets.token_hex(4)}"
    o.mkdir()
    (o / "victim").write_bytes(b"original")
    return o


def _apply(data: bytes, target: Path) -> None:
    apply_layer(io.BytesIO(data), target)


def test_dotdot_refused(target: Path, outside: Path) -> None:
    rel = os.path.relpath(outside / "pwned", target)
    with pytest.raises(InvalidArgument, match=r"\.\."):
        _apply(_tar(_file(rel)), target)
    assert not (outside / "pwned").exists()


def test_absolute_member_lands_inside(target: Path, outside: Path) -> None:
    _apply(_tar(_file(str(outside / "abs"), b"in")), target)
    assert not (outside / "abs").exists()
    assert (target / str(outside / "abs").lstrip("/")).read_bytes() == b"in"


@pytest.mark.parametrize("relative", [False, True])
def test_write_through_symlink_refused(target: Path, outside: Path, relative: bool) -> None:
    link = os.path.relpath(outside, target) if relative else str(outside)
    data = _tar(_entry("evil", tarfile.SYMTYPE, link), _file("evil/victim", b"pwned"))
    with pytest.raises(InvalidArgument, match="symlink"):
        _apply(data, target)
    assert (outside / "victim").read_bytes() == b"original"
    assert os.readlink(target / "evil") == link  # the symlink itself is kept as data, never followed


def test_file_replacing_symlink_does_not_follow_it(target: Path, outside: Path) -> None:
    data = _tar(_entry("f", tarfile.SYMTYPE, str(outside / "victim")), _file("f", b"replaced", mode=0o600))
    _apply(data, target)
    assert (outside / "victim").read_bytes() == b"original"
    assert not (target / "f").is_symlink()
    assert (target / "f").read_bytes() == b"replaced"


def test_symlink_attributes_do_not_touch_the_target(target: Path, outside: Path) -> None:
    os.chmod(outside / "victim", 0o600)
    _apply(
        _tar(_entry("l", tarfile.SYMTYPE, str(outside / "victim"), mode=0o777, uid=1234, gid=1234)), target
    )
    st = os.stat(outside / "victim")
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == 0
    assert os.lstat(target / "l").st_uid == 1234


@pytest.mark.parametrize("linkname", ["../../../etc/passwd", "/etc/passwd", "via/passwd"])
def test_hardlink_out_refused(target: Path, linkname: str) -> None:
    data = _tar(_entry("via", tarfile.SYMTYPE, "/etc"), _entry("h", tarfile.LNKTYPE, linkname))
    with pytest.raises(InvalidArgument):
        _apply(data, target)
    assert not (target / "h").exists()
    assert os.stat("/etc/passwd").st_nlink == 1


def test_hardlink_inside_works(target: Path) -> None:
    _apply(
        _tar(_file("a", b"same"), _entry("b", tarfile.LNKTYPE, "a"), _entry("c", tarfile.LNKTYPE, "/a")),
        target,
    )
    assert os.stat(target / "a").st_ino == os.stat(target / "b").st_ino == os.stat(target / "c").st_ino


def test_device_nodes_and_fifo(target: Path) -> None:
    data = _tar(
        _entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        _entry("dev/loopx", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=200),
        _entry("run/fifo", tarfile.FIFOTYPE, mode=0o644),
    )
    _apply(data, target)
    st = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert stat.S_ISBLK(os.lstat(target / "dev/loopx").st_mode)
    assert stat.S_ISFIFO(os.lstat(target / "run/fifo").st_mode)


def test_owner_modes_setuid_mtime_xattr_kept(target: Path) -> None:
    ti, data = _file("usr/bin/su", b"#!", mode=0o4755, uid=1000, gid=50, mtime=1_600_000_000)
    ti.pax_headers = {"SCHILY.xattr.user.skiff": "yes", "SCHILY.xattr.security.capability": "\x01"}
    d, _ = _entry("srv", tarfile.DIRTYPE, mode=0o1750, uid=33, gid=33, mtime=1_500_000_000)
    _apply(_tar((ti, data), (d, None), _file("srv/x", b"x")), target)
    st = os.stat(target / "usr/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755  # setuid survives chown (which clears it)
    assert (st.st_uid, st.st_gid) == (1000, 50)
    assert st.st_mtime == 1_600_000_000
    assert os.getxattr(target / "usr/bin/su", "user.skiff") == b"yes"
    dst = os.stat(target / "srv")
    assert stat.S_IMODE(dst.st_mode) == 0o1750
    assert dst.st_mtime == 1_500_000_000  # set after its children were created
    assert (dst.st_uid, dst.st_gid) == (33, 33)


def test_diff_id_is_sha256_of_uncompressed_stream_and_gzip_detected(target: Path, tmp_path: Path) -> None:
    raw = _tar(_file("a", b"1" * 10000), _file("b", b"2"))
    want = "sha256:" + hashlib.sha256(raw).hexdigest()
    r1 = apply_layer(io.BytesIO(raw), target)
    other = tmp_path / "other"
    other.mkdir()
    r2 = apply_layer(io.BytesIO(gzip.compress(raw)), other)
    assert r1.diff_id == r2.diff_id == want
    assert r1.size == 10001
    assert (other / "a").read_bytes() == b"1" * 10000


def test_garbage_rejected(target: Path) -> None:
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b"this is not a tar archive at all" * 40), target)


@pytest.fixture
def snaps(tmp_path: Path) -> Iterator[tuple[OverlaySnapshotter, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    s = OverlaySnapshotter(tmp_path / "snapshots")
    mnt = tmp_path / f"skiff-mnt-{secrets.token_hex(4)}"
    mnt.mkdir()
    try:
        yield s, mnt
    finally:
        unmount(mnt)
        s.close()


def _layer(s: OverlaySnapshotter, name: str, parent: str | None, data: bytes) -> None:
    key = f"skiff-extract-{secrets.token_hex(4)}"
    s.prepare(key, parent)
    apply_layer(io.BytesIO(data), s.upper_dir(key))
    s.commit(name, key)


LOWER = _tar(
    _entry("a", tarfile.DIRTYPE),
    _file("a/keep", b"k"),
    _file("a/gone", b"g"),
    _entry("b", tarfile.DIRTYPE),
    _file("b/old", b"o"),
    _entry("b/sub", tarfile.DIRTYPE),
    _file("b/sub/x", b"x"),
    _entry("c", tarfile.DIRTYPE),
    _file("c/deep", b"d"),
)
UPPER = _tar(
    _file("a/.wh.gone", b""),
    _file("b/.wh..wh..opq", b""),
    _file("b/new", b"n"),
    _file(".wh.c", b""),
)


def test_whiteouts_applied_over_lower_through_real_overlay(snaps: tuple[OverlaySnapshotter, Path]) -> None:
    s, mnt = snaps
    _layer(s, "lower", None, LOWER)
    _layer(s, "upper", "lower", UPPER)
    up = s.upper_dir("upper")
    assert os.lstat(up / "a/gone").st_rdev == 0
    assert stat.S_ISCHR(os.lstat(up / "a/gone").st_mode)
    assert os.getxattr(up / "b", "trusted.overlay.opaque") == b"y"
    mount_all(s.view("skiff-v", "upper"), mnt)
    assert sorted(os.listdir(mnt / "a")) == ["keep"]
    assert sorted(os.listdir(mnt / "b")) == ["new"]
    assert not (mnt / "c").exists()
    assert sorted(os.listdir(mnt)) == ["a", "b"]


def test_diff_tar_round_trips_whiteouts(snaps: tuple[OverlaySnapshotter, Path], tmp_path: Path) -> None:
    s, mnt = snaps
    _layer(s, "lower", None, LOWER)
    _layer(s, "upper", "lower", UPPER)
    out = io.BytesIO()
    result = diff_tar(s.upper_dir("upper"), out)
    assert result.diff_id == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        names = tf.getnames()
    assert {"a/.wh.gone", "b/.wh..wh..opq", "b/new", ".wh.c"} <= set(names)
    assert not any(
        "trusted.overlay" in k
        for m in tarfile.open(fileobj=io.BytesIO(out.getvalue()))
        for k in m.pax_headers
    )
    # Re-applied over the same lower, the regenerated layer gives the same view.
    _layer(s, "again", "lower", out.getvalue())
    mount_all(s.view("skiff-v2", "again"), mnt)
    assert sorted(os.listdir(mnt)) == ["a", "b"]
    assert sorted(os.listdir(mnt / "a")) == ["keep"]
    assert sorted(os.listdir(mnt / "b")) == ["new"]
    again = io.BytesIO()
    assert diff_tar(s.upper_dir("again"), again).diff_id == result.diff_id  # deterministic


def test_diff_tar_of_container_changes(snaps: tuple[OverlaySnapshotter, Path]) -> None:
    s, mnt = snaps
    _layer(s, "lower", None, LOWER)
    mount_all(s.prepare("skiff-ctr", "lower"), mnt)
    (mnt / "a/gone").unlink()
    (mnt / "a/added").write_bytes(b"+")
    os.link(mnt / "a/added", mnt / "a/added2")
    unmount(mnt)
    out = io.BytesIO()
    diff_tar(s.upper_dir("skiff-ctr"), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        members = {m.name: m for m in tf}
    assert "a/.wh.gone" in members
    assert members["a/added"].isreg()
    assert members["a/added2"].islnk()
    assert members["a/added2"].linkname == "a/added"


def test_whiteout_keeps_header_mtime(snaps: tuple[OverlaySnapshotter, Path]) -> None:
    """A whiteout carries its header's mtime, so a regenerated tar has the original diff_id."""
    s, _ = snaps
    _layer(s, "lower", None, LOWER)
    d = tarfile.TarInfo("a")
    d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 2_000_000
    wh = tarfile.TarInfo("a/.wh.gone")
    wh.mtime = 1_000_000
    tar = _tar((d, None), (wh, None))
    _layer(s, "upper", "lower", tar)
    assert os.lstat(s.upper_dir("upper") / "a/gone").st_mtime == 1_000_000
    assert os.lstat(s.upper_dir("upper") / "a").st_mtime == 2_000_000
    regenerated = diff_tar(s.upper_dir("upper"), io.BytesIO()).diff_id
    assert regenerated == "sha256:" + hashlib.sha256(tar).hexdigest()


# -- more hostile layers (issue 5): each case must stay inside the root --------------------------


@pytest.mark.parametrize("name", ["evil/.wh.victim", "evil/.wh..wh..opq"])
def test_whiteouts_through_a_symlinked_dir_refused(target: Path, outside: Path, name: str) -> None:
    data = _tar(_entry("evil", tarfile.SYMTYPE, str(outside)), _file(name, b""))
    with pytest.raises(InvalidArgument, match="symlink"):
        _apply(data, target)
    assert (outside / "victim").read_bytes() == b"original"
    with pytest.raises(OSError):
        os.getxattr(outside, "trusted.overlay.opaque")


@pytest.mark.parametrize("name", [".wh..", "a/.wh..", ".wh."])
def test_whiteout_of_dot_or_nothing_refused(target: Path, name: str) -> None:
    with pytest.raises(InvalidArgument):
        _apply(_tar(_entry("a", tarfile.DIRTYPE), _file(name, b"")), target)


def test_dir_entry_replaces_symlink_so_later_files_land_inside(target: Path, outside: Path) -> None:
    data = _tar(
        _entry("evil", tarfile.SYMTYPE, str(outside)),
        _entry("evil", tarfile.DIRTYPE),
        _file("evil/victim", b"inside"),
    )
    _apply(data, target)
    assert (outside / "victim").read_bytes() == b"original"
    assert not (target / "evil").is_symlink()
    assert (target / "evil/victim").read_bytes() == b"inside"


def test_hardlink_to_symlink_links_the_symlink_not_its_target(target: Path, outside: Path) -> None:
    data = _tar(_entry("s", tarfile.SYMTYPE, str(outside / "victim")), _entry("h", tarfile.LNKTYPE, "s"))
    _apply(data, target)
    assert os.path.islink(target / "h")
    assert os.readlink(target / "h") == str(outside / "victim")
    assert os.stat(outside / "victim").st_nlink == 1


def test_hardlink_to_a_directory_is_a_400_not_a_crash(target: Path) -> None:
    data = _tar(_entry("d", tarfile.DIRTYPE), _entry("h", tarfile.LNKTYPE, "d"))
    with pytest.raises(InvalidArgument, match="cannot extract 'h'"):
        _apply(data, target)


def test_dotdot_in_symlink_target_is_data_only(target: Path, outside: Path) -> None:
    """A symlink may say anything; it is stored, never followed by the extractor."""
    link = "../../../../" + str(outside / "victim").lstrip("/")
    _apply(_tar(_entry("l", tarfile.SYMTYPE, link), _file("l", b"replaced")), target)
    assert (outside / "victim").read_bytes() == b"original"
    assert (target / "l").read_bytes() == b"replaced"


def test_layer_overlay_xattrs_are_dropped(target: Path) -> None:
    """overlayfs acts on trusted.overlay.* (redirects, metacopy): only whiteouts may set them."""
    d, _ = _entry("d", tarfile.DIRTYPE)
    d.pax_headers = {
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.kept": "1",
    }
    _apply(_tar((d, None)), target)
    names = os.listxattr(target / "d")
    assert "trusted.overlay.redirect" not in names
    assert "trusted.overlay.opaque" not in names
    assert os.getxattr(target / "d", "user.kept") == b"1"


def test_setuid_setgid_and_devices_kept_as_dockerd_does_as_root(target: Path) -> None:
    data = _tar(
        _file("bin/suid", b"x", mode=0o4755, uid=0),
        _file("bin/sgid", b"x", mode=0o2755, gid=42),
        _entry("dev/sda", tarfile.BLKTYPE, mode=0o660, devmajor=8, devminor=0),
    )
    _apply(data, target)
    assert stat.S_IMODE(os.stat(target / "bin/suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(target / "bin/sgid").st_mode) == 0o2755
    st = os.lstat(target / "dev/sda")
    assert stat.S_ISBLK(st.st_mode) and os.major(st.st_rdev) == 8
