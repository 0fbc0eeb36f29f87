"""``skiff registry serve`` and ``skiff registry gc``: a registry of your own, no skiffd needed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from skiff.cli.options.values import parse_duration
from skiff.errors import InvalidArgument
from skiff.units import bytes_size


@click.group("registry")
def registry() -> None:
    """Run an image registry (OCI Distribution / Docker Registry HTTP API v2)."""


_path = click.Path(path_type=Path)
_file = click.Path(path_type=Path, exists=True, dir_okay=False)


@registry.command("serve")
@click.option(
    "--addr", default="127.0.0.1:5000", show_default=True, help="host:port to listen on (:PORT: all)"
)
@click.option("--root", type=_path, default=None, help="state directory (default /var/lib/skiff-registry)")
@click.option("--htpasswd", type=_file, help="basic auth users (bcrypt, as htpasswd -B writes)")
@click.option("--token-acl", type=_file, help="issue bearer tokens at /token, scoped by this ACL (YAML/JSON)")
@click.option("--token-realm", help="token endpoint URL put in challenges (default <this registry>/token)")
@click.option("--service", default="skiff-registry", show_default=True, help="token service name")
@click.option("--tls-cert", type=_file, help="serve HTTPS with this certificate (chain)")
@click.option("--tls-key", type=_file, help="the certificate's private key")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve_cmd(
    addr: str,
    root: Path | None,
    htpasswd: Path | None,
    token_acl: Path | None,
    token_realm: str | None,
    service: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    log_level: str,
) -> None:
    """Serve a registry in the foreground until SIGTERM or Ctrl-C."""
    from skiff.registry.server import DEFAULT_ROOT, ServeConfig, parse_addr, serve

    host, port = parse_addr(addr)
    config = ServeConfig(
        root=root or DEFAULT_ROOT,
        host=host,
        port=port,
        htpasswd=htpasswd,
        token_acl=token_acl,
        token_realm=token_realm,
        service=service,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    logging.basicConfig(
        level=log_level.upper(), format='time="%(asctime)s" level=%(levelname)s msg="%(message)s"'
    )

    def ready(url: str) -> None:
        click.echo(f"skiff registry listening on {url}")

    asyncio.run(serve(config, on_ready=ready))


def _seconds(value: str, flag: str) -> float:
    try:
        return parse_duration(value) / 1e9
    except InvalidArgument:
        raise click.BadParameter(f"{value!r} is not a duration (e.g. 1h, 30m, 0s)", param_hint=flag) from None


@registry.command("gc")
@click.option("--root", type=_path, default=None, help="state directory (default /var/lib/skiff-registry)")
@click.option("--dry-run", is_flag=True, help="only report what would be removed")
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    help="keep blobs uploaded this recently that no manifest references yet (pushes in progress)",
)
@click.option("--upload-expiry", default="24h", show_default=True, help="remove uploads idle this long")
def gc_cmd(root: Path | None, dry_run: bool, grace: str, upload_expiry: str) -> None:
    """Remove unreferenced blobs; safe while the registry serves."""
    from skiff.registry.server import DEFAULT_ROOT, collect_garbage

    root = root or DEFAULT_ROOT
    if not (root / "registry.db").is_file():
        raise InvalidArgument(f"no registry at {root} (no registry.db)")
    report = collect_garbage(
        root,
        grace=_seconds(grace, "--grace"),
        upload_expiry=_seconds(upload_expiry, "--upload-expiry"),
        dry_run=dry_run,
    )
    verb = "would remove" if dry_run else "removed"
    for blob in report.sweep.blobs:
        click.echo(f"{verb} blob {blob.digest} ({bytes_size(blob.size)})")
    for upload in report.uploads:
        click.echo(f"{verb} upload {upload}")
    for repo in report.sweep.repositories:
        click.echo(f"{verb} empty repository {repo}")
    click.echo(
        f"{'Would free' if dry_run else 'Freed'} {bytes_size(report.sweep.freed)}: "
        f"{len(report.sweep.blobs)} blob(s), {report.sweep.links} stale link(s), "
        f"{len(report.uploads)} upload(s), {len(report.sweep.repositories)} repository(ies)"
    )


def register(group: click.Group) -> None:
    """Add ``skiff registry`` to ``group``."""
    group.add_command(registry)
