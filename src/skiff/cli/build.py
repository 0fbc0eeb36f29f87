"""``skiff build`` (docker build's flags, classic builder output) and ``skiff builder prune``.

The context is packed here, as the docker CLI does: a directory becomes a tar without what
``.dockerignore`` excludes (docker-py's ``exclude_paths``, which keeps the Dockerfile and the
``.dockerignore`` for the daemon to read); a Dockerfile from outside the context or from
stdin (``-f -``) is added under a random name that ``.dockerignore`` then lists, so it never
lands in the image. ``-`` as the context is a tar (plain or compressed) or a bare Dockerfile.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
from docker.utils.build import create_archive, exclude_paths
from rich.console import Console

from skiff.build.dockerignore import read_patterns
from skiff.cli.context import CliContext, ExitCode, pass_cli
from skiff.cli.remote_context import download_context, git_checkout, is_git_url, is_url
from skiff.errors import InvalidArgument, SkiffError
from skiff.units import human_size, parse_size


def _pairs(values: tuple[str, ...], what: str, from_env: bool = False) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for value in values:
        key, has_value, val = value.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {value!r}")
        if has_value:
            out[key] = val
        elif from_env:  # docker: --build-arg NAME takes NAME from the environment, if set
            out[key] = os.environ.get(key)
        else:
            out[key] = ""
    return out


def _dockerfile_text(
    dockerfile: str | None, context_dir: Path, base: Path | None = None
) -> tuple[str | None, str | None]:
    """(name in the context, contents to add) as docker-py's ``process_dockerfile`` decides.

    A relative ``dockerfile`` is relative to ``base`` (default: the working directory).
    """
    if dockerfile is None:
        return None, None
    if dockerfile == "-":
        return f".dockerfile.{secrets.token_hex(10)}", sys.stdin.read()
    path = Path(dockerfile)
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    try:
        rel = path.resolve().relative_to(context_dir.resolve())
    except ValueError:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SkiffError(f"unable to prepare context: {exc.strerror}: {dockerfile}") from None
        return f".dockerfile.{secrets.token_hex(10)}", text
    return rel.as_posix(), None


def pack_context(source: str, dockerfile: str | None) -> tuple[IO[bytes], str | None]:
    """The context tar to send and the ``dockerfile`` parameter for it."""
    if source == "-":
        if dockerfile == "-":
            raise InvalidArgument("invalid argument: can't use stdin for both build context and dockerfile")
        return _from_bytes(sys.stdin.buffer.read(), dockerfile)
    if is_git_url(source):
        with git_checkout(source) as checkout:  # -f is relative to the checkout, as docker's
            return _pack_directory(checkout, dockerfile, base=checkout)
    if is_url(source):
        return _from_bytes(download_context(source), dockerfile)
    context_dir = Path(source)
    if not context_dir.is_dir():
        raise InvalidArgument(f'unable to prepare context: path "{source}" not found')
    return _pack_directory(context_dir, dockerfile)


def _from_bytes(data: bytes, dockerfile: str | None) -> tuple[IO[bytes], str | None]:
    """A context given whole (stdin, a URL): an archive as it is, else a lone Dockerfile."""
    if _is_tar(data):
        return io.BytesIO(data), dockerfile
    if dockerfile == "-":
        raise InvalidArgument("unable to prepare context: build context is not an archive")
    return _single_file_tar("Dockerfile", data), None


def _pack_directory(
    context_dir: Path, dockerfile: str | None, base: Path | None = None
) -> tuple[IO[bytes], str | None]:
    name, contents = _dockerfile_text(dockerfile, context_dir, base)
    ignore = context_dir / ".dockerignore"
    patterns = read_patterns(ignore.read_text()) if ignore.is_file() else []
    files = sorted(exclude_paths(str(context_dir), list(patterns), dockerfile=name))
    extra: list[tuple[str, str]] = []
    if contents is not None and name is not None:
        extra = [(".dockerignore", "\n".join([*(patterns or [".dockerignore"]), name])), (name, contents)]
    out = tempfile.TemporaryFile()
    create_archive(str(context_dir), files=files, fileobj=out, extra_files=extra)
    out.seek(0)
    return out, name


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, EOFError, OSError):
        return False


def _single_file_tar(name: str, data: bytes) -> IO[bytes]:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def show_build(messages: Iterator[dict[str, Any]], quiet: bool) -> str | None:
    """Print the build's stream like the docker CLI; returns the image ID.

    On a terminal the current step stays on a status line (rich) while output scrolls above
    it. An ``errorDetail`` line prints its message and exits with its code (docker: the RUN's
    exit status).
    """
    image_id: str | None = None
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    live = console.is_terminal and not quiet
    status = console.status("Building", spinner="dots") if live else None
    if status is not None:
        status.start()
    try:
        for msg in messages:
            if "errorDetail" in msg or "error" in msg:
                detail = msg.get("errorDetail") or {}
                message = str(detail.get("message") or msg.get("error") or "unknown error")
                if status is not None:
                    status.stop()
                click.echo(message, err=True)
                raise ExitCode(int(detail.get("code") or 1))
            aux = msg.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
            text = msg.get("stream")
            if quiet or not isinstance(text, str):
                continue
            if status is not None:
                if text.startswith("Step "):
                    status.update(text.strip())
                console.out(text, end="")
            else:
                click.echo(text, nl=False)
    finally:
        if status is not None:
            status.stop()
    return image_id


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag in the 'name:tag' format")
@click.option(
    "-f", "--file", "dockerfile", help="Name of the Dockerfile (default: 'PATH/Dockerfile'; - for stdin)"
)
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables")
@click.option("--label", "labels", multiple=True, help="Set metadata for an image")
@click.option("--target", default="", help="Set the target build stage to build")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("--network", default="", help="Set the networking mode for the RUN instructions during build")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success")
@click.option("--iidfile", help="Write the image ID to the file")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the image (accepted)")
@click.option("--rm", "rm", default="true", help="Remove intermediate containers after a successful build")
@click.option("--force-rm", is_flag=True, help="Always remove intermediate containers")
@click.option("--cache-from", multiple=True, help="Images to consider as cache sources")
@click.option("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)")
@click.option("--shm-size", help="Size of /dev/shm")
@click.option("-m", "--memory", help="Memory limit")
@click.option("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
@click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
@click.option("--cpu-period", type=int, help="Limit the CPU CFS (Completely Fair Scheduler) period")
@click.option("--cpu-quota", type=int, help="Limit the CPU CFS (Completely Fair Scheduler) quota")
@click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
@click.option("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.option(
    "--squash", is_flag=True, help="Squash newly built layers into a single new layer (experimental)"
)
@click.option("--progress", default="auto", help="Type of progress output (auto, plain, tty; accepted)")
@click.argument("context")
@pass_cli
def build(obj: CliContext, /, context: str, **opts: Any) -> None:
    """Build an image from a Dockerfile."""
    quiet = bool(opts["quiet"])
    body, dockerfile = pack_context(context, opts["dockerfile"])
    params: dict[str, Any] = {
        "t": list(opts["tags"]),
        "dockerfile": dockerfile or opts["dockerfile"] or "",
        "buildargs": json.dumps(_pairs(opts["build_args"], "build-arg", from_env=True)),
        "labels": json.dumps(_pairs(opts["labels"], "label")),
        "target": opts["target"],
        "nocache": int(opts["no_cache"]),
        "networkmode": opts["network"] or "default",
        "q": int(quiet),
        "pull": int(opts["pull"]),
        "rm": int(str(opts["rm"]).lower() not in ("false", "0")),
        "forcerm": int(opts["force_rm"]),
        "cachefrom": json.dumps(list(opts["cache_from"])),
        "extrahosts": list(opts["add_host"]),
        "version": "1",
    }
    for flag, key in (("shm_size", "shmsize"), ("memory", "memory")):
        if opts[flag]:
            params[key] = parse_size(opts[flag])
    if opts["memory_swap"]:
        params["memswap"] = -1 if opts["memory_swap"] == "-1" else parse_size(opts["memory_swap"])
    for flag, key in (
        ("cpu_shares", "cpushares"),
        ("cpu_period", "cpuperiod"),
        ("cpu_quota", "cpuquota"),
        ("cpuset_cpus", "cpusetcpus"),
        ("cpuset_mems", "cpusetmems"),
        ("platform", "platform"),
    ):
        if opts[flag]:
            params[key] = opts[flag]
    if opts["squash"]:
        params["squash"] = 1
    size = _size(body)
    if not quiet and size is not None:
        click.echo(f"Sending build context to skiffd  {human_size(size)}")
    try:
        image_id = show_build(obj.client.build(body, params), quiet)
    finally:
        body.close()
    if image_id and quiet:
        click.echo(image_id)
    if image_id and opts["iidfile"]:
        Path(opts["iidfile"]).write_text(image_id)


def _size(body: IO[bytes]) -> int | None:
    try:
        position = body.tell()
        end = body.seek(0, os.SEEK_END)
        body.seek(position)
        return end - position
    except (OSError, ValueError):
        return None


@click.group("builder")
def builder() -> None:
    """Manage builds."""


@builder.command("prune")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Remove all unused build cache, not just dangling ones"
)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (accepted)")
@click.option("--keep-storage", help="Amount of disk space to keep for cache (accepted)")
@pass_cli
def builder_prune(
    obj: CliContext, all_: bool, force: bool, filters: tuple[str, ...], keep_storage: str | None
) -> None:
    """Remove build cache."""
    if not force:
        click.confirm(
            "WARNING! This will remove all dangling build cache.\nAre you sure you want to continue?",
            abort=True,
        )
    result = obj.client.prune_builds(all_)
    deleted = result.get("CachesDeleted") or []
    if deleted:
        click.echo("Deleted build cache objects:")
        for item in deleted:
            click.echo(item)
    click.echo(f"Total reclaimed space: {human_size(int(result.get('SpaceReclaimed') or 0))}")


def register(group: click.Group) -> None:
    """Add ``build`` and ``builder prune`` (also as ``image build``)."""
    group.add_command(build)
    group.add_command(builder)
    image_group = group.commands.get("image")
    if isinstance(image_group, click.Group):
        image_group.add_command(build, "build")
