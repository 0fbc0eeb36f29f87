"""Tar-split: what it takes to rebuild a layer tar byte for byte from its extracted files.

A layer's diff_id is the sha256 of its uncompressed tar and an image's ID covers the diff_ids,
so ``save`` (and ``push``) must give back the very bytes that were imported, not a fresh tar of
the same files: entry order, header fields, PAX records and padding differ between tar writers.
As Docker does with tar-split (vbatts/tar-split), the recorder keeps every byte of the stream
*except* regular files' contents, which already live on disk in the committed layer; the
assembler interleaves the two again. For busybox that is ~200 KB of headers beside 1 MB of
files (gzip makes it a few KB).

Format (gzip-compressed)::

    b"SKTS1\\n"
    b"S" <u32 length> <bytes>                        raw stream bytes (headers, padding, the end)
    b"F" <u16 length> <path, UTF-8> <u64 size>       ``size`` bytes of the layer file at ``path``

Limits, as tar-split's own: a layer that writes the same path twice, or removes a file it wrote
earlier, cannot be rebuilt (the first content is gone); the recorder notices and says so
(:attr:`SplitRecorder.broken`), and the caller keeps no split for that layer.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from skiff.errors import DataCorruption

MAGIC = b"SKTS1\n"
_SEG = struct.Struct(">I")
_PATHLEN = struct.Struct(">H")
_SIZE = struct.Struct(">Q")
_MAX_SEG = 1 << 20
_CHUNK = 1 << 20
_BATCH = 256 << 10


class SplitRecorder:
    """Records a tar stream as it is read (``feed``), minus the file contents marked by ``content``.

    ``feed`` gets every byte of the uncompressed stream, in order. ``content`` is called when a
    member's data is about to be read (its header has been fed, so everything before
    ``offset`` is header or padding): those ``size`` bytes are dropped, as they arrive, and
    replaced by a reference to ``path``. Memory stays bounded by the tar reader's look-ahead.
    """

    def __init__(self, out: BinaryIO) -> None:
        # Level 1 and batched writes: a big layer has ~60k members, and the split is written
        # while the layer extracts (level 6 with a compress call per record cost ~1 s per 500 MB).
        self._out = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0)
        self._pending = bytearray(MAGIC)
        self._buf = bytearray()
        self._base = 0  # stream position of _buf[0]
        self._fed = 0  # stream position after the last fed byte
        self._skip_to = 0  # bytes before this position are file content: dropped on arrival
        self._paths: set[tuple[str, ...]] = set()
        self.size = 0  # bytes of the stream the split describes
        self.broken = ""  # why the layer cannot be rebuilt from this split ("" if it can)

    def feed(self, data: bytes) -> None:
        """Bytes read from the stream, in order."""
        if self._fed < self._skip_to:
            cut = min(len(data), self._skip_to - self._fed)
            self._fed += cut
            data = data[cut:]
            if not data:
                return
            self._base = self._fed
        if not self._buf:
            self._base = self._fed
        self._buf += data
        self._fed += len(data)

    def content(self, offset: int, size: int, path: tuple[str, ...]) -> None:
        """Stream bytes ``[offset, offset + size)`` are the content of layer file ``path``."""
        if offset < self._base or offset > self._fed:
            # The tar reader has not fed the header yet, or content overlaps what was kept: no
            # reader behaves like that, but a wrong split would be worse than none.
            self.broken = f"content of {'/'.join(path)!r} at an unexpected stream offset"
            return
        self._segment(bytes(self._buf[: offset - self._base]))
        del self._buf[: offset - self._base]
        self._base = offset
        have = min(len(self._buf), size)
        del self._buf[:have]
        self._base = offset + have
        self._skip_to = offset + size
        encoded = "/".join(path).encode("utf-8", "surrogateescape")
        self._write(b"F" + _PATHLEN.pack(len(encoded)) + encoded + _SIZE.pack(size))
        self.size += size
        if path in self._paths:
            self.broken = f"{'/'.join(path)!r} is written twice in the layer"
        self._paths.add(path)

    def removed(self, path: tuple[str, ...]) -> None:
        """The extractor removed ``path`` (and anything under it) while extracting this layer."""
        n = len(path)
        for p in self._paths:
            if p[:n] == path:
                self.broken = f"{'/'.join(p)!r} is removed or replaced later in the same layer"
                return

    def _segment(self, data: bytes) -> None:
        for i in range(0, len(data), _MAX_SEG):
            part = data[i : i + _MAX_SEG]
            self._write(b"S" + _SEG.pack(len(part)) + part)
            self.size += len(part)

    def _write(self, record: bytes) -> None:
        self._pending += record
        if len(self._pending) >= _BATCH:
            self._out.write(self._pending)
            self._pending.clear()

    def finish(self) -> None:
        """The stream ended: keep what is left (end-of-archive blocks) and flush."""
        self._segment(bytes(self._buf))
        self._buf.clear()
        self._out.write(self._pending)
        self._pending.clear()
        self._out.close()


@dataclass(frozen=True)
class _Segment:
    data: bytes


@dataclass(frozen=True)
class _FileRef:
    path: str
    size: int


def _records(split: Path) -> Iterator[_Segment | _FileRef]:
    with gzip.open(split, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise DataCorruption(f"{split}: not a skiff tar-split file")
        while tag := f.read(1):
            if tag == b"S":
                (n,) = _SEG.unpack(_read_exact(f, _SEG.size, split))
                yield _Segment(_read_exact(f, n, split))
            elif tag == b"F":
                (n,) = _PATHLEN.unpack(_read_exact(f, _PATHLEN.size, split))
                path = _read_exact(f, n, split).decode("utf-8", "surrogateescape")
                (size,) = _SIZE.unpack(_read_exact(f, _SIZE.size, split))
                yield _FileRef(path, size)
            else:
                raise DataCorruption(f"{split}: unknown record {tag!r}")


def _read_exact(f: gzip.GzipFile, n: int, split: Path) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataCorruption(f"{split}: truncated tar-split file")
    return data


def split_size(split: Path) -> int:
    """Size in bytes of the tar the split rebuilds (read without touching the layer's files)."""
    return sum(len(r.data) if isinstance(r, _Segment) else r.size for r in _records(split))


def _open_in(root_fd: int, path: str) -> int:
    """Open ``path`` under ``root_fd`` for reading without following any symlink on the way."""
    parts = path.split("/")
    fd = root_fd
    try:
        for name in parts[:-1]:
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = nfd
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)


def assemble(split: Path, layer_root: Path) -> Iterator[bytes]:
    """The original tar, in chunks: the split's raw bytes with the files' contents put back.

    The caller checks the digest (the split says what was there, not that it still is);
    a file shorter than recorded raises DataCorruption.
    """
    root_fd = os.open(layer_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for rec in _records(split):
            if isinstance(rec, _Segment):
                yield rec.data
                continue
            try:
                fd = _open_in(root_fd, rec.path)
            except OSError as e:
                raise DataCorruption(f"layer file {rec.path!r} is missing: {e.strerror}") from None
            try:
                left = rec.size
                while left:
                    chunk = os.read(fd, min(_CHUNK, left))
                    if not chunk:
                        raise DataCorruption(f"layer file {rec.path!r} is shorter than when it was imported")
                    left -= len(chunk)
                    yield chunk
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)


def assemble_to(split: Path, layer_root: Path, out: BinaryIO) -> tuple[str, int]:
    """Write the rebuilt tar to ``out``; returns (``sha256:<hex>``, size)."""
    h = hashlib.sha256()
    size = 0
    for chunk in assemble(split, layer_root):
        h.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return "sha256:" + h.hexdigest(), size
