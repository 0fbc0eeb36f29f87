"""A container's files on real overlay snapshots (root): changes with whiteouts and opaque
directories, the commit layer without runtime mount targets, extraction as root (owners,
setuid, devices)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.engine.ctrfs import _layer_dirs
from skiff.fs.archive import ExtractOptions, extract_archive, extraction_point
from skiff.fs.overlay import CHANGE_ADD, CHANGE_DELETE, CHANGE_MODIFY, Change, changes, runtime_only_paths
from skiff.fs.scoped import RootView
from skiff.images.imagestore import ImageStore
from skiff.store.snapshots import mount_all, unmount
from skiff.types.image import ImageConfig

pytestmark = pytest.mark.root


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


BASE = _tar(
    [
        ("bin", None),
        ("bin/sh", b"sh"),
        ("bin/vi", b"vi"),
        ("etc", None),
        ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        ("proc", None),
        ("sys", None),
        ("dev", None),
        ("opt", None),
        ("opt/old", b"old"),
        ("opt/keep", b"keep"),
    ]
)


@pytest.fixture
def container(store: ImageStore, tmp_path: Path) -> Iterator[tuple[ImageStore, str, Path]]:
    """A base image and a container-like active snapshot on it, mounted at a skiff-named dir."""
    image = store.import_image(io.BytesIO(BASE), repo_tag="skiff-ctrfs-base")
    key = "skiff-ctrfs-" + os.urandom(4).hex()
    store.snapshotter.prepare(key, store.top_layer(image))
    mnt = tmp_path / "skiff-ctrfs-mnt"
    mnt.mkdir()
    mount_all(store.snapshotter.mounts(key), mnt)
    try:
        yield store, key, mnt
    finally:
        unmount(mnt)


def _runtime_targets(mnt: Path) -> None:
    """What runc leaves in an upper dir when the image lacks the mount targets."""
    for name in ("hostname", "hosts", "resolv.conf"):
        (mnt / "etc" / name).write_text("")


def test_changes_on_a_real_overlay(container: tuple[ImageStore, str, Path]) -> None:
    store, key, mnt = container
    _runtime_targets(mnt)
    (mnt / "bin/vi").unlink()  # a whiteout
    shutil.rmtree(mnt / "opt")  # deleted and made again: an opaque directory
    (mnt / "opt").mkdir()
    (mnt / "opt/new").write_text("new")
    (mnt / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nme:x:1000:1000::/:/bin/sh\n")
    (mnt / "test").write_text("t")
    upper, lowers = _layer_dirs(store.snapshotter, key)
    found = changes(upper, lowers)
    assert Change("/bin", CHANGE_MODIFY) in found
    assert Change("/bin/vi", CHANGE_DELETE) in found
    assert Change("/opt", CHANGE_DELETE) in found  # dockerd reports a replaced directory as deleted
    assert Change("/opt/new", CHANGE_ADD) in found
    assert Change("/etc/passwd", CHANGE_MODIFY) in found
    assert Change("/test", CHANGE_ADD) in found
    assert not [c for c in found if c.path.startswith(("/etc/host", "/etc/resolv", "/proc", "/dev"))]
    assert [c.path for c in found] == sorted(c.path for c in found)  # walk order


def test_untouched_container_has_no_changes_and_commits_no_layer(
    container: tuple[ImageStore, str, Path],
) -> None:
    store, key, mnt = container
    _runtime_targets(mnt)
    upper, lowers = _layer_dirs(store.snapshotter, key)
    assert changes(upper, lowers) == []
    skip = runtime_only_paths(upper, lowers)
    assert skip == {"etc"}
    assert all(e.name in skip for e in os.scandir(upper))


def test_commit_layer_leaves_runtime_targets_out(
    container: tuple[ImageStore, str, Path], tmp_path: Path
) -> None:
    store, key, mnt = container
    _runtime_targets(mnt)
    (mnt / "etc/motd").write_text("hello")
    (mnt / "bin/vi").unlink()
    upper, lowers = _layer_dirs(store.snapshotter, key)
    skip = runtime_only_paths(upper, lowers)
    base = store.get("skiff-ctrfs-base")
    diff_id, chain, _ = store.import_diff(upper, store.top_layer(base), skip)
    out = io.BytesIO()
    store.layer_tar(chain, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        names = tf.getnames()
    assert "etc/motd" in names and "bin/.wh.vi" in names
    assert not [n for n in names if n.startswith(("etc/host", "etc/resolv"))]
    committed = store.create_image(ImageConfig(cmd=("sh",)), [*base.diff_ids, diff_id])
    view = store.snapshotter.view("skiff-ctrfs-view", committed.chain_ids[-1])
    check = tmp_path / "skiff-ctrfs-check"
    check.mkdir()
    mount_all(view, check)
    try:
        assert (check / "etc/motd").read_text() == "hello"
        assert not (check / "bin/vi").exists()
        assert not (check / "etc/hostname").exists()
    finally:
        unmount(check)
        store.snapshotter.remove("skiff-ctrfs-view")


def _hostile(entries: list[tarfile.TarInfo]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti in entries:
            tf.addfile(ti, io.BytesIO(b"\0" * ti.size) if ti.isreg() else None)
    buf.seek(0)
    return buf


def _member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    for k, v in attrs.items():
        setattr(ti, k, v)
    return ti


def test_extraction_as_root_keeps_owners_setuid_and_devices(container: tuple[ImageStore, str, Path]) -> None:
    _, _, mnt = container
    tar = _hostile(
        [
            _member("suid", size=4, mode=0o4755, uid=1000, gid=1000),
            _member("null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
            _member("fifo", tarfile.FIFOTYPE, mode=0o600),
        ]
    )
    with RootView(mnt) as view, extraction_point(view, "/opt") as dest:
        extract_archive(view, dest, tar, ExtractOptions())
    st = os.stat(mnt / "opt/suid")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert stat.S_IMODE(st.st_mode) == 0o4755  # chmod after chown: setuid survives
    dev = os.stat(mnt / "opt/null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3
    assert stat.S_ISFIFO(os.stat(mnt / "opt/fifo").st_mode)


def test_copy_uid_gid_owner_applies_to_every_entry(container: tuple[ImageStore, str, Path]) -> None:
    _, _, mnt = container
    tar = _hostile([_member("deep/dir/file", size=1, mode=0o644, uid=5, gid=5)])
    with RootView(mnt) as view, extraction_point(view, "/opt") as dest:
        extract_archive(view, dest, tar, ExtractOptions(owner=(123, 456)))
    for rel in ("deep", "deep/dir", "deep/dir/file"):
        st = os.stat(mnt / "opt" / rel)
        assert (st.st_uid, st.st_gid) == (123, 456), rel
