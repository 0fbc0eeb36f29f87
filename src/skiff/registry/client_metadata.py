"""What skiff remembers about images' copies in registries (dockerd's "v2 metadata").

Layers are stored uncompressed (as snapshots), so after a pull the compressed blob a registry
serves is gone. Two tables keep what a later push needs to avoid uploading it again:

- ``manifests``: the manifest an image was pulled as (or pushed as), byte for byte, per
  repository. A push of an unchanged image to a registry that holds its blobs sends these
  same bytes, so the manifest digest does not change.
- ``layer_sources``: for each diff_id, the blob digests (media type, size) it is known by in
  which repositories. A push HEADs them, or mounts them from another repository of the same
  registry, instead of uploading the layer.

Kept in ``<root>/registry/distribution.db`` (SQLite, WAL), beside the daemon's metadata; rows
for images that no longer exist are pruned at startup. Losing a row only costs an upload.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    image_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (image_id, repository, digest)
);
CREATE TABLE IF NOT EXISTS layer_sources (
    diff_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (diff_id, digest, repository)
);
"""


@dataclass(frozen=True)
class KeptManifest:
    """A manifest of image ``image_id`` as it exists in ``repository`` (``registry/path``)."""

    image_id: str
    repository: str
    digest: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class LayerSource:
    """Layer ``diff_id`` is blob ``digest`` (``media_type``, ``size`` bytes) in ``repository``."""

    diff_id: str
    digest: str
    media_type: str
    size: int
    repository: str

    @property
    def registry(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.repository.split("/", 1)[1]


class DistributionMetadata:
    """See the module docstring."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, manifest: KeptManifest | None, layers: Iterable[LayerSource]) -> None:
        """Remember a pulled or pushed manifest and where its layers are (one transaction)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if manifest is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO manifests (image_id, repository, digest, media_type, data)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (
                            manifest.image_id,
                            manifest.repository,
                            manifest.digest,
                            manifest.media_type,
                            manifest.data,
                        ),
                    )
                for s in layers:
                    self._db.execute(
                        "INSERT OR REPLACE INTO layer_sources (diff_id, digest, media_type, size, repository)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (s.diff_id, s.digest, s.media_type, s.size, s.repository),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def manifests(self, image_id: str) -> list[KeptManifest]:
        with self._lock:
            rows = self._db.execute(
                "SELECT repository, digest, media_type, data FROM manifests WHERE image_id = ? ORDER BY rowid DESC",
                (image_id,),
            ).fetchall()
        return [KeptManifest(image_id, str(r), str(d), str(m), bytes(b)) for r, d, m, b in rows]

    def layer_sources(self, diff_id: str) -> list[LayerSource]:
        with self._lock:
            rows = self._db.execute(
                "SELECT digest, media_type, size, repository FROM layer_sources WHERE diff_id = ? ORDER BY rowid DESC",
                (diff_id,),
            ).fetchall()
        return [LayerSource(diff_id, str(d), str(m), int(s), str(r)) for d, m, s, r in rows]

    def forget_source(self, source: LayerSource) -> None:
        """A registry no longer has this blob (a HEAD said 404)."""
        with self._lock:
            self._db.execute(
                "DELETE FROM layer_sources WHERE diff_id = ? AND digest = ? AND repository = ?",
                (source.diff_id, source.digest, source.repository),
            )

    def prune(self, image_ids: set[str], diff_ids: set[str]) -> None:
        """Drop manifests of images and sources of layers that no longer exist."""
        with self._lock:
            known = {str(r[0]) for r in self._db.execute("SELECT DISTINCT image_id FROM manifests")}
            for gone in known - image_ids:
                self._db.execute("DELETE FROM manifests WHERE image_id = ?", (gone,))
            layers = {str(r[0]) for r in self._db.execute("SELECT DISTINCT diff_id FROM layer_sources")}
            for gone in layers - diff_ids:
                self._db.execute("DELETE FROM layer_sources WHERE diff_id = ?", (gone,))
