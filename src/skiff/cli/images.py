"""images, image ls|inspect|rm|prune|history|tag|import|pull|push|bootstrap, tag, rmi, history, import, pull, push."""

from __future__ import annotations

import sys
from typing import IO

import click

from skiff.cli.context import CliContext, ExitCode, error_text, pass_cli
from skiff.cli.filters import parse_filters
from skiff.cli.format.rows import (
    HISTORY_TABLE,
    HISTORY_TITLES,
    IMAGES_TABLE,
    IMAGES_TABLE_DIGESTS,
    IMAGES_TITLES,
    HistoryRow,
    image_rows,
)
from skiff.cli.format.table import render_rows
from skiff.cli.progress import show_progress
from skiff.client.credentials import registry_auth_header
from skiff.errors import SkiffError
from skiff.images.reference import parse_reference


@click.command("images")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides intermediate images)")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("--digests", is_flag=True, help="Show digests")
@click.argument("repository", required=False)
@pass_cli
def images(
    obj: CliContext,
    all_: bool,
    quiet: bool,
    filters: tuple[str, ...],
    fmt: str,
    no_trunc: bool,
    digests: bool,
    repository: str | None,
) -> None:
    """List images."""
    parsed = parse_filters(filters)
    if repository:
        parsed.setdefault("reference", []).append(repository)
    raw = obj.client.images(all=all_, filters=parsed or None)
    rows = image_rows(raw, trunc=not no_trunc)
    if quiet:
        seen: list[str] = []
        for row in rows:
            if row.ID not in seen:
                seen.append(row.ID)
        if seen:
            click.echo("\n".join(seen))
        return
    default = IMAGES_TABLE_DIGESTS if digests else IMAGES_TABLE
    text = render_rows(fmt, rows, IMAGES_TITLES, default)
    if text:
        click.echo(text)


@click.command("inspect")
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@click.argument("images_", metavar="IMAGE...", nargs=-1, required=True)
@pass_cli
def image_inspect(obj: CliContext, fmt: str, images_: tuple[str, ...]) -> None:
    """Display detailed information on one or more images."""
    from skiff.cli.query import print_inspected

    print_inspected([(ref, lambda r: obj.client.inspect_image(r)) for ref in images_], fmt)


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.argument("images_", metavar="IMAGE...", nargs=-1, required=True)
@pass_cli
def rmi(obj: CliContext, force: bool, no_prune: bool, images_: tuple[str, ...]) -> None:
    """Remove one or more images."""
    failed = False
    for ref in images_:
        try:
            for item in obj.client.remove_image(ref, force=force, noprune=no_prune):
                for key, value in item.items():
                    click.echo(f"{key}: {value}")
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    if failed:
        raise ExitCode(1)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (e.g. 'until=<timestamp>')")
@pass_cli
def prune(obj: CliContext, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images."""
    if not force:
        what = "all images without at least one container" if all_ else "all dangling images"
        click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?", abort=True)
    parsed = parse_filters(filters)
    parsed["dangling"] = ["false" if all_ else "true"]
    result = obj.client.prune_images(parsed)
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        click.echo("Deleted Images:")
        for item in deleted:
            for key, value in item.items():
                click.echo(f"{key.lower()}: {value}")
        click.echo()
    from skiff.units import human_size

    click.echo(f"Total reclaimed space: {human_size(int(result.get('SpaceReclaimed') or 0))}")


@click.command("history")
@click.option("-H", "--human/--no-human", default=True, help="Print sizes and dates in human readable format")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@click.argument("image")
@pass_cli
def history(obj: CliContext, human: bool, no_trunc: bool, quiet: bool, fmt: str, image: str) -> None:
    """Show the history of an image."""
    rows = [HistoryRow(h, trunc=not no_trunc, human=human) for h in obj.client.history(image)]
    if quiet:
        fmt = "{{.ID}}"
    text = render_rows(fmt, rows, HISTORY_TITLES, HISTORY_TABLE)
    if text:
        click.echo(text)


@click.command("tag")
@click.argument("source")
@click.argument("target")
@pass_cli
def tag(obj: CliContext, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    repo, _, name = target.rpartition(":")
    if not repo or "/" in name:
        repo, name = target, "latest"
    obj.client.tag(source, repo, name)


@click.command("import")
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", help="Set commit message for imported image")
@click.option("--platform", help="Set platform if server is multi-platform capable (accepted)")
@click.argument("source")
@click.argument("reference", required=False)
@pass_cli
def import_(
    obj: CliContext,
    change: tuple[str, ...],
    message: str | None,
    platform: str | None,
    source: str,
    reference: str | None,
) -> None:
    """Import the contents from a tarball (file or -) to create a filesystem image."""
    repo, tag_ = None, None
    if reference:
        repo, _, tag_ = reference.rpartition(":")
        if not repo or "/" in tag_:
            repo, tag_ = reference, None
    stream: IO[bytes]
    try:
        stream = sys.stdin.buffer if source == "-" else open(source, "rb")
    except OSError as exc:
        raise SkiffError(f"cannot open {source}: {exc.strerror}") from None
    try:
        messages = obj.client.import_image(stream, repo, tag_, message, list(change))
        image_id = None
        for msg in messages:
            status = str(msg.get("status") or "")
            if status.startswith("sha256:"):
                image_id = status
        if image_id:
            click.echo(image_id)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


@click.command("pull")
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.option("--disable-content-trust", is_flag=True, hidden=True, help="Skip image verification (always)")
@click.argument("name")
@pass_cli
def pull(
    obj: CliContext, all_tags: bool, quiet: bool, platform: str | None, disable_content_trust: bool, name: str
) -> None:
    """Download an image from a registry."""
    ref = parse_reference(name, default_tag=False)
    if all_tags and (ref.tag or ref.digest):
        raise SkiffError("tag can't be used with --all-tags/-a")
    if not all_tags and ref.tag is None and ref.digest is None:
        if not quiet:
            click.echo("Using default tag: latest")
        ref = ref.with_tag("latest")
    tag = ref.digest or ref.tag
    header = registry_auth_header(ref.domain)
    show_progress(obj.client.pull(ref.name(), tag, platform, header, all_tags=all_tags), quiet=quiet)
    click.echo(ref.canonical())


@click.command("push")
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("--disable-content-trust", is_flag=True, hidden=True, help="Skip image signing (always)")
@click.argument("name")
@pass_cli
def push(obj: CliContext, all_tags: bool, quiet: bool, disable_content_trust: bool, name: str) -> None:
    """Upload an image to a registry."""
    ref = parse_reference(name, default_tag=False)
    if ref.digest:
        raise SkiffError("cannot push a digest reference")
    if all_tags and ref.tag:
        raise SkiffError("tag can't be used with --all-tags/-a")
    if not all_tags and ref.tag is None:
        if not quiet:
            click.echo("Using default tag: latest")
        ref = ref.with_tag("latest")
    header = registry_auth_header(ref.domain)
    show_progress(obj.client.push(ref.name(), ref.tag, header), quiet=quiet)
    if quiet:
        click.echo(ref.canonical())


@click.command("bootstrap")
@click.option("--tag", "tag_", help="Tag for the new image (default: NAME:latest)")
@click.option("-q", "--quiet", is_flag=True, help="Only print the image ID")
@click.argument("name", type=click.Choice(["busybox", "debian"]))
@pass_cli
def bootstrap(obj: CliContext, tag_: str | None, quiet: bool, name: str) -> None:
    """Build a base image locally, without a registry (skiff only): busybox or debian."""
    image_id = show_progress(obj.client.bootstrap_image(name, tag_), quiet=quiet)
    if image_id:
        click.echo(image_id)


@click.group("image")
def image_group() -> None:
    """Manage images."""


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(images)
    group.add_command(rmi)
    group.add_command(history)
    group.add_command(tag)
    group.add_command(import_)
    group.add_command(pull)
    group.add_command(push)
    for command, name in (
        (images, "ls"),
        (image_inspect, "inspect"),
        (rmi, "rm"),
        (prune, "prune"),
        (history, "history"),
        (tag, "tag"),
        (import_, "import"),
        (pull, "pull"),
        (push, "push"),
        (bootstrap, "bootstrap"),
    ):
        image_group.add_command(command, name)
    group.add_command(image_group)
