"""Loading image archives (``docker load``): see :mod:`skiff.images.archive` for the formats.

The archive is read from a seekable, uncompressed file (:func:`opened_archive` makes one), as an
index of member names; members are only ever read through the tar, and links between members
are resolved by name inside the archive, never on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import posixpath
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from skiff.errors import InvalidArgument
from skiff.images.archive import (
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    blob_path,
    host_platform,
    parse_index,
    parse_manifest_json,
    parse_oci_manifest,
    tags_from_annotations,
)
from skiff.images.imagestore import ImageStore
from skiff.images.layers import decompressed
from skiff.images.oci import chain_id, parse_config
from skiff.images.reference import parse_reference
from skiff.store.content import validate_digest

_MAX_JSON = 16 << 20  # manifest.json, index.json, configs and manifests are small documents
_MAX_LINK_HOPS = 32
_MAX_INDEX_DEPTH = 4
_CHUNK = 1 << 20
_PROGRESS_EVERY = 512 << 10  # bytes between progress reports (Docker's rate)


# -- reading: the archive -----------------------------------------------------------------------


class ArchiveReader:
    """A seekable image archive, indexed by member name; members are read through the tar only."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        try:
            self._tf = tarfile.open(fileobj=fileobj, mode="r:")
        except tarfile.TarError as e:
            raise InvalidArgument(f"invalid archive: not a tar file ({e})") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for m in self._tf:
                name = self._norm(m.name)
                if name:
                    self.members[name] = m
        except tarfile.TarError as e:
            raise InvalidArgument(f"invalid archive: {e}") from None

    @staticmethod
    def _norm(name: str) -> str:
        name = posixpath.normpath("/" + name).lstrip("/")
        return "" if name == "." else name

    def has(self, name: str) -> bool:
        return self._norm(name) in self.members

    def member(self, name: str) -> tarfile.TarInfo:
        """The regular-file member ``name`` names, following links inside the archive only."""
        key = self._norm(name)
        for _ in range(_MAX_LINK_HOPS):
            m = self.members.get(key)
            if m is None:
                raise InvalidArgument(f"invalid archive: {name!r} is not in the archive")
            if m.isreg():
                return m
            if m.issym():
                base = posixpath.dirname(key) if not m.linkname.startswith("/") else ""
                key = self._norm(posixpath.join(base, m.linkname))
            elif m.islnk():
                key = self._norm(m.linkname)
            else:
                raise InvalidArgument(f"invalid archive: {name!r} is not a file")
        raise InvalidArgument(f"invalid archive: too many links resolving {name!r}")

    def open(self, name: str) -> tuple[IO[bytes], int]:
        """A reader for member ``name`` and its size."""
        m = self.member(name)
        f = self._tf.extractfile(m)
        assert f is not None  # a regular member always has a reader
        return f, m.size

    def read(self, name: str) -> bytes:
        """A whole (small) member: a JSON document or a config."""
        f, size = self.open(name)
        if size > _MAX_JSON:
            raise InvalidArgument(f"invalid archive: {name!r} is {size} bytes, too big for a JSON document")
        return f.read()

    def blob(self, desc: Descriptor) -> tuple[IO[bytes], int]:
        """The OCI blob ``desc`` names, after checking its size and digest (a pass over its bytes)."""
        name = blob_path(desc.digest)
        f, size = self.open(name)
        if size != desc.size:
            raise InvalidArgument(
                f"invalid OCI layout: blob {desc.digest} is {size} bytes, descriptor says {desc.size}"
            )
        h = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        if "sha256:" + h.hexdigest() != desc.digest:
            raise InvalidArgument(f"invalid OCI layout: blob {name} does not match its digest")
        f.seek(0)
        return f, size

    def blob_bytes(self, desc: Descriptor) -> bytes:
        if desc.size > _MAX_JSON:
            raise InvalidArgument(f"invalid OCI layout: {desc.digest} is too big for a JSON document")
        f, _ = self.blob(desc)
        return f.read()


# -- reading: loading into the store ------------------------------------------------------------


@dataclass(frozen=True)
class LayerProgress:
    """``current`` of ``total`` bytes of layer ``diff_id``'s blob read."""

    diff_id: str
    current: int
    total: int


@dataclass(frozen=True)
class ImageLoaded:
    """An image is in the store with ``tags``; ``replaced`` lists (tag, previous image ID) moved to it."""

    id: str
    tags: tuple[str, ...]
    replaced: tuple[tuple[str, str], ...] = ()


LoadEvent = LayerProgress | ImageLoaded


class _ProgressReader:
    def __init__(self, raw: IO[bytes], total: int, diff_id: str, emit: Callable[[LoadEvent], None]) -> None:
        self._raw, self._total, self._diff_id, self._emit = raw, total, diff_id, emit
        self._current = 0
        self._reported = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._current += len(data)
        if self._current - self._reported >= _PROGRESS_EVERY or (not data and self._reported < self._current):
            self._reported = self._current
            self._emit(LayerProgress(self._diff_id, self._current, self._total))
        return data


@dataclass
class _Loader:
    store: ImageStore
    reader: ArchiveReader
    emit: Callable[[LoadEvent], None]
    imported: list[str] = field(default_factory=list)  # chains this load created

    def layer(
        self, parent: str | None, diff_id: str, index: int, opener: Callable[[], tuple[IO[bytes], int]]
    ) -> str:
        """Make sure layer ``diff_id`` on ``parent`` is in the store; returns its chain ID."""
        want = chain_id(parent, diff_id)
        if self.store.has_layer(want):
            return want  # already here (a shared base, or loaded before): not read at all
        stream, size = opener()
        self.emit(LayerProgress(diff_id, 0, size))
        progress = _ProgressReader(stream, size, diff_id, self.emit)
        got, chain, _ = self.store.import_layer(progress, parent)  # type: ignore[arg-type]  # a reader
        if chain not in self.imported:
            self.imported.append(chain)
        if got != diff_id:
            raise InvalidArgument(f"invalid diffID for layer {index}: expected {diff_id!r}, got {got!r}")
        return want

    def image(
        self, config: bytes, tags: Sequence[str], layer_openers: Sequence[Callable[[], tuple[IO[bytes], int]]]
    ) -> ImageLoaded:
        doc = parse_config(config)
        if doc.os and doc.os != "linux":
            raise InvalidArgument(f"cannot load {doc.os} image on linux")
        if len(layer_openers) != len(doc.diff_ids):
            raise InvalidArgument(
                f"invalid manifest, layers length mismatch: expected {len(layer_openers)}, got {len(doc.diff_ids)}"
            )
        for d in doc.diff_ids:
            validate_digest(d)
        normalized: list[str] = []
        for t in tags:
            try:
                ref = parse_reference(t, default_tag=False)
            except InvalidArgument as e:
                raise InvalidArgument(f"invalid tag {t!r}: {e.message}") from None
            if ref.tag is None or ref.digest is not None:
                raise InvalidArgument(f"invalid tag {t!r}")
            if ref.familiar() not in normalized:
                normalized.append(ref.familiar())
        parent: str | None = None
        for i, (diff_id, opener) in enumerate(zip(doc.diff_ids, layer_openers, strict=True)):
            parent = self.layer(parent, diff_id, i, opener)
        new_id = "sha256:" + hashlib.sha256(config).hexdigest()
        replaced = []
        for t in normalized:
            old = self.store.db.resolve_tag(t)
            if old is not None and old != new_id:
                replaced.append((t, old))
        rec = self.store.register_config(config, repo_tags=normalized)
        loaded = ImageLoaded(rec.id, tuple(normalized), tuple(replaced))
        self.emit(loaded)
        return loaded

    def docker_archive(self) -> list[ImageLoaded]:
        out = []
        for entry in parse_manifest_json(self.reader.read("manifest.json")):
            config = self.reader.read(entry.config)
            openers = [lambda p=p: self.reader.open(p) for p in entry.layers]
            out.append(self.image(config, entry.repo_tags, openers))
        return out

    def _manifests(
        self, descs: list[Descriptor], tags: tuple[str, ...], depth: int
    ) -> Iterator[tuple[Descriptor, tuple[str, ...]]]:
        want_os, want_arch = host_platform()
        for d in descs:
            own = tags_from_annotations(d.annotations) or tags
            if d.media_type in INDEX_TYPES:
                if depth >= _MAX_INDEX_DEPTH:
                    raise InvalidArgument("invalid OCI layout: indexes nested too deeply")
                yield from self._manifests(parse_index(self.reader.blob_bytes(d)), own, depth + 1)
            elif d.media_type in MANIFEST_TYPES or not d.media_type:
                if d.platform is not None and (
                    d.platform[0] != want_os or d.platform[1] not in (want_arch, "")
                ):
                    continue  # another platform, or an attestation manifest ("unknown/unknown")
                yield d, own

    def oci_layout(self) -> list[ImageLoaded]:
        picked: dict[str, tuple[Descriptor, list[str]]] = {}
        descs = parse_index(self.reader.read("index.json"))
        for d, tags in self._manifests(descs, (), 0):
            entry = picked.setdefault(d.digest, (d, []))
            entry[1].extend(t for t in tags if t not in entry[1])
        if descs and not picked:
            os_name, arch = host_platform()
            raise InvalidArgument(f"invalid OCI layout: no image for {os_name}/{arch} in the archive")
        out = []
        for d, names in picked.values():
            manifest = parse_oci_manifest(self.reader.blob_bytes(d))
            config = self.reader.blob_bytes(manifest.config)
            for layer in manifest.layers:
                if layer.media_type not in LAYER_TYPES:
                    raise InvalidArgument(
                        f"unsupported layer media type {layer.media_type!r} (zstd layers are not supported)"
                        if "zstd" in layer.media_type
                        else f"unsupported layer media type {layer.media_type!r}"
                    )
            openers = [lambda layer=layer: self.reader.blob(layer) for layer in manifest.layers]
            out.append(self.image(config, names, openers))
        return out


_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


@contextlib.contextmanager
def opened_archive(stream: BinaryIO, spool_dir: Path | None = None) -> Iterator[IO[bytes]]:
    """The archive as a seekable, uncompressed file (``docker save | gzip`` loads too).

    A seekable uncompressed ``stream`` (a spooled request body) is used as it is; anything else
    is copied, decompressed, into an unlinked temp file in ``spool_dir``.
    """
    if stream.seekable():
        start = stream.tell()
        head = stream.read(6)
        stream.seek(start)
        if not head.startswith(_COMPRESSED_MAGIC):
            yield stream
            return
    plain = decompressed(stream)
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        try:
            while chunk := plain.read(_CHUNK):
                spool.write(chunk)
        except (OSError, EOFError, lzma.LZMAError) as e:
            raise InvalidArgument(f"invalid archive: {e}") from None
        spool.seek(0)
        yield spool


def load_archive(
    store: ImageStore, archive: IO[bytes], emit: Callable[[LoadEvent], None]
) -> list[ImageLoaded]:
    """Load every image of a seekable, uncompressed archive (see :func:`opened_archive`).

    Progress and each loaded image go to ``emit`` as they happen. On failure, images loaded so
    far stay (as with Docker) and layers this load imported that no image uses are removed.
    """
    reader = ArchiveReader(archive)
    loader = _Loader(store, reader, emit)
    try:
        if reader.has("manifest.json"):
            return loader.docker_archive()
        if reader.has("index.json"):
            return loader.oci_layout()
        if reader.has("repositories"):
            raise InvalidArgument(
                "archive is in the pre-1.10 docker save format (no manifest.json); "
                "save it again with a newer Docker"
            )
        raise InvalidArgument(
            "invalid archive: no manifest.json or index.json (not a docker save or OCI layout)"
        )
    except BaseException:
        store.collect_layers(loader.imported)
        raise
