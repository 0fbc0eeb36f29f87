"""Content store logic that needs no root: digest validation, write/commit/read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from skiff.errors import DataCorruption, InvalidArgument, NotFound
from skiff.store.content import ContentStore, validate_digest

GOOD = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256:",
        "sha256:" + "A" * 64,  # upper case
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha512:" + "a" * 64,
        "a" * 64,
        "sha256:../../../../etc/passwd",
        "sha256:" + "a" * 63 + "/",
        "sha256:" + "a" * 64 + "\n",
    ],
)
def test_bad_digests_rejected(bad: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        validate_digest(bad)
    store = ContentStore(tmp_path)
    with pytest.raises(InvalidArgument):
        store.path(bad)
    with pytest.raises(InvalidArgument):
        store.exists(bad)


def test_good_digest() -> None:
    assert validate_digest(GOOD) == GOOD


def test_put_read_info_walk_delete(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    info = store.put(b"hello")
    assert info.digest == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert info.size == 5
    assert store.read(info.digest) == b"hello"
    assert store.info(info.digest) == info
    assert list(store.walk()) == [info]
    assert os.stat(store.path(info.digest)).st_mode & 0o777 == 0o444
    assert store.put(b"hello") == info  # idempotent
    store.delete(info.digest)
    assert not store.exists(info.digest)
    with pytest.raises(NotFound):
        store.read(info.digest)
    with pytest.raises(NotFound):
        store.delete(info.digest)


def test_writer_streams_and_checks(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = "sha256:" + hashlib.sha256(b"abcdef").hexdigest()
    with store.writer(digest, 6) as w:
        w.write(b"abc")
        w.write(b"def")
        assert w.commit().digest == digest
    with store.writer(expected_digest=GOOD) as w, pytest.raises(DataCorruption):
        w.write(b"abc")
        w.commit()
    assert not store.exists(GOOD)
    assert list((tmp_path / "ingest").iterdir()) == []


def test_leaving_without_commit_discards(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with store.writer() as w:
        w.write(b"data")
    assert list(store.walk()) == []
    assert list((tmp_path / "ingest").iterdir()) == []


def test_adopt_renames_a_verified_file(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    data = b"uploaded elsewhere"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    src = tmp_path / "content" / "upload"
    src.write_bytes(data)
    with pytest.raises(DataCorruption, match="size mismatch"):
        store.adopt(src, digest, len(data) + 1)
    assert src.exists() and not store.exists(digest)
    info = store.adopt(src, digest, len(data))
    assert (info.digest, info.size) == (digest, len(data))
    assert not src.exists()
    assert store.read(digest) == data
    assert store.path(digest).stat().st_mode & 0o777 == 0o444
    # Adopting a blob the store already holds just drops the source.
    src.write_bytes(data)
    store.adopt(src, digest, len(data))
    assert not src.exists()
    assert store.read(digest) == data
