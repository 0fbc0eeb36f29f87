"""Volume types: a named volume as the engine keeps it, and a container's resolved mounts."""

from __future__ import annotations

from dataclasses import dataclass

# Docker >= 23 marks the volumes it creates without a name (image VOLUME, ``-v /path``) with
# this label; ``volume prune`` without ``--all`` removes only those.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


@dataclass(frozen=True)
class VolumeRecord:
    """A volume (Docker's ``Volume``). ``labels``/``options`` None: never given (JSON null)."""

    name: str
    driver: str = "local"
    created_at: str = ""  # RFC 3339, seconds, daemon's time zone (as Docker's CreatedAt)
    labels: dict[str, str] | None = None
    options: dict[str, str] | None = None  # local driver: type, device, o

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in (self.labels or {})


@dataclass(frozen=True)
class MountPoint:
    """One resolved mount of a container, as inspect's ``Mounts`` shows it.

    ``type`` is ``volume``, ``bind`` or ``tmpfs``. For a volume ``source`` is its ``_data``
    directory; ``mode`` is the mode string as given (``"ro"``, ``"z"``...), ``"z"`` for a
    local volume given without one, as dockerd shows it.
    """

    type: str
    destination: str
    source: str = ""
    name: str = ""
    driver: str = ""
    mode: str = ""
    rw: bool = True
    propagation: str = ""
    # Created for this container without a name: ``rm -v`` and ``run --rm`` remove it.
    anonymous: bool = False
    # Populate an empty volume from the image's content at ``destination`` when it starts.
    copy_data: bool = False
    # ``-v /host:/x``: a missing host directory is created at start (``--mount`` refuses instead).
    create_source: bool = False
    tmpfs_options: tuple[str, ...] = ()  # size=..., mode=... for type tmpfs
