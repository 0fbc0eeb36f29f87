"""Image archives without a store: the documents (manifest.json, OCI index/manifest), the writer's
layout, and the reader's member lookup (links resolved inside the archive only)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skiff.api.images import _loaded_lines, progress_bar
from skiff.errors import InvalidArgument
from skiff.images.archive import (
    MT_OCI_INDEX,
    MT_OCI_LAYER,
    MT_OCI_MANIFEST,
    Descriptor,
    SaveImage,
    SavePlan,
    parse_index,
    parse_manifest_json,
    parse_oci_manifest,
    tags_from_annotations,
    write_archive,
)
from skiff.images.archive_load import ArchiveReader, ImageLoaded
from skiff.images.imagestore import LayerTar
from skiff.images.oci import parse_config
from skiff.types.image import ImageConfig, ImageRecord


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


# -- manifest.json ------------------------------------------------------------------------------


def test_manifest_json_both_docker_forms() -> None:
    legacy = [
        {"Config": "abc.json", "RepoTags": ["busybox:latest"], "Layers": ["1/layer.tar", "2/layer.tar"]}
    ]
    modern = [
        {"Config": "blobs/sha256/ab", "RepoTags": None, "Layers": ["blobs/sha256/1"], "LayerSources": {}}
    ]
    (a,) = parse_manifest_json(json.dumps(legacy).encode())
    assert (a.config, a.repo_tags, a.layers) == (
        "abc.json",
        ("busybox:latest",),
        ("1/layer.tar", "2/layer.tar"),
    )
    (b,) = parse_manifest_json(json.dumps(modern).encode())
    assert b.repo_tags == () and b.layers == ("blobs/sha256/1",)
    assert parse_manifest_json(b"[]") == []


@pytest.mark.parametrize(
    "doc, message",
    [
        (b"null", "manifest cannot be null"),
        (b"{}", "expected a list"),
        (b"[1]", "not an object"),
        (b'[{"Layers": []}]', "has no Config"),
        (b'[{"Config": "c", "RepoTags": "busybox"}]', "RepoTags"),
        (b'[{"Config": "c", "Layers": [1]}]', "Layers"),
        (b"[{", "invalid manifest.json"),
    ],
)
def test_manifest_json_errors(doc: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_manifest_json(doc)


# -- OCI index and manifest ----------------------------------------------------------------------


def test_index_descriptors_with_platform_and_annotations() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [
            {
                "mediaType": MT_OCI_MANIFEST,
                "digest": D1,
                "size": 10,
                "platform": {"os": "linux", "architecture": "arm64"},
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            },
            {"mediaType": MT_OCI_INDEX, "digest": D2, "size": 3},
        ],
    }
    a, b = parse_index(json.dumps(doc).encode())
    assert a == Descriptor(
        MT_OCI_MANIFEST, D1, 10, {"org.opencontainers.image.ref.name": "v1"}, ("linux", "arm64")
    )
    assert b.media_type == MT_OCI_INDEX and b.platform is None


@pytest.mark.parametrize(
    "manifests, message",
    [
        ([{"digest": "sha256:abc", "size": 1}], "invalid digest"),
        ([{"digest": "sha256:../../etc/passwd", "size": 1}], "invalid digest"),
        ([{"digest": D1, "size": -1}], "no valid size"),
        ([{"digest": D1, "size": True}], "no valid size"),
        ([{"digest": D1}], "no valid size"),
        ([{"size": 1}], "without a digest"),
        ([{"digest": D1, "size": 1, "annotations": {"a": 1}}], "annotations"),
        (["x"], "must be an object"),
    ],
)
def test_index_errors(manifests: list[Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_index(json.dumps({"schemaVersion": 2, "manifests": manifests}).encode())


def test_index_needs_schema_2_and_a_list() -> None:
    with pytest.raises(InvalidArgument, match="schemaVersion"):
        parse_index(b'{"manifests": []}')
    with pytest.raises(InvalidArgument, match="manifests must be a list"):
        parse_index(b'{"schemaVersion": 2}')


def test_oci_manifest() -> None:
    doc = {
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 5},
        "layers": [{"mediaType": MT_OCI_LAYER + "+gzip", "digest": D2, "size": 7}],
    }
    m = parse_oci_manifest(json.dumps(doc).encode())
    assert m.config.digest == D1
    assert [layer.digest for layer in m.layers] == [D2]
    with pytest.raises(InvalidArgument):
        parse_oci_manifest(json.dumps({**doc, "config": None}).encode())


@pytest.mark.parametrize(
    "annotations, tags",
    [
        ({"io.containerd.image.name": "docker.io/library/busybox:latest"}, ("busybox:latest",)),
        ({"org.opencontainers.image.ref.name": "latest"}, ()),  # a bare tag names no repository
        ({"org.opencontainers.image.ref.name": "localhost/app:v1"}, ("localhost/app:v1",)),
        ({"org.opencontainers.image.ref.name": "busybox"}, ()),
        ({"io.containerd.image.name": "busybox@sha256:" + "a" * 64}, ()),
        ({"io.containerd.image.name": "NOT VALID"}, ()),
        (
            {"io.containerd.image.name": "docker.io/x/y:1", "org.opencontainers.image.ref.name": "1"},
            ("x/y:1",),
        ),
    ],
)
def test_tags_from_annotations(annotations: dict[str, str], tags: tuple[str, ...]) -> None:
    assert tags_from_annotations(annotations) == tags


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_document_parsers_only_raise_invalid_argument(value: Any) -> None:
    data = json.dumps(value).encode()
    for parse in (parse_manifest_json, parse_index, parse_oci_manifest):
        try:
            parse(data)  # type: ignore[operator]
        except InvalidArgument:
            pass


@given(st.binary(max_size=200))
def test_document_parsers_on_bytes_only_raise_invalid_argument(data: bytes) -> None:
    for parse in (parse_manifest_json, parse_index, parse_oci_manifest):
        try:
            parse(data)  # type: ignore[operator]
        except InvalidArgument:
            pass


CONFIG_KEYS = [
    "config",
    "container_config",
    "rootfs",
    "diff_ids",
    "history",
    "Env",
    "Cmd",
    "Healthcheck",
    "Interval",
    "Test",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "User",
    "created",
    "os",
    "created_by",
]
config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(CONFIG_KEYS), children, max_size=5)
    ),
    max_leaves=25,
)


@given(config_values)
def test_a_loaded_config_is_checked_field_by_field(value: Any) -> None:
    """An image config in an archive is someone else's JSON: a 400, never a crash."""
    try:
        parse_config(json.dumps(value).encode())
    except InvalidArgument:
        pass


# -- the writer -----------------------------------------------------------------------------------


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _plan(fmt: str = "docker") -> tuple[SavePlan, list[bytes]]:
    base, top = _layer({"a": b"1"}), _layer({"b": b"2"})
    layers = {
        _digest(data): LayerTar(_digest(data), len(data), lambda data=data: iter([data[:100], data[100:]]))
        for data in (base, top)
    }
    images = []
    for diff_ids, tags in (((base,), ("busybox:latest", "localhost:5000/x/y:1")), ((base, top), ())):
        ids = tuple(_digest(d) for d in diff_ids)
        config = json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": list(ids)}}).encode()
        rec = ImageRecord(id=_digest(config), config=ImageConfig(), diff_ids=ids, chain_ids=ids, created="")
        images.append(SaveImage(rec, config, tags))
    return SavePlan(images, layers, fmt), [base, top]


def _write(plan: SavePlan) -> bytes:
    out = io.BytesIO()
    write_archive(plan, out)
    return out.getvalue()


def test_written_archive_is_docker_archive_and_oci_layout_at_once() -> None:
    plan, (base, top) = _plan()
    data = _write(plan)
    assert data == _write(plan)  # deterministic: same images, same bytes
    tf = tarfile.open(fileobj=io.BytesIO(data))
    names = tf.getnames()
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert names.count(f"blobs/sha256/{_digest(base)[7:]}") == 1  # a shared layer is written once
    assert names[-4:] == ["index.json", "manifest.json", "oci-layout", "repositories"]
    assert all(m.mtime == 0 and m.uid == 0 for m in tf.getmembers())
    read = ArchiveReader(io.BytesIO(data))
    manifest = json.loads(read.read("manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:latest", "localhost:5000/x/y:1"]
    assert manifest[1]["RepoTags"] is None
    assert manifest[1]["Layers"] == [f"blobs/sha256/{_digest(d)[7:]}" for d in (base, top)]
    assert read.read(manifest[1]["Layers"][1]) == top
    index = parse_index(read.read("index.json"))
    assert [tags_from_annotations(d.annotations) for d in index] == [
        ("busybox:latest",),
        ("localhost:5000/x/y:1",),
        (),
    ]
    m = parse_oci_manifest(read.blob_bytes(index[2]))
    assert [layer.digest for layer in m.layers] == [_digest(base), _digest(top)]
    assert [layer.size for layer in m.layers] == [len(base), len(top)]
    assert read.blob_bytes(m.config) == plan.images[1].config
    repositories = json.loads(read.read("repositories"))
    assert repositories == {
        "busybox": {"latest": _digest(base)[7:]},
        "localhost:5000/x/y": {"1": _digest(base)[7:]},
    }


def test_oci_format_has_no_docker_files() -> None:
    plan, _ = _plan("oci")
    names = tarfile.open(fileobj=io.BytesIO(_write(plan))).getnames()
    assert "manifest.json" not in names and "repositories" not in names
    assert "index.json" in names and "oci-layout" in names


def test_a_layer_shorter_than_announced_stops_the_writer() -> None:
    plan, (base, _) = _plan()
    d = _digest(base)
    plan.layers[d] = LayerTar(d, len(base) + 1, lambda: iter([base]))
    with pytest.raises(Exception, match="expected"):
        _write(plan)


# -- the reader -----------------------------------------------------------------------------------


def _archive(*members: tuple[str, bytes | str, bytes]) -> io.BytesIO:
    """(name, type, content-or-linkname)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(payload)
                tf.addfile(ti, io.BytesIO(payload))
            else:
                ti.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                ti.linkname = payload.decode()
                tf.addfile(ti)
    buf.seek(0)
    return buf


def test_reader_follows_links_inside_the_archive_only() -> None:
    arc = _archive(
        ("a/layer.tar", "file", b"LAYER"),
        ("b/layer.tar", "sym", b"../a/layer.tar"),  # Docker 20.10 links a repeated layer like this
        ("c/layer.tar", "hard", b"a/layer.tar"),
        ("abs", "sym", b"/a/layer.tar"),  # absolute: the archive's root, not the host's
        ("passwd", "sym", b"/etc/passwd"),
        ("up", "sym", b"../../../../etc/passwd"),
        ("loop1", "sym", b"loop2"),
        ("loop2", "sym", b"loop1"),
    )
    r = ArchiveReader(arc)
    for name in ("a/layer.tar", "b/layer.tar", "c/layer.tar", "abs", "./a/layer.tar", "/a/layer.tar"):
        assert r.read(name) == b"LAYER", name
    for name in ("passwd", "up", "../../etc/passwd", "missing"):
        with pytest.raises(InvalidArgument, match="not in the archive"):
            r.read(name)
    with pytest.raises(InvalidArgument, match="too many links"):
        r.read("loop1")


def test_reader_checks_blob_digest_and_size() -> None:
    good = b"blob"
    arc = _archive(
        (f"blobs/sha256/{_digest(good)[7:]}", "file", good), (f"blobs/sha256/{'0' * 64}", "file", good)
    )
    r = ArchiveReader(arc)
    assert r.blob_bytes(Descriptor("", _digest(good), 4)) == good
    with pytest.raises(InvalidArgument, match="descriptor says 5"):
        r.blob_bytes(Descriptor("", _digest(good), 5))
    with pytest.raises(InvalidArgument, match="does not match its digest"):
        r.blob_bytes(Descriptor("", "sha256:" + "0" * 64, 4))


def test_reader_rejects_non_tar_input() -> None:
    with pytest.raises(InvalidArgument, match="not a tar"):
        ArchiveReader(io.BytesIO(b"abc"))


# -- API wording ------------------------------------------------------------------------------------


def test_progress_text_like_docker() -> None:
    assert progress_bar(0, 2_000_000) == "[>" + " " * 50 + "]       0B/2MB"
    assert progress_bar(1_000_000, 2_000_000) == "[" + "=" * 25 + ">" + " " * 25 + "]      1MB/2MB"
    assert progress_bar(2_140_160, 2_140_160).startswith("[" + "=" * 50 + ">] ")
    assert progress_bar(1234, 0) == " 1.234kB"


def test_loaded_lines_like_docker() -> None:
    iid = "sha256:" + "f" * 64
    assert _loaded_lines(ImageLoaded(iid, ("busybox:latest",))) == ["Loaded image: busybox:latest\n"]
    assert _loaded_lines(ImageLoaded(iid, ())) == [f"Loaded image ID: {iid}\n"]
    old = "sha256:" + "e" * 64
    assert _loaded_lines(ImageLoaded(iid, ("a:1",), (("a:1", old),)))[0] == (
        f"The image a:1 already exists, renaming the old one with ID {old} to empty string\n"
    )
