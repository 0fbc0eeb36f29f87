"""Docker image references: parse, normalise, print (the grammar of distribution/reference).

``busybox`` -> ``docker.io/library/busybox:latest``; ``localhost:5000/a/b@sha256:...`` keeps
its registry and digest. Errors use Docker's words because clients and users match on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skiff.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_ANCHORED_ID_RE = re.compile(r"[a-f0-9]{64}")
_TAG_RE = re.compile(_TAG)

_FORMAT_ERROR = "invalid reference format"


@dataclass(frozen=True)
class Reference:
    """A normalised reference: ``domain``/``path`` with optional ``tag`` and ``digest``."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    def repository(self) -> str:
        """Full name without tag or digest: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    def name(self) -> str:
        """Familiar name without tag or digest: ``busybox``, ``user/app``, ``localhost:5000/app``."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(OFFICIAL_PREFIX) and self.path.count("/") == 1:
                return self.path[len(OFFICIAL_PREFIX) :]
            return self.path
        return self.repository()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        """Short form as Docker prints it: ``busybox:latest``."""
        return self.name() + self._suffix()

    def canonical(self) -> str:
        """Fully qualified form: ``docker.io/library/busybox:latest``."""
        return self.repository() + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag`` (and no digest)."""
        if _TAG_RE.fullmatch(tag) is None:
            raise InvalidArgument(f"{_FORMAT_ERROR}: invalid tag {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def __str__(self) -> str:
        return self.familiar()


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    # The first component is a registry only if it looks like one (has . or :, is localhost, or
    # has upper case, which a repository path cannot) -- Docker's rule.
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, rest = DEFAULT_DOMAIN, name
    else:
        domain, rest = first, name[i + 1 :]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_PREFIX + rest
    return domain, rest


def parse_reference(s: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise ``s``; with ``default_tag``, no tag and no digest means :latest."""
    if not s:
        raise InvalidArgument(_FORMAT_ERROR)
    if _ANCHORED_ID_RE.fullmatch(s):
        raise InvalidArgument(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        if _REFERENCE_RE.fullmatch(s.lower()) is not None:
            raise InvalidArgument(f"{_FORMAT_ERROR}: repository name must be lowercase")
        raise InvalidArgument(_FORMAT_ERROR)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(f"{_FORMAT_ERROR}: repository name must not be more than 255 characters")
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidArgument(f"{_FORMAT_ERROR}: repository name must be lowercase")
    if digest is not None and not digest.startswith("sha256:"):
        raise InvalidArgument(f"{_FORMAT_ERROR}: unsupported digest algorithm in {digest!r}")
    if digest is not None and len(digest) != len("sha256:") + 64:
        raise InvalidArgument(f"{_FORMAT_ERROR}: invalid checksum digest length")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest.lower() if digest else None)


def normalize_tag(s: str) -> str:
    """The familiar ``name:tag`` skiff stores as a tag; rejects digests (a tag cannot hold one)."""
    ref = parse_reference(s)
    if ref.digest is not None:
        raise InvalidArgument(f"refusing to create a tag with a digest reference: {s}")
    return ref.familiar()
