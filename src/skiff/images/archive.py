"""Image archives: what ``docker save`` writes and ``docker load`` reads, and OCI image layouts.

**Writing** (:func:`write_archive`): one tar that is a docker-archive and an OCI image layout at
once, as Docker 25+ writes it, so ``docker load`` (20.10 and 28), skopeo's ``docker-archive:``
and ``oci-archive:`` and podman all read it::

    blobs/sha256/<diff_id hex>    each layer once: the uncompressed tar it was imported as
    blobs/sha256/<config hex>     each image's config (the image ID)
    blobs/sha256/<manifest hex>   each image's OCI manifest (layers: ...layer.v1.tar)
    index.json                    OCI index: a manifest per tag (annotated with its name)
    manifest.json                 docker-archive: [{"Config", "RepoTags", "Layers"}]
    oci-layout
    repositories                  legacy {"name": {"tag": top layer}}

Every entry has mtime 0 and root ownership, so saving the same images twice gives the same
bytes. ``fmt="oci"`` leaves out ``manifest.json`` and ``repositories`` (a plain OCI layout).

**Reading** (:func:`skiff.images.archive_load.load_archive`): the archive is spooled to a temp file (blobs come in any
order and ``manifest.json`` last) and indexed, never extracted: members are read by name
through the tar, symlinks and hard links between members are resolved by name inside the
archive (never on the host). Then, as Docker does, ``manifest.json`` wins (docker-archive: the
``<id>/layer.tar`` form of Docker <= 24 and the ``blobs/`` form of 25+); without it,
``index.json`` is read as an OCI layout (nested indexes, the host's platform picked, every blob's
digest and size checked before use). Each layer goes through the safe extractor
(:meth:`ImageStore.import_layer`) and must hash to the diff_id its config names; a layer that is
already present is not read at all.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from skiff.errors import InvalidArgument, NotFound, SkiffError
from skiff.images.imagestore import ImageStore, LayerTar
from skiff.images.reference import parse_reference
from skiff.store.content import validate_digest
from skiff.types.image import ImageRecord

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
LAYER_TYPES = (
    MT_OCI_LAYER,
    MT_OCI_LAYER + "+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
_CHUNK = 1 << 20
_HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI's words for this machine."""
    machine = platform.machine()
    return "linux", _HOST_ARCH.get(machine, machine)


# -- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveImage:
    """One image to save: its record, config bytes and the familiar tags to name it by."""

    record: ImageRecord
    config: bytes
    tags: tuple[str, ...]


@dataclass
class SavePlan:
    """What a save will write, resolved before the first byte goes out (so errors keep their status)."""

    images: list[SaveImage]
    layers: dict[str, LayerTar]  # by diff_id: a layer shared by several images is written once
    fmt: str = "docker"


def resolve_names(store: ImageStore, names: Sequence[str]) -> list[SaveImage]:
    """Docker's rules for which images and tags ``docker save NAME...`` writes.

    ``name:tag`` -> that image under that tag; a bare ``name`` -> every tag of that repository
    (or, with none, an image ID prefix); an ID or ``name@digest`` -> the image, untagged.
    """
    order: list[str] = []
    tags: dict[str, list[str]] = {}
    records: dict[str, ImageRecord] = {}

    def add(rec: ImageRecord, tag: str | None) -> None:
        if rec.id not in records:
            records[rec.id] = rec
            order.append(rec.id)
            tags[rec.id] = []
        if tag and tag not in tags[rec.id]:
            tags[rec.id].append(tag)

    for name in names:
        ref = None
        try:
            ref = parse_reference(name, default_tag=False)
        except InvalidArgument:
            pass  # an ID (64 hex) or garbage: store.get decides
        if ref is None or ref.digest is not None or ref.name() == "sha256":
            add(store.get(name), None)  # "sha256:<id>" parses as repository sha256, tag <id>
            continue
        if ref.tag is None:
            repo = ref.name()
            found = [r for r in store.list() for t in r.repo_tags if t.rpartition(":")[0] == repo]
            if found:
                for rec in found:
                    for t in rec.repo_tags:
                        if t.rpartition(":")[0] == repo:
                            add(rec, t)
                continue
            add(store.get(name), None)  # an image ID prefix
            continue
        familiar = ref.familiar()
        iid = store.db.resolve_tag(familiar)
        if iid is None:
            raise NotFound(f"No such image: {name}")
        add(store.db.get_image(iid), familiar)
    return [SaveImage(records[i], store.config_blob(i), tuple(tags[i])) for i in order]


def plan_save(
    store: ImageStore, names: Sequence[str], fmt: str = "docker", spool_dir: Path | None = None
) -> SavePlan:
    """Resolve ``names`` and every layer they need (NotFound / DataCorruption raised here)."""
    if fmt not in ("docker", "oci"):
        raise InvalidArgument(f"unknown archive format {fmt!r}: choose docker or oci")
    images = resolve_names(store, names)
    layers: dict[str, LayerTar] = {}
    for img in images:
        for diff_id, chain in zip(img.record.diff_ids, img.record.chain_ids, strict=True):
            if diff_id not in layers:
                layers[diff_id] = store.exact_layer(chain, diff_id, spool_dir)
    return SavePlan(images, layers, fmt)


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def blob_path(digest: str) -> str:
    return f"blobs/sha256/{_hex(digest)}"


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _TarWriter:
    """A minimal streaming tar writer: headers from tarfile, contents copied through as they come."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def _header(self, name: str, kind: bytes, size: int, mode: int) -> None:
        ti = tarfile.TarInfo(name)
        ti.type, ti.size, ti.mode, ti.mtime = kind, size, mode, 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        self._out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self, size: int) -> None:
        rest = size % tarfile.BLOCKSIZE
        if rest:
            self._out.write(tarfile.NUL * (tarfile.BLOCKSIZE - rest))

    def directory(self, name: str) -> None:
        self._header(name.rstrip("/") + "/", tarfile.DIRTYPE, 0, 0o755)

    def file(self, name: str, data: bytes) -> None:
        self._header(name, tarfile.REGTYPE, len(data), 0o644)
        self._out.write(data)
        self._pad(len(data))

    def stream(self, name: str, size: int, chunks: Iterator[bytes]) -> None:
        self._header(name, tarfile.REGTYPE, size, 0o644)
        written = 0
        for chunk in chunks:
            self._out.write(chunk)
            written += len(chunk)
        if written != size:
            raise SkiffError(f"{name}: wrote {written} bytes, expected {size}")
        self._pad(size)

    def close(self) -> None:
        self._out.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))


def _manifest(img: SaveImage, layers: dict[str, LayerTar]) -> bytes:
    return _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": img.record.id, "size": len(img.config)},
            "layers": [
                {"mediaType": MT_OCI_LAYER, "digest": d, "size": layers[d].size} for d in img.record.diff_ids
            ],
        }
    )


def write_archive(plan: SavePlan, out: IO[bytes]) -> None:
    """Stream the archive for ``plan`` into ``out`` (see the module docstring for the layout)."""
    w = _TarWriter(out)
    w.directory("blobs")
    w.directory("blobs/sha256")
    written: set[str] = set()
    for img in plan.images:
        for diff_id in img.record.diff_ids:
            if diff_id in written:
                continue
            layer = plan.layers[diff_id]
            w.stream(blob_path(diff_id), layer.size, layer.chunks())
            written.add(diff_id)
    index: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for img in plan.images:
        if img.record.id not in written:
            w.file(blob_path(img.record.id), img.config)
            written.add(img.record.id)
        manifest = _manifest(img, plan.layers)
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        if mdigest not in written:
            w.file(blob_path(mdigest), manifest)
            written.add(mdigest)
        desc: dict[str, Any] = {
            "mediaType": MT_OCI_MANIFEST,
            "digest": mdigest,
            "size": len(manifest),
            "platform": {"architecture": img.record.architecture, "os": img.record.os},
        }
        if not img.tags:
            index.append(desc)
        for tag in img.tags:
            ref = parse_reference(tag)
            annotations = {ANNOTATION_IMAGE_NAME: ref.canonical(), ANNOTATION_REF_NAME: ref.tag or "latest"}
            index.append({**desc, "annotations": annotations})
            if img.record.diff_ids:
                repositories.setdefault(ref.name(), {})[ref.tag or "latest"] = _hex(img.record.diff_ids[-1])
        docker_manifest.append(
            {
                "Config": blob_path(img.record.id),
                "RepoTags": list(img.tags) or None,
                "Layers": [blob_path(d) for d in img.record.diff_ids],
            }
        )
    w.file("index.json", _json_bytes({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index}))
    if plan.fmt == "docker":
        w.file("manifest.json", _json_bytes(docker_manifest))
    w.file("oci-layout", OCI_LAYOUT)
    if plan.fmt == "docker" and repositories:
        w.file("repositories", _json_bytes(repositories))
    w.close()


# -- reading: the documents --------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a docker-archive's ``manifest.json``."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (the fields skiff uses)."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: tuple[str, str] | None = None  # (os, architecture)


@dataclass(frozen=True)
class OciManifest:
    """An OCI (or Docker v2) image manifest: its config and layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid {what}: {e}") from None


def _str_list(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"invalid {what}: expected a list of strings")
    return tuple(v)


def parse_manifest_json(data: bytes) -> list[ManifestEntry]:
    """A docker-archive ``manifest.json``: ``[{"Config": path, "RepoTags": [...], "Layers": [paths]}]``."""
    obj = _load_json(data, "manifest.json")
    if obj is None:
        raise InvalidArgument("invalid manifest, manifest cannot be null (but can be [])")
    if not isinstance(obj, list):
        raise InvalidArgument("invalid manifest.json: expected a list of images")
    out: list[ManifestEntry] = []
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise InvalidArgument(f"invalid manifest.json: entry {i} is not an object")
        config = item.get("Config")
        if not isinstance(config, str) or not config:
            raise InvalidArgument(f"invalid manifest.json: entry {i} has no Config")
        out.append(
            ManifestEntry(
                config=config,
                repo_tags=_str_list(item.get("RepoTags"), f"manifest.json RepoTags of entry {i}"),
                layers=_str_list(item.get("Layers"), f"manifest.json Layers of entry {i}"),
            )
        )
    return out


def _descriptor(obj: Any, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"invalid {what}: a descriptor must be an object")
    media_type = obj.get("mediaType", "")
    digest = obj.get("digest")
    size = obj.get("size")
    if not isinstance(media_type, str):
        raise InvalidArgument(f"invalid {what}: mediaType must be a string")
    if not isinstance(digest, str):
        raise InvalidArgument(f"invalid {what}: descriptor without a digest")
    validate_digest(digest)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"invalid {what}: descriptor {digest} has no valid size")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidArgument(f"invalid {what}: annotations must map strings to strings")
    plat = obj.get("platform")
    platform_t = None
    if isinstance(plat, dict):
        platform_t = (str(plat.get("os", "")), str(plat.get("architecture", "")))
    return Descriptor(media_type, digest, size, dict(annotations), platform_t)


def parse_index(data: bytes) -> list[Descriptor]:
    """An OCI ``index.json`` (or image index / Docker manifest list blob): its manifests."""
    obj = _load_json(data, "OCI index")
    if not isinstance(obj, dict):
        raise InvalidArgument("invalid OCI index: not a JSON object")
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument("invalid OCI index: schemaVersion must be 2")
    manifests = obj.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument("invalid OCI index: manifests must be a list")
    return [_descriptor(m, "OCI index") for m in manifests]


def parse_oci_manifest(data: bytes) -> OciManifest:
    """An OCI image manifest (or a Docker schema 2 manifest)."""
    obj = _load_json(data, "image manifest")
    if not isinstance(obj, dict):
        raise InvalidArgument("invalid image manifest: not a JSON object")
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument("invalid image manifest: schemaVersion must be 2")
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument("invalid image manifest: layers must be a list")
    return OciManifest(
        _descriptor(obj.get("config"), "image manifest config"),
        tuple(_descriptor(layer, "image manifest layer") for layer in layers),
    )


def tags_from_annotations(annotations: dict[str, str]) -> tuple[str, ...]:
    """The tag an OCI index entry names: containerd's image name, else a ref name that is a reference.

    A bare ``org.opencontainers.image.ref.name`` such as ``latest`` names no repository, so the
    image loads untagged (and its ID is printed), as with ``docker load`` of such a layout.
    """
    for key in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME):
        value = annotations.get(key, "")
        if not value or (key == ANNOTATION_REF_NAME and not any(c in value for c in ":/")):
            continue
        try:
            ref = parse_reference(value)
        except InvalidArgument:
            continue
        if ref.digest is None:
            return (ref.familiar(),)
    return ()
