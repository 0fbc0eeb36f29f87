"""Content store crash safety: mismatches commit nothing; a killed writer leaves no visible blob."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skiff.errors import DataCorruption
from skiff.store.content import ContentStore

pytestmark = pytest.mark.root


def _ingests(root: Path) -> list[Path]:
    return list((root / "ingest").iterdir())


def test_size_mismatch_commits_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = b"x" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with store.writer(digest, 999) as w, pytest.raises(DataCorruption, match="size mismatch"):
        w.write(data)
        w.commit()
    assert not store.exists(digest)
    assert list(store.walk()) == []
    assert _ingests(tmp_path) == []


def test_digest_mismatch_commits_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    wanted = "sha256:" + hashlib.sha256(b"right").hexdigest()
    with pytest.raises(DataCorruption, match="digest mismatch"):
        store.put(b"wrong", expected_digest=wanted)
    assert list(store.walk()) == []
    assert _ingests(tmp_path) == []


@pytest.mark.parametrize("when", ["after-write", "before-rename"])
def test_crash_mid_write_leaves_no_blob_and_recover_cleans(tmp_path: Path, when: str) -> None:
    data = os.urandom(3 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (tmp_path / "data").write_bytes(data)
    # The child dies hard (no finally, no atexit) at the chosen point of a write.
    child = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from skiff.store.content import ContentStore
        store = ContentStore(Path({str(tmp_path / "store")!r}))
        data = Path({str(tmp_path / "data")!r}).read_bytes()
        if {when!r} == "before-rename":
            os.rename = lambda *a, **k: os._exit(9)
        w = store.writer({digest!r}, len(data))
        w.write(data[: len(data) // 2])
        w.write(data[len(data) // 2 :])
        if {when!r} == "after-write":
            os._exit(9)
        w.commit()
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    store = ContentStore(tmp_path / "store")
    assert not store.exists(digest)
    assert list(store.walk()) == []
    assert len(_ingests(tmp_path / "store")) == 1
    assert store.recover() == 1
    assert _ingests(tmp_path / "store") == []
    assert store.put(data).digest == digest  # the store works normally after recovery
