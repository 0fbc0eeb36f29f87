"""The registry's small grammars: names, tags, digests, chunk ranges, pagination; manifest checks."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skiff.registry import media
from skiff.registry.server.errors import RegistryError
from skiff.registry.server.grammar import (
    MAX_PAGE,
    ChunkRange,
    check_digest,
    check_name,
    check_tag,
    next_link,
    paginate,
    parse_chunk_range,
    parse_page_size,
    upload_range,
)
from skiff.registry.server.manifests import parse_manifest

D = "sha256:" + "a" * 64


def code(exc: pytest.ExceptionInfo[RegistryError]) -> str:
    return exc.value.code


@pytest.mark.parametrize(
    "name", ["a", "library/busybox", "a0/b-c/d__e", "x.y_z/w--v", "a/b/c/d/e", "f" * 255]
)
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a/B", "a b", "f" * 256, "a:1"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as exc:
        check_name(name)
    assert code(exc) == "NAME_INVALID"
    assert exc.value.status == 400


def test_tags() -> None:
    assert check_tag("latest") == "latest"
    assert check_tag("_x.Y-1") == "_x.Y-1"
    assert check_tag("a" * 128)
    for bad in ("", ".a", "-a", "a" * 129, "a/b", "a:b"):
        with pytest.raises(RegistryError) as exc:
            check_tag(bad)
        assert code(exc) == "MANIFEST_INVALID"


def test_digests() -> None:
    assert check_digest(D) == D
    for bad in ("sha256:abc", "sha256:" + "A" * 64, "sha256:" + "a" * 65, "../etc", "sha256:" + "g" * 64):
        with pytest.raises(RegistryError) as exc:
            check_digest(bad)
        assert code(exc) == "DIGEST_INVALID"
    with pytest.raises(RegistryError, match="unsupported digest algorithm") as exc:
        check_digest("sha512:" + "a" * 128)
    assert code(exc) == "DIGEST_INVALID"


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("0-0", ChunkRange(0, 0)),
        ("0-1023", ChunkRange(0, 1023)),
        ("1024-2047", ChunkRange(1024, 2047)),
        ("bytes 5-9/*", ChunkRange(5, 9)),
        ("bytes=5-9/100", ChunkRange(5, 9)),
        (" 7-7 ", ChunkRange(7, 7)),
    ],
)
def test_chunk_ranges(header: str, want: ChunkRange) -> None:
    got = parse_chunk_range(header)
    assert got == want
    assert got.length == want.end - want.start + 1


@pytest.mark.parametrize("header", ["", "5", "5-", "-5", "9-5", "a-b", "0-1,3-4", "bytes 0-1/x"])
def test_bad_chunk_ranges(header: str) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_chunk_range(header)
    assert code(exc) == "BLOB_UPLOAD_INVALID"


def test_upload_range_header() -> None:
    assert upload_range(0) == "0-0"  # distribution's convention for an empty upload
    assert upload_range(1) == "0-0"
    assert upload_range(1000) == "0-999"


def test_page_size() -> None:
    assert parse_page_size(None) is None
    assert parse_page_size("") is None
    assert parse_page_size("0") == 0
    assert parse_page_size("25") == 25
    assert parse_page_size(str(MAX_PAGE * 10)) == MAX_PAGE
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(RegistryError) as exc:
            parse_page_size(bad)
        assert exc.value.status == 400


TAGS = sorted(["1.0", "A", "latest", "v1", "v10", "v2", "_x"])


def test_paginate() -> None:
    assert paginate(TAGS, None, None).items == TAGS
    assert paginate(TAGS, None, None).next_last is None
    page = paginate(TAGS, 3, None)
    assert page.items == TAGS[:3]
    assert page.next_last == TAGS[2]
    page = paginate(TAGS, 3, page.next_last)
    assert page.items == TAGS[3:6]
    page = paginate(TAGS, 3, page.next_last)
    assert page.items == TAGS[6:]
    assert page.next_last is None
    assert paginate(TAGS, 0, None).items == []
    assert paginate(TAGS, 0, None).next_last is None
    assert paginate(TAGS, None, "v10").items == ["v2"]
    assert paginate(TAGS, 2, "b-not-a-tag").items == ["latest", "v1"]  # last need not exist
    assert paginate(TAGS, len(TAGS), None).next_last is None


@given(st.lists(st.text("abcAB01._-", min_size=1, max_size=6), unique=True), st.integers(1, 5))
def test_paging_through_yields_everything_once(items: list[str], n: int) -> None:
    items = sorted(items)
    seen: list[str] = []
    last = None
    while True:
        page = paginate(items, n, last)
        assert len(page.items) <= n
        seen += page.items
        if page.next_last is None:
            break
        last = page.next_last
    assert seen == items


def test_next_link() -> None:
    assert next_link("/v2/a/tags/list", 2, "v 1") == '</v2/a/tags/list?last=v+1&n=2>; rel="next"'


# -- manifests -----------------------------------------------------------------------------------


def desc(mt: str, seed: str, size: int = 3, **extra: object) -> dict[str, object]:
    return {
        "mediaType": mt,
        "digest": "sha256:" + hashlib.sha256(seed.encode()).hexdigest(),
        "size": size,
        **extra,
    }


def image(**extra: object) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": desc(media.OCI_CONFIG, "config"),
        "layers": [desc(media.OCI_LAYER_GZIP, "l1"), desc(media.OCI_LAYER_GZIP, "l2")],
        **extra,
    }


def test_parse_image_manifest() -> None:
    content = json.dumps(image(annotations={"k": "v"})).encode()
    m = parse_manifest(content, media.OCI_MANIFEST)
    assert m.media_type == media.OCI_MANIFEST
    assert m.digest == "sha256:" + hashlib.sha256(content).hexdigest()
    assert len(m.blobs) == 3 and m.children == ()
    assert m.artifact_type == media.OCI_CONFIG
    assert m.annotations == {"k": "v"}
    assert m.subject is None
    assert m.size == len(content)


def test_media_type_from_body_or_header() -> None:
    doc = image()
    del doc["mediaType"]
    assert parse_manifest(json.dumps(doc).encode(), media.OCI_MANIFEST).media_type == media.OCI_MANIFEST
    assert parse_manifest(json.dumps(image()).encode(), "application/json").media_type == media.OCI_MANIFEST
    assert (
        parse_manifest(json.dumps(image()).encode(), f"{media.OCI_MANIFEST}; charset=utf-8").media_type
        == media.OCI_MANIFEST
    )


@pytest.mark.parametrize(
    ("doc", "content_type", "message"),
    [
        (image(), media.DOCKER_MANIFEST, "does not match Content-Type"),
        ({**image(), "schemaVersion": 1}, media.OCI_MANIFEST, "schemaVersion"),
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, media.DOCKER_MANIFEST_V1_SIGNED, "schema 1"),
        ({k: v for k, v in image().items() if k != "mediaType"}, "text/plain", "unsupported manifest type"),
        ({**image(), "layers": "x"}, media.OCI_MANIFEST, "layers must be a list"),
        (
            {**image(), "config": {"mediaType": "x", "digest": "md5:1", "size": 1}},
            media.OCI_MANIFEST,
            "config.digest",
        ),
        ({**image(), "layers": [desc("x", "y", size=-1)]}, media.OCI_MANIFEST, r"layers\[0\].size"),
        ({**image(), "layers": [{"digest": D, "size": 1}]}, media.OCI_MANIFEST, "mediaType"),
        ({**image(), "annotations": {"k": 1}}, media.OCI_MANIFEST, "annotations"),
        ({**image(), "subject": "x"}, media.OCI_MANIFEST, "subject"),
        ({"schemaVersion": 2, "mediaType": media.OCI_INDEX}, media.OCI_INDEX, "manifests must be a list"),
    ],
)
def test_invalid_manifests(doc: object, content_type: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as exc:
        parse_manifest(json.dumps(doc).encode(), content_type)
    assert code(exc) == "MANIFEST_INVALID"


def test_not_json() -> None:
    for content in (b"{", b"[]", b"\xff"):
        with pytest.raises(RegistryError) as exc:
            parse_manifest(content, media.OCI_MANIFEST)
        assert code(exc) == "MANIFEST_INVALID"


def test_index_and_subject() -> None:
    subject = desc(media.OCI_MANIFEST, "subject", 10)
    doc = {
        "schemaVersion": 2,
        "mediaType": media.OCI_INDEX,
        "manifests": [
            desc(media.OCI_MANIFEST, "a"),
            desc(media.OCI_MANIFEST, "b"),
            desc(media.OCI_MANIFEST, "a"),
        ],
        "subject": subject,
    }
    m = parse_manifest(json.dumps(doc).encode(), media.OCI_INDEX)
    assert m.is_index
    assert len(m.children) == 2  # duplicates collapse
    assert m.blobs == ()
    assert m.subject == subject["digest"]
    assert m.artifact_type is None  # an index without artifactType lists none


def test_artifact_type_field_wins() -> None:
    m = parse_manifest(json.dumps(image(artifactType="application/x.sig")).encode(), media.OCI_MANIFEST)
    assert m.artifact_type == "application/x.sig"


def test_foreign_layers_need_not_be_present() -> None:
    foreign = desc(media.DOCKER_FOREIGN_LAYER, "win", urls=["https://example.invalid/layer"])
    doc = {
        "schemaVersion": 2,
        "mediaType": media.DOCKER_MANIFEST,
        "config": desc(media.DOCKER_CONFIG, "c"),
        "layers": [foreign, desc(media.DOCKER_LAYER_GZIP, "l")],
    }
    m = parse_manifest(json.dumps(doc).encode(), media.DOCKER_MANIFEST)
    assert foreign["digest"] not in m.blobs
    assert len(m.blobs) == 2
