"""Storage: content store (blobs by digest), overlay snapshotter, SQLite metadata.

On disk under the daemon root (default /var/lib/skiff)::

    content/blobs/sha256/<hex>    immutable blobs (0444), written via content/ingest
    content/ingest/<ref>/         in-flight writes; removed at startup by ContentStore.recover()
    snapshots/<n>/{fs,work}       overlay layers, n a short number
    snapshots/metadata.db         snapshot metadata (own SQLite file, WAL): the snapshotter is
                                  usable on its own (conformance tests) and its transactions never
                                  contend with the engine's
    metadata.db                   images, tags, containers, events (MetadataDB)
"""

from skiff.store.content import BlobInfo, ContentStore, ContentWriter, validate_digest
from skiff.store.metadata import MetadataDB
from skiff.store.snapshots import MountSpec, OverlaySnapshotter, SnapshotInfo, mount_all, unmount

__all__ = [
    "BlobInfo",
    "ContentStore",
    "ContentWriter",
    "MetadataDB",
    "MountSpec",
    "OverlaySnapshotter",
    "SnapshotInfo",
    "mount_all",
    "unmount",
    "validate_digest",
]
