"""The small grammars of the distribution API: names, tags, digests, Content-Range, pagination.

Pure functions, each raising :class:`RegistryError` with the spec's code on bad input.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from skiff.registry.server.errors import RegistryError

# The spec's <name> grammar, and the 255-character limit clients put on host + "/" + name.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
MAX_NAME = 255
# Content-Range of a chunk: the spec's "<start>-<end>" (inclusive); "bytes " and "/<total>" as
# some clients send them are tolerated.
_CHUNK_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")
# A page is never longer than this, whatever ``n`` asks (the Link header says where to go on).
MAX_PAGE = 1000


def check_name(name: str) -> str:
    """A repository name, or NAME_INVALID."""
    if len(name) > MAX_NAME or _NAME_RE.fullmatch(name) is None:
        raise RegistryError(
            "NAME_INVALID",
            f"invalid repository name {name!r}: lowercase letters, digits and separators "
            "(., _, __, -), path components joined by /, at most 255 characters",
            detail={"name": name},
        )
    return name


def is_tag(reference: str) -> bool:
    return _TAG_RE.fullmatch(reference) is not None


def check_tag(tag: str) -> str:
    """A tag, or MANIFEST_INVALID (the spec has no code of its own for a bad tag)."""
    if not is_tag(tag):
        raise RegistryError(
            "MANIFEST_INVALID",
            f"invalid tag {tag!r}: up to 128 of [A-Za-z0-9_.-], not starting with . or -",
            detail={"tag": tag},
        )
    return tag


def is_digest(reference: str) -> bool:
    """True for anything shaped like a digest (``alg:encoded``), supported or not."""
    return ":" in reference


def check_digest(digest: str) -> str:
    """A sha256 digest (the one algorithm this registry stores), or DIGEST_INVALID."""
    if _SHA256_RE.fullmatch(digest) is not None:
        return digest
    if _DIGEST_RE.fullmatch(digest) is not None and not digest.startswith("sha256:"):
        raise RegistryError(
            "DIGEST_INVALID",
            f"unsupported digest algorithm in {digest!r}: this registry stores sha256 only",
            detail={"digest": digest},
        )
    raise RegistryError(
        "DIGEST_INVALID",
        f"invalid digest {digest!r}: expected sha256: and 64 lowercase hex digits",
        detail={"digest": digest},
    )


@dataclass(frozen=True)
class ChunkRange:
    """An inclusive byte range of an upload chunk."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_chunk_range(header: str) -> ChunkRange:
    """Content-Range of a PATCH/PUT chunk (``0-1023``); BLOB_UPLOAD_INVALID when malformed."""
    m = _CHUNK_RANGE_RE.fullmatch(header.strip())
    if m is None or int(m.group(2)) < int(m.group(1)):
        raise RegistryError(
            "BLOB_UPLOAD_INVALID",
            f"invalid Content-Range {header!r}: expected <start>-<end>, inclusive, start <= end",
            detail={"Content-Range": header},
        )
    return ChunkRange(int(m.group(1)), int(m.group(2)))


def upload_range(size: int) -> str:
    """The ``Range`` header of an upload holding ``size`` bytes (distribution's "0-0" when empty)."""
    return f"0-{max(size - 1, 0)}"


def parse_page_size(value: str | None) -> int | None:
    """The ``n`` query parameter: None when absent; a non-negative int, capped at MAX_PAGE."""
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise RegistryError(
            "UNSUPPORTED", f"invalid n={value!r}: expected a non-negative integer", status=400
        )
    return min(int(value), MAX_PAGE)


@dataclass(frozen=True)
class Page:
    """One page of a sorted list, and the ``last`` to ask for the next one (None at the end)."""

    items: list[str]
    next_last: str | None


def paginate(items: Sequence[str], n: int | None, last: str | None) -> Page:
    """The spec's ``n``/``last`` rules over ``items`` (sorted ascending, as Go's sort.Strings).

    Items strictly after ``last``; at most ``n`` of them (all when n is None, none when 0).
    A next page is announced only when ``n`` was given and more items remain.
    """
    start = bisect.bisect_right(items, last) if last else 0
    rest = items[start:]
    if n is None:
        return Page(list(rest), None)
    page = list(rest[:n])
    more = n > 0 and len(rest) > n
    return Page(page, page[-1] if more else None)


def next_link(path: str, n: int, last: str) -> str:
    """RFC 5988 Link header value pointing at the next page."""
    return f'<{path}?{urlencode({"last": last, "n": n})}>; rel="next"'
