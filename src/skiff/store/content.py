"""Content store: immutable blobs addressed by sha256 digest (containerd-style).

Writes go to ``ingest/<ref>/data``; on commit the size and digest are checked, the file is
fsynced, renamed into ``blobs/sha256/<hex>`` and made read-only, then the directory is
fsynced. A crash at any point leaves either nothing or the complete blob visible; leftover
ingests are removed by :meth:`ContentStore.recover` at startup.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from skiff.errors import DataCorruption, InvalidArgument, NotFound

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:<64 lowercase hex>``; otherwise raise InvalidArgument.

    Strictness here is what keeps a digest from ever being a path trick (``../``, ``/``).
    """
    if not isinstance(digest, str) or _DIGEST_RE.fullmatch(digest) is None:
        raise InvalidArgument(
            f"invalid digest {digest!r}: expected sha256: followed by 64 lowercase hex digits"
        )
    return digest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob: its digest (``sha256:<hex>``) and size in bytes."""

    digest: str
    size: int


class ContentWriter:
    """An in-flight blob write. Use as a context manager; leaving without commit() discards it."""

    def __init__(self, store: ContentStore, expected_digest: str | None, expected_size: int | None) -> None:
        if expected_digest is not None:
            validate_digest(expected_digest)
        if expected_size is not None and expected_size < 0:
            raise InvalidArgument(f"invalid expected size {expected_size}: must be >= 0")
        self._store = store
        self._expected_digest = expected_digest
        self._expected_size = expected_size
        self._hash = hashlib.sha256()
        self._size = 0
        self._dir = store.root / "ingest" / secrets.token_hex(16)
        self._dir.mkdir(parents=True)
        self._file: BinaryIO | None = open(self._dir / "data", "wb")
        self._done = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, b: bytes) -> None:
        """Append ``b`` to the blob."""
        if self._file is None:
            raise InvalidArgument("content writer is closed: write after commit or discard")
        self._file.write(b)
        self._hash.update(b)
        self._size += len(b)

    def commit(self) -> BlobInfo:
        """Check size/digest, then make the blob visible atomically. Raises DataCorruption on mismatch."""
        if self._file is None:
            raise InvalidArgument("content writer is closed: commit called twice or after discard")
        digest = "sha256:" + self._hash.hexdigest()
        try:
            if self._expected_size is not None and self._size != self._expected_size:
                raise DataCorruption(
                    f"content size mismatch: expected {self._expected_size} bytes, got {self._size}"
                    " (the source sent truncated or extra data; nothing was stored)"
                )
            if self._expected_digest is not None and digest != self._expected_digest:
                raise DataCorruption(
                    f"content digest mismatch: expected {self._expected_digest}, got {digest}"
                    " (the data is corrupt; nothing was stored)"
                )
            target = self._store.path(digest)
            if target.exists():
                return BlobInfo(digest, self._size)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            src = self._dir / "data"
            os.chmod(src, 0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, target)
            _fsync_dir(target.parent)
            return BlobInfo(digest, self._size)
        finally:
            self.discard()

    def discard(self) -> None:
        """Throw away the in-flight data (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self._done:
            self._done = True
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ContentWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


class ContentStore:
    """Blobs by digest under ``root/blobs/sha256/<hex>``; writes staged in ``root/ingest``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob with ``digest`` lives (whether or not it exists)."""
        validate_digest(digest)
        return self.root / "blobs" / "sha256" / digest[len("sha256:") :]

    def writer(self, expected_digest: str | None = None, expected_size: int | None = None) -> ContentWriter:
        """Start writing a blob; see :class:`ContentWriter`."""
        return ContentWriter(self, expected_digest, expected_size)

    def put(self, data: bytes, expected_digest: str | None = None) -> BlobInfo:
        """Store ``data`` in one go."""
        if expected_digest is None:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if self.exists(digest):
                return BlobInfo(digest, len(data))
        with self.writer(expected_digest, len(data)) as w:
            w.write(data)
            return w.commit()

    def adopt(self, src: Path, digest: str, size: int) -> BlobInfo:
        """Commit the file ``src`` as the blob ``digest`` by renaming it (no copy).

        For writers that hash as they receive, across requests and restarts (the registry's
        resumable uploads): the caller vouches for ``digest``; the size is checked here.
        ``src`` must be on the store's filesystem. If the blob already exists, ``src`` is removed.
        """
        target = self.path(digest)
        actual = os.stat(src).st_size
        if actual != size:
            raise DataCorruption(f"content size mismatch: expected {size} bytes, got {actual}")
        if target.exists():
            os.unlink(src)
            return BlobInfo(digest, size)
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(src, 0o444)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, target)
        _fsync_dir(target.parent)
        return BlobInfo(digest, size)

    def exists(self, digest: str) -> bool:
        """True if the blob is committed."""
        return self.path(digest).is_file()

    def info(self, digest: str) -> BlobInfo:
        """Digest and size of a committed blob (NotFound if absent)."""
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        return BlobInfo(digest, st.st_size)

    def open(self, digest: str) -> BinaryIO:
        """Open a committed blob for reading (NotFound if absent)."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read(self, digest: str) -> bytes:
        """The whole blob (NotFound if absent)."""
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: str) -> None:
        """Remove a blob (NotFound if absent)."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def walk(self) -> Iterator[BlobInfo]:
        """Every committed blob (entries that are not valid digests are skipped)."""
        with os.scandir(self.root / "blobs" / "sha256") as it:
            for entry in it:
                if _DIGEST_RE.fullmatch("sha256:" + entry.name) and entry.is_file(follow_symlinks=False):
                    yield BlobInfo("sha256:" + entry.name, entry.stat(follow_symlinks=False).st_size)

    def recover(self) -> int:
        """Remove every leftover ingest (call at startup, before any writer exists); returns count."""
        count = 0
        ingest = self.root / "ingest"
        with os.scandir(ingest) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                count += 1
        return count
