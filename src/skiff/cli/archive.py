"""save, load (and ``image save``/``image load``): images to and from tar archives."""

from __future__ import annotations

import os
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from skiff.cli.context import CliContext, pass_cli
from skiff.cli.progress import show_progress
from skiff.cli.streamio import write_archive
from skiff.errors import SkiffError

_CHUNK = 1 << 20


@click.command("save")
@click.option("-o", "--output", help="Write to a file, instead of STDOUT")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    show_default=True,
    help="docker: a docker-archive that is also an OCI layout; oci: a plain OCI image layout",
)
@click.option("--platform", help="Save only this platform (accepted; skiff stores one platform)")
@click.argument("images_", metavar="IMAGE...", nargs=-1, required=True)
@pass_cli
def save(
    obj: CliContext, output: str | None, fmt: str, platform: str | None, images_: tuple[str, ...]
) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    write_archive(obj.client.save_images(list(images_), fmt), output, "save image")


def _directory_tar(path: Path) -> Iterator[bytes]:
    """An OCI layout directory (``skopeo copy ... oci:DIR``) as a tar stream, made on the fly."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with open(w, "wb") as raw, tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                for entry in sorted(os.listdir(path)):
                    tf.add(path / entry, arcname=entry)
        except BaseException as exc:  # reported after the stream ends
            errors.append(exc)

    thread = threading.Thread(target=produce, name="skiff-load-tar", daemon=True)
    thread.start()
    with open(r, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            yield chunk
    thread.join()
    if errors:
        raise SkiffError(f"cannot read {path}: {errors[0]}")


@click.command("load")
@click.option(
    "-i", "--input", "input_", help="Read from tar archive file (or OCI layout directory), instead of STDIN"
)
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@click.option("--platform", help="Load only this platform (accepted; the host's platform is loaded)")
@pass_cli
def load(obj: CliContext, input_: str | None, quiet: bool, platform: str | None) -> None:
    """Load images from a tar archive (docker save, skiff save, or an OCI layout) or STDIN."""
    source: IO[bytes] | Iterator[bytes]
    opened: IO[bytes] | None = None
    if input_ is None:
        if sys.stdin.isatty():
            raise SkiffError("requested load from stdin, but stdin is empty")
        source = sys.stdin.buffer
    elif Path(input_).is_dir():
        source = _directory_tar(Path(input_))
    else:
        try:
            opened = source = open(input_, "rb")
        except OSError as exc:
            raise SkiffError(f"open {input_}: {exc.strerror}") from None
    try:
        # As the docker CLI: without a terminal there is nobody to draw progress bars for.
        messages = obj.client.load_images(source, quiet=quiet or not sys.stdout.isatty())
        show_progress(messages)
    finally:
        if opened is not None:
            opened.close()


def register(group: click.Group) -> None:
    """Add ``save``/``load`` at the top level and under ``image``."""
    from skiff.cli.images import image_group

    for command in (save, load):
        group.add_command(command)
        image_group.add_command(command, command.name)
