"""Thin synchronous client of the Docker Engine API as served by skiffd.

docker-py's ``APIClient`` is the transport (unix sockets, tcp+TLS, hijacked streams);
this package types the calls skiff's clients need and maps transport errors to
``skiff.errors`` in one place (``client/errors.py``).
"""

from skiff.client.api import Client, JSONDict
from skiff.client.connection import DEFAULT_HOST, TLSSettings, connect, resolve_host
from skiff.client.errors import is_daemon_error

__all__ = ["DEFAULT_HOST", "Client", "JSONDict", "TLSSettings", "connect", "is_daemon_error", "resolve_host"]
