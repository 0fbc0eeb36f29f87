"""MetadataDB: images, tags, containers, events (a real SQLite file in tmp_path)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.errors import AlreadyExists, NotFound
from skiff.store.metadata import MetadataDB
from skiff.types.container import HealthConfig
from skiff.types.image import HistoryEntry, ImageConfig, ImageRecord

IMG = "sha256:" + "ab" * 32
IMG2 = "sha256:" + "cd" * 32


def _rec(image_id: str = IMG, **kw: object) -> ImageRecord:
    return ImageRecord(
        id=image_id,
        config=ImageConfig(
            cmd=("sh",),
            entrypoint=None,
            env=("A=1",),
            labels={"x": "y"},
            healthcheck=HealthConfig(test=("CMD", "true"), retries=2),
        ),
        diff_ids=("sha256:" + "1" * 64,),
        chain_ids=("sha256:" + "1" * 64,),
        created="2024-01-01T00:00:00Z",
        history=(HistoryEntry(created="2024-01-01T00:00:00Z", comment="c", empty_layer=True),),
        size=42,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[MetadataDB]:
    d = MetadataDB(tmp_path / "metadata.db")
    yield d
    d.close()


def test_image_round_trip_and_tags(db: MetadataDB) -> None:
    rec = _rec(repo_tags=("ignored:tag",))
    db.put_image(rec)
    got = db.get_image(IMG)
    assert got == _rec()  # repo_tags are not stored with the record
    db.set_tag("busybox:latest", IMG)
    db.set_tag("a:1", IMG)
    assert db.get_image(IMG).repo_tags == ("a:1", "busybox:latest")
    assert db.resolve_tag("busybox:latest") == IMG
    assert db.tags_for(IMG) == ["a:1", "busybox:latest"]
    assert [r.repo_tags for r in db.list_images()] == [("a:1", "busybox:latest")]
    db.put_image(_rec(IMG2))
    db.set_tag("a:1", IMG2)  # a tag moves
    assert db.tags_for(IMG) == ["busybox:latest"]
    db.remove_tag("busybox:latest")
    assert db.resolve_tag("busybox:latest") is None
    with pytest.raises(NotFound, match="No such image: busybox:latest"):
        db.remove_tag("busybox:latest")
    with pytest.raises(NotFound):
        db.set_tag("x:1", "sha256:" + "0" * 64)


def test_delete_image_removes_its_tags(db: MetadataDB) -> None:
    db.put_image_tagged(_rec(), ("t:1", "t:2"))
    db.delete_image(IMG)
    assert db.resolve_tag("t:1") is None
    assert db.list_images() == []
    with pytest.raises(NotFound, match=f"No such image: {IMG}"):
        db.get_image(IMG)
    with pytest.raises(NotFound):
        db.delete_image(IMG)


def test_containers(db: MetadataDB) -> None:
    db.put_container("c1", "web", "2024-01-01T00:00:00Z", '{"a":1}')
    db.put_container("c2", "db", "2024-01-01T00:00:01Z", "{}")
    db.put_container("c1", "web", "2024-01-01T00:00:00Z", '{"a":2}')  # replace keeps its name
    assert db.get_container("c1") == '{"a":2}'
    assert db.get_container("nope") is None
    with pytest.raises(AlreadyExists, match='The container name "/web" is already in use by container "c1"'):
        db.put_container("c3", "web", "x", "{}")
    with pytest.raises(AlreadyExists):
        db.rename_container("c2", "web")
    db.rename_container("c2", "cache")
    assert db.list_containers() == [("c1", "web", '{"a":2}'), ("c2", "cache", "{}")]
    with pytest.raises(NotFound):
        db.rename_container("zzz", "new")
    db.delete_container("c1")
    with pytest.raises(NotFound, match="No such container: c1"):
        db.delete_container("c1")
    db.put_container("c3", "web", "x", "{}")  # the name is free again


def test_events_window_and_prune(db: MetadataDB) -> None:
    for t in range(10):
        db.append_event(t * 100, f'{{"t":{t}}}')
    assert db.events(None, None)[0] == '{"t":0}'
    assert db.events(300, 500) == ['{"t":3}', '{"t":4}', '{"t":5}']
    assert db.events(850, None) == ['{"t":9}']
    db.prune_events(3)
    assert db.events(None, None) == ['{"t":7}', '{"t":8}', '{"t":9}']
    db.prune_events(0)
    assert db.events(None, None) == []


def test_layers(db: MetadataDB) -> None:
    assert db.layer_size("sha256:" + "1" * 64) is None
    db.put_layer("sha256:" + "1" * 64, "sha256:" + "2" * 64, 123)
    assert db.layer_size("sha256:" + "1" * 64) == 123
    db.delete_layer("sha256:" + "1" * 64)
    assert db.layer_size("sha256:" + "1" * 64) is None


def test_failed_change_leaves_nothing(db: MetadataDB, tmp_path: Path) -> None:
    db.put_image(_rec())
    # A tag pointing at a missing image fails inside put_image_tagged's transaction: the
    # image row written earlier in the same transaction must not survive.
    db.put_container("c1", "web", "x", "{}")
    with pytest.raises(sqlite3.IntegrityError), db._txn() as conn:
        conn.execute("INSERT INTO images (id, data, created) VALUES ('sha256:x', '{}', 'x')")
        conn.execute("INSERT INTO tags (ref, image_id) VALUES ('bad:1', 'sha256:missing')")
    assert db.image_ids() == [IMG]


def test_wal_mode_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    d = MetadataDB(path)
    d.put_image_tagged(_rec(), ("keep:1",))
    d.close()
    d2 = MetadataDB(path)
    assert d2.resolve_tag("keep:1") == IMG
    assert d2._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    d2.close()


def test_replacing_an_image_keeps_its_tags(db: MetadataDB) -> None:
    db.put_image_tagged(_rec(), ("t:1",))
    db.put_image(dataclasses.replace(_rec(), size=99))
    assert db.get_image(IMG).repo_tags == ("t:1",)
    assert db.get_image(IMG).size == 99
