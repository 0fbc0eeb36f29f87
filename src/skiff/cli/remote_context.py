"""Build contexts from a git repository or a URL, fetched by the client as the docker CLI does.

With the classic builder the docker CLI clones a git context itself (``git init``, ``fetch
--depth 1 origin <ref>``, ``checkout``, submodules) and sends the checkout like a local
directory; a URL context is downloaded and sent as it is when it is an archive, else as the
Dockerfile of an otherwise empty context. ``skiff build`` does the same, so skiffd never runs
git or fetches a context for a client.

Git URLs are the docker CLI's: ``git://``, ``git@``, ``github.com/`` and http(s) URLs whose path
ends in ``.git``; ``#ref:subdir`` picks a branch, tag or commit and a directory in the
checkout (without a ref: the remote's default branch). The subdirectory is resolved inside the
checkout (its symlinks cannot leave it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import InvalidArgument, SkiffError
from skiff.fs.scoped import resolve_in_root

_GIT_PREFIXES = ("git://", "github.com/", "git@")
_GIT_PATH = re.compile(r"\.git(?:#.+)?$")
CONTEXT_LIMIT = 4 * 1024**3


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def is_git_url(source: str) -> bool:
    """The docker CLI's test: a git transport prefix, or an http(s) URL ending in ``.git[#...]``."""
    return source.startswith(_GIT_PREFIXES) or (is_url(source) and bool(_GIT_PATH.search(source)))


@dataclass(frozen=True)
class GitSource:
    """Where to fetch from, which ref (empty: the remote's HEAD) and which directory to build."""

    remote: str
    ref: str = ""
    subdir: str = ""


def parse_git_url(source: str) -> GitSource:
    """``remote#ref:subdir`` as the docker CLI splits it (``github.com/x/y`` means https)."""
    if not source.startswith(("git://", "git@", "http://", "https://")):
        source = "https://" + source
    if source.startswith("git@"):  # scp-like syntax, not a URL
        remote, _, fragment = source.partition("#")
    else:
        parts = urllib.parse.urlsplit(source)
        remote, fragment = urllib.parse.urlunsplit(parts._replace(fragment="")), parts.fragment
    ref, _, subdir = fragment.partition(":")
    if ref.startswith("-"):
        raise InvalidArgument(f"invalid refspec: {ref}")
    return GitSource(remote, ref, subdir)


def _git(directory: Path, *args: str) -> None:
    # As dockerd and the docker CLI: no file:// submodules from a remote repository, and no
    # transports a URL names for itself (ext::, fd::).
    command = ["git", "-c", "protocol.file.allow=never", *args]
    env = {**os.environ, "GIT_PROTOCOL_FROM_USER": "0"}
    try:
        result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SkiffError("unable to prepare context: unable to find 'git': install git") from None
    if result.returncode != 0:
        raise SkiffError(
            f"unable to prepare context: unable to 'git clone' to temporary context directory: "
            f"git {args[0]}: {(result.stderr or result.stdout).strip()}"
        )


@contextlib.contextmanager
def git_checkout(source: str) -> Iterator[Path]:
    """A shallow checkout of ``source`` in a temporary directory (removed afterwards); yields
    the context directory (the checkout or its ``subdir``)."""
    repo = parse_git_url(source)
    root = Path(tempfile.mkdtemp(prefix="skiff-build-git-"))
    try:
        _git(root, "init", "--quiet")
        _git(root, "remote", "add", "origin", repo.remote)
        _git(root, "fetch", "--quiet", "--depth", "1", "origin", "--", repo.ref or "HEAD")
        _git(root, "checkout", "--quiet", "FETCH_HEAD")
        _git(root, "submodule", "--quiet", "update", "--init", "--recursive", "--depth=1")
        context = root
        if repo.subdir:
            context = resolve_in_root(root, repo.subdir)
            if not context.is_dir():
                raise SkiffError(
                    f"unable to prepare context: error setting git context, not a directory: {repo.subdir}"
                )
        yield context
    finally:
        shutil.rmtree(root, ignore_errors=True)


def download_context(url: str) -> bytes:
    """The body at ``url`` (an archive, or a Dockerfile); errors as the docker CLI words them."""
    request = urllib.request.Request(url, headers={"User-Agent": "skiff"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data: bytes = response.read(CONTEXT_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode("utf-8", "replace").strip()
        raise SkiffError(
            f"unable to prepare context: unable to download remote context {url}: "
            f"failed to GET {url} with status {exc.code} {exc.reason}: {body}"
        ) from None
    except OSError as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise SkiffError(
            f"unable to prepare context: unable to download remote context {url}: {reason}"
        ) from None
    if len(data) > CONTEXT_LIMIT:
        raise InvalidArgument(f"unable to prepare context: {url} is larger than {CONTEXT_LIMIT} bytes")
    return data
