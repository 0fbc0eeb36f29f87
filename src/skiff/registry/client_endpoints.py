"""Where a registry is reached: mirrors, HTTPS or plain HTTP, and which TLS trust.

dockerd's rules:

- ``docker.io`` is served by ``registry-1.docker.io``; with ``registry-mirrors`` configured,
  pulls (never pushes) of docker.io images try each mirror first, in order, and fall back to the
  next endpoint when one fails.
- A registry is *insecure* when it is ``localhost``, a 127.0.0.0/8 (or ::1) address, or listed in
  ``insecure-registries`` (as ``host[:port]`` or a CIDR its address falls in). An insecure
  registry is tried over HTTPS without certificate checks first, then over plain HTTP. Every
  other registry is HTTPS with verified certificates only.
- Extra trust per registry comes from ``<certs.d>/<host[:port]>/``: ``*.crt`` are CAs, a
  ``*.cert``/``*.key`` pair is a client certificate (dockerd's ``/etc/docker/certs.d`` layout).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from skiff.errors import InvalidArgument
from skiff.images.reference import DEFAULT_DOMAIN
from skiff.registry.auth import DOCKER_HUB_REGISTRY

DEFAULT_CERTS_DIRS = (Path("/etc/skiff/certs.d"), Path("/etc/docker/certs.d"))
_LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class RegistryConfig:
    """skiffd's registry settings (daemon.json's ``registry-mirrors`` and ``insecure-registries``)."""

    mirrors: tuple[str, ...] = ()
    insecure: tuple[str, ...] = ()
    certs_dirs: tuple[Path, ...] = DEFAULT_CERTS_DIRS


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a registry: ``base`` is ``scheme://host[:port]`` (no trailing slash)."""

    base: str
    host: str  # host[:port] as references name it (certs.d and auth are keyed by it)
    verify_tls: bool = True
    mirror: bool = False
    # Plain HTTP allowed as a fallback when HTTPS fails (insecure registries only).
    http_fallback: bool = False

    @property
    def tls(self) -> bool:
        return self.base.startswith("https://")

    def url(self, path: str) -> str:
        return self.base + path

    def as_http(self) -> Endpoint:
        return Endpoint("http://" + self.base.split("://", 1)[1], self.host, False, self.mirror, False)


def validate_mirror(url: str) -> str:
    """A mirror URL as dockerd accepts it: ``http(s)://host[:port][/]``; returns it without the slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(f"invalid mirror {url!r}: unsupported scheme (use http:// or https://)")
    if parts.username or parts.password:
        raise InvalidArgument(f"invalid mirror {url!r}: credentials are not allowed in a mirror URL")
    if parts.path not in ("", "/"):
        raise InvalidArgument(f"invalid mirror {url!r}: path components are not allowed")
    if parts.query or parts.fragment:
        raise InvalidArgument(f"invalid mirror {url!r}: query parameters are not allowed")
    if not parts.hostname:
        raise InvalidArgument(f"invalid mirror {url!r}: no host")
    return f"{parts.scheme}://{parts.netloc}"


def validate_insecure(entry: str) -> str:
    """An ``insecure-registries`` entry: a CIDR or ``host[:port]`` (a scheme is refused, as dockerd)."""
    if "://" in entry:
        raise InvalidArgument(f"insecure registry {entry} should not contain '://'")
    if "/" in entry:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise InvalidArgument(f"insecure registry {entry!r} is not a valid CIDR or host[:port]") from None
    elif not entry:
        raise InvalidArgument("an insecure registry entry must not be empty")
    return entry


def _split_host(host: str) -> tuple[str, int | None]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port.isdigit() else None


def _addresses(hostname: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(hostname)]
    except ValueError:
        pass
    if hostname == "localhost":
        return [ipaddress.ip_address("127.0.0.1")]
    try:
        infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    out = []
    for info in infos:
        try:
            out.append(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
        except ValueError:
            continue
    return out


class EndpointResolver:
    """Turns a reference's registry into the endpoints to try, per :class:`RegistryConfig`."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.mirrors = tuple(validate_mirror(m) for m in config.mirrors)
        self._insecure_hosts = {e for e in config.insecure if "/" not in e}
        self._insecure_nets = [ipaddress.ip_network(e, strict=False) for e in config.insecure if "/" in e]
        self._insecure_cache: dict[str, bool] = {}
        self._ssl_cache: dict[tuple[str, bool], ssl.SSLContext] = {}

    def is_insecure(self, host: str) -> bool:
        """True for localhost, loopback addresses and configured insecure registries."""
        cached = self._insecure_cache.get(host)
        if cached is not None:
            return cached
        name, _ = _split_host(host)
        result = host in self._insecure_hosts or name in self._insecure_hosts
        if not result:
            nets = [*_LOOPBACK_NETS, *self._insecure_nets]
            result = any(
                addr in net for addr in _addresses(name) for net in nets if addr.version == net.version
            )
        self._insecure_cache[host] = result
        return result

    def _endpoint(self, host: str, mirror: bool = False) -> Endpoint:
        insecure = self.is_insecure(host)
        return Endpoint(
            f"https://{host}", host, verify_tls=not insecure, mirror=mirror, http_fallback=insecure
        )

    def pull_endpoints(self, domain: str) -> list[Endpoint]:
        """Mirrors first for docker.io, then the registry itself."""
        if domain != DEFAULT_DOMAIN:
            return [self._endpoint(domain)]
        out = []
        for url in self.mirrors:
            parts = urlsplit(url)
            secure = not self.is_insecure(parts.netloc)
            out.append(Endpoint(url, parts.netloc, verify_tls=secure, mirror=True))
        out.append(self._endpoint(DOCKER_HUB_REGISTRY))
        return out

    def push_endpoint(self, domain: str) -> Endpoint:
        """Pushes go to the registry itself, never a mirror."""
        return self._endpoint(DOCKER_HUB_REGISTRY if domain == DEFAULT_DOMAIN else domain)

    def ssl_context(self, endpoint: Endpoint) -> ssl.SSLContext | bool:
        """What aiohttp's ``ssl=`` gets: False for plain HTTP, else a context with certs.d trust."""
        if not endpoint.tls:
            return False
        key = (endpoint.host, endpoint.verify_tls)
        cached = self._ssl_cache.get(key)
        if cached is not None:
            return cached
        ctx = ssl.create_default_context()
        if not endpoint.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for directory in self._certs_dirs(endpoint.host):
            for ca in sorted(directory.glob("*.crt")):
                try:
                    ctx.load_verify_locations(cafile=str(ca))
                except (OSError, ssl.SSLError) as e:
                    raise InvalidArgument(f"cannot load CA certificate {ca}: {e}") from None
            for cert in sorted(directory.glob("*.cert")):
                keyfile = cert.with_suffix(".key")
                if not keyfile.is_file():
                    raise InvalidArgument(f"missing key {keyfile.name} for client certificate {cert}")
                try:
                    ctx.load_cert_chain(str(cert), str(keyfile))
                except (OSError, ssl.SSLError) as e:
                    raise InvalidArgument(f"cannot load client certificate {cert}: {e}") from None
        self._ssl_cache[key] = ctx
        return ctx

    def _certs_dirs(self, host: str) -> Sequence[Path]:
        out = []
        for root in self.config.certs_dirs:
            d = root / host
            if d.is_dir():
                out.append(d)
        return out
