"""Push: local images -> a registry repository, as dockerd does it.

Per layer (up to five at a time, top layer first in the output), the cheapest way wins:

1. a blob this layer is known as in the target repository (from an earlier pull or push,
   :mod:`client_metadata`) that a ``HEAD`` confirms: "Layer already exists";
2. one known in another repository of the same registry: a cross-repository mount,
   "Mounted from <repo>";
3. the uncompressed layer (digest = diff_id) already there: "Layer already exists";
4. otherwise the layer is uploaded as the exact tar it was imported from, rebuilt from its
   tar-split and files (``ImageStore.exact_layer``), so its digest is the diff_id: no
   compression, and the same bytes on every push.

Then the config, then the manifest: the very bytes the image was pulled (or pushed) as when
every layer ended up as the blob that manifest names (so the digest stays), otherwise a new
Docker schema 2 manifest. The pushed digest becomes a repo digest of the image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import InvalidArgument, NotFound
from skiff.images.archive import parse_oci_manifest
from skiff.images.imagestore import ImageStore, LayerTar
from skiff.images.reference import Reference, parse_reference
from skiff.registry import media
from skiff.registry.auth import AuthConfig
from skiff.registry.client import Body, RegistryClient, RegistryError
from skiff.registry.client_events import Emit, Progress, PushedTag, short_id
from skiff.registry.client_metadata import KeptManifest, LayerSource
from skiff.registry.client_session import PUSH_CONCURRENCY, Registries
from skiff.types.image import ImageRecord

_CHUNK = 1 << 20
_QUEUE = 8  # chunks in flight between the reading thread and the upload
_MAX_ATTEMPTS = 3
_MOUNT_CANDIDATES = 3  # dockerd tries at most this many repositories to mount from
_TO_DOCKER = {
    media.OCI_LAYER: media.DOCKER_LAYER,
    media.OCI_LAYER_GZIP: media.DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": media.DOCKER_FOREIGN_LAYER,
}


@dataclass(frozen=True)
class PushedLayer:
    """The blob a layer is in the target repository as."""

    diff_id: str
    digest: str
    media_type: str
    size: int


def images_to_push(store: ImageStore, ref: Reference) -> list[tuple[str, ImageRecord]]:
    """(tag, image) pairs ``docker push ref`` sends: that tag, or every tag of the repository."""
    if ref.digest is not None:
        raise InvalidArgument("cannot push a digest reference")
    name = ref.name()
    if ref.tag:
        image_id = store.db.resolve_tag(ref.familiar())
        if image_id is None:
            if not any(t.rpartition(":")[0] == name for i in store.list() for t in i.repo_tags):
                raise NotFound(f"An image does not exist locally with the tag: {name}")
            raise NotFound(f"tag does not exist: {ref.familiar()}")
        return [(ref.tag, store.db.get_image(image_id))]
    out = []
    for image in store.list():
        for t in image.repo_tags:
            repo, _, tag = t.rpartition(":")
            if repo == name:
                out.append((tag, image))
    if not out:
        raise NotFound(f"An image does not exist locally with the tag: {name}")
    return sorted(out, key=lambda p: p[0])


async def _thread_chunks(
    make: Callable[[], Iterator[bytes]], on_sent: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """The chunks of a blocking iterator (a layer read from disk), produced in a worker thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    slots = threading.Semaphore(_QUEUE)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> None:
        slots.acquire()
        if stop.is_set():
            raise BrokenPipeError
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        buf = bytearray()
        try:
            for chunk in make():
                buf += chunk
                if len(buf) >= _CHUNK:
                    put(bytes(buf))
                    buf.clear()
            if buf:
                put(bytes(buf))
            put(None)
        except BrokenPipeError:
            return
        except BaseException as e:  # handed to the upload
            with contextlib.suppress(BrokenPipeError, RuntimeError):
                put(e)

    threading.Thread(target=work, name="skiff-push-read", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            slots.release()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            on_sent(len(item))
            yield item
    finally:
        stop.set()
        for _ in range(_QUEUE + 1):
            slots.release()


class Pusher:
    """One ``docker push``; see the module docstring."""

    def __init__(
        self, registries: Registries, store: ImageStore, emit: Emit, spool_dir: Path | None = None
    ) -> None:
        self.reg = registries
        self.store = store
        self.emit = emit
        self.spool_dir = spool_dir

    async def connect(self, ref: Reference, auth: AuthConfig) -> RegistryClient:
        return await self.reg.connect(self.reg.resolver.push_endpoint(ref.domain), auth)

    async def push_tag(
        self, client: RegistryClient, ref: Reference, tag: str, image: ImageRecord
    ) -> PushedTag:
        """Push ``image`` as ``ref``'s repository ``:tag``."""
        path = ref.path
        for diff_id in reversed(image.diff_ids):
            self.emit(Progress("Preparing", id=short_id(diff_id), layer=True))
        for diff_id in list(reversed(image.diff_ids))[PUSH_CONCURRENCY:]:
            self.emit(Progress("Waiting", id=short_id(diff_id), layer=True))
        slots = asyncio.Semaphore(PUSH_CONCURRENCY)

        async def one(diff_id: str, chain: str) -> PushedLayer:
            async with slots:
                return await self._layer(client, ref, diff_id, chain)

        pairs = list(zip(image.diff_ids, image.chain_ids, strict=True))
        tasks = [asyncio.create_task(one(d, c)) for d, c in reversed(pairs)]
        try:
            pushed = list(reversed(await asyncio.gather(*tasks)))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        config = await asyncio.to_thread(self.store.config_blob, image.id)
        if await client.blob_size(path, image.id, client._push_scopes(path)) is None:
            await self._upload(client, path, image.id, len(config), config, None)
        media_type, data = self._manifest(image, config, pushed, ref)
        digest = await client.put_manifest(path, tag, media_type, data)
        self.reg.metadata.record(
            KeptManifest(image.id, ref.repository(), digest, media_type, data),
            [LayerSource(p.diff_id, p.digest, p.media_type, p.size, ref.repository()) for p in pushed],
        )
        await asyncio.to_thread(self.store.register_config, config, repo_digests=(f"{ref.name()}@{digest}",))
        result = PushedTag(tag, digest, len(data))
        self.emit(result)
        return result

    def _manifest(
        self, image: ImageRecord, config: bytes, layers: list[PushedLayer], ref: Reference
    ) -> tuple[str, bytes]:
        """A kept manifest if it names exactly these blobs, else a new Docker schema 2 manifest."""
        want = [p.digest for p in layers]
        kept = self.reg.metadata.manifests(image.id)
        kept.sort(key=lambda k: k.repository != ref.repository())
        for k in kept:
            try:
                doc = parse_oci_manifest(k.data)
            except InvalidArgument:
                continue
            if doc.config.digest == image.id and [d.digest for d in doc.layers] == want:
                return k.media_type, k.data
        doc_layers = [
            {"mediaType": _TO_DOCKER.get(p.media_type, p.media_type), "size": p.size, "digest": p.digest}
            for p in layers
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.DOCKER_MANIFEST,
            "config": {"mediaType": media.DOCKER_CONFIG, "size": len(config), "digest": image.id},
            "layers": doc_layers,
        }
        return media.DOCKER_MANIFEST, json.dumps(manifest, indent=3).encode()

    async def _layer(self, client: RegistryClient, ref: Reference, diff_id: str, chain: str) -> PushedLayer:
        ident = short_id(diff_id)
        path = ref.path
        registry = ref.repository().split("/", 1)[0]
        scopes = client._push_scopes(path)
        sources = [s for s in self.reg.metadata.layer_sources(diff_id) if s.registry == registry]
        for s in [s for s in sources if s.path == path]:
            if await client.blob_size(path, s.digest, scopes) is not None:
                self.emit(Progress("Layer already exists", id=ident, layer=True))
                return PushedLayer(diff_id, s.digest, s.media_type, s.size)
            self.reg.metadata.forget_source(s)
        for s in [s for s in sources if s.path != path][:_MOUNT_CANDIDATES]:
            try:
                mounted = await client.mount_blob(path, s.digest, s.path)
            except RegistryError:
                mounted = False
            if mounted:
                self.emit(Progress(f"Mounted from {s.path}", id=ident, layer=True))
                return PushedLayer(diff_id, s.digest, s.media_type, s.size)
        size = await client.blob_size(path, diff_id, scopes)
        if size is not None:
            self.emit(Progress("Layer already exists", id=ident, layer=True))
            return PushedLayer(diff_id, diff_id, media.DOCKER_LAYER, size)
        layer: LayerTar = await asyncio.to_thread(self.store.exact_layer, chain, diff_id, self.spool_dir)
        await self._upload(client, path, diff_id, layer.size, layer.chunks, ident)
        self.emit(Progress("Pushed", id=ident, layer=True))
        return PushedLayer(diff_id, diff_id, media.DOCKER_LAYER, layer.size)

    async def _upload(
        self,
        client: RegistryClient,
        path: str,
        digest: str,
        size: int,
        source: bytes | Callable[[], Iterator[bytes]],
        ident: str | None,
    ) -> None:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            body = source if isinstance(source, bytes) else self._body(source, size, ident)
            try:
                await client.upload_blob(path, digest, size, body)
                return
            except RegistryError as e:
                retriable = e.unreachable or e.registry_status in (408, 429, 500, 502, 503, 504)
                if not retriable or attempt == _MAX_ATTEMPTS:
                    raise
                if ident is not None:
                    text = f"Retrying in {attempt} second{'s' if attempt > 1 else ''}"
                    self.emit(Progress(text, id=ident, layer=True))
                await asyncio.sleep(attempt)

    def _body(self, make: Callable[[], Iterator[bytes]], size: int, ident: str | None) -> Body:
        """A fresh upload body per call (a retried request re-reads the layer), reporting "Pushing"."""
        step = max(512 << 10, size // 100)

        def body() -> AsyncIterator[bytes]:
            sent = [0, 0]

            def on_sent(n: int) -> None:
                sent[0] += n
                if ident is not None and (sent[0] - sent[1] >= step or sent[0] == size):
                    sent[1] = sent[0]
                    self.emit(Progress("Pushing", id=ident, layer=True, current=sent[0], total=size))

            return _thread_chunks(make, on_sent)

        return body


def repository_of(name: str) -> Reference:
    """The reference ``docker push NAME`` means (no tag: every tag)."""
    return parse_reference(name, default_tag=False)
