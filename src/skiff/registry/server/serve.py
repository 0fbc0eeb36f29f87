"""Running the registry: configuration, the root's lock, TLS, listening, SIGTERM."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aiohttp import web

from skiff.errors import Conflict, InvalidArgument
from skiff.registry.server import auth
from skiff.registry.server.app import create_app
from skiff.registry.server.context import Registry
from skiff.registry.server.storage import RegistryStore
from skiff.registry.server.uploads import Uploads

log = logging.getLogger("skiff.registry")
DEFAULT_ROOT = Path("/var/lib/skiff-registry")
DEFAULT_SERVICE = "skiff-registry"


@dataclass(frozen=True)
class ServeConfig:
    """``skiff registry serve``'s flags."""

    root: Path = DEFAULT_ROOT
    host: str = "127.0.0.1"
    port: int = 5000
    htpasswd: Path | None = None
    token_acl: Path | None = None
    token_realm: str | None = None
    service: str = DEFAULT_SERVICE
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def parse_addr(text: str) -> tuple[str, int]:
    """``127.0.0.1:5000``, ``[::1]:5000``, ``:5000`` (every interface) -> host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"invalid address {text!r}: expected host:port, e.g. 127.0.0.1:5000")
    host = host.strip("[]")
    return (host or "0.0.0.0"), int(port)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Server TLS (1.2+) with the given certificate chain and key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return ctx


def check_config(config: ServeConfig) -> None:
    if (config.tls_cert is None) != (config.tls_key is None):
        raise InvalidArgument("--tls-cert and --tls-key go together")
    if config.token_realm is not None and config.token_acl is None:
        raise InvalidArgument("--token-realm needs --token-acl (token authentication)")


def build_registry(config: ServeConfig) -> Registry:
    """Open the store and uploads under the root (cleaning what a crash left) and set up auth."""
    check_config(config)
    htpasswd = auth.Htpasswd(config.htpasswd) if config.htpasswd else None
    acl = auth.Acl.load(config.token_acl) if config.token_acl else None
    store = RegistryStore(config.root)
    store.content.recover()
    uploads = Uploads(config.root / "uploads")
    uploads.recover()
    authorizer: auth.Authorizer
    tokens = None
    if acl is not None:
        issuer = auth.TokenIssuer(auth.load_secret(config.root / "token.key"), config.service)
        authorizer = auth.TokenAccess(issuer, config.token_realm)
        tokens = auth.TokenService(issuer, acl, htpasswd)
    elif htpasswd is not None:
        authorizer = auth.BasicAccess(htpasswd)
    else:
        authorizer = auth.OpenAccess()
    return Registry(store, uploads, authorizer, tokens)


def lock_root(root: Path) -> IO[bytes]:
    """Hold ``root/serve.lock`` for the process's life: one server per root."""
    root.mkdir(parents=True, exist_ok=True)
    f = open(root / "serve.lock", "ab")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise Conflict(f"another skiff registry is serving {root}") from None
    return f


async def serve(
    config: ServeConfig,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, or until ``stop`` is set when given (then signals are left
    alone, so tests can run a server in a thread); ``on_ready`` gets the URL once listening."""
    check_config(config)
    ctx = tls_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    lock = lock_root(config.root)
    try:
        registry = build_registry(config)
        runner = web.AppRunner(
            create_app(registry),
            access_log=log,
            access_log_format='%a "%r" %s %b %Tfs',
            handle_signals=False,
            shutdown_timeout=5.0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port, ssl_context=ctx, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
                ) from None
            host, port = runner.addresses[0][:2]
            shown = f"[{host}]" if ":" in host else host
            if stop is None:  # the process's own server: signals stop it
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, stop.set)
            url = f"{config.scheme}://{shown}:{port}"
            log.info("skiff registry serving %s on %s (pid %d)", config.root, url, os.getpid())
            if on_ready is not None:
                on_ready(url)
            await stop.wait()
            log.info("stopping")
        finally:
            await runner.cleanup()
    finally:
        lock.close()
