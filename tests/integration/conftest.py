"""Shared fixtures for the integration tier (root, real kernel objects)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.images.imagestore import ImageStore
from skiff.store.content import ContentStore
from skiff.store.metadata import MetadataDB
from skiff.store.snapshots import OverlaySnapshotter


def open_store(root: Path) -> ImageStore:
    """An ImageStore over a fresh (or existing) root, as skiffd wires it."""
    return ImageStore(
        ContentStore(root / "content"),
        OverlaySnapshotter(root / "snapshots"),
        MetadataDB(root / "metadata.db"),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    s = open_store(tmp_path / "root")
    yield s
    s.db.close()
    s.snapshotter.close()
