"""Volumes on the real kernel: tmpfs and bind-style local volumes mounted on _data while used,
copy-up keeping owners/modes/xattrs/devices, in-use refusal, and recovery after a crash."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.engine.events import EventBus
from skiff.engine.model import Container
from skiff.engine.volumes import VolumeService
from skiff.errors import Conflict, RuntimeFailure
from skiff.store.metadata import MetadataDB
from skiff.store.mount import is_mountpoint, unmount
from skiff.types import ContainerSpec, HostConfig, Mount
from skiff.types.volume import MountPoint
from skiff.volumes.copyup import copy_up
from skiff.volumes.local import LocalDriver, mounts_under

pytestmark = pytest.mark.root

CID_A = "a" * 64
CID_B = "b" * 64
TMPFS = {"type": "tmpfs", "device": "tmpfs", "o": "size=4m,mode=0750"}


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    """A private directory; whatever is still mounted under it is unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tmp_path / "skiff-vol-test"
    base.mkdir()
    try:
        yield base
    finally:
        for point in sorted(mounts_under(base), key=len, reverse=True):
            unmount(Path(point))


@pytest.fixture
def service(base: Path) -> Iterator[VolumeService]:
    db = MetadataDB(base / "metadata.db")
    svc = VolumeService(root=base, db=db, events=EventBus(db))
    yield svc
    asyncio.run(svc.drain())
    db.close()


def _restart(svc: VolumeService, base: Path) -> VolumeService:
    """A new service over the same root, as skiffd after kill -9 (mounts stay, memory is gone)."""
    return VolumeService(root=base, db=svc.db, events=svc.events)


def _container(cid: str, points: tuple[MountPoint, ...], status: str = "created") -> Container:
    c = Container(id=cid, name=f"c-{cid[:4]}", created="", image_id="", spec=ContainerSpec(image="busybox"))
    return Container(**{**c.with_state(status=status).__dict__, "mount_points": points})


def _create(svc: VolumeService, cid: str, host: HostConfig, volumes: tuple[str, ...] = ()) -> Container:
    points = svc.resolve(cid, ContainerSpec(image="busybox", volumes=volumes, host=host), lambda ref: ())
    return _container(cid, points)


def test_tmpfs_volume_is_mounted_while_used_and_shared_by_its_users(
    service: VolumeService, base: Path
) -> None:
    service.create("scratch", options=dict(TMPFS))
    data = Path(service.mountpoint("scratch"))
    rootfs = base / "rootfs"
    rootfs.mkdir()
    a = _create(service, CID_A, HostConfig(binds=("scratch:/scratch",)))
    b = _create(service, CID_B, HostConfig(binds=("scratch:/scratch:ro",)))
    assert not is_mountpoint(data)

    mounts = asyncio.run(service.prepare_for_start(a, rootfs))
    assert mounts == [Mount("bind", str(data), "/scratch", read_only=False)]
    assert is_mountpoint(data) and os.statvfs(data).f_blocks * os.statvfs(data).f_frsize == 4 << 20
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    (data / "note").write_text("shared")
    (mounts_b,) = asyncio.run(service.prepare_for_start(b, rootfs))
    assert mounts_b.read_only and (data / "note").read_text() == "shared"  # not mounted afresh

    service.release(CID_A)
    assert is_mountpoint(data)
    with pytest.raises(Conflict, match="volume is in use"):
        asyncio.run(service.remove("scratch", force=True))
    service.release(CID_B)
    assert not is_mountpoint(data) and not (data / "note").exists()  # tmpfs content is gone
    service.release(CID_B)  # idempotent


def test_bind_style_volume_mounts_the_host_directory_and_rm_never_deletes_it(
    service: VolumeService, base: Path
) -> None:
    host_dir = base / "host-data"
    host_dir.mkdir()
    (host_dir / "keep.txt").write_text("precious")
    service.create("hostdata", options={"type": "none", "device": str(host_dir), "o": "bind,ro"})
    c = _create(
        service, CID_A, HostConfig(mounts=(Mount("volume", "hostdata", "/srv", options=("nocopy",)),))
    )
    rootfs = base / "rootfs"
    rootfs.mkdir()
    asyncio.run(service.prepare_for_start(c, rootfs))
    data = Path(service.mountpoint("hostdata"))
    assert (data / "keep.txt").read_text() == "precious"
    with pytest.raises(OSError) as info:
        (data / "new").write_text("x")
    assert info.value.errno == errno.EROFS
    service.forget(c, remove_anonymous=True)  # the container is removed while the mount is up
    asyncio.run(service.remove("hostdata"))
    assert not is_mountpoint(data)
    assert (host_dir / "keep.txt").read_text() == "precious"
    assert not (base / "volumes" / "hostdata").exists()


def test_retire_refuses_while_something_is_mounted_inside(base: Path) -> None:
    driver = LocalDriver(base / "volumes")
    driver.create("busy")
    inner = driver.data("busy") / "inner"
    inner.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "skiff-test-tmpfs", str(inner)], check=True)
    try:
        with pytest.raises(RuntimeFailure, match="still mounted"):
            driver.retire("busy")
        assert driver.path("busy").is_dir()
    finally:
        unmount(inner)
    assert driver.retire("busy") is not None


def _tree(src: Path) -> None:
    (src / "etc" / "app").mkdir(parents=True)
    (src / "etc" / "app" / "conf").write_text("key=value\n")
    os.chown(src / "etc" / "app" / "conf", 1234, 5678)
    os.chmod(src / "etc" / "app" / "conf", 0o640)
    os.chown(src / "etc" / "app", 42, 43)
    os.chmod(src / "etc" / "app", 0o750)
    tool = src / "etc" / "tool"
    tool.write_bytes(b"\x7fELF")
    os.chmod(tool, 0o4755)
    os.link(tool, src / "etc" / "tool-link")
    (src / "etc" / "latest").symlink_to("app/conf")
    os.lchown(src / "etc" / "latest", 7, 8)
    os.mkfifo(src / "etc" / "pipe")
    os.mknod(src / "etc" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(src / "etc" / "app" / "conf", "user.skiff", b"label")
    os.setxattr(src / "etc" / "app" / "conf", "trusted.skiff", b"root-only")
    os.utime(src / "etc" / "app" / "conf", ns=(1_000_000_000, 2_000_000_000))
    os.chown(src / "etc", 100, 101)
    os.chmod(src / "etc", 0o711)


def test_copy_up_keeps_owners_modes_links_devices_and_xattrs(base: Path) -> None:
    src = base / "image"
    src.mkdir()
    _tree(src)
    dst = base / "volume"
    dst.mkdir()
    assert copy_up(src / "etc", dst)
    conf = dst / "app" / "conf"
    st = conf.stat()
    assert (conf.read_text(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        "key=value\n",
        1234,
        5678,
        0o640,
    )
    assert st.st_mtime_ns == 2_000_000_000
    assert os.getxattr(conf, "user.skiff") == b"label" and os.getxattr(conf, "trusted.skiff") == b"root-only"
    app = (dst / "app").stat()
    assert (app.st_uid, app.st_gid, stat.S_IMODE(app.st_mode)) == (42, 43, 0o750)
    assert stat.S_IMODE((dst / "tool").stat().st_mode) == 0o4755  # setuid survives the chown
    assert (dst / "tool").stat().st_ino == (dst / "tool-link").stat().st_ino
    assert os.readlink(dst / "latest") == "app/conf" and (dst / "latest").lstat().st_uid == 7
    assert stat.S_ISFIFO((dst / "pipe").lstat().st_mode)
    null = (dst / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    root = dst.stat()  # the volume's root takes the image directory's owner and mode
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (100, 101, 0o711)
    assert not copy_up(src / "etc", dst)  # not empty any more: never copied twice
    assert not copy_up(src / "missing", dst)


def test_copy_up_into_new_volumes_only_and_not_with_nocopy(service: VolumeService, base: Path) -> None:
    rootfs = base / "rootfs"
    rootfs.mkdir()
    _tree(rootfs)
    (rootfs / "var").symlink_to("etc")  # the image path goes through a symlink inside the image
    service.create("filled")
    (Path(service.mountpoint("filled")) / "mine").write_text("user data")
    c = _create(
        service,
        CID_A,
        HostConfig(binds=("fresh:/etc", "filled:/var/app", "nocopy:/etc/app:nocopy")),
        volumes=("/var",),
    )
    asyncio.run(service.prepare_for_start(c, rootfs))
    fresh = Path(service.mountpoint("fresh"))
    assert (fresh / "app" / "conf").stat().st_uid == 1234
    assert sorted(os.listdir(service.mountpoint("filled"))) == ["mine"]
    assert os.listdir(service.mountpoint("nocopy")) == []
    (anonymous,) = (p for p in c.mount_points if p.anonymous)
    assert (Path(anonymous.source) / "tool").exists()  # /var -> /etc in the image


def test_restart_keeps_mounts_of_running_containers_and_drops_the_rest(
    service: VolumeService, base: Path
) -> None:
    service.create("live", options=dict(TMPFS))
    service.create("stale", options=dict(TMPFS))
    rootfs = base / "rootfs"
    rootfs.mkdir()
    running = _create(service, CID_A, HostConfig(binds=("live:/live",)))
    dead = _create(service, CID_B, HostConfig(binds=("stale:/stale",)))
    asyncio.run(service.prepare_for_start(running, rootfs))
    asyncio.run(service.prepare_for_start(dead, rootfs))
    (Path(service.mountpoint("live")) / "state").write_text("kept")
    db = service.db
    for c, status in ((running, "running"), (dead, "exited")):
        rec = c.with_state(status=status)
        db.put_container(rec.id, rec.name, rec.created, rec.to_json())

    after = _restart(service, base)  # "kill -9": the mounts are still there
    after.recover()
    after.reconcile()
    assert is_mountpoint(Path(after.mountpoint("live")))
    assert (Path(after.mountpoint("live")) / "state").read_text() == "kept"
    assert not is_mountpoint(Path(after.mountpoint("stale")))
    assert after.users("stale") == [CID_B]
    with pytest.raises(Conflict):
        asyncio.run(after.remove("live"))
    after.release(CID_A)  # the running one exits later
    assert not is_mountpoint(Path(after.mountpoint("live")))
