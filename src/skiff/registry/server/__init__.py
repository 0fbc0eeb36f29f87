"""``skiff registry serve``: an OCI Distribution v1.1 / Docker Registry v2 server.

Layout of the package, top down: ``serve`` (config, TLS, signals) -> ``app`` (routes, errors
to HTTP) -> ``routes_blobs``/``routes_manifests`` (handlers) -> ``context`` (shared state) ->
``auth``, ``uploads``, ``storage`` (SQLite + ContentStore), ``manifests``, ``grammar``, ``errors``.
``gc`` is ``skiff registry gc``.
"""

from skiff.registry.server.gc import GcReport, collect_garbage
from skiff.registry.server.serve import DEFAULT_ROOT, ServeConfig, parse_addr, serve

__all__ = ["DEFAULT_ROOT", "GcReport", "ServeConfig", "collect_garbage", "parse_addr", "serve"]
