"""What the registry needs to know about a pushed manifest, checked once at PUT.

A manifest is stored byte for byte; this module reads out its kind, what it references (blobs
for an image, child manifests for an index), its ``subject`` and the fields the referrers API
lists. Anything malformed is MANIFEST_INVALID with a message that says which field is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from skiff.registry import media
from skiff.registry.server.errors import RegistryError
from skiff.registry.server.grammar import check_digest

MAX_MANIFEST = 4 * 1024 * 1024  # the spec: registries should take at least 4 MB
_FOREIGN = frozenset(
    {
        media.DOCKER_FOREIGN_LAYER,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor as the referrers API lists it."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class Manifest:
    """A parsed, checked manifest (``content`` is exactly what the client sent)."""

    content: bytes
    media_type: str
    digest: str
    blobs: tuple[str, ...]  # config and layers that must be in the repository
    children: tuple[str, ...]  # manifests an index lists, which must be in the repository
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def is_index(self) -> bool:
        return self.media_type in media.INDEXES


def _invalid(message: str) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", f"manifest invalid: {message}")


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    mt = value.get("mediaType")
    if not isinstance(mt, str) or not mt:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        check_digest(digest)
    except RegistryError as exc:
        raise _invalid(f"{where}.digest: {exc.message}") from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    return value


def _annotations(doc: dict[str, Any]) -> dict[str, str] | None:
    value = doc.get("annotations")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid("annotations must be an object of strings")
    return value or None


def _media_type(content_type: str | None, doc: dict[str, Any]) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    sent = (content_type or "").split(";")[0].strip().lower()
    if sent in (media.DOCKER_MANIFEST_V1, media.DOCKER_MANIFEST_V1_SIGNED) or declared in (
        media.DOCKER_MANIFEST_V1,
        media.DOCKER_MANIFEST_V1_SIGNED,
    ):
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if sent in media.MANIFESTS:
        if declared is not None and declared != sent:
            raise _invalid(f"mediaType {declared!r} does not match Content-Type {sent!r}")
        return sent
    if declared in media.MANIFESTS:
        return declared
    raise _invalid(
        f"unsupported manifest type {declared or sent or '(none)'!r}: "
        f"expected one of {', '.join(sorted(media.MANIFESTS))}"
    )


def parse_manifest(content: bytes, content_type: str | None) -> Manifest:
    """Check ``content`` as a manifest of the kind ``content_type`` (or its mediaType) says."""
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("not a JSON object")
    media_type = _media_type(content_type, doc)
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and (not isinstance(artifact_type, str) or not artifact_type):
        raise _invalid("artifactType must be a non-empty string")
    subject = None
    if doc.get("subject") is not None:
        subject = _descriptor(doc["subject"], "subject")["digest"]
    blobs: list[str] = []
    children: list[str] = []
    if media_type in media.INDEXES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("manifests must be a list")
        for i, entry in enumerate(entries):
            children.append(_descriptor(entry, f"manifests[{i}]")["digest"])
    else:
        config = _descriptor(doc.get("config"), "config")
        blobs.append(config["digest"])
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise _invalid("layers must be a list")
        for i, entry in enumerate(layers):
            layer = _descriptor(entry, f"layers[{i}]")
            # Foreign (non-distributable) layers live elsewhere (their urls): not required here.
            if layer["mediaType"] in _FOREIGN and layer.get("urls"):
                continue
            blobs.append(layer["digest"])
        if artifact_type is None:
            artifact_type = config["mediaType"]
    return Manifest(
        content=content,
        media_type=media_type,
        digest=digest,
        blobs=tuple(dict.fromkeys(blobs)),
        children=tuple(dict.fromkeys(children)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=_annotations(doc),
    )
