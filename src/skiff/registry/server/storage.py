"""RegistryStore: blobs in a ContentStore, repositories in one SQLite file (``registry.db``).

A blob's bytes exist once (``content/blobs/sha256/<hex>``) however many repositories hold it; a
repository sees a blob through a *link* (``blob_links``), made by an upload or a cross-repository
mount. Manifests are blobs too; ``manifests`` records which repository holds which, with what it
references (``manifest_refs``), and ``tags`` name them.

Every change is one ``BEGIN IMMEDIATE`` transaction. SQLite's write lock is also what makes
``registry gc`` safe beside a running server (another process): a blob's file is renamed into the
store and linked inside one write transaction, a manifest's references are checked and recorded
inside one, and gc marks and sweeps inside one, so gc never sees a blob that is on its way to
being linked or referenced, and never deletes one a manifest is being checked against.

A link is *pending* from its upload (or mount) until a manifest of its repository references it:
pushes upload blobs first and the manifest last, so gc keeps pending links for a grace period.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from skiff import failpoints
from skiff.errors import NotFound
from skiff.registry.server.errors import RegistryError
from skiff.registry.server.manifests import Descriptor, Manifest
from skiff.store.content import BlobInfo, ContentStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS blob_links (
    repo TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    pending_since REAL,              -- upload/mount time until a manifest references it
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS blob_links_digest ON blob_links(digest);
CREATE TABLE IF NOT EXISTS manifests (
    repo TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    annotations TEXT,                -- JSON object or NULL
    pushed REAL NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo, subject) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS manifests_digest ON manifests(digest);
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    ref TEXT NOT NULL,               -- a config/layer blob or a child manifest
    PRIMARY KEY (repo, digest, ref),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS manifest_refs_ref ON manifest_refs(ref);
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_manifest ON tags(repo, digest);
"""


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as a repository holds it."""

    digest: str
    media_type: str
    size: int


@dataclass
class SweepReport:
    """What a garbage collection removed (or, dry, would remove)."""

    blobs: list[BlobInfo] = field(default_factory=list)
    links: int = 0
    repositories: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(b.size for b in self.blobs)


class RegistryStore:
    """The registry's state under ``root``; see the module docstring. Thread-safe."""

    def __init__(self, root: Path, *, busy_timeout: float = 120.0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root / "content")
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.root / "registry.db", timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a 201 for a blob or manifest means it survives a power loss, not only a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # -- repositories ---------------------------------------------------------------------------

    def repo_exists(self, name: str) -> bool:
        return bool(self._rows("SELECT 1 FROM repositories WHERE name = ?", (name,)))

    def repositories(self) -> list[str]:
        """Every repository, in byte order (Go's sort.Strings)."""
        return [str(r[0]) for r in self._rows("SELECT name FROM repositories ORDER BY name")]

    # -- blobs ----------------------------------------------------------------------------------

    def _file(self, digest: str) -> BlobInfo | None:
        try:
            return self.content.info(digest)
        except NotFound:
            return None

    def blob(self, name: str, digest: str) -> BlobInfo | None:
        """The blob if repository ``name`` holds it (link present and content on disk)."""
        if not self._rows("SELECT 1 FROM blob_links WHERE repo = ? AND digest = ?", (name, digest)):
            return None
        return self._file(digest)

    def blob_path(self, digest: str) -> Path:
        return self.content.path(digest)

    @staticmethod
    def _link(db: sqlite3.Connection, name: str, digest: str) -> None:
        db.execute("INSERT OR IGNORE INTO repositories (name) VALUES (?)", (name,))
        db.execute(
            "INSERT INTO blob_links (repo, digest, pending_since) VALUES (?, ?, ?)"
            " ON CONFLICT (repo, digest) DO UPDATE SET pending_since = excluded.pending_since",
            (name, digest, time.time()),
        )

    def commit_upload(self, name: str, src: Path, digest: str, size: int) -> BlobInfo:
        """Make the finished upload ``src`` (already hashed to ``digest``) a blob of ``name``."""
        with self._txn() as db:
            info = self.content.adopt(src, digest, size)
            failpoints.hit("registry-upload-after-adopt")
            self._link(db, name, digest)
        return info

    def mount(self, name: str, source: str, digest: str) -> BlobInfo | None:
        """Link ``source``'s blob into ``name`` (None when ``source`` does not hold it)."""
        with self._txn() as db:
            row = db.execute(
                "SELECT 1 FROM blob_links WHERE repo = ? AND digest = ?", (source, digest)
            ).fetchone()
            info = self._file(digest) if row else None
            if info is not None:
                self._link(db, name, digest)
        return info

    def unlink_blob(self, name: str, digest: str) -> bool:
        """Remove ``name``'s link to a blob (gc frees the bytes once nothing needs them)."""
        with self._txn() as db:
            return (
                db.execute("DELETE FROM blob_links WHERE repo = ? AND digest = ?", (name, digest)).rowcount
                > 0
            )

    # -- manifests and tags ---------------------------------------------------------------------

    def manifest(self, name: str, reference: str) -> StoredManifest | None:
        """The manifest ``reference`` (a digest or a tag) names in ``name``."""
        if ":" in reference:
            sql = "SELECT digest, media_type, size FROM manifests WHERE repo = ? AND digest = ?"
        else:
            sql = (
                "SELECT m.digest, m.media_type, m.size FROM tags t JOIN manifests m"
                " ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = ? AND t.tag = ?"
            )
        rows = self._rows(sql, (name, reference))
        if not rows:
            return None
        digest, media_type, size = rows[0]
        return StoredManifest(str(digest), str(media_type), int(str(size)))

    def manifest_content(self, digest: str) -> bytes | None:
        try:
            return self.content.read(digest)
        except NotFound:
            return None

    def put_manifest(self, name: str, m: Manifest, tags: Sequence[str]) -> None:
        """Store ``m`` in ``name`` and point ``tags`` at it; MANIFEST_BLOB_UNKNOWN if a reference is missing."""
        with self._txn() as db:
            missing = [
                d
                for d in m.blobs
                if not db.execute(
                    "SELECT 1 FROM blob_links WHERE repo = ? AND digest = ?", (name, d)
                ).fetchone()
                or not self.content.exists(d)
            ]
            missing += [
                d
                for d in m.children
                if not db.execute(
                    "SELECT 1 FROM manifests WHERE repo = ? AND digest = ?", (name, d)
                ).fetchone()
            ]
            if missing:
                raise RegistryError(
                    "MANIFEST_BLOB_UNKNOWN",
                    f"manifest references {len(missing)} blob(s) or manifest(s) unknown to this "
                    f"repository: {', '.join(missing)}",
                    detail={"digests": missing},
                )
            self.content.put(m.content, m.digest)
            db.execute("INSERT OR IGNORE INTO repositories (name) VALUES (?)", (name,))
            db.execute(
                "INSERT OR IGNORE INTO manifests"
                " (repo, digest, media_type, size, subject, artifact_type, annotations, pushed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    m.digest,
                    m.media_type,
                    m.size,
                    m.subject,
                    m.artifact_type,
                    json.dumps(m.annotations) if m.annotations else None,
                    time.time(),
                ),
            )
            refs = [*m.blobs, *m.children]
            db.executemany(
                "INSERT OR IGNORE INTO manifest_refs (repo, digest, ref) VALUES (?, ?, ?)",
                [(name, m.digest, r) for r in refs],
            )
            db.executemany(
                "UPDATE blob_links SET pending_since = NULL WHERE repo = ? AND digest = ?",
                [(name, d) for d in m.blobs],
            )
            db.executemany(
                "INSERT INTO tags (repo, tag, digest) VALUES (?, ?, ?)"
                " ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest",
                [(name, t, m.digest) for t in tags],
            )

    def delete_manifest(self, name: str, digest: str) -> bool:
        """Remove a manifest and every tag on it from ``name``."""
        with self._txn() as db:
            return (
                db.execute("DELETE FROM manifests WHERE repo = ? AND digest = ?", (name, digest)).rowcount > 0
            )

    def delete_tag(self, name: str, tag: str) -> bool:
        with self._txn() as db:
            return db.execute("DELETE FROM tags WHERE repo = ? AND tag = ?", (name, tag)).rowcount > 0

    def tags(self, name: str) -> list[str] | None:
        """``name``'s tags in byte order; None if there is no such repository."""
        with self._lock:
            if not self._db.execute("SELECT 1 FROM repositories WHERE name = ?", (name,)).fetchone():
                return None
            rows = self._db.execute("SELECT tag FROM tags WHERE repo = ? ORDER BY tag", (name,)).fetchall()
        return [str(r[0]) for r in rows]

    def referrers(self, name: str, subject: str) -> list[Descriptor]:
        """Manifests of ``name`` whose subject is ``subject``, oldest first."""
        rows = self._rows(
            "SELECT media_type, digest, size, artifact_type, annotations FROM manifests"
            " WHERE repo = ? AND subject = ? ORDER BY pushed, digest",
            (name, subject),
        )
        return [
            Descriptor(
                media_type=str(mt),
                digest=str(d),
                size=int(str(size)),
                artifact_type=str(at) if at else None,
                annotations=json.loads(str(ann)) if ann else None,
            )
            for mt, d, size, at, ann in rows
        ]

    # -- garbage collection ---------------------------------------------------------------------

    def sweep(self, pending_cutoff: float, *, dry_run: bool = False) -> SweepReport:
        """Mark and sweep in one write transaction (see the module docstring).

        Links that no manifest of their repository references go, unless pending since
        ``pending_cutoff`` or later; then every blob that no manifest, reference or remaining
        link needs is deleted, and repositories left with nothing. Files are deleted before the
        commit, under the write lock, so no upload can link a blob while it goes; a crash in
        between leaves only stale links to missing files, which read as absent and go next time.
        ``dry_run`` rolls everything back and deletes nothing.
        """
        report = SweepReport()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                report.links = db.execute(
                    "DELETE FROM blob_links WHERE (pending_since IS NULL OR pending_since < ?)"
                    " AND NOT EXISTS (SELECT 1 FROM manifest_refs r"
                    " WHERE r.repo = blob_links.repo AND r.ref = blob_links.digest)",
                    (pending_cutoff,),
                ).rowcount
                marked = {
                    str(r[0])
                    for r in db.execute(
                        "SELECT digest FROM manifests UNION SELECT ref FROM manifest_refs"
                        " UNION SELECT digest FROM blob_links"
                    )
                }
                report.blobs = [b for b in self.content.walk() if b.digest not in marked]
                empty = (
                    " FROM repositories WHERE NOT EXISTS (SELECT 1 FROM blob_links l WHERE l.repo = name)"
                    " AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = name)"
                )
                report.repositories = sorted(str(r[0]) for r in db.execute("SELECT name" + empty))
                db.execute("DELETE" + empty)
                if dry_run:
                    db.execute("ROLLBACK")
                    return report
                for blob in report.blobs:
                    try:
                        self.content.delete(blob.digest)
                    except NotFound:
                        pass
                failpoints.hit("registry-gc-before-commit")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return report
