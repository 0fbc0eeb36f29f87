"""Where the daemon is and how to reach it: ``-H`` flag, ``SKIFF_HOST``, default socket."""

from __future__ import annotations

import os
from dataclasses import dataclass

import docker

from skiff.client.api import DEFAULT_API_VERSION, Client
from skiff.errors import InvalidArgument

DEFAULT_HOST = "unix:///run/skiff/skiff.sock"
_SCHEMES = ("unix://", "tcp://", "http://", "https://")


@dataclass(frozen=True)
class TLSSettings:
    """Client side of mutual TLS for ``tcp://`` hosts (docker's --tlscacert/--tlscert/--tlskey)."""

    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True


def resolve_host(cli_host: str | None) -> str:
    """The daemon address: the ``-H/--host`` flag, else ``$SKIFF_HOST``, else the default socket."""
    host = cli_host or os.environ.get("SKIFF_HOST") or DEFAULT_HOST
    if host.startswith("/"):
        # A bare path is what users type most often; docker accepts it too.
        host = "unix://" + host
    if not host.startswith(_SCHEMES):
        raise InvalidArgument(
            f"invalid daemon address {host!r}: use unix:///path/to/socket or tcp://host:port"
        )
    return host


def connect(host: str, tls: TLSSettings | None = None, api_version: str = DEFAULT_API_VERSION) -> Client:
    """A client for ``host``. No request is made until the first call."""
    tls_config: docker.tls.TLSConfig | bool = False
    base_url = host
    if tls is not None:
        cert = (tls.client_cert, tls.client_key) if tls.client_cert and tls.client_key else None
        tls_config = docker.tls.TLSConfig(
            client_cert=cert, ca_cert=tls.ca_cert, verify=tls.ca_cert if tls.verify else False
        )
        if host.startswith("tcp://"):
            base_url = "https://" + host[len("tcp://") :]
    api = docker.APIClient(base_url=base_url, version=api_version, tls=tls_config, timeout=None)
    if tls is not None and tls.verify and tls.ca_cert:
        # requests lets $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE override a session's CA file
        # (psf/requests#3829): the daemon's CA must win, as with the docker CLI.
        api.trust_env = False
    return Client(api, host=host)
