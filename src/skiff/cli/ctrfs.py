"""cp, diff, export, commit: a container's files.

``cp`` follows the docker CLI's ``cp.go`` and moby's ``archive/copy.go``: the daemon only
archives a path and extracts a tar into a directory; which names the tar carries and where it
is extracted (the destination or its parent) is decided here from both sides' stat. Local
extraction resolves paths with the destination directory as the root (skiff.fs), so a tar from
a hostile container cannot write outside it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import click

from skiff.cli.context import CliContext, pass_cli
from skiff.cli.streamio import write_archive
from skiff.client import Client
from skiff.errors import InvalidArgument, SkiffError
from skiff.fs.archive import GO_MODE_DIR, GO_MODE_SYMLINK, ExtractOptions, archive_source, extract_archive
from skiff.fs.overlay import KIND_LETTERS
from skiff.fs.scoped import RootView
from skiff.units import human_size

_CHUNK = 1 << 16
_GO_MODE_TYPE = 0xFFF00000  # Go's os.ModeType and friends: anything but a regular file


# -- paths, as moby's archive package treats them ---------------------------------------------


def preserve_trailing(cleaned: str, original: str) -> str:
    """``PreserveTrailingDotOrSeparator``: keep a trailing ``/.`` or ``/`` of ``original``."""
    if not _current_dir(cleaned) and _current_dir(original):
        if not cleaned.endswith("/"):
            cleaned += "/"
        cleaned += "."
    if not cleaned.endswith("/") and original.endswith("/"):
        cleaned += "/"
    return cleaned


def _current_dir(path: str) -> bool:
    return _base(path) == "."


def _base(path: str) -> str:
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else "/"


def _asserts_dir(path: str) -> bool:
    return path.endswith("/") or _current_dir(path)


def split_dir_entry(path: str) -> tuple[str, str]:
    """``SplitPathDirEntry``: (dir, base) of the cleaned path, a trailing ``.`` kept."""
    cleaned = posixpath.normpath(path)
    if _current_dir(path):
        cleaned = cleaned.rstrip("/") + "/."
    return posixpath.dirname(cleaned) or ".", posixpath.basename(cleaned) or "/"


def rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """``GetRebaseName``: the resolved path keeping ``path``'s trailing ``/.`` or ``/``, and the
    name the archive must use if resolving changed the last component."""
    if _current_dir(path) and not _current_dir(resolved):
        resolved += "/."
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return resolved, _base(path) if _base(path) != _base(resolved) else ""


def split_cp_arg(arg: str) -> tuple[str, str]:
    """``container:path`` -> (container, path); a local path gives ("", path).

    As the docker CLI: an absolute path or one starting with ``.`` is always local.
    """
    if arg.startswith("/"):
        return "", arg
    ctr, sep, path = arg.partition(":")
    if not sep or ctr.startswith("."):
        return "", arg
    return ctr, path


@dataclass(frozen=True)
class CopyInfo:
    """moby's ``CopyInfo``: one side of a copy."""

    path: str
    exists: bool = False
    is_dir: bool = False
    rebase: str = ""


def local_source(path: str, follow: bool) -> CopyInfo:
    """``CopyInfoSourcePath``: symlinks before the last ``/`` resolved, the last only if ``follow``."""
    if follow:
        resolved, rebase = rebase_name(path, os.path.realpath(path))
    else:
        head, _, base = path.rpartition("/")
        resolved = os.path.realpath(head or "/").rstrip("/") + "/" + base
        rebase = _base(path) if path.endswith("/") and _base(path) != _base(resolved) else ""
    try:
        st = os.lstat(resolved)
    except OSError as exc:
        raise InvalidArgument(f"lstat {resolved}: {exc.strerror.lower() if exc.strerror else exc}") from None
    return CopyInfo(resolved, True, stat.S_ISDIR(st.st_mode), rebase)


def local_destination(path: str) -> CopyInfo:
    """``CopyInfoDestinationPath``: a final symlink is followed (10 hops); a missing path needs
    an existing parent directory."""
    original = path
    hops = 0
    while True:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return _missing_destination(path)
        if not stat.S_ISLNK(st.st_mode):
            return CopyInfo(path, True, stat.S_ISDIR(st.st_mode))
        hops += 1
        if hops > 10:
            raise InvalidArgument(f"too many symlinks in {original}")
        target = os.readlink(path)
        if not target.startswith("/"):
            target = posixpath.join(split_dir_entry(path)[0], target)
        path = target


def _missing_destination(path: str) -> CopyInfo:
    parent, _ = split_dir_entry(path)
    try:
        pst = os.stat(parent)
    except OSError as exc:
        raise InvalidArgument(f"stat {parent}: {(exc.strerror or str(exc)).lower()}") from None
    if not stat.S_ISDIR(pst.st_mode):
        raise InvalidArgument("not a directory")
    return CopyInfo(path)


def prepare_copy(src: CopyInfo, src_base: str, dst: CopyInfo) -> tuple[str, str]:
    """``PrepareArchiveCopy``: (directory to extract into, first name component the tar must have).

    ``src_base``: the first component the source archive has now.
    """
    dst_dir, dst_base = split_dir_entry(dst.path)
    if dst.exists and dst.is_dir:
        return dst.path, src.rebase or src_base
    if dst.exists and src.is_dir:
        raise InvalidArgument("cannot copy directory")
    if not dst.exists and not src.is_dir and _asserts_dir(dst.path):
        raise InvalidArgument("no such directory")
    return dst_dir, dst_base


# -- streams ----------------------------------------------------------------------------------


class _Counted:
    """Chunks passed through, their bytes counted (the summary line reports them)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.total = 0
        self._buf = b""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.total += len(chunk)
            yield chunk

    def read(self, n: int = -1) -> bytes:
        """File-like view (for tarfile)."""
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self.total += len(chunk)
            self._buf += chunk
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


def _produced(produce: Callable[[BinaryIO], None]) -> Iterator[bytes]:
    """Bytes a thread writes (a tar being made), read through a pipe."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with open(w, "wb") as out:
                produce(out)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # raised in the reader below
            errors.append(exc)

    thread = threading.Thread(target=run, name="skiff-cp-tar", daemon=True)
    thread.start()
    with open(r, "rb") as src:
        while chunk := src.read(_CHUNK):
            yield chunk
    thread.join()
    if errors:
        raise errors[0]


def _summary(quiet: bool, size: int, dest: str) -> None:
    if not quiet:
        click.echo(f"Successfully copied {human_size(size)} to {dest}", err=True)


# -- cp ---------------------------------------------------------------------------------------


def copy_from_container(client: Client, ctr: str, src: str, dst: str, follow: bool, quiet: bool) -> None:
    if dst != "-":
        dst = preserve_trailing(os.path.abspath(dst), dst)
        _validate_output_path(dst)
    rebase = ""
    if follow:
        with contextlib.suppress(SkiffError):
            info = client.stat_path(ctr, src)
            if int(info.get("mode", 0)) & GO_MODE_SYMLINK:
                target = str(info.get("linkTarget", ""))
                if not target.startswith("/"):
                    target = posixpath.join(split_dir_entry(src)[0], target)
                src, rebase = rebase_name(src, target)
    info, chunks = client.get_archive(ctr, src)
    if dst == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return
    counted = _Counted(chunks)
    source = CopyInfo(src, True, bool(int(info.get("mode", 0)) & GO_MODE_DIR), rebase)
    served = str(info.get("name") or _base(src))  # the first name component the daemon wrote
    dst_dir, name = prepare_copy(source, served, local_destination(dst))
    with RootView(Path(dst_dir)) as view, view.root_entry() as root:
        options = ExtractOptions(no_overwrite_dir_non_dir=True, chown=False, rebase=(served, name))
        extract_archive(view, root, counted, options)  # type: ignore[arg-type]
    _summary(quiet, counted.total, dst)


def _validate_output_path(path: str) -> None:
    parent = posixpath.dirname(posixpath.normpath(path))
    if parent and not os.path.exists(parent):
        raise InvalidArgument(f'invalid output path: directory "{parent}" does not exist')
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise InvalidArgument(f'invalid output path: "{path}" must be a directory or a regular file')


def copy_to_container(
    client: Client, src: str, ctr: str, dst: str, follow: bool, copy_uid_gid: bool, quiet: bool
) -> None:
    if src != "-":
        src = preserve_trailing(os.path.abspath(src), src)
    target = CopyInfo(dst)
    # A failed stat is ignored: the parent may exist, and the extraction says what is wrong.
    with contextlib.suppress(SkiffError):
        info = client.stat_path(ctr, dst)
        if int(info.get("mode", 0)) & GO_MODE_SYMLINK:
            link = str(info.get("linkTarget", ""))
            if not link.startswith("/"):
                link = posixpath.join(split_dir_entry(dst)[0], link)
            target = CopyInfo(link)
            info = client.stat_path(ctr, link)
        mode = int(info.get("mode", 0))
        if mode & _GO_MODE_TYPE and not mode & GO_MODE_DIR:
            raise InvalidArgument(f'destination "{ctr}:{dst}" must be a directory or a regular file')
        target = CopyInfo(target.path, True, bool(mode & GO_MODE_DIR))
    if src == "-":
        if not target.is_dir:
            raise InvalidArgument(f'destination "{ctr}:{dst}" must be a directory')
        stdin = sys.stdin.buffer
        content: Iterator[bytes] = iter(lambda: stdin.read(_CHUNK), b"")
        where = target.path
    else:
        source = local_source(src, follow)
        where, name = prepare_copy(source, split_dir_entry(source.path)[1], target)

        def produce(out: BinaryIO) -> None:
            with RootView(Path("/")) as view:
                archive = archive_source(view, source.path)
                try:
                    archive.rebase = name
                    archive.write(out)
                finally:
                    archive.close()

        content = _produced(produce)
    counted = _Counted(content)
    client.put_archive(ctr, where, iter(counted), copy_uid_gid=copy_uid_gid)
    _summary(quiet, counted.total, f"{ctr}:{target.path}")


@click.command("cp")
@click.option(
    "-a", "--archive", "copy_uid_gid", is_flag=True, help="Archive mode (copy all uid/gid information)"
)
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    default=None,
    help="Suppress progress output during copy (default when not a terminal)",
)
@click.argument("source")
@click.argument("destination")
@pass_cli
def cp(
    obj: CliContext, copy_uid_gid: bool, follow_link: bool, quiet: bool | None, source: str, destination: str
) -> None:
    """Copy files/folders between a container and the local filesystem.

    \b
    skiff cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
    skiff cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH

    '-' as the source reads a tar archive from stdin and extracts it into a directory in the
    container; '-' as the destination streams a tar archive of the container path to stdout.
    """
    if not source:
        raise InvalidArgument("source can not be empty")
    if not destination:
        raise InvalidArgument("destination can not be empty")
    if quiet is None:
        quiet = not sys.stdout.isatty()
    src_ctr, src_path = split_cp_arg(source)
    dst_ctr, dst_path = split_cp_arg(destination)
    if src_ctr and dst_ctr:
        raise InvalidArgument("copying between containers is not supported")
    if src_ctr:
        copy_from_container(obj.client, src_ctr, src_path, dst_path, follow_link, quiet)
    elif dst_ctr:
        copy_to_container(obj.client, src_path, dst_ctr, dst_path, follow_link, copy_uid_gid, quiet)
    else:
        raise InvalidArgument("must specify at least one container source")


# -- diff, export, commit --------------------------------------------------------------------


@click.command("diff")
@click.argument("container")
@pass_cli
def diff(obj: CliContext, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem.

    \b
    A  a file or directory was added
    D  a file or directory was deleted
    C  a file or directory was changed
    """
    for change in obj.client.container_changes(container):
        click.echo(f"{KIND_LETTERS.get(int(change.get('Kind', 0)), '?')} {change.get('Path', '')}")


@click.command("export")
@click.option("-o", "--output", help="Write to a file, instead of STDOUT")
@click.argument("container")
@pass_cli
def export(obj: CliContext, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    write_archive(obj.client.export_container(container), output, "export container")


@click.command("commit")
@click.option("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option(
    "-c", "--change", "changes", multiple=True, help="Apply Dockerfile instruction to the created image"
)
@click.option("-m", "--message", default="", help="Commit message")
@click.option("-p", "pause_flag", is_flag=True, help="Pause container during commit (the default)")
@click.option(
    "--pause", type=click.BOOL, default=True, help="Pause container during commit (--pause=false: do not)"
)
@click.argument("container")
@click.argument("repository", required=False)
@pass_cli
def commit(
    obj: CliContext,
    author: str,
    changes: tuple[str, ...],
    message: str,
    pause_flag: bool,
    pause: bool,
    container: str,
    repository: str | None,
) -> None:
    """Create a new image from a container's changes.

    \b
    skiff commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]
    """
    repo, tag = "", ""
    if repository:
        last = repository.rsplit("/", 1)[-1]
        repo, tag = repository.rsplit(":", 1) if ":" in last else (repository, "")
    result = obj.client.commit(
        container,
        repo or None,
        tag or None,
        message=message,
        author=author,
        pause=pause or pause_flag,
        changes=list(changes),
    )
    click.echo(str(result.get("Id", "")))


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for command in (cp, diff, export, commit):
        group.add_command(command)
