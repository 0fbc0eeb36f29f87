"""Failpoints: crash skiffd at named places, for crash-recovery tests (like etcd's gofail).

``SKIFF_FAILPOINTS=start-after-runtime-create`` (comma-separated names) makes
:func:`hit` end the process at once with ``os._exit``, as a ``kill -9`` would at that
moment. Unset, it costs one set lookup.
"""

from __future__ import annotations

import os

_ACTIVE = frozenset(filter(None, os.environ.get("SKIFF_FAILPOINTS", "").split(",")))


def hit(name: str) -> None:
    """Die here if the failpoint ``name`` is active."""
    if name in _ACTIVE:
        os._exit(137)
