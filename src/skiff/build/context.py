"""The build context: unpacked into a private directory, its Dockerfile, COPY sources, hashes.

A context arrives as a tar (plain, gzip, bzip2 or xz) or as a bare Dockerfile. It is unpacked
with ``fs.extract_tar`` (nothing can land outside the directory), then, as dockerd does, the
Dockerfile is read and ``.dockerignore`` and the Dockerfile are dropped from the context when
``.dockerignore`` excludes them (the client already left out everything else it excludes).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from skiff.build.dockerignore import IgnoreMatcher, read_patterns
from skiff.build.fs import Owner, extract_tar, split, walk
from skiff.errors import InvalidArgument, NotFound
from skiff.fs.scoped import resolve_in_root

MAX_DOCKERFILE = 16 * 1024 * 1024
_WILDCARD = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class Source:
    """One COPY/ADD source after wildcard expansion: host path and the name it is copied as."""

    path: Path
    name: str
    is_dir: bool


class BuildContext:
    """A context directory (owned by one build; the builder deletes it afterwards)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def unpack(cls, body: BinaryIO, root: Path) -> BuildContext:
        """Unpack a request body: a tar, a compressed tar, or a bare Dockerfile."""
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        head = body.read(512)
        body.seek(0)
        if not head:
            return cls(root)
        if _is_archive(body):
            body.seek(0)
            try:
                extract_tar(body, root, Owner())
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise InvalidArgument(f"failed to read the build context: {exc}") from None
            return cls(root)
        body.seek(0)
        data = body.read(MAX_DOCKERFILE + 1)
        if len(data) > MAX_DOCKERFILE:
            raise InvalidArgument("the build context is neither a tar archive nor a Dockerfile")
        (root / "Dockerfile").write_bytes(data)
        return cls(root)

    def read_dockerfile(self, name: str) -> tuple[str, str]:
        """(text, name) of the Dockerfile; Docker's fallback to ``dockerfile`` for the default."""
        wanted = name or "Dockerfile"
        candidates = [wanted] if name and name != "Dockerfile" else ["Dockerfile", "dockerfile"]
        for candidate in candidates:
            rel = "/".join(split(candidate))
            path = resolve_in_root(self.root, rel)
            if rel and path.is_file():
                if path.stat().st_size > MAX_DOCKERFILE:
                    raise InvalidArgument(f"Dockerfile {wanted} is too large")
                return path.read_text(errors="replace"), rel
        raise NotFound(f"Cannot locate specified Dockerfile: {wanted}")

    def drop_ignored(self, dockerfile: str) -> None:
        """Remove ``.dockerignore`` and the Dockerfile when ``.dockerignore`` excludes them."""
        ignore = self.root / ".dockerignore"
        if not ignore.is_file() or ignore.is_symlink():
            return
        matcher = IgnoreMatcher(read_patterns(ignore.read_text(errors="replace")))
        for rel in (".dockerignore", dockerfile):
            if matcher.matches(rel):
                path = resolve_in_root(self.root, rel)
                if path.is_file():
                    path.unlink()

    def sources(self, patterns: list[str], what: str) -> list[Source]:
        """COPY/ADD sources from the context (wildcards expanded), Docker's errors."""
        return resolve_sources(self.root, patterns, what)


def _is_archive(body: BinaryIO) -> bool:
    try:
        with tarfile.open(fileobj=body, mode="r|*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, EOFError, OSError):
        return False


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's ``filepath.Match``: ``*``/``?`` never match ``/``; ``[...]``; ``\\`` escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}")
            body = pattern[i:end]
            if body.startswith("^"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\")
            out.append(f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def resolve_sources(root: Path, patterns: list[str], what: str) -> list[Source]:
    """Sources inside ``root`` (a context or a stage's root filesystem)."""
    out: list[Source] = []
    for pattern in patterns:
        rel = "/".join(split(pattern))
        if any(part == ".." for part in split(rel)):
            rel = os.path.normpath("/" + rel).lstrip("/")
        if _WILDCARD.search(rel):
            regex = _glob_regex(rel)
            for path, st in walk(root):
                if regex.fullmatch(path):
                    out.append(Source(root / path, path.rsplit("/", 1)[-1], stat.S_ISDIR(st.st_mode)))
            continue
        host = resolve_in_root(root, rel)
        if not os.path.lexists(host):
            raise NotFound(
                f"{what} failed: file not found in build context or excluded by .dockerignore: "
                f"stat {rel or '.'}: file does not exist"
            )
        out.append(Source(host, rel.rsplit("/", 1)[-1], host.is_dir()))
    if not out:
        raise InvalidArgument(f"{what} failed: no source files were specified")
    return out


def content_hash(sources: list[Source]) -> str:
    """Docker-style ``file:``/``dir:``/``multi:`` digest of the sources' names, modes and bytes.

    Modification times are left out (as Docker's tarsum does), so a fresh checkout of the
    same files hits the cache.
    """
    digests = [(s, _hash_one(s)) for s in sources]
    if len(digests) == 1:
        source, digest = digests[0]
        return ("dir:" if source.is_dir else "file:") + digest
    h = hashlib.sha256()
    for _, digest in digests:
        h.update(digest.encode())
    return "multi:" + h.hexdigest()


def _hash_one(source: Source) -> str:
    h = hashlib.sha256()
    if not source.is_dir:
        _hash_entry(h, "", source.path, os.stat(source.path))
        return h.hexdigest()
    for rel, st in walk(source.path):
        _hash_entry(h, rel, source.path / rel, st)
    return h.hexdigest()


def _hash_entry(h: hashlib._Hash, rel: str, path: Path, st: os.stat_result) -> None:
    kind = stat.S_IFMT(st.st_mode)
    h.update(f"{rel}\0{kind:o}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
    if stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(path).encode() + b"\0")
    elif stat.S_ISREG(st.st_mode):
        h.update(f"{st.st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                h.update(chunk)
