"""Named daemon endpoints (like ``docker context``), kept in ``~/.skiff/contexts.json``.

The file (in ``$SKIFF_CONFIG`` when set, else ``~/.skiff``) holds the current context and the
named ones: ``{"current": "lab-demo", "contexts": {"lab-demo": {"host": "unix://...",
"description": "..."}}}``. The ``default`` context always exists and is not stored: it is the
default socket. Writes replace the file atomically.

Which daemon a command talks to, first match wins: the ``-H`` flag, ``$SKIFF_HOST`` or
``$DOCKER_HOST``, the ``--context`` flag or ``$SKIFF_CONTEXT``, the current context, the
default socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.client.connection import DEFAULT_HOST
from skiff.errors import AlreadyExists, InvalidArgument, NotFound

DEFAULT = "default"
FILE_NAME = "contexts.json"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$")


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    given = env.get("SKIFF_CONFIG")
    return Path(given) if given else Path.home() / ".skiff"


@dataclass(frozen=True)
class Context:
    """One named endpoint."""

    name: str
    host: str
    description: str = ""


class ContextStore:
    """The contexts file: read on every call (several CLIs may share it), written atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else config_dir() / FILE_NAME

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"current": DEFAULT, "contexts": {}}
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"reading {self.path}: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidArgument(f"{self.path}: not a JSON object")
        data.setdefault("current", DEFAULT)
        data.setdefault("contexts", {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".contexts-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def current(self) -> str:
        return str(self._load()["current"] or DEFAULT)

    def list(self) -> list[Context]:
        """``default`` first, then the named contexts by name."""
        data = self._load()
        named = [
            Context(name, str(entry.get("host", "")), str(entry.get("description", "")))
            for name, entry in sorted(data["contexts"].items())
        ]
        return [Context(DEFAULT, DEFAULT_HOST, "Current SKIFF_HOST based configuration"), *named]

    def get(self, name: str) -> Context:
        for ctx in self.list():
            if ctx.name == name:
                return ctx
        raise NotFound(f'context "{name}" does not exist')

    def create(self, name: str, host: str, description: str = "", *, replace: bool = False) -> Context:
        if not _NAME.match(name):
            raise InvalidArgument(f'context name "{name}" is invalid: use letters, digits, _ . + -')
        if name == DEFAULT:
            raise InvalidArgument('"default" is a reserved context name')
        if host.startswith("/"):
            host = "unix://" + host
        if not host.startswith(("unix://", "tcp://", "http://", "https://")):
            raise InvalidArgument(f"invalid host {host!r}: use unix:///path/to/socket or tcp://host:port")
        data = self._load()
        if name in data["contexts"] and not replace:
            raise AlreadyExists(f'context "{name}" already exists')
        data["contexts"][name] = {"host": host, "description": description}
        self._save(data)
        return Context(name, host, description)

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove ``name``; the current context only with ``force`` (then ``default`` is current)."""
        if name == DEFAULT:
            raise InvalidArgument("default: context cannot be removed")
        data = self._load()
        if name not in data["contexts"]:
            raise NotFound(f'context "{name}" does not exist')
        if data["current"] == name:
            if not force:
                raise InvalidArgument(
                    f'context "{name}" is in use, set a different one with "skiff context use"'
                )
            data["current"] = DEFAULT
        del data["contexts"][name]
        self._save(data)

    def use(self, name: str) -> str:
        """Make ``name`` current; returns the context that was current before."""
        data = self._load()
        if name != DEFAULT and name not in data["contexts"]:
            raise NotFound(f'context "{name}" does not exist')
        previous = str(data["current"] or DEFAULT)
        data["current"] = name
        self._save(data)
        return previous


def select_host(
    host_flag: str | None,
    context_flag: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    store: ContextStore | None = None,
) -> str:
    """The daemon address by the resolution order in the module docstring."""
    env = os.environ if env is None else env
    if host_flag:
        return host_flag
    for var in ("SKIFF_HOST", "DOCKER_HOST"):
        if env.get(var):
            return env[var]
    if store is None:
        store = ContextStore(config_dir(env) / FILE_NAME)
    name = context_flag or env.get("SKIFF_CONTEXT") or store.current()
    if name == DEFAULT:
        return DEFAULT_HOST
    try:
        return store.get(name).host
    except NotFound:
        raise NotFound(
            f'context "{name}" does not exist (see "skiff context ls"; "skiff context use default" resets it)'
        ) from None
