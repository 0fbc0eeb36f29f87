"""Snapshotter conformance suite: real overlay mounts (root).

Written against the contract, with the backend supplied by the ``snapshotter`` fixture, so
another implementation can be added by extending its params.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skiff.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from skiff.store.mount import is_mountpoint
from skiff.store.snapshots import OverlaySnapshotter, mount_all, unmount

pytestmark = pytest.mark.root


@pytest.fixture(params=["overlay"])
def snapshotter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    if os.geteuid() != 0:
        pytest.skip("needs root (real overlay mounts)")
    s = OverlaySnapshotter(tmp_path / "snapshots")
    yield s
    s.close()


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a snapshot's mounts on a fresh dir; everything is unmounted at teardown, even on failure."""
    targets: list[Path] = []

    def mount(mounts: list) -> Path:  # type: ignore[type-arg]
        target = tmp_path / f"skiff-mnt-{secrets.token_hex(4)}"
        target.mkdir()
        targets.append(target)
        mount_all(mounts, target)
        return target

    yield mount
    for t in reversed(targets):
        for _ in range(4):  # stacked mounts, if any
            unmount(t)
        assert not is_mountpoint(t)


def _commit_layer(
    s: OverlaySnapshotter, mount: Callable[..., Path], name: str, parent: str | None, files: dict[str, bytes]
) -> None:
    key = f"skiff-prep-{secrets.token_hex(4)}"
    target = mount(s.prepare(key, parent))
    for rel, data in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    unmount(target)
    s.commit(name, key)


def test_prepare_commit_view_remove(snapshotter: OverlaySnapshotter, mounter: Callable[..., Path]) -> None:
    s = snapshotter
    _commit_layer(s, mounter, "base", None, {"etc/os": b"base\n", "bin/tool": b"v1"})
    assert s.stat("base").kind == "committed"
    assert s.stat("base").parent is None
    _commit_layer(s, mounter, "app", "base", {"app/main": b"app", "bin/tool": b"v2"})
    assert s.stat("app").parent == "base"

    view = mounter(s.view("skiff-view", "app"))
    assert (view / "etc/os").read_bytes() == b"base\n"
    assert (view / "bin/tool").read_bytes() == b"v2"
    assert (view / "app/main").read_bytes() == b"app"
    with pytest.raises(OSError) as e:
        (view / "new").write_bytes(b"x")
    assert e.value.errno == errno.EROFS
    unmount(view)
    s.remove("skiff-view")

    rw = mounter(s.prepare("skiff-ctr", "app"))
    (rw / "bin/tool").write_bytes(b"changed")
    (rw / "etc/os").unlink()
    (rw / "new").write_bytes(b"new")
    # The committed layers underneath are untouched; changes land in the active upper dir.
    base_fs = s.upper_dir("base")
    assert (base_fs / "etc/os").read_bytes() == b"base\n"
    assert (s.upper_dir("app") / "bin/tool").read_bytes() == b"v2"
    upper = s.upper_dir("skiff-ctr")
    assert (upper / "new").read_bytes() == b"new"
    assert os.stat(upper / "etc/os", follow_symlinks=False).st_rdev == 0  # overlay whiteout
    assert s.usage("skiff-ctr") >= len(b"changed") + len(b"new")
    unmount(rw)

    with pytest.raises(Conflict):
        s.remove("app")  # skiff-ctr builds on it
    s.remove("skiff-ctr")
    assert not s.exists("skiff-ctr")
    s.remove("app")
    s.remove("base")
    assert list(s.walk()) == []
    assert sorted(p.name for p in s.root.iterdir()) == ["metadata.db", "metadata.db-shm", "metadata.db-wal"]


def test_committed_layer_is_shared(snapshotter: OverlaySnapshotter, mounter: Callable[..., Path]) -> None:
    s = snapshotter
    _commit_layer(s, mounter, "base", None, {"f": b"shared"})
    m1 = s.prepare("skiff-c1", "base")
    m2 = s.prepare("skiff-c2", "base")
    lower = str(s.upper_dir("base"))
    assert f"lowerdir={lower}" in m1[0].options
    assert f"lowerdir={lower}" in m2[0].options
    a, b = mounter(m1), mounter(m2)
    assert (a / "f").read_bytes() == (b / "f").read_bytes() == b"shared"
    (a / "f").write_bytes(b"mine")
    assert (b / "f").read_bytes() == b"shared"
    dirs = [p for p in s.root.iterdir() if p.is_dir()]
    assert len(dirs) == 3  # one base layer, two containers: the layer exists once


def test_single_layer_view_and_empty_prepare(
    snapshotter: OverlaySnapshotter, mounter: Callable[..., Path]
) -> None:
    s = snapshotter
    mounts = s.prepare("skiff-empty", None)
    assert mounts[0].type == "bind"
    t = mounter(mounts)
    (t / "x").write_bytes(b"1")
    unmount(t)
    s.commit("one", "skiff-empty")
    view = s.view("skiff-v", "one")
    assert view[0].type == "bind"
    assert "ro" in view[0].options
    v = mounter(view)
    assert (v / "x").read_bytes() == b"1"
    with pytest.raises(OSError):
        (v / "y").write_bytes(b"2")


def test_contract_errors(snapshotter: OverlaySnapshotter, mounter: Callable[..., Path]) -> None:
    s = snapshotter
    with pytest.raises(NotFound):
        s.prepare("skiff-a", "missing")
    s.prepare("skiff-a", None)
    with pytest.raises(AlreadyExists):
        s.prepare("skiff-a", None)
    with pytest.raises(InvalidArgument):
        s.prepare("skiff-b", "skiff-a")  # an active snapshot cannot be a parent
    s.prepare("skiff-b", None)
    s.commit("layer", "skiff-a")
    with pytest.raises(AlreadyExists):
        s.commit("layer", "skiff-b")
    with pytest.raises(InvalidArgument):
        s.commit("again", "layer")  # only active snapshots commit
    with pytest.raises(NotFound):
        s.stat("skiff-a")
    with pytest.raises(NotFound):
        s.remove("nope")
    with pytest.raises(NotFound):
        s.mounts("nope")
    assert {i.key for i in s.walk()} == {"layer", "skiff-b"}


def test_many_layers_mount(snapshotter: OverlaySnapshotter, mounter: Callable[..., Path]) -> None:
    s = snapshotter
    parent = None
    for i in range(40):
        _commit_layer(s, mounter, f"l{i}", parent, {f"f{i}": str(i).encode()})
        parent = f"l{i}"
    t = mounter(s.prepare("skiff-top", parent))
    assert sorted(os.listdir(t)) == sorted(f"f{i}" for i in range(40))
    assert (t / "f0").read_bytes() == b"0"


def test_recover_removes_garbage(snapshotter: OverlaySnapshotter) -> None:
    s = snapshotter
    s.prepare("skiff-keep", None)
    s.prepare("skiff-broken", None)
    (s.root / "9999" / "fs").mkdir(parents=True)  # crash after mkdir, before the row committed
    (s.root / "stray").mkdir()
    broken = s.root / str(s.stat("skiff-broken").id)
    for p in (broken / "fs", broken / "work"):
        p.rmdir()
    broken.rmdir()  # a row whose directory is gone
    assert s.recover() == 3
    assert [i.key for i in s.walk()] == ["skiff-keep"]
    assert sorted(p.name for p in s.root.iterdir() if p.is_dir()) == [str(s.stat("skiff-keep").id)]
    assert s.recover() == 0


def test_metadata_survives_reopen(snapshotter: OverlaySnapshotter) -> None:
    snapshotter.prepare("skiff-x", None)
    snapshotter.commit("c", "skiff-x")
    again = OverlaySnapshotter(snapshotter.root)
    assert again.stat("c").kind == "committed"
    assert again.recover() == 0
    again.close()
