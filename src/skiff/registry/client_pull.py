"""Pull: a reference in a registry -> an image in the local store, as dockerd does it.

1. Resolve the reference on the first endpoint that answers (docker.io: mirrors first, see
   :mod:`client_endpoints`). A manifest list / OCI index is narrowed to the host's platform
   (or the one asked for); its digest, or the manifest's, is the image's repo digest.
2. Fetch the config (unless the store has it), check it names as many layers as the manifest.
3. Layers the store has (by chain ID) are "Already exists"; the others download up to three at
   a time (:mod:`client_download`: resumable, verified) while a single extraction thread
   unpacks them in order into the snapshotter through ``ImageStore.import_layer``, reading each
   blob as it arrives. Every layer must hash to the diff_id its config names.
4. The config is registered with the tag and repo digest in one metadata transaction; the
   manifest and the layers' blob digests are kept for later pushes.

Nothing half-written becomes visible: a layer is committed only after its blob verified and
its diff_id matched; the image record is written last. A failed pull removes the layers it
imported that no image uses; partial downloads stay for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from skiff.errors import InvalidArgument, NotFound
from skiff.images.archive import LAYER_TYPES, Descriptor, parse_oci_manifest
from skiff.images.imagestore import ImageStore
from skiff.images.oci import chain_ids, parse_config
from skiff.images.reference import Reference
from skiff.registry import media
from skiff.registry.auth import AuthConfig
from skiff.registry.client import Manifest, RegistryClient, RegistryError
from skiff.registry.client_download import FollowReader, GunzipReader, LayerDownload
from skiff.registry.client_events import (
    Emit,
    Platform,
    Progress,
    host_platform,
    normalize_platform,
    parse_index_entries,
    select_manifest,
    short_id,
)
from skiff.registry.client_metadata import KeptManifest, LayerSource
from skiff.registry.client_session import PULL_CONCURRENCY, Registries
from skiff.types.image import ImageRecord

T = TypeVar("T")
_EXTRACT_STEP = 512 << 10


@dataclass(frozen=True)
class PullResult:
    """The image a pull left in the store, the digest it was pulled by, and whether it is new."""

    image: ImageRecord
    digest: str
    updated: bool


def translate_pull_error(err: RegistryError, ref: Reference) -> RegistryError:
    """moby's ``translatePullError``: unknown names and manifests and denied access are 404s;
    refused credentials are 401s (dockerd says 500; 401 is what it is)."""
    if err.code == "DENIED":
        err.message = (
            f"pull access denied for {ref.name()}, repository does not exist or may require "
            f"'docker login': {err.message}"
        )
        err.status = 404
    elif err.code == "MANIFEST_UNKNOWN":
        err.message = f"manifest for {ref.familiar()} not found: {err.message}"
        err.status = 404
    elif err.code == "NAME_UNKNOWN":
        err.message = f"repository {ref.name()} not found: {err.message}"
        err.status = 404
    elif err.code == "UNAUTHORIZED":
        err.status = 401
    return err


async def run_in_thread(fn: Callable[[threading.Event], T]) -> T:
    """Run ``fn(cancel)`` in its own thread; if the caller is cancelled, set ``cancel`` and wait for it.

    Extraction is long: a dedicated thread keeps it off the default executor, and waiting for
    the thread on cancellation keeps cleanup (the half-extracted snapshot) in order.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    cancel = threading.Event()

    def work() -> None:
        try:
            result = fn(cancel)
        except BaseException as e:  # handed to the awaiting coroutine
            error = e
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, None, error)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=work, name="skiff-pull-extract", daemon=True).start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(BaseException):
            await future
        raise


def _verification_failed(digest: str) -> RegistryError:
    text = f"filesystem layer verification failed for digest {digest} (the download starts over next time)"
    return RegistryError(text, code="DIGEST_INVALID")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return ""
    return "sha256:" + h.hexdigest()


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]  # set only with a result


class Puller:
    """One ``docker pull``; see the module docstring."""

    def __init__(self, registries: Registries, store: ImageStore, emit: Emit) -> None:
        self.reg = registries
        self.store = store
        self.emit = emit

    async def resolve(self, ref: Reference, auth: AuthConfig) -> tuple[RegistryClient, Manifest]:
        """The top manifest (list) for ``ref`` from the first endpoint that has it."""
        endpoints = self.reg.resolver.pull_endpoints(ref.domain)
        last: RegistryError | None = None
        for i, ep in enumerate(endpoints):
            try:
                client = await self.reg.connect(ep, auth)
                manifest = await client.get_manifest(ref.path, ref.digest or ref.tag or "latest")
                return client, manifest
            except RegistryError as e:
                last = e
                if ep.mirror and i + 1 < len(endpoints):
                    continue  # dockerd: any failure of a mirror falls back to the next endpoint
                raise translate_pull_error(e, ref) from None
        assert last is not None
        raise last

    async def platform_manifest(
        self, client: RegistryClient, ref: Reference, top: Manifest, want: Platform | None
    ) -> Manifest:
        """The single-platform manifest: ``top`` itself, or the list's entry for the platform."""
        if top.media_type in media.INDEXES:
            target = normalize_platform(want or host_platform())
            entry = select_manifest(parse_index_entries(top.data), target)
            if entry is None:
                raise NotFound(f"no matching manifest for {target} in the manifest list entries")
            try:
                return await client.get_manifest(ref.path, entry.digest)
            except RegistryError as e:
                raise translate_pull_error(e, ref) from None
        if top.media_type in (media.DOCKER_MANIFEST_V1, media.DOCKER_MANIFEST_V1_SIGNED):
            raise InvalidArgument(
                f"[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 "
                f"support has been removed. Suggest the author of {ref.familiar()} to upgrade the image to "
                "the OCI Format or Docker Image manifest v2, schema 2."
            )
        if top.media_type not in media.IMAGE_MANIFESTS:
            raise InvalidArgument(f"unsupported manifest media type {top.media_type!r} for {ref.familiar()}")
        return top

    async def pull(self, ref: Reference, auth: AuthConfig, want: Platform | None = None) -> PullResult:
        """Pull one tag or digest; progress goes to ``emit`` (the first line only after resolution)."""
        client, top = await self.resolve(ref, auth)
        self.emit(Progress(f"Pulling from {ref.path}", id=ref.digest or ref.tag or "latest"))
        manifest = await self.platform_manifest(client, ref, top, want)
        doc = parse_oci_manifest(manifest.data)
        for layer in doc.layers:
            if "zstd" in layer.media_type:
                raise InvalidArgument(f"zstd-compressed layers are not supported ({ref.familiar()})")
            if layer.media_type not in LAYER_TYPES or "foreign" in layer.media_type:
                raise InvalidArgument(
                    f"unsupported layer media type {layer.media_type!r} in {ref.familiar()}"
                )
        config = await self._config(client, ref, doc.config)
        cdoc = parse_config(config)
        if cdoc.os and cdoc.os != "linux":
            raise InvalidArgument(f"image operating system {cdoc.os!r} cannot be used on this platform")
        if want is not None and top.media_type not in media.INDEXES:
            got = normalize_platform(Platform(cdoc.os or "linux", cdoc.architecture or "amd64"))
            if (got.os, got.architecture) != (
                normalize_platform(want).os,
                normalize_platform(want).architecture,
            ):
                raise NotFound(
                    f"image with reference {ref.familiar()} was found but does not match the specified "
                    f"platform: wanted {normalize_platform(want)}, actual: {got}"
                )
        if len(cdoc.diff_ids) != len(doc.layers):
            raise InvalidArgument(
                f"layers from manifest don't match image configuration ({len(doc.layers)} layers, "
                f"{len(cdoc.diff_ids)} diff_ids)"
            )
        image_id = doc.config.digest
        tag = ref.familiar() if ref.tag and not ref.digest else None
        before = self.store.db.resolve_tag(tag) if tag else None
        existed = self._exists(image_id)
        imported = await self._layers(client, ref, doc.layers, list(cdoc.diff_ids))
        try:
            image = await asyncio.to_thread(
                self.store.register_config,
                config,
                repo_tags=(tag,) if tag else (),
                repo_digests=(f"{ref.name()}@{top.digest}",),
                manifest_digest=manifest.digest,
            )
        except BaseException:
            await asyncio.to_thread(self.store.collect_layers, imported)
            raise
        self.reg.metadata.record(
            KeptManifest(image.id, ref.repository(), manifest.digest, manifest.media_type, manifest.data),
            [
                LayerSource(diff_id, layer.digest, layer.media_type, layer.size, ref.repository())
                for diff_id, layer in zip(cdoc.diff_ids, doc.layers, strict=True)
            ],
        )
        updated = not existed or (tag is not None and before != image.id)
        self.emit(Progress(f"Digest: {top.digest}"))
        return PullResult(image, top.digest, updated)

    def _exists(self, image_id: str) -> bool:
        try:
            self.store.db.get_image(image_id)
            return True
        except NotFound:
            return False

    async def _config(self, client: RegistryClient, ref: Reference, desc: Descriptor) -> bytes:
        if self.store.content.exists(desc.digest):
            return await asyncio.to_thread(self.store.content.read, desc.digest)
        try:
            return await client.get_blob(ref.path, desc.digest)
        except RegistryError as e:
            raise translate_pull_error(e, ref) from None

    async def _layers(
        self, client: RegistryClient, ref: Reference, layers: tuple[Descriptor, ...], diff_ids: list[str]
    ) -> list[str]:
        """Make every layer present; returns the chain IDs this pull imported."""
        chains = chain_ids(diff_ids)
        missing = [i for i, c in enumerate(chains) if not self.store.has_layer(c)]
        for i, layer in enumerate(layers):
            if i not in missing:
                self.emit(Progress("Already exists", id=short_id(layer.digest), layer=True))
        for i in missing:
            self.emit(Progress("Pulling fs layer", id=short_id(layers[i].digest), layer=True))
        for i in missing[PULL_CONCURRENCY:]:
            self.emit(Progress("Waiting", id=short_id(layers[i].digest), layer=True))
        if not missing:
            return []
        loop = asyncio.get_running_loop()
        started: dict[int, asyncio.Future[LayerDownload]] = {i: loop.create_future() for i in missing}
        slots = asyncio.Semaphore(PULL_CONCURRENCY)
        held: dict[int, LayerDownload] = {}  # downloads this pull still uses, by layer index

        async def download(i: int) -> None:
            layer = layers[i]
            ident = short_id(layer.digest)
            async with slots:
                # An uncompressed layer's digest is its diff_id, which the extraction checks.
                unchecked = layer.digest == diff_ids[i]
                dl = self.reg.downloads.start(client, ref.path, layer.digest, layer.size, not unchecked)
                held[i] = dl
                dl.progress.append(
                    lambda cur, tot: self.emit(
                        Progress("Downloading", id=ident, layer=True, current=cur, total=tot)
                    )
                )
                dl.status.append(lambda text: self.emit(Progress(text, id=ident, layer=True)))
                started[i].set_result(dl)
                try:
                    await dl.finished()
                except RegistryError as e:
                    raise translate_pull_error(e, ref) from None
                self.emit(Progress("Download complete", id=ident, layer=True))

        tasks = [asyncio.create_task(download(i)) for i in missing]
        imported: list[str] = []
        try:
            parent: str | None = None
            for i, chain in enumerate(chains):
                if i in missing:
                    dl = await _first(started[i], tasks)
                    try:
                        got = await self._extract(dl, parent, short_id(layers[i].digest))
                    except InvalidArgument:
                        # The extractor refused the bytes. If they are not the blob (the download
                        # fails its check, or an unchecked one does not hash right) that is the
                        # error, and the file is not kept to resume from; else the layer is bad.
                        with contextlib.suppress(Exception):
                            await dl.finished()
                        if isinstance(dl.error, RegistryError):
                            raise translate_pull_error(dl.error, ref) from None
                        if dl.check_digest or await asyncio.to_thread(_file_digest, dl.path) == dl.digest:
                            raise
                        dl.consumed = True
                        raise _verification_failed(layers[i].digest) from None
                    # Unpacked: its file goes now, before most of it ever reaches the disk (and
                    # before it counts against the kernel's dirty-page limit for later writes).
                    self.reg.downloads.release(held.pop(i), consumed=True)
                    if got[1] not in imported:
                        imported.append(got[1])
                    if got[0] != diff_ids[i] and not dl.check_digest:
                        raise _verification_failed(layers[i].digest)
                    if got[0] != diff_ids[i]:
                        raise InvalidArgument(
                            f"layer {i} of {ref.familiar()} ({layers[i].digest}) unpacks to {got[0]}, "
                            f"but the image config says {diff_ids[i]}"
                        )
                    self.emit(Progress("Pull complete", id=short_id(layers[i].digest), layer=True))
                parent = chain
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.store.collect_layers, imported)
            raise
        finally:
            for dl in held.values():
                self.reg.downloads.release(dl, consumed=False)
        return imported

    async def _extract(self, dl: LayerDownload, parent: str | None, ident: str) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        reported = [0]

        def on_read(current: int, total: int) -> None:
            if current - reported[0] >= max(_EXTRACT_STEP, total // 100) or current == total:
                reported[0] = current
                progress = Progress("Extracting", id=ident, layer=True, current=current, total=total)
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self.emit, progress)

        def work(cancel: threading.Event) -> tuple[str, str]:
            with FollowReader(dl, cancel, on_read) as reader:
                plain = GunzipReader(reader)
                diff_id, chain, _ = self.store.import_layer(plain, parent)  # type: ignore[arg-type]  # a reader
            return diff_id, chain

        return await run_in_thread(work)


async def _first(started: asyncio.Future[LayerDownload], tasks: list[asyncio.Task[None]]) -> LayerDownload:
    """Wait for a download to start, but fail as soon as any download task fails."""
    while not started.done():
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        waiting: list[asyncio.Future[Any]] = [started, *[t for t in tasks if not t.done()]]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    return started.result()


async def list_tags(registries: Registries, ref: Reference, auth: AuthConfig) -> list[str]:
    """Every tag of ``ref``'s repository (for ``pull --all-tags``), from the first endpoint that answers."""
    endpoints = registries.resolver.pull_endpoints(ref.domain)
    for i, ep in enumerate(endpoints):
        try:
            client = await registries.connect(ep, auth)
            return await client.tags(ref.path)
        except RegistryError as e:
            if ep.mirror and i + 1 < len(endpoints):
                continue
            raise translate_pull_error(e, ref) from None
    return []


def manifest_platforms(data: bytes, media_type: str) -> list[dict[str, str]]:
    """``Platforms`` of ``GET /distribution/{name}/json`` for an index (entries' platforms)."""
    out = []
    if media_type in media.INDEXES:
        for e in parse_index_entries(data):
            if e.platform is not None and not e.attestation:
                p: dict[str, str] = {"architecture": e.platform.architecture, "os": e.platform.os}
                if e.platform.variant:
                    p["variant"] = e.platform.variant
                out.append(p)
    return out


def config_platform(config: bytes) -> dict[str, str]:
    try:
        doc = json.loads(config)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    p = {"architecture": str(doc.get("architecture", "")), "os": str(doc.get("os", ""))}
    if doc.get("variant"):
        p["variant"] = str(doc["variant"])
    return p
