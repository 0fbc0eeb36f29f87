"""Where skiffd listens (``-H``): unix sockets, and TCP with TLS as dockerd does it.

``plan_listeners`` turns the configuration into addresses and one TLS setting and refuses
what dockerd 27+ refuses: a ``tcp://`` host without TLS, unless plain TCP was asked for
explicitly (``--tls=false``; ``--tlsverify=false`` counts too, as in dockerd). It runs before
the engine starts, so a bad address or certificate stops skiffd before it touches anything.

| flags | a tcp:// host gets |
|---|---|
| ``--tlsverify --tlscacert --tlscert --tlskey`` | mutual TLS: clients need a cert signed by the CA |
| ``--tls --tlscert --tlskey`` | TLS, any client (warned at every start) |
| ``--tls=false`` | plain HTTP, any client (warned loudly at every start) |
| none of them | refused |

Missing ``--tlscacert/--tlscert/--tlskey`` default to ``ca.pem``, ``cert.pem`` and ``key.pem``
in ``$DOCKER_CERT_PATH`` or ``~/.docker``, as dockerd's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from skiff.daemon.config import DaemonConfig
from skiff.daemon.tls import TLSServerProtocol, server_context
from skiff.errors import InvalidArgument

log = logging.getLogger("skiffd")

TLS_PORT, PLAIN_PORT = 2376, 2375  # dockerd's defaults for a tcp:// host without a port


@dataclass(frozen=True)
class UnixAddress:
    path: Path

    def __str__(self) -> str:
        return f"unix://{self.path}"


@dataclass(frozen=True)
class TCPAddress:
    host: str  # "" = every interface
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


ListenAddress = UnixAddress | TCPAddress


@dataclass(frozen=True)
class ServerTLS:
    """The TLS side of every tcp:// listener."""

    cert: Path
    key: Path
    ca: Path | None
    verify_clients: bool

    def context(self) -> ssl.SSLContext:
        for path in (self.cert, self.key, self.ca):
            if path is not None and not os.access(path, os.R_OK):
                raise InvalidArgument(f"TLS: cannot read {path} (see --tlscacert, --tlscert, --tlskey)")
        try:
            return server_context(
                str(self.cert), str(self.key), str(self.ca) if self.ca else None, self.verify_clients
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            files = f"{self.cert}, {self.key}" + (f", {self.ca}" if self.ca else "")
            raise InvalidArgument(f"TLS: cannot load certificate, key or CA ({files}): {exc}") from None


@dataclass(frozen=True)
class ListenPlan:
    addresses: tuple[ListenAddress, ...]
    tls: ServerTLS | None  # None: tcp:// hosts (if any) speak plain HTTP, by explicit opt-in
    context: ssl.SSLContext | None = None

    @property
    def tcp(self) -> list[TCPAddress]:
        return [a for a in self.addresses if isinstance(a, TCPAddress)]


def parse_address(text: str, *, tls: bool) -> ListenAddress:
    """``unix:///path`` or ``tcp://host[:port]`` (``tcp://:2376`` = every interface)."""
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid listen address {text!r}: unix:// needs an absolute path")
        return UnixAddress(Path(path))
    if text.startswith("tcp://"):
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise InvalidArgument(f"invalid listen address {text!r}: {exc}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise InvalidArgument(f"invalid listen address {text!r}: use tcp://host:port")
        host = parts.hostname or ""
        if host and host != "localhost":
            with contextlib.suppress(ValueError):
                host = str(ipaddress.ip_address(host))
        return TCPAddress(host, port if port is not None else (TLS_PORT if tls else PLAIN_PORT))
    raise InvalidArgument(f"unsupported listen address {text!r}: use unix:///path or tcp://host:port")


def plan_listeners(config: DaemonConfig, cert_dir: Path | None = None) -> ListenPlan:
    """Validate ``-H`` and the TLS flags together; load the TLS material once."""
    tls_on = bool(config.tls or config.tlsverify)
    addresses = tuple(parse_address(h, tls=tls_on) for h in config.hosts)
    if not addresses:
        raise InvalidArgument("no listen address: give at least one -H")
    tcp = [a for a in addresses if isinstance(a, TCPAddress)]
    if not tcp:
        return ListenPlan(addresses, None)
    if not tls_on:
        if config.tls is False or config.tlsverify is False:
            return ListenPlan(addresses, None)
        raise InvalidArgument(
            f"refusing to listen on {tcp[0]} without TLS: whoever reaches that port would be root "
            "on this machine. Use --tlsverify --tlscacert --tlscert --tlskey (mutual TLS), "
            "or pass --tls=false to serve the API unencrypted and unauthenticated anyway"
        )
    base = cert_dir or Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    verify = bool(config.tlsverify)
    tls = ServerTLS(
        cert=config.tlscert or base / "cert.pem",
        key=config.tlskey or base / "key.pem",
        ca=(config.tlscacert or base / "ca.pem") if verify else config.tlscacert,
        verify_clients=verify,
    )
    return ListenPlan(addresses, tls, tls.context())


async def start_sites(runner: web.AppRunner, plan: ListenPlan, socket_group: str) -> list[web.BaseSite]:
    """Listen on every address of the plan; log each, and warn at every start about weak ones."""
    sites: list[web.BaseSite] = []
    for address in plan.addresses:
        site: web.BaseSite
        if isinstance(address, UnixAddress):
            address.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                address.path.unlink()
            site = web.UnixSite(runner, str(address.path))
            await site.start()
            os.chmod(address.path, 0o660)
            with contextlib.suppress(KeyError, PermissionError):
                os.chown(address.path, 0, grp.getgrnam(socket_group).gr_gid)
            log.info("API listening on %s", address)
        elif plan.context is None:
            site = web.TCPSite(runner, address.host or None, address.port, reuse_address=True)
            await _start_tcp(site, address)
            for line in (
                f"API listening on {address} WITHOUT TLS (--tls=false): unencrypted and unauthenticated",
                f"anyone who can connect to {address} has root on this machine; "
                "use --tlsverify with --tlscacert/--tlscert/--tlskey",
            ):
                log.warning("!!! %s !!!", line)
        else:
            site = TLSSite(runner, address, plan.context)
            await _start_tcp(site, address)
            assert plan.tls is not None
            if plan.tls.verify_clients:
                log.info("API listening on %s (TLS, client certificates signed by %s)", address, plan.tls.ca)
            else:
                log.warning(
                    "API listening on %s with TLS but WITHOUT client verification (--tls without "
                    "--tlsverify): anyone who can connect has root on this machine",
                    address,
                )
        sites.append(site)
    return sites


async def _start_tcp(site: web.BaseSite, address: TCPAddress) -> None:
    try:
        await site.start()
    except OSError as exc:
        raise InvalidArgument(f"cannot listen on {address}: {exc.strerror or exc}") from None


def remove_unix_sockets(plan: ListenPlan) -> None:
    for address in plan.addresses:
        if isinstance(address, UnixAddress):
            with contextlib.suppress(OSError):
                address.path.unlink()


class TLSSite(web.BaseSite):
    """aiohttp's TCP site with skiffd's own TLS termination (see ``skiff.daemon.tls``)."""

    def __init__(self, runner: web.AppRunner, address: TCPAddress, context: ssl.SSLContext) -> None:
        super().__init__(runner, ssl_context=context)
        self._address = address

    @property
    def name(self) -> str:
        return str(self._address).replace("tcp://", "https://", 1)

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        context = self._ssl_context
        assert server is not None and context is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: TLSServerProtocol(context, server),
            self._address.host or None,
            self._address.port,
            backlog=self._backlog,
            reuse_address=True,
        )
