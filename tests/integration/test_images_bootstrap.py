"""bootstrap_busybox (root, fast) and bootstrap_debian (root, slow: SKIFF_SLOW=1)."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.images.bootstrap import apt_mirror, bootstrap_busybox, bootstrap_debian
from skiff.images.imagestore import ImageStore
from skiff.store.mount import is_mountpoint
from skiff.store.snapshots import mount_all, unmount
from tests.integration.conftest import open_store

pytestmark = pytest.mark.root


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / f"skiff-mnt-{secrets.token_hex(4)}"
    m.mkdir()
    try:
        yield m
    finally:
        unmount(m)
        assert not is_mountpoint(m)


def test_busybox_image(store: ImageStore, mnt: Path, tmp_path: Path) -> None:
    rec = bootstrap_busybox(store)
    assert rec.repo_tags == ("busybox:latest",)
    assert rec.config.cmd == ("sh",)
    assert store.get("busybox").id == rec.id
    top = store.top_layer(rec)
    assert top is not None
    mount_all(store.snapshotter.view("skiff-bb-view", top), mnt)
    for applet in ("sh", "top", "id", "wget", "httpd", "nc", "ls", "cat"):
        found = [p for p in ("bin", "sbin", "usr/bin", "usr/sbin") if (mnt / p / applet).exists()]
        assert found, f"{applet} missing from the busybox rootfs"
    assert os.stat(mnt / "bin/sh").st_ino == os.stat(mnt / "bin/busybox").st_ino  # hard links, one inode
    assert stat.S_IMODE(os.stat(mnt / "tmp").st_mode) == 0o1777
    assert "www-data:x:33:33" in (mnt / "etc/passwd").read_text()
    assert "nogroup:x:65534:" in (mnt / "etc/group").read_text()
    for d in ("root", "home", "var/www", "proc", "sys", "dev"):
        assert (mnt / d).is_dir(), d
    # The rootfs really runs: busybox sh chrooted into the mounted image.
    out = subprocess.run(
        ["chroot", str(mnt), "/bin/sh", "-c", "echo ok; id -un 0 2>/dev/null || true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "ok"


def test_busybox_is_deterministic(store: ImageStore, tmp_path: Path) -> None:
    first = bootstrap_busybox(store)
    other = open_store(tmp_path / "other")
    try:
        second = bootstrap_busybox(other, tag="bb:again")
        assert second.id == first.id
        assert second.diff_ids == first.diff_ids
    finally:
        other.db.close()
        other.snapshotter.close()


def test_apt_mirror_from_host_config(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://mirror.invalid/debian bookworm main\n"
    )
    (etc / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://other.invalid/debian-security\nSuites: bookworm-security\n"
    )
    assert apt_mirror("bookworm", etc) == "http://mirror.invalid/debian"
    (etc / "sources.list").write_text("")
    (etc / "sources.list.d" / "y.sources").write_text(
        "Types: deb\nURIs: http://deb822.invalid/debian\nSuites: trixie bookworm\nComponents: main\n"
    )
    assert apt_mirror("bookworm", etc) == "http://deb822.invalid/debian"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SKIFF_SLOW") != "1", reason="slow (debootstrap): set SKIFF_SLOW=1")
def test_debian_image(store: ImageStore, mnt: Path) -> None:
    rec = bootstrap_debian(store)
    assert rec.config.cmd == ("bash",)
    assert store.get("debian:bookworm").id == rec.id
    top = store.top_layer(rec)
    assert top is not None
    mount_all(store.snapshotter.view("skiff-deb-view", top), mnt)
    assert (mnt / "usr/bin/bash").exists()
    assert (mnt / "usr/bin/apt-get").exists()
    assert "bookworm" in (mnt / "etc/os-release").read_text()
    assert not list(Path("/var/tmp").glob("skiff-debootstrap-*"))  # temp dir removed
