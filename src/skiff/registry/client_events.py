"""What pull and push report as they go, and platform selection in manifest lists.

:class:`Progress` is one line of Docker's progress stream in typed form; the API layer turns it
into ``{"status", "id", "progressDetail", "progress"}`` JSON, the CLI into bars.
"""

from __future__ import annotations

import json
import platform as _platform
from collections.abc import Callable
from dataclasses import dataclass

from skiff.errors import InvalidArgument
from skiff.registry import media
from skiff.store.content import validate_digest


@dataclass(frozen=True)
class Progress:
    """One progress line: ``status`` for ``id`` (a layer's short digest, a tag, or "" for the whole op).

    ``layer`` lines carry Docker's ``progressDetail`` (``{}`` without byte counts); ``current``
    and ``total`` are byte counts for Downloading / Extracting / Pushing.
    """

    status: str
    id: str = ""
    layer: bool = False
    current: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class PushedTag:
    """The end of one tag's push: ``<tag>: digest: <digest> size: <size>`` (and the aux message)."""

    tag: str
    digest: str
    size: int


Emit = Callable[[Progress | PushedTag], None]


def short_id(digest: str) -> str:
    """The 12 hex digits Docker's progress lines name a layer by."""
    return digest.split(":", 1)[-1][:12]


# -- platforms -------------------------------------------------------------------------------------

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


@dataclass(frozen=True)
class Platform:
    """``os/architecture[/variant]`` as OCI writes it."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def normalize_platform(p: Platform) -> Platform:
    """containerd's normalisation: architecture aliases, arm64's default variant v8, arm's v7."""
    arch = _ARCH_ALIASES.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant.lower()
    if arch == "arm64" and variant == "v8":
        variant = ""
    if arch == "arm" and variant == "":
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(p.os.lower(), arch, variant)


def parse_platform(text: str) -> Platform:
    """``linux/amd64``, ``linux/arm64/v8``, ``linux`` (host architecture), ``amd64`` (linux)."""
    parts = [p for p in text.strip().split("/")]
    if not text.strip() or any(not p for p in parts) or len(parts) > 3:
        raise InvalidArgument(f'"{text}": unknown operating system or architecture: invalid argument')
    host = host_platform()
    if len(parts) == 1:
        if parts[0].lower() in ("linux", "windows", "darwin", "freebsd"):
            return normalize_platform(Platform(parts[0], host.architecture))
        return normalize_platform(Platform("linux", parts[0]))
    return normalize_platform(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


def host_platform() -> Platform:
    return normalize_platform(Platform("linux", _platform.machine()))


@dataclass(frozen=True)
class IndexEntry:
    """One manifest of a manifest list / OCI index."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None
    attestation: bool = False


def parse_index_entries(data: bytes) -> list[IndexEntry]:
    """The ``manifests`` of an index (with each one's platform, variant included)."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid manifest list: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise InvalidArgument("invalid manifest list: no manifests")
    out = []
    for m in doc["manifests"]:
        if not isinstance(m, dict):
            raise InvalidArgument("invalid manifest list: an entry is not an object")
        digest = m.get("digest")
        size = m.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument("invalid manifest list: an entry has no digest or size")
        validate_digest(digest)
        plat = m.get("platform")
        p = None
        if isinstance(plat, dict):
            p = Platform(
                str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", "") or "")
            )
        annotations = m.get("annotations") if isinstance(m.get("annotations"), dict) else {}
        attestation = (annotations or {}).get("vnd.docker.reference.type") == "attestation-manifest" or (
            p is not None and p.os == "unknown"
        )
        out.append(IndexEntry(str(m.get("mediaType") or ""), digest, size, p, attestation))
    return out


def select_manifest(entries: list[IndexEntry], want: Platform) -> IndexEntry | None:
    """The entry for ``want``: os and architecture equal; a variant asked for must match, and
    without one the entry with no (or the default) variant wins; the list's order breaks ties."""
    want = normalize_platform(want)
    best: tuple[int, int] | None = None
    chosen = None
    for i, e in enumerate(entries):
        if e.attestation or e.platform is None or e.media_type in media.INDEXES:
            continue
        p = normalize_platform(e.platform)
        if p.os != want.os or p.architecture != want.architecture:
            continue
        if want.variant and p.variant != want.variant:
            continue
        rank = (0 if p.variant == want.variant else 1, i)
        if best is None or rank < best:
            best, chosen = rank, e
    return chosen
