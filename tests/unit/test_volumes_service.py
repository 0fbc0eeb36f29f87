"""VolumeService over a real SQLite file and directories: create/rm/prune, references from
containers, forget with and without -v, recovery after a crash (no root: plain volumes only)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.engine.events import EventBus
from skiff.engine.model import Container
from skiff.engine.volumes import VolumeService, created_now
from skiff.errors import Conflict, InvalidArgument, NotFound
from skiff.store.metadata import MetadataDB
from skiff.types import ContainerSpec, HostConfig
from skiff.types.volume import ANONYMOUS_LABEL, MountPoint

CID_A = "a" * 64
CID_B = "b" * 64


@pytest.fixture
def db(tmp_path: Path) -> Iterator[MetadataDB]:
    database = MetadataDB(tmp_path / "metadata.db")
    yield database
    database.close()


def _service(tmp_path: Path, db: MetadataDB) -> VolumeService:
    return VolumeService(root=tmp_path, db=db, events=EventBus(db))


def _container(cid: str, points: tuple[MountPoint, ...], status: str = "created") -> Container:
    c = Container(id=cid, name=f"c-{cid[:4]}", created="", image_id="", spec=ContainerSpec(image="busybox"))
    c = c.with_state(status=status)
    return Container(**{**c.__dict__, "mount_points": points})


def _no_containers(ref: str) -> tuple[MountPoint, ...]:
    raise NotFound(f"No such container: {ref}")


def _actions(db: MetadataDB) -> list[tuple[str, str]]:
    return [(e.action, e.actor_id) for e in EventBus(db).history(None, None) if e.type == "volume"]


def test_created_at_is_rfc3339_seconds() -> None:
    text = created_now()
    assert len(text) in (20, 25) and text[10] == "T" and "." not in text


def test_create_is_idempotent_and_persisted(tmp_path: Path, db: MetadataDB) -> None:
    svc = _service(tmp_path, db)
    rec = svc.create("data", labels={"app": "web"}, options={})
    assert svc.create("data", labels={"other": "x"}) == rec  # the existing one, unchanged
    assert svc.mountpoint("data") == str(tmp_path / "volumes" / "data" / "_data")
    assert (tmp_path / "volumes" / "data" / "_data").is_dir()
    again = _service(tmp_path, db)
    assert again.get("data") == rec and rec.labels == {"app": "web"} and rec.options == {}
    assert _actions(db) == [("create", "data")]


def test_create_without_a_name_is_anonymous(tmp_path: Path, db: MetadataDB) -> None:
    rec = _service(tmp_path, db).create()
    assert len(rec.name) == 64 and all(c in "0123456789abcdef" for c in rec.name)
    assert rec.labels == {ANONYMOUS_LABEL: ""} and rec.anonymous


def test_create_refuses_bad_names_options_and_drivers(tmp_path: Path, db: MetadataDB) -> None:
    svc = _service(tmp_path, db)
    with pytest.raises(InvalidArgument, match=r'^create a/b: "a/b" includes invalid characters'):
        svc.create("a/b")
    with pytest.raises(InvalidArgument, match=r'^create v1: invalid option: "bogus"'):
        svc.create("v1", options={"bogus": "1"})
    with pytest.raises(NotFound, match='plugin "nfs-csi" not found'):
        svc.create("v1", driver="nfs-csi")
    assert svc.list() == [] and not (tmp_path / "volumes" / "v1").exists()


def test_get_and_remove_missing(tmp_path: Path, db: MetadataDB) -> None:
    svc = _service(tmp_path, db)
    with pytest.raises(NotFound, match=r"^get nope: no such volume$"):
        svc.get("nope")
    with pytest.raises(NotFound, match=r"^get nope: no such volume$"):
        asyncio.run(svc.remove("nope"))
    asyncio.run(svc.remove("nope", force=True))


def test_a_referenced_volume_cannot_be_removed_until_the_container_is_forgotten(
    tmp_path: Path, db: MetadataDB
) -> None:
    svc = _service(tmp_path, db)
    spec = ContainerSpec(image="busybox", host=HostConfig(binds=("shared:/data",)))
    points = svc.resolve(CID_A, spec, _no_containers)
    points_b = svc.resolve(CID_B, spec, _no_containers)
    assert [p.name for p in points] == ["shared"] and points == points_b
    assert points[0].source == svc.mountpoint("shared") and points[0].driver == "local"
    assert svc.users("shared") == [CID_A, CID_B]
    assert not svc.matches(svc.get("shared"), {"dangling": ["true"]})
    with pytest.raises(Conflict, match=rf"^remove shared: volume is in use - \[{CID_A}, {CID_B}\]$"):
        asyncio.run(svc.remove("shared"))
    svc.forget(_container(CID_A, points), remove_anonymous=True)
    svc.forget(_container(CID_B, points), remove_anonymous=True)
    assert svc.get("shared").name == "shared"  # named: rm -v keeps it
    assert svc.matches(svc.get("shared"), {"dangling": ["true"]})
    asyncio.run(svc.remove("shared"))
    assert svc.list() == [] and db.get_volume("shared") is None
    assert not (tmp_path / "volumes" / "shared").exists()
    assert [a for a, _ in _actions(db)] == ["create", "destroy"]


def test_anonymous_volumes_go_with_rm_v_unless_another_container_uses_them(
    tmp_path: Path, db: MetadataDB
) -> None:
    svc = _service(tmp_path, db)
    spec = ContainerSpec(image="busybox", volumes=("/cache",))
    (anon,) = svc.resolve(CID_A, spec, _no_containers)
    assert anon.anonymous and svc.get(anon.name).anonymous
    # B takes A's volumes (--volumes-from): A's rm -v must keep the volume B still uses.
    owner = _container(CID_A, (anon,))
    from_spec = ContainerSpec(image="busybox", host=HostConfig(volumes_from=("a",)))
    (shared,) = svc.resolve(CID_B, from_spec, lambda ref: owner.mount_points)
    assert shared.name == anon.name and not shared.copy_data
    svc.forget(owner, remove_anonymous=True)
    assert svc.users(anon.name) == [CID_B]
    svc.forget(_container(CID_B, (shared,)), remove_anonymous=False)
    assert svc.get(anon.name).name == anon.name  # rm without -v keeps it (dangling)
    (again,) = svc.resolve(CID_A, ContainerSpec(image="busybox", volumes=("/cache",)), _no_containers)
    assert again.name != anon.name  # a new container gets a new anonymous volume
    svc.forget(_container(CID_A, (again,)), remove_anonymous=True)
    with pytest.raises(NotFound):
        svc.get(again.name)
    asyncio.run(svc.drain())
    assert not (tmp_path / "volumes" / again.name).exists()


def test_a_failed_resolve_removes_the_anonymous_volumes_it_made(tmp_path: Path, db: MetadataDB) -> None:
    svc = _service(tmp_path, db)
    spec = ContainerSpec(image="busybox", volumes=("/a",), host=HostConfig(binds=("bad name:/b",)))
    with pytest.raises(InvalidArgument):
        svc.resolve(CID_A, spec, _no_containers)
    assert svc.list() == []
    # An image VOLUME comes after binds: a bad one fails after the bind's volume was made.
    spec = ContainerSpec(image="busybox", volumes=("relative",), host=HostConfig(binds=("named:/n",)))
    with pytest.raises(InvalidArgument, match="must be absolute"):
        svc.resolve(CID_A, spec, _no_containers)
    assert svc.users("named") == []


def test_prune_removes_anonymous_unless_all_and_honours_label_filters(tmp_path: Path, db: MetadataDB) -> None:
    svc = _service(tmp_path, db)
    anon = svc.create()
    svc.create("named", labels={"keep": "no"})
    svc.create("kept", labels={"keep": "yes"})
    used = svc.create("used")
    svc.resolve(CID_A, ContainerSpec(image="busybox", host=HostConfig(binds=("used:/u",))), _no_containers)
    (Path(svc.mountpoint(anon.name)) / "blob").write_bytes(b"z" * 1000)

    deleted, reclaimed = asyncio.run(svc.prune({}, all_volumes=False))
    assert deleted == [anon.name] and reclaimed == 1000
    deleted, _ = asyncio.run(svc.prune({"label!": ["keep=yes"]}, all_volumes=True))
    assert deleted == ["named"]
    assert [v.name for v in svc.list()] == ["kept", used.name]


def test_recover_drops_half_removed_volumes_leftovers_and_counts_references(
    tmp_path: Path, db: MetadataDB
) -> None:
    svc = _service(tmp_path, db)
    svc.create("alive")
    svc.create("half-removed")
    (tmp_path / "volumes" / "half-made").mkdir()  # crash between mkdir and the record
    (tmp_path / "volumes" / ".trash-old-0001").mkdir()  # crash before the data was deleted
    svc.driver.retire("half-removed")  # crash after the directory went, before the record did
    point = MountPoint(type="volume", destination="/d", name="alive", source=svc.mountpoint("alive"))
    running = _container(CID_A, (point,), status="running")
    db.put_container(running.id, running.name, running.created, running.to_json())

    after = _service(tmp_path, db)
    after.recover()
    assert [v.name for v in after.list()] == ["alive"]
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == ["alive"]
    assert after.users("alive") == [CID_A]
    with pytest.raises(Conflict, match="in use"):
        asyncio.run(after.remove("alive"))
    assert json.loads(db.get_volume("alive") or "{}")["name"] == "alive"
