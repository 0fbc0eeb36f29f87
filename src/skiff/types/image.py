"""Image types: the OCI image configuration and skiff's record of an image."""

from __future__ import annotations

from dataclasses import dataclass, field

from skiff.types.container import HealthConfig


@dataclass(frozen=True)
class ImageConfig:
    """The ``config`` section of an OCI image configuration (what a container inherits).

    Lists are tuples so the record stays immutable; ``None`` means "not set" (which
    differs from empty for ``entrypoint``/``cmd``, as in Docker).
    """

    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: HealthConfig | None = None
    shell: tuple[str, ...] | None = None
    on_build: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of an image's history (a build step, an import, a commit)."""

    created: str  # RFC 3339
    created_by: str = ""
    comment: str = ""
    author: str = ""
    empty_layer: bool = False


@dataclass(frozen=True)
class HistoryItem:
    """One row of ``docker history``: a history entry, the local image that step made, its layer.

    ``image_id`` is "" when no local image is known for the step (Docker shows ``<missing>``);
    ``size`` is the bytes of the layer the step added (0 for a config-only step).
    """

    image_id: str
    created: str  # RFC 3339
    created_by: str = ""
    comment: str = ""
    size: int = 0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageRecord:
    """An image as skiff stores it.

    ``id`` is ``sha256:<hex>`` of the canonical OCI config JSON blob in the content
    store (as Docker: the image ID is the config digest). ``diff_ids`` are the
    uncompressed layer digests, bottom first; ``chain_ids`` identify the committed
    snapshots that hold those layers (OCI chain IDs), bottom first.
    """

    id: str
    config: ImageConfig
    diff_ids: tuple[str, ...]
    chain_ids: tuple[str, ...]
    created: str
    author: str = ""
    comment: str = ""
    architecture: str = "amd64"
    os: str = "linux"
    history: tuple[HistoryEntry, ...] = ()
    size: int = 0  # bytes of all layers, uncompressed
    parent: str = ""
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    manifest_digest: str = ""
