"""Save and load between real image stores (overlay snapshots, content store, SQLite), and the
archive forms other tools write: Docker 20.10's ``<id>/layer.tar``, OCI layouts with gzip layers
and nested indexes, gzip-compressed archives; hostile and broken archives fail cleanly (root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument, NotFound
from skiff.images.archive import MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST, plan_save, write_archive
from skiff.images.archive_load import ImageLoaded, LoadEvent, load_archive, opened_archive
from skiff.images.imagestore import ImageStore
from skiff.types.image import HistoryEntry, ImageConfig, ImageRecord
from tests.integration.conftest import open_store

pytestmark = pytest.mark.root


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


BASE = _layer({"bin/sh": b"#!", "etc/os-release": b"ID=test\n"})
TOP = _layer({"app/run": b"echo hi\n"})


@pytest.fixture
def other(tmp_path: Path) -> Iterator[ImageStore]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    s = open_store(tmp_path / "other")
    yield s
    s.db.close()
    s.snapshotter.close()


def _image(store: ImageStore, layers: list[bytes], tags: tuple[str, ...], cmd: str = "sh") -> ImageRecord:
    parent = None
    diff_ids = []
    for data in layers:
        diff_id, parent, _ = store.import_layer(io.BytesIO(data), parent)
        diff_ids.append(diff_id)
    history = tuple(
        HistoryEntry(created="2024-01-01T00:00:00Z", created_by=f"layer {i}") for i in range(len(layers))
    )
    return store.create_image(
        ImageConfig(cmd=(cmd,)), diff_ids, history=history, created="2024-01-01T00:00:00Z", repo_tags=tags
    )


def _save(store: ImageStore, names: list[str], fmt: str = "docker") -> bytes:
    out = io.BytesIO()
    write_archive(plan_save(store, names, fmt), out)
    return out.getvalue()


def _load(store: ImageStore, data: bytes) -> tuple[list[ImageLoaded], list[LoadEvent]]:
    events: list[LoadEvent] = []
    with opened_archive(io.BytesIO(data)) as f:
        loaded = load_archive(store, f, events.append)
    return loaded, events


def _snapshots(store: ImageStore) -> set[str]:
    return {i.key for i in store.snapshotter.walk()}


def test_round_trip_keeps_ids_diff_ids_and_tags(store: ImageStore, other: ImageStore) -> None:
    a = _image(store, [BASE], ("base:1",))
    b = _image(store, [BASE, TOP], ("app:1", "registry.example:5000/team/app:1"), cmd="/app/run")
    data = _save(store, ["app:1", "base"])  # a bare name saves every tag of that repository
    loaded, events = _load(other, data)
    assert [(i.id, i.tags) for i in loaded] == [
        (b.id, ("app:1",)),
        (a.id, ("base:1",)),
    ]
    for rec in (a, b):
        got = other.get(rec.id)
        assert got.diff_ids == rec.diff_ids and got.chain_ids == rec.chain_ids
        assert other.config_blob(rec.id) == store.config_blob(rec.id)
    # Each layer read once, with progress to its full size.
    done = {e.diff_id for e in events if not isinstance(e, ImageLoaded) and e.current == e.total}
    assert done == set(b.diff_ids)
    # Saving again from the loaded store gives the same bytes (layers rebuilt exactly).
    assert _save(other, ["app:1", "base"]) == data


def test_oci_format_loads_through_the_index(store: ImageStore, other: ImageStore) -> None:
    rec = _image(store, [BASE, TOP], ("app:2",))
    loaded, _ = _load(other, _save(store, ["app:2"], "oci"))
    assert [(i.id, i.tags) for i in loaded] == [(rec.id, ("app:2",))]


def test_untagged_and_gzipped(store: ImageStore, other: ImageStore) -> None:
    rec = _image(store, [BASE], ())
    loaded, _ = _load(other, gzip.compress(_save(store, [rec.id[:19]])))
    assert [(i.id, i.tags) for i in loaded] == [(rec.id, ())]


def test_save_unknown_names(store: ImageStore) -> None:
    _image(store, [BASE], ("base:1",))
    for name in ("base:2", "nothing", "sha256:" + "0" * 64):
        with pytest.raises(NotFound, match="No such image"):
            plan_save(store, [name])
    with pytest.raises(InvalidArgument, match="unknown archive format"):
        plan_save(store, ["base:1"], "zip")


def test_loading_moves_a_tag_and_says_so(store: ImageStore, other: ImageStore) -> None:
    rec = _image(store, [BASE], ("app:1",))
    old = _image(other, [TOP], ("app:1",))
    loaded, _ = _load(other, _save(store, ["app:1"]))
    assert loaded[0].replaced == (("app:1", old.id),)
    assert other.get("app:1").id == rec.id


def test_layers_already_present_are_not_read(store: ImageStore, other: ImageStore) -> None:
    rec = _image(store, [BASE], ("base:1",))
    _image(other, [BASE], ())
    # Replace the layer blob in the archive with garbage of the same size: never opened.
    data = _save(store, ["base:1"])
    name = f"blobs/sha256/{rec.diff_ids[0][7:]}"
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            f = src.extractfile(m) if m.isreg() else None
            content = b"\0" * m.size if m.name == name else (f.read() if f else b"")
            dst.addfile(m, io.BytesIO(content) if m.isreg() else None)
    loaded, events = _load(other, out.getvalue())
    assert loaded[0].id == rec.id
    assert not [e for e in events if not isinstance(e, ImageLoaded)]


# -- archives other tools write -------------------------------------------------------------------


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
    return buf.getvalue()


def _config(diff_ids: list[str], os_name: str = "linux") -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": os_name,
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z"} for _ in diff_ids],
        }
    ).encode()


def test_docker_20_10_legacy_layout_with_symlinked_layer(other: ImageStore) -> None:
    """Docker <= 24: <v1id>/layer.tar, <v1id>/json, <config>.json; a repeated layer is a symlink."""
    c1 = _config([_digest(BASE)])
    c2 = _config([_digest(BASE), _digest(TOP)])
    manifest = [
        {"Config": f"{_digest(c1)[7:]}.json", "RepoTags": ["legacy:1"], "Layers": ["aaa/layer.tar"]},
        {
            "Config": f"{_digest(c2)[7:]}.json",
            "RepoTags": ["legacy:2"],
            "Layers": ["bbb/layer.tar", "ccc/layer.tar"],
        },
    ]
    data = _tar(
        {
            "aaa/layer.tar": BASE,
            "aaa/json": b"{}",
            "aaa/VERSION": b"1.0",
            "ccc/layer.tar": TOP,
            f"{_digest(c1)[7:]}.json": c1,
            f"{_digest(c2)[7:]}.json": c2,
            "manifest.json": json.dumps(manifest).encode(),
            "repositories": b'{"legacy":{"1":"aaa"}}',
        },
        links={"bbb/layer.tar": "../aaa/layer.tar"},
    )
    loaded, _ = _load(other, data)
    assert [(i.id, i.tags) for i in loaded] == [(_digest(c1), ("legacy:1",)), (_digest(c2), ("legacy:2",))]
    assert other.get("legacy:2").diff_ids == (_digest(BASE), _digest(TOP))


def _oci_layout(platforms: list[tuple[str, bytes]], gz: bool = True) -> bytes:
    """A skopeo/buildkit-like layout: gzip layers, an image index per platform under the top index."""
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> str:
        d = _digest(data)
        blobs[f"blobs/sha256/{d[7:]}"] = data
        return d

    entries = []
    for arch, layer in platforms:
        blob = gzip.compress(layer, mtime=0) if gz else layer
        config = _config([_digest(layer)])
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": put(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": MT_OCI_LAYER + ("+gzip" if gz else ""),
                        "digest": put(blob),
                        "size": len(blob),
                    }
                ],
            }
        ).encode()
        entries.append(
            {
                "mediaType": MT_OCI_MANIFEST,
                "digest": put(manifest),
                "size": len(manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    nested = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MT_OCI_INDEX,
                "digest": put(nested),
                "size": len(nested),
                "annotations": {"org.opencontainers.image.ref.name": "multi/arch:1"},
            }
        ],
    }
    return _tar(
        {**blobs, "index.json": json.dumps(index).encode(), "oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    )


def test_oci_layout_nested_index_picks_the_host_platform(other: ImageStore) -> None:
    data = _oci_layout([("arm64", TOP), ("amd64", BASE), ("unknown", TOP)])
    loaded, _ = _load(other, data)
    assert [i.tags for i in loaded] == [("multi/arch:1",)]
    assert other.get("multi/arch:1").diff_ids == (_digest(BASE),)


def test_oci_layout_without_the_host_platform(other: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="no image for linux/amd64"):
        _load(other, _oci_layout([("s390x", BASE)]))


def test_corrupt_oci_blob_is_refused(other: ImageStore) -> None:
    data = _oci_layout([("amd64", BASE), ("amd64", TOP)], gz=False)
    # Change a byte inside the TOP layer blob: its digest no longer matches the descriptor.
    bad = data.replace(b"echo hi", b"echo HI")
    with pytest.raises(InvalidArgument, match="does not match its digest"):
        _load(other, bad)
    # As with docker load, images loaded before the failure stay; nothing of the bad one does.
    assert [i.diff_ids for i in other.list()] == [(_digest(BASE),)]
    assert _snapshots(other) == {_digest(BASE)}


@pytest.mark.parametrize(
    "manifest_entry, config, message",
    [
        ({"Layers": ["l.tar", "l.tar"]}, _config([_digest(BASE)]), "layers length mismatch"),
        ({"Layers": ["l.tar"]}, _config([_digest(BASE)], "windows"), "cannot load windows image"),
        (
            {"Layers": ["l.tar"], "RepoTags": ["x@sha256:" + "a" * 64]},
            _config([_digest(BASE)]),
            "invalid tag",
        ),
        ({"Layers": ["l.tar"], "RepoTags": ["UPPER:1"]}, _config([_digest(BASE)]), "invalid tag"),
        ({"Layers": ["l.tar"]}, _config(["sha256:zz"]), "invalid digest"),
        ({"Layers": ["l.tar"]}, _config(["sha256:" + "a" * 64]), "invalid diffID for layer 0"),
        ({"Layers": ["../../../etc/passwd"]}, _config([_digest(BASE)]), "not in the archive"),
        ({"Layers": ["link"]}, _config([_digest(BASE)]), "not in the archive"),
        ({"Layers": ["l.tar"]}, b"[]", "not a JSON object"),
    ],
)
def test_broken_docker_archives(
    other: ImageStore, manifest_entry: dict[str, object], config: bytes, message: str
) -> None:
    entry = {"Config": "c.json", **manifest_entry}
    data = _tar(
        {"l.tar": BASE, "c.json": config, "manifest.json": json.dumps([entry]).encode()},
        links={"link": "/etc/passwd"},
    )
    before = _snapshots(other)
    with pytest.raises(InvalidArgument, match=message):
        _load(other, data)
    assert _snapshots(other) == before
    assert other.list() == []


def test_archive_without_manifest_or_index(other: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match=r"pre-1\.10"):
        _load(other, _tar({"repositories": b"{}", "abc/json": b"{}"}))
    with pytest.raises(InvalidArgument, match=r"no manifest\.json or index\.json"):
        _load(other, _tar({"hello": b"x"}))
