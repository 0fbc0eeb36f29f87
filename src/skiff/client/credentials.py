"""Registry credentials the way the docker CLI keeps them: ``~/.docker/config.json``.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``), shared with the docker
CLI: ``auths`` maps a registry (``localhost:5000``; Docker Hub is ``https://index.docker.io/v1/``)
to ``{"auth": base64("user:password")}`` or ``{"auth": base64("user:"), "identitytoken": ...}``.
A ``credsStore`` (or a per-registry ``credHelpers`` entry) hands the secrets to a
``docker-credential-<name>`` helper instead, as the docker CLI does. Every other key of the
file is kept; the file is replaced atomically (temp file + rename) with mode 0600.

The daemon never reads this file: the client sends the registry's entry in ``X-Registry-Auth``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skiff.errors import InvalidArgument

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """One registry's entry: a user and a password, or a user and an identity token."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def header_json(self, server: str) -> dict[str, str]:
        """The JSON ``X-Registry-Auth`` carries (base64url-encoded by the caller)."""
        out = {"serveraddress": server}
        if self.username:
            out["username"] = self.username
        if self.password:
            out["password"] = self.password
        if self.identity_token:
            out["identitytoken"] = self.identity_token
        return out


def config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def hostname(server: str) -> str:
    """The registry host a server address names (``https://host:5000/v2/`` -> ``host:5000``)."""
    text = server.strip()
    host = urlsplit(text).netloc if "://" in text else text.split("/", 1)[0]
    return host


def server_key(registry: str) -> str:
    """The ``auths`` key for a registry: Docker Hub's historical URL, otherwise the host."""
    host = hostname(registry) if registry else "docker.io"
    return DOCKER_HUB_KEY if host in ("", *_HUB_NAMES) else host


class CredentialStore:
    """Reads and writes ``config.json`` (and credential helpers); see the module docstring."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / "config.json"

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise InvalidArgument(f"cannot read {self.path}: {e.strerror}") from None
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InvalidArgument(f"{self.path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise InvalidArgument(f"{self.path} must hold a JSON object")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix="config.json.", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _helper(self, data: dict[str, Any], key: str) -> str:
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict) and isinstance(helpers.get(hostname(key) or key), str):
            return str(helpers[hostname(key) or key])
        store = data.get("credsStore")
        return store if isinstance(store, str) else ""

    def _entry_key(self, auths: dict[str, Any], key: str) -> str | None:
        if key in auths:
            return key
        want = hostname(key)
        for k in auths:
            if server_key(k) == key or hostname(k) == want:
                return k
        return None

    def get(self, registry: str) -> Credentials | None:
        """The stored credentials for ``registry`` (a host, ``docker.io`` or a URL), or None."""
        key = server_key(registry)
        data = self._load()
        helper = self._helper(data, key)
        if helper:
            return _helper_get(helper, key)
        auths = data.get("auths")
        if not isinstance(auths, dict):
            return None
        found = self._entry_key(auths, key)
        entry = auths.get(found) if found is not None else None
        if not isinstance(entry, dict):
            return None
        username, password = "", ""
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument(
                    f"{self.path}: the auth of {found} is not base64 of user:password"
                ) from None
        token = entry.get("identitytoken") if isinstance(entry.get("identitytoken"), str) else ""
        if not (username or password or token):
            return None
        return Credentials(username, password, str(token or ""))

    def store(self, registry: str, creds: Credentials) -> Path:
        """Save credentials for ``registry``; returns the file (or the helper's name as a path)."""
        key = server_key(registry)
        data = self._load()
        helper = self._helper(data, key)
        auths = data.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise InvalidArgument(f"{self.path}: auths must be an object")
        old = self._entry_key(auths, key)
        if old is not None and old != key:
            del auths[old]
        if helper:
            _helper_store(helper, key, creds)
            auths[key] = {}
        else:
            secret = "" if creds.identity_token else creds.password
            entry: dict[str, str] = {"auth": base64.b64encode(f"{creds.username}:{secret}".encode()).decode()}
            if creds.identity_token:
                entry["identitytoken"] = creds.identity_token
            auths[key] = entry
        self._save(data)
        return self.path

    def erase(self, registry: str) -> bool:
        """Forget ``registry``'s credentials; False if there were none."""
        key = server_key(registry)
        data = self._load()
        helper = self._helper(data, key)
        auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
        assert isinstance(auths, dict)
        found = self._entry_key(auths, key)
        erased = False
        if helper:
            erased = _helper_erase(helper, key)
        if found is not None:
            del auths[found]
            self._save(data)
            erased = True
        return erased

    def uses_helper(self, registry: str) -> bool:
        return bool(self._helper(self._load(), server_key(registry)))


def _run_helper(helper: str, action: str, payload: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, action], input=payload.encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        raise InvalidArgument(f"credential helper {program} is configured but not installed") from None
    if done.returncode != 0:
        message = (done.stdout or done.stderr).decode(errors="replace").strip()
        raise InvalidArgument(f"error from {program} {action}: {message}")
    return done.stdout.decode()


def _helper_get(helper: str, key: str) -> Credentials | None:
    try:
        out = _run_helper(helper, "get", key)
    except InvalidArgument as e:
        if "credentials not found" in e.message:
            return None
        raise
    try:
        data = json.loads(out)
    except ValueError:
        raise InvalidArgument(
            f"docker-credential-{helper} answered with something that is not JSON"
        ) from None
    user, secret = str(data.get("Username") or ""), str(data.get("Secret") or "")
    if user == "<token>":
        return Credentials("", "", secret)
    return Credentials(user, secret) if user or secret else None


def _helper_store(helper: str, key: str, creds: Credentials) -> None:
    user, secret = (
        (creds.username, creds.password) if not creds.identity_token else ("<token>", creds.identity_token)
    )
    _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": user, "Secret": secret}))


def _helper_erase(helper: str, key: str) -> bool:
    try:
        _run_helper(helper, "erase", key)
    except InvalidArgument:
        return False
    return True


def registry_auth_header(registry: str, store: CredentialStore | None = None) -> str:
    """The ``X-Registry-Auth`` value for ``registry`` (``e30=``, i.e. ``{}``, when none is stored)."""
    creds = (store or CredentialStore()).get(registry)
    if creds is None:
        return "e30="
    data = creds.header_json(server_key(registry))
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
