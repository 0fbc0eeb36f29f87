"""Tar-split: layers extracted for real and rebuilt byte for byte; the image store's exact layers (root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from skiff.errors import DataCorruption
from skiff.images.imagestore import TAR_SPLIT, ImageStore
from skiff.images.layers import apply_layer
from skiff.images.tarsplit import SplitRecorder, assemble_to, split_size

pytestmark = pytest.mark.root


def _tree(root: Path) -> None:
    (root / "dir/sub").mkdir(parents=True)
    (root / "dir/sub/file").write_bytes(b"x" * 100_000)
    (root / "empty").write_bytes(b"")
    (root / ("long-" + "n" * 150)).write_bytes(b"long name")
    (root / "dir/unicode-\u00e9").write_bytes(b"u")
    os.symlink("dir/sub/file", root / "link")
    os.link(root / "dir/sub/file", root / "hard")
    os.chmod(root / "empty", 0o4755)


def _python_tar(src: Path, fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for entry in sorted(os.listdir(src)):
            tf.add(src / entry, arcname=entry)
    return buf.getvalue()


def _gnu_tar(src: Path, *flags: str) -> bytes:
    return subprocess.run(
        ["tar", "-C", str(src), *flags, "-cf", "-", "."], check=True, capture_output=True
    ).stdout


def _round_trip(data: bytes, tmp_path: Path) -> tuple[str, str, int, SplitRecorder]:
    target = tmp_path / "target"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    split = tmp_path / "split.gz"
    with open(split, "wb") as f:
        rec = SplitRecorder(f)
        result = apply_layer(io.BytesIO(data), target, rec)
        rec.finish()
    out = io.BytesIO()
    digest, size = assemble_to(split, target, out)
    assert size == split_size(split)
    return result.diff_id, digest, size, rec


@pytest.fixture
def src(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    s = tmp_path / "src"
    s.mkdir()
    _tree(s)
    return s


@pytest.mark.parametrize(
    "writer", ["pax", "gnu", "ustar-short", "gnu-tar", "gnu-tar-posix", "gnu-tar-sparse"]
)
def test_rebuilt_tar_is_byte_identical(src: Path, tmp_path: Path, writer: str) -> None:
    if writer == "ustar-short":
        os.unlink(src / ("long-" + "n" * 150))
        os.unlink(src / "dir/unicode-\u00e9")
    if writer == "gnu-tar-sparse":
        with open(src / "sparse", "wb") as f:
            f.seek(10 << 20)
            f.write(b"end")
    data = {
        "pax": lambda: _python_tar(src, tarfile.PAX_FORMAT),
        "gnu": lambda: _python_tar(src, tarfile.GNU_FORMAT),
        "ustar-short": lambda: _python_tar(src, tarfile.USTAR_FORMAT),
        "gnu-tar": lambda: _gnu_tar(src),
        "gnu-tar-posix": lambda: _gnu_tar(src, "--format=posix", "--xattrs"),
        "gnu-tar-sparse": lambda: _gnu_tar(src, "--sparse"),
    }[writer]()
    diff_id, rebuilt, size, rec = _round_trip(data, tmp_path)
    assert not rec.broken
    assert diff_id == rebuilt == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == len(data)


def test_compressed_input_rebuilds_the_uncompressed_tar(src: Path, tmp_path: Path) -> None:
    data = _python_tar(src, tarfile.PAX_FORMAT)
    diff_id, rebuilt, size, _ = _round_trip(gzip.compress(data), tmp_path)
    assert diff_id == rebuilt == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == len(data)


def test_empty_stream(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    diff_id, rebuilt, size, _ = _round_trip(b"", tmp_path)
    assert diff_id == rebuilt == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert size == 0


def _tar(*members: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, content in members:
            if name.endswith("/"):
                ti = tarfile.TarInfo(name.rstrip("/"))
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti = tarfile.TarInfo(name)
                ti.size = len(content)
                tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


@pytest.mark.parametrize(
    "members",
    [
        (("a", b"first"), ("a", b"second")),  # the same path twice
        (("d/", b""), ("d/f", b"1"), (".wh.d", b"")),  # removed by a whiteout in the same layer
        (("d/", b""), ("d/f", b"1"), ("d", b"now a file")),  # its directory replaced
    ],
)
def test_layers_that_overwrite_their_own_files_are_marked_broken(
    tmp_path: Path, members: tuple[tuple[str, bytes], ...]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    target = tmp_path / "t"
    target.mkdir()
    with open(tmp_path / "s", "wb") as f:
        rec = SplitRecorder(f)
        apply_layer(io.BytesIO(_tar(*members)), target, rec)
        rec.finish()
    assert rec.broken


# -- the image store -------------------------------------------------------------------------------


def _chunks(store: ImageStore, chain: str, diff_id: str) -> bytes:
    return b"".join(store.exact_layer(chain, diff_id).chunks())


def test_exact_layer_gives_back_the_imported_bytes(store: ImageStore, src: Path) -> None:
    data = _gnu_tar(src)
    diff_id, chain, _ = store.import_layer(io.BytesIO(gzip.compress(data)), None)
    assert store.snapshotter.sidecar(chain, TAR_SPLIT).exists()
    layer = store.exact_layer(chain, diff_id)
    assert layer.size == len(data)
    assert _chunks(store, chain, diff_id) == data


def test_exact_layer_detects_a_changed_file(store: ImageStore, src: Path) -> None:
    data = _python_tar(src, tarfile.PAX_FORMAT)
    diff_id, chain, _ = store.import_layer(io.BytesIO(data), None)
    victim = store.snapshotter.upper_dir(chain) / "dir/sub/file"
    victim.write_bytes(b"y" * 100_000)  # same size, other bytes
    with pytest.raises(DataCorruption, match="no longer matches"):
        _chunks(store, chain, diff_id)


def test_layer_without_split_falls_back_to_a_fresh_tar_only_when_it_matches(
    store: ImageStore, src: Path, tmp_path: Path
) -> None:
    # A tar skiff wrote itself (a commit: diff_tar through import_diff) regenerates exactly.
    diff_id, chain, _ = store.import_diff(src, None)
    store.snapshotter.sidecar(chain, TAR_SPLIT).unlink()
    rebuilt = _chunks(store, chain, diff_id)
    assert "sha256:" + hashlib.sha256(rebuilt).hexdigest() == diff_id
    # Someone else's tar does not: export refuses rather than write a wrong diff_id.
    other = _gnu_tar(src)
    d2, c2, _ = store.import_layer(io.BytesIO(other), None)
    store.snapshotter.sidecar(c2, TAR_SPLIT).unlink()
    with pytest.raises(DataCorruption, match="cannot be exported byte for byte"):
        store.exact_layer(c2, d2)
    # Importing the same tar again gives the existing layer the new split.
    store.import_layer(io.BytesIO(other), None)
    assert store.snapshotter.sidecar(c2, TAR_SPLIT).exists()
    assert _chunks(store, c2, d2) == other
