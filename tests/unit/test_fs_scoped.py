"""Scoped path resolution (skiff.fs.scoped): symlinks and .. never leave the root; mounts redirect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument
from skiff.fs.scoped import Mounted, RootView, resolve_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "usr" / "bin").mkdir(parents=True)
    (r / "bin").symlink_to("usr/bin")  # merged /usr, relative
    (r / "abs").symlink_to("/etc")  # absolute: means the root's /etc
    (r / "up").symlink_to("../../../../etc")  # climbs: stops at the root
    (r / "loop1").symlink_to("loop2")
    (r / "loop2").symlink_to("loop1")
    (r / "dangling").symlink_to("/nowhere/else")
    return r


def test_symlinks_resolve_inside_the_root(root: Path) -> None:
    with RootView(root) as view:
        assert view.resolve("/bin/sh") == "/usr/bin/sh"
        assert view.resolve("/abs/passwd") == "/etc/passwd"
        assert view.resolve("/up/passwd") == "/etc/passwd"
        assert view.resolve("/../../etc/./passwd") == "/etc/passwd"
        assert view.resolve("relative/../etc") == "/etc"


def test_missing_components_are_kept_as_written(root: Path) -> None:
    with RootView(root) as view:
        assert view.resolve("/missing/a/../b") == "/missing/b"
        assert view.resolve("/dangling") == "/nowhere/else"
        assert view.resolve("/dangling", follow=False) == "/dangling"
        with view.lookup("/missing/x") as r:
            assert not r.exists


def test_final_symlink_kept_when_not_followed(root: Path) -> None:
    with RootView(root) as view, view.lookup("/abs", follow=False) as r:
        assert r.path == "/abs"
        assert os.readlink("", dir_fd=r.fd) == "/etc"


def test_symlink_loops_are_refused(root: Path) -> None:
    with RootView(root) as view, pytest.raises(InvalidArgument, match="symbolic links"):
        view.resolve("/loop1/x")


def test_a_file_in_the_middle_is_a_missing_path(root: Path) -> None:
    with RootView(root) as view, view.lookup("/etc/passwd/x") as r:
        assert not r.exists
        assert r.path == "/etc/passwd/x"


def test_mounts_redirect_to_their_source(root: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "data.txt").write_text("in the volume")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    # /data does not exist in the root (a container never started): the mount still applies.
    mounts = [Mounted("/data", str(vol)), Mounted("/etc/hosts", str(hosts), writable=False)]
    with RootView(root, mounts) as view:
        with view.lookup("/data/data.txt") as r:
            assert r.exists
            assert r.mount is not None and r.mount.source == str(vol)
            fd = os.open(f"/proc/self/fd/{r.fd}", os.O_RDONLY)
            assert os.read(fd, 100) == b"in the volume"
            os.close(fd)
        with view.lookup("/abs/hosts") as r:  # through a symlink to the mount point
            assert r.mount is not None and not r.mount.writable
        with view.lookup("/etc/passwd") as r:
            assert r.mount is None
        assert view.mounts_in("/") == ["data"]
        with view.root_entry() as top:
            assert "data" in list(view.scandir(top))


def test_mount_destination_through_a_symlink(root: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    with RootView(root, [Mounted("/bin/tools", str(vol))]) as view:
        assert view.destinations() == ["/usr/bin/tools"]
        with view.lookup("/usr/bin/tools") as r:
            assert r.mount is not None


def test_lookup_from_a_directory_scopes_to_it(root: Path) -> None:
    (root / "dest" / "sub").mkdir(parents=True)
    (root / "dest" / "escape").symlink_to("/etc")
    with RootView(root) as view, view.lookup("/dest") as dest:
        with view.lookup_from(dest, "escape/passwd") as r:
            assert r.path == "/dest/etc/passwd"  # /etc of the destination, not of the root
            assert not r.exists
        with view.lookup_from(dest, "../../etc/passwd") as r:
            assert r.path == "/dest/etc/passwd"
        with view.lookup_from(dest, "sub") as r:
            assert r.exists


def test_resolve_in_root_gives_host_paths(root: Path) -> None:
    assert resolve_in_root(root, "/abs/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/bin") == root / "usr" / "bin"
    assert resolve_in_root(root, "/") == root
