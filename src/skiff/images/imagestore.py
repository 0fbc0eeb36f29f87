"""ImageStore: images as config blobs + committed overlay layers + metadata rows.

Layout of one image: its OCI config JSON is a blob in the content store (the image ID is that
blob's digest); each layer is a committed snapshot named by its OCI chain ID, so a layer
exists once on disk however many images share it; the record and its tags are rows in
MetadataDB written in one transaction.

Layer tars are NOT kept in the content store after import: that would double the disk used by
every image. Instead each committed layer keeps a small tar-split beside its snapshot
(``tar-split.gz``, see :mod:`skiff.images.tarsplit`): the tar's headers and padding without the
file contents, from which :meth:`ImageStore.exact_layer` rebuilds the imported tar byte for byte,
so save/push give back the diff_id the image config names. A layer without a split (imported by
an older skiff, or one that writes a path twice) falls back to ``diff_tar``, which is
deterministic but reproduces the diff_id only for tars skiff wrote itself.

Crash rule: blobs and snapshots are written before the metadata row that makes them part of an
image; :meth:`ImageStore.recover` removes half-imported snapshots and layers no image uses.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from skiff.errors import AlreadyExists, Conflict, DataCorruption, InvalidArgument, NotFound
from skiff.images.changes import apply_changes
from skiff.images.layers import ApplyResult, apply_layer, diff_tar
from skiff.images.oci import ConfigDocument, build_config, chain_id, chain_ids, parse_config
from skiff.images.reference import normalize_tag, parse_reference
from skiff.images.tarsplit import SplitRecorder, assemble, split_size
from skiff.store.content import ContentStore
from skiff.store.metadata import MetadataDB
from skiff.store.snapshots import COMMITTED, OverlaySnapshotter
from skiff.types.image import HistoryEntry, ImageConfig, ImageRecord

EXTRACT_PREFIX = "extract-"
TAR_SPLIT = "tar-split.gz"
_CHUNK = 1 << 20
_HEX_PREFIX_RE = re.compile(r"(?:sha256:)?([0-9a-f]{1,64})")
_FULL_ID_RE = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LayerTar:
    """A committed layer as the exact tar it was imported from: ``size`` bytes whose sha256 is ``diff_id``.

    ``chunks()`` yields the bytes and checks the digest at the end (DataCorruption if a layer file
    changed since the import): a consumer that streams them on sees the error before the end.
    """

    diff_id: str
    size: int
    chunks: Callable[[], Iterator[bytes]]


def _verified(diff_id: str, size: int, source: Iterator[bytes]) -> Iterator[bytes]:
    h = hashlib.sha256()
    n = 0
    for chunk in source:
        h.update(chunk)
        n += len(chunk)
        if n > size:
            break
        yield chunk
    if n != size or "sha256:" + h.hexdigest() != diff_id:
        raise DataCorruption(
            f"layer {diff_id} no longer matches its diff_id (a file of the layer changed on disk)"
        )


class ImageStore:
    """The images a node has; the engine's ImageService sits on top of this."""

    def __init__(self, content: ContentStore, snapshotter: OverlaySnapshotter, db: MetadataDB) -> None:
        self.content = content
        self.snapshotter = snapshotter
        self.db = db

    # -- layers --------------------------------------------------------------------------------

    def import_layer(self, tar_stream: BinaryIO, parent_chain_id: str | None) -> tuple[str, str, int]:
        """Extract a layer on top of ``parent_chain_id``; returns (diff_id, chain_id, size).

        The layer is extracted into a fresh active snapshot and committed under its chain ID.
        If that chain ID already exists the new copy is dropped and the existing one reused.
        """
        key = EXTRACT_PREFIX + secrets.token_hex(16)
        self.snapshotter.prepare(key, parent_chain_id)
        try:
            split_path = self.snapshotter.sidecar(key, TAR_SPLIT)
            partial = split_path.with_name(TAR_SPLIT + ".partial")
            with open(partial, "wb") as split_file:
                recorder = SplitRecorder(split_file)
                result = apply_layer(tar_stream, self.snapshotter.upper_dir(key), recorder)
                recorder.finish()
            if recorder.broken:
                partial.unlink()  # save/push fall back to diff_tar for this layer
            else:
                os.rename(partial, split_path)
            cid = chain_id(parent_chain_id, result.diff_id)
            if self.snapshotter.exists(cid):
                if not recorder.broken:
                    self._adopt_split(cid, split_path)
                self.snapshotter.remove(key)
            else:
                try:
                    self.snapshotter.commit(cid, key)
                except AlreadyExists:  # a concurrent import of the same layer won the race
                    self.snapshotter.remove(key)
            if self.db.layer_size(cid) is None:
                self.db.put_layer(cid, result.diff_id, result.size)
        except BaseException:
            if self.snapshotter.exists(key):
                self.snapshotter.remove(key)
            raise
        return result.diff_id, cid, result.size

    def _adopt_split(self, chain: str, split_path: Path) -> None:
        """Give an existing layer without a tar-split (an older import) the one just recorded.

        Same chain ID means the same tar bytes on the same parents, so the split fits its files.
        """
        try:
            target = self.snapshotter.sidecar(chain, TAR_SPLIT)
        except NotFound:
            return
        if not target.exists():
            with contextlib.suppress(OSError):
                os.rename(split_path, target)

    def import_diff(
        self, upper: Path, parent_chain_id: str | None, skip: frozenset[str] = frozenset()
    ) -> tuple[str, str, int]:
        """Turn a directory of changes (a container's upper dir) into a layer on ``parent_chain_id``.

        For ``commit`` and builds: the diff is streamed as a tar through a pipe straight into
        :meth:`import_layer`, never held in memory or on disk. Pause the container first.
        ``skip``: relative paths of ``upper`` to leave out (see :func:`diff_tar`).
        """
        r, w = os.pipe()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                with open(w, "wb") as out:
                    diff_tar(upper, out, skip)
            except BaseException as e:  # re-raised in the caller's thread below
                errors.append(e)

        t = threading.Thread(target=produce, name="skiff-diff-tar", daemon=True)
        t.start()
        try:
            with open(r, "rb") as stream:
                result = self.import_layer(stream, parent_chain_id)
        finally:
            t.join()  # the read end is closed: a blocked writer gets EPIPE and ends
        if errors:
            raise errors[0]
        return result

    def layer_tar(self, chain: str, out: BinaryIO) -> ApplyResult:
        """Write committed layer ``chain`` as a fresh uncompressed OCI layer tar.

        Regenerated from the snapshot: deterministic, but its digest may differ from the diff_id
        of the tar originally imported; save/push use :meth:`exact_layer`.
        """
        if not self.has_layer(chain):
            raise NotFound(f"layer {chain}: not found")
        return diff_tar(self.snapshotter.upper_dir(chain), out)

    def exact_layer(self, chain: str, diff_id: str, spool_dir: Path | None = None) -> LayerTar:
        """The layer ``chain`` as the tar whose digest is ``diff_id`` (for save/push).

        From the layer's tar-split when it has one (no copy is made). Otherwise the tar is
        regenerated into a temp file (in ``spool_dir``, deleted when the chunks are consumed or
        dropped); if that does not give ``diff_id`` the layer cannot be exported unchanged and
        DataCorruption says so -- before any byte is handed out.
        """
        if not self.has_layer(chain):
            raise NotFound(f"layer {chain}: not found")
        split = self.snapshotter.sidecar(chain, TAR_SPLIT)
        root = self.snapshotter.upper_dir(chain)
        if split.exists():
            size = split_size(split)
            return LayerTar(diff_id, size, lambda: _verified(diff_id, size, assemble(split, root)))
        spool = tempfile.TemporaryFile(dir=spool_dir)
        try:
            result = diff_tar(root, spool)
            size = spool.tell()
        except BaseException:
            spool.close()
            raise
        if result.diff_id != diff_id:
            spool.close()
            raise DataCorruption(
                f"layer {diff_id} cannot be exported byte for byte: it was imported without a "
                f"tar-split (an older skiff) and a fresh tar of its files hashes to {result.diff_id}; "
                "import, load or bootstrap the same image again (that gives the layer one) to export it"
            )

        def chunks() -> Iterator[bytes]:
            with spool:
                spool.seek(0)
                while chunk := spool.read(_CHUNK):
                    yield chunk

        return LayerTar(diff_id, size, lambda: _verified(diff_id, size, chunks()))

    def has_layer(self, chain: str) -> bool:
        """True if a committed layer with this chain ID exists."""
        return self.snapshotter.exists(chain) and self.snapshotter.stat(chain).kind == COMMITTED

    # -- images --------------------------------------------------------------------------------

    def create_image(
        self,
        config: ImageConfig,
        diff_ids: Sequence[str],
        *,
        history: Sequence[HistoryEntry] = (),
        author: str = "",
        comment: str = "",
        parent: str = "",
        created: str | None = None,
        repo_tags: Sequence[str] = (),
        architecture: str = "amd64",
        os_name: str = "linux",
    ) -> ImageRecord:
        """Write the OCI config blob and record the image (and ``repo_tags``) in one transaction."""
        doc = ConfigDocument(
            config=config,
            diff_ids=tuple(diff_ids),
            history=tuple(history),
            created=created or utc_now(),
            author=author,
            comment=comment,
            architecture=architecture,
            os=os_name,
            parent=parent,
        )
        return self.register_config(build_config(doc), repo_tags=repo_tags)

    def register_config(
        self,
        blob: bytes,
        *,
        repo_tags: Sequence[str] = (),
        repo_digests: Sequence[str] = (),
        manifest_digest: str = "",
    ) -> ImageRecord:
        """Record an image from a config blob whose layers are all present (e.g. after a pull/load).

        ``repo_digests`` (``name@sha256:...``) are added to those the image already has, so
        pulling the same image from two repositories keeps both.
        """
        doc = parse_config(blob)
        chains = chain_ids(doc.diff_ids)
        for c in chains:
            if not self.has_layer(c):
                raise NotFound(f"layer {c} of the image is not in the store; import its layers first")
        info = self.content.put(blob)
        tags = tuple(normalize_tag(t) for t in repo_tags)
        digests = list(repo_digests)
        try:
            existing = self.db.get_image(info.digest)
            digests = [*existing.repo_digests, *(d for d in digests if d not in existing.repo_digests)]
            manifest_digest = manifest_digest or existing.manifest_digest
        except NotFound:
            pass
        rec = ImageRecord(
            id=info.digest,
            config=doc.config,
            diff_ids=doc.diff_ids,
            chain_ids=tuple(chains),
            created=doc.created,
            author=doc.author,
            comment=doc.comment,
            architecture=doc.architecture,
            os=doc.os,
            history=doc.history,
            size=sum(self.db.layer_size(c) or 0 for c in chains),
            parent=doc.parent,
            repo_tags=tags,
            repo_digests=tuple(digests),
            manifest_digest=manifest_digest,
        )
        self.db.put_image_tagged(rec, tags)
        return self.db.get_image(rec.id)

    def import_image(
        self,
        tar_stream: BinaryIO,
        *,
        changes: Sequence[str] = (),
        message: str = "",
        repo_tag: str | None = None,
        created: str | None = None,
    ) -> ImageRecord:
        """``skiff import``: one layer from a rootfs tarball, config from ``changes``."""
        config = apply_changes(ImageConfig(), changes)  # validate before the slow part
        tags = (normalize_tag(repo_tag),) if repo_tag else ()
        diff_id, _, _ = self.import_layer(tar_stream, None)
        when = created or utc_now()
        history = (HistoryEntry(created=when, created_by="", comment=message or "Imported from -"),)
        return self.create_image(
            config, [diff_id], history=history, comment=message, created=when, repo_tags=tags
        )

    def get(self, name_or_id: str) -> ImageRecord:
        """Resolve a tag, ``name`` (:latest), ``name@digest``, full ID or unique ID prefix."""
        if not name_or_id:
            raise NotFound("No such image: ")
        full = _FULL_ID_RE.fullmatch(name_or_id)
        if full:
            return self.db.get_image("sha256:" + full.group(1))
        ref = None
        try:
            ref = parse_reference(name_or_id)
        except InvalidArgument:
            pass
        if ref is not None:
            if ref.digest is None:
                iid = self.db.resolve_tag(ref.familiar())
                if iid is not None:
                    return self.db.get_image(iid)
            else:
                want = f"{ref.name()}@{ref.digest}"
                for rec in self.db.list_images():
                    if want in rec.repo_digests:
                        return rec
        prefix = _HEX_PREFIX_RE.fullmatch(name_or_id)
        if prefix:
            matches = [i for i in self.db.image_ids() if i[len("sha256:") :].startswith(prefix.group(1))]
            if len(matches) == 1:
                return self.db.get_image(matches[0])
            if len(matches) > 1:
                raise InvalidArgument(f"{name_or_id}: ambiguous image ID prefix; give more characters")
        raise NotFound(f"No such image: {name_or_id}")

    def list(self) -> list[ImageRecord]:
        """Every image with repo_tags filled in."""
        return self.db.list_images()

    def tag(self, name_or_id: str, ref: str) -> None:
        """Point ``ref`` (normalised, default :latest) at the image ``name_or_id``."""
        target = normalize_tag(ref)
        self.db.set_tag(target, self.get(name_or_id).id)

    def untag(self, ref: str) -> None:
        """Remove tag ``ref`` (NotFound "No such image: ref" if it is not a tag)."""
        try:
            target = normalize_tag(ref)
        except InvalidArgument:
            raise NotFound(f"No such image: {ref}") from None
        try:
            self.db.remove_tag(target)
        except NotFound:
            raise NotFound(f"No such image: {ref}") from None

    def delete(self, image_id: str) -> builtins.list[str]:
        """Remove the image record and the layers no other image uses; returns deleted chain IDs.

        The engine checks for containers using the image first; a layer still under a container's
        snapshot is kept (and collected by :meth:`recover` once free).
        """
        rec = self.db.get_image(image_id)
        self.db.delete_image(rec.id)
        try:
            self.content.delete(rec.id)
        except NotFound:
            pass
        return self._collect_layers(rec.chain_ids)

    def collect_layers(self, candidates: Sequence[str]) -> builtins.list[str]:
        """Remove the layers among ``candidates`` that no image or container uses (e.g. after a failed load)."""
        return self._collect_layers(candidates)

    def _collect_layers(self, candidates: Sequence[str]) -> builtins.list[str]:
        used = {c for r in self.db.list_images() for c in r.chain_ids}
        deleted: builtins.list[str] = []
        for c in reversed(candidates):  # top first: a layer's children block its removal
            if c in used or not self.snapshotter.exists(c):
                continue
            try:
                self.snapshotter.remove(c)
            except Conflict:
                continue  # a container (or another layer) still builds on it
            self.db.delete_layer(c)
            deleted.append(c)
        return deleted

    def layer_size(self, chain: str) -> int:
        """Bytes of the files one committed layer added (0 if unknown), as Docker's DiffSize."""
        return self.db.layer_size(chain) or 0

    def top_layer(self, image: ImageRecord) -> str | None:
        """The chain ID a container's snapshot should use as parent (None for an image without layers)."""
        return image.chain_ids[-1] if image.chain_ids else None

    def config_blob(self, image_id: str) -> bytes:
        """The image's OCI config JSON bytes."""
        return self.content.read(self.db.get_image(image_id).id)

    def recover(self) -> None:
        """Startup: drop leftover ingests, half-made snapshots and layers no image uses."""
        self.content.recover()
        self.snapshotter.recover()
        for info in list(self.snapshotter.walk()):
            if info.kind != COMMITTED and info.key.startswith(EXTRACT_PREFIX):
                try:
                    self.snapshotter.remove(info.key)
                except Conflict:
                    pass
        # Repeat until nothing more can go: removing a top layer frees the one below it.
        while True:
            committed = [i.key for i in self.snapshotter.walk() if i.kind == COMMITTED]
            if not self._collect_layers(committed):
                break
