"""COPY and ADD into a mounted image root: Docker's placement rules, ADD's archives and URLs.

Placement (as Docker's classic builder): a directory source copies its *contents*; a file
goes into the destination when that ends with ``/`` or is an existing directory, else it
becomes the destination; relative destinations start at WORKDIR; new files belong to 0:0
unless ``--chown`` names a user (looked up in the image's own passwd/group files). ADD
unpacks a local tar (plain, gzip, bzip2, xz) keeping the archive's owners, and fetches
http(s) URLs (never unpacked).
"""

from __future__ import annotations

import contextlib
import email.message
import os
import posixpath
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path

from skiff.build.context import Source
from skiff.build.fs import Owner, copy_entry, copy_tree, ensure_dir, extract_tar, split
from skiff.errors import InvalidArgument, NotFound
from skiff.fs.scoped import resolve_in_root
from skiff.runtime.user import resolve_groups, resolve_user

DOWNLOAD_LIMIT = 4 * 1024**3
_UNNAMED = "__unnamed__"  # dockerd's name for a download with no name of its own


def resolve_chown(root: Path, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]`` against the image's own passwd and group files.

    Docker's rule: without a group, the user string is also looked up as the group.
    """
    user, _, group = spec.partition(":")
    if not user:
        raise InvalidArgument(f"invalid --chown value {spec!r}: no user")
    try:
        uid = resolve_user(root, user)[0]
        gid = resolve_groups(root, [group or user])[0]
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"unable to convert uid/gid chown string to host mapping: {exc.message}"
        ) from None
    return uid, gid


def copy_into(
    root: Path,
    sources: list[Source],
    dest: str,
    working_dir: str,
    chown: str,
    chmod: int | None,
    add: bool,
    downloads: set[Source],
) -> None:
    """COPY/ADD semantics: directories' contents, files into a directory or as the destination."""
    owner = Owner(*resolve_chown(root, chown)) if chown else Owner()
    into_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if not dest.startswith("/"):
        dest = (working_dir or "/").rstrip("/") + "/" + dest
    path = "/" + "/".join(split(dest))
    for source in sources:
        st = os.stat(source.path) if source.is_dir else os.lstat(source.path)
        if source.is_dir:
            copy_tree(source.path, root, path, owner, chmod)
            continue
        if add and source not in downloads and stat.S_ISREG(st.st_mode) and is_archive(source.path):
            ensure_dir(root, path, owner)
            with open(source.path, "rb") as f:
                extract_tar(f, root, None, path)
            continue
        target = path
        if into_dir or resolve_in_root(root, path).is_dir():
            ensure_dir(root, path, owner)
            target = f"{path.rstrip('/')}/{source.name}"
        copy_entry(source.path, st, root, target, owner, chmod)


def is_archive(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, EOFError, OSError):
        return False


def download(url: str, directory: Path, dest: str) -> Source:
    """ADD <url>: fetch into ``directory`` (mode 0600, mtime from Last-Modified), as dockerd does.

    The file is named after the URL's last path segment, else the response's
    Content-Disposition filename; with neither, a destination directory (``dest`` ending in
    ``/``) is an error, and a file destination gets the placeholder name Docker uses.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "skiff-builder"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            name = _download_name(url, response.headers.get("Content-Disposition", ""))
            if not name and dest.endswith("/"):
                raise InvalidArgument(f"cannot determine filename for source {url}")
            target = directory / (name or _UNNAMED)
            with open(target, "wb") as f:
                total = 0
                while chunk := response.read(1024 * 1024):
                    total += len(chunk)
                    if total > DOWNLOAD_LIMIT:
                        raise InvalidArgument(f"ADD {url}: larger than {DOWNLOAD_LIMIT} bytes")
                    f.write(chunk)
            modified = response.headers.get("Last-Modified")
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode("utf-8", "replace").strip()
        raise NotFound(f"failed to GET {url} with status {exc.code} {exc.reason}: {body}") from None
    except OSError as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise NotFound(f"failed to GET {url}: {reason}") from None
    os.chmod(target, 0o600)
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            stamp = parsedate_to_datetime(modified).timestamp()
            os.utime(target, (stamp, stamp))
    return Source(target, target.name, False)


def _download_name(url: str, disposition: str) -> str:
    """dockerd's getFilenameForDownload: the URL path's base name, else Content-Disposition's."""
    path = urllib.parse.urlparse(url).path
    candidates = [path]
    if disposition:
        message = email.message.Message()
        message["Content-Disposition"] = disposition
        filename = message.get_param("filename", header="Content-Disposition")
        candidates.append(filename if isinstance(filename, str) else "")
    for candidate in candidates:
        name = posixpath.basename(candidate) if candidate and not candidate.endswith("/") else ""
        if name not in ("", ".", ".."):  # never a name that leaves the download directory
            return name
    return ""
