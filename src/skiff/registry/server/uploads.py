"""Blob upload sessions: files under ``<root>/uploads/<id>/``, resumable across restarts.

A session is a directory holding ``repo`` (the repository it uploads into, written to a temp file
and renamed, so a session without it never existed) and ``data`` (the bytes so far). Bytes are
hashed as they arrive; the hash lives in memory only, so after a restart the first request that
needs it hashes ``data`` again. The size of ``data`` is the upload's offset: a request cut short
keeps what arrived, and the client resumes from what the status (GET) reports.

Nothing in ``uploads/`` is ever visible as a blob: a finished upload is renamed into the content
store by :meth:`RegistryStore.commit_upload`, after its digest was checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from skiff.registry.server.errors import RegistryError, upload_unknown

_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Received bytes go to disk (and the hash) in batches of this size, on a worker thread, while
# the event loop receives the next batch.
_BATCH = 1 << 20


@dataclass
class Session:
    """An upload in progress (see the module docstring)."""

    id: str
    repo: str
    dir: Path
    size: int
    hasher: Any = None  # hashlib sha256 object over data[:size]; None until (re)hashed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def data(self) -> Path:
        return self.dir / "data"


class Uploads:
    """Every upload session under ``root`` (one registry process owns the directory)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, Session] = {}

    def create(self, repo: str) -> Session:
        upload_id = str(uuid.uuid4())
        d = self.root / upload_id
        d.mkdir()
        (d / "data").touch()
        tmp = d / "repo.tmp"
        tmp.write_text(repo)
        os.rename(tmp, d / "repo")
        s = Session(upload_id, repo, d, 0, hashlib.sha256())
        self._sessions[upload_id] = s
        return s

    def get(self, repo: str, upload_id: str) -> Session:
        """The session ``upload_id`` of ``repo``, or BLOB_UPLOAD_UNKNOWN."""
        s = self._sessions.get(upload_id)
        if s is None:
            if _ID_RE.fullmatch(upload_id) is None:
                raise upload_unknown(upload_id)
            d = self.root / upload_id
            try:
                owner = (d / "repo").read_text()
                size = (d / "data").stat().st_size
            except (FileNotFoundError, NotADirectoryError):
                raise upload_unknown(upload_id) from None
            s = self._sessions.setdefault(upload_id, Session(upload_id, owner, d, size))
        if not s.dir.is_dir():  # removed by gc (expired) or by a failed commit
            self._sessions.pop(upload_id, None)
            raise upload_unknown(upload_id)
        if s.repo != repo:
            raise upload_unknown(upload_id)
        return s

    def forget(self, s: Session) -> None:
        """Drop a session and its files (after commit, cancel or a failed digest check)."""
        self._sessions.pop(s.id, None)
        shutil.rmtree(s.dir, ignore_errors=True)

    async def _ensure_hash(self, s: Session) -> None:
        if s.hasher is not None:
            return
        s.hasher, s.size = await asyncio.to_thread(_hash_file, s.data)

    async def append(self, s: Session, chunks: AsyncIterator[bytes]) -> int:
        """Append everything ``chunks`` yields to ``s``; returns the bytes appended.

        Bytes that arrived before a failure (the client went away) are kept: the upload can be
        resumed from the new offset.
        """
        await self._ensure_hash(s)
        try:
            f = open(s.data, "r+b")
        except FileNotFoundError:
            raise upload_unknown(s.id) from None
        before = s.size
        pending: asyncio.Future[None] | None = None
        buf = bytearray()
        loop = asyncio.get_running_loop()
        try:
            f.seek(s.size)
            f.truncate()
            async for chunk in chunks:
                buf += chunk
                if len(buf) >= _BATCH:
                    if pending is not None:
                        await pending
                    pending = loop.run_in_executor(None, _write, s, f, bytes(buf))
                    buf.clear()
        finally:
            if pending is not None:
                await asyncio.wait([pending])
                pending.result()
            if buf:
                await asyncio.to_thread(_write, s, f, bytes(buf))
            f.close()
        return s.size - before

    async def digest(self, s: Session) -> str:
        await self._ensure_hash(s)
        return "sha256:" + str(s.hasher.hexdigest())

    def expired(self, older_than: float) -> list[Path]:
        """Session directories untouched since ``older_than`` (a unix time), for gc."""
        out = []
        for entry in self.root.iterdir():
            try:
                st = (entry / "data").stat()
                mtime = st.st_mtime
            except FileNotFoundError:
                mtime = entry.stat().st_mtime
            if mtime < older_than:
                out.append(entry)
        return out

    def recover(self) -> int:
        """At startup: remove session directories a crash left before they had a ``repo`` file."""
        count = 0
        for entry in self.root.iterdir():
            if not (entry / "repo").is_file():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
                count += 1
        return count


def _write(s: Session, f: BinaryIO, data: bytes) -> None:
    try:
        f.write(data)
        f.flush()
    except BaseException:
        # Keep data and hash in step: drop whatever part of this batch reached the file.
        f.seek(s.size)
        f.truncate()
        raise
    s.hasher.update(data)
    s.size += len(data)


def _hash_file(path: Path) -> tuple[Any, int]:
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(_BATCH):
                h.update(block)
                size += len(block)
    except FileNotFoundError:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry") from None
    return h, size
