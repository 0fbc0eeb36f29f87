"""Who may do what: htpasswd basic auth, and bearer tokens scoped by an ACL file.

Three modes, chosen at start:

- open (no flags): everyone may do everything;
- ``--htpasswd F``: every request needs a user of F (bcrypt lines, as ``htpasswd -B`` writes),
  who may then do everything (distribution's htpasswd mode);
- ``--token-acl F``: the registry is its own token server. A request without a token gets
  ``401`` and ``WWW-Authenticate: Bearer realm=".../token",service="...",scope="..."``; the
  client asks ``/token`` (with the user's basic credentials, checked against ``--htpasswd``,
  or none: anonymous) and gets a short-lived JWT whose ``access`` claim holds what the ACL grants
  of the scopes it asked for; requests then carry that token.

The ACL follows cesanta/docker_auth's format: rules are tried in order, the first whose ``match``
fits decides; ``account`` "" is anonymous; patterns are globs or ``/regex/`` and may use
``${account}``::

    acl:
      - match: {account: admin}
        actions: ["*"]
      - match: {account: "/.+/", name: "${account}/*"}
        actions: [pull, push, delete]
      - match: {account: ""}
        actions: [pull]
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hashlib
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import bcrypt
import jwt
import yaml

from skiff.errors import InvalidArgument
from skiff.registry.server.errors import RegistryError

ACTIONS = frozenset({"pull", "push", "delete", "*"})
TOKEN_TTL = 300


@dataclass(frozen=True)
class Access:
    """A resource and the actions wanted on (or granted for) it, as in a token scope."""

    type: str  # "repository" or "registry" (for the catalog)
    name: str
    actions: frozenset[str]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def pull(name: str) -> Access:
    return Access("repository", name, frozenset({"pull"}))


def push(name: str) -> Access:
    return Access("repository", name, frozenset({"pull", "push"}))


def delete(name: str) -> Access:
    return Access("repository", name, frozenset({"delete"}))


CATALOG = Access("registry", "catalog", frozenset({"*"}))


def parse_scope(text: str) -> list[Access]:
    """``repository:name:pull,push`` items, space-separated (a name may hold ``host:port``)."""
    out = []
    for item in text.split():
        kind, sep1, rest = item.partition(":")
        name, sep2, actions = rest.rpartition(":")
        kind = kind.split("(")[0]  # "repository(plugin)": the class does not matter here
        if not (sep1 and sep2 and kind and name):
            raise RegistryError(
                "UNSUPPORTED", f"invalid scope {item!r}: expected type:name:actions", status=400
            )
        out.append(Access(kind, name, frozenset(a for a in actions.split(",") if a)))
    return out


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header (None if absent or not Basic)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


# -- htpasswd ------------------------------------------------------------------------------------


class Htpasswd:
    """Users and bcrypt hashes from an htpasswd file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime = -1.0
        self._users: dict[str, bytes] = {}
        self._ok: set[tuple[str, bytes]] = set()  # (user, sha256(password)) already verified
        self._load()

    def _load(self) -> None:
        try:
            st = self.path.stat()
            text = self.path.read_text()
        except OSError as exc:
            raise InvalidArgument(f"cannot read htpasswd file {self.path}: {exc.strerror}") from None
        users = {}
        for no, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise InvalidArgument(f"{self.path}:{no}: expected user:hash")
            if not hashed.startswith(("$2y$", "$2a$", "$2b$")):
                raise InvalidArgument(
                    f"{self.path}:{no}: user {user!r} has no bcrypt hash; only bcrypt entries are "
                    "supported (create them with htpasswd -B)"
                )
            users[user] = hashed.encode()
        self._users, self._mtime, self._ok = users, st.st_mtime, set()

    def _fresh(self) -> None:
        try:
            if self.path.stat().st_mtime != self._mtime:
                self._load()
        except (OSError, InvalidArgument):
            pass  # keep the last good file rather than lock everyone out mid-edit

    async def check(self, user: str, password: str) -> bool:
        self._fresh()
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = (user, hashlib.sha256(password.encode()).digest())
        if key in self._ok:
            return True
        # bcrypt is slow on purpose: off the event loop. "$2y$" is the same algorithm as "$2b$".
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), b"$2b$" + hashed[4:])
        if ok:
            if len(self._ok) > 1024:
                self._ok.clear()
            self._ok.add(key)
        return ok


# -- ACL -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AclRule:
    """``match`` patterns (None: anything) and the actions granted when they all fit."""

    account: str | None
    name: str | None
    type: str | None
    actions: frozenset[str]


def _fits(pattern: str | None, value: str, account: str) -> bool:
    if pattern is None:
        return True
    pattern = pattern.replace("${account}", account)
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return re.fullmatch(pattern[1:-1], value) is not None
    return fnmatch.fnmatchcase(value, pattern)


class Acl:
    """An ordered list of rules; the first that matches decides (see the module docstring)."""

    def __init__(self, rules: Sequence[AclRule]) -> None:
        self.rules = list(rules)

    @classmethod
    def load(cls, path: Path) -> Acl:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise InvalidArgument(f"cannot read ACL file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"ACL file {path}: not YAML or JSON: {exc}") from None
        return cls.from_doc(doc, str(path))

    @classmethod
    def from_doc(cls, doc: Any, where: str = "ACL") -> Acl:
        if isinstance(doc, Mapping):
            doc = doc.get("acl")
        if not isinstance(doc, list):
            raise InvalidArgument(f"{where}: expected a list of rules (or {{acl: [...]}})")
        rules = []
        for i, item in enumerate(doc):
            at = f"{where}: rule {i + 1}"
            if not isinstance(item, Mapping):
                raise InvalidArgument(f"{at}: expected an object with match and actions")
            match = item.get("match") or {}
            if not isinstance(match, Mapping):
                raise InvalidArgument(f"{at}: match must be an object")
            unknown = set(match) - {"account", "name", "type"}
            if unknown:
                raise InvalidArgument(f"{at}: unknown match key(s) {', '.join(sorted(unknown))}")
            for key, value in match.items():
                if not isinstance(value, str):
                    raise InvalidArgument(f"{at}: match.{key} must be a string")
                if value.startswith("/") and value.endswith("/") and len(value) >= 2:
                    try:
                        re.compile(value[1:-1])
                    except re.error as exc:
                        raise InvalidArgument(f"{at}: match.{key}: bad regex: {exc}") from None
            actions = item.get("actions")
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise InvalidArgument(f"{at}: actions must be a list of strings")
            bad = set(actions) - ACTIONS
            if bad:
                raise InvalidArgument(
                    f"{at}: unknown action(s) {', '.join(sorted(bad))} (use pull, push, delete or *)"
                )
            rules.append(
                AclRule(match.get("account"), match.get("name"), match.get("type"), frozenset(actions))
            )
        return cls(rules)

    def granted(self, account: str, wanted: Access) -> frozenset[str]:
        """The actions of ``wanted`` that ``account`` ("" for anonymous) gets."""
        for rule in self.rules:
            if (
                _fits(rule.account, account, account)
                and _fits(rule.type, wanted.type, account)
                and _fits(rule.name, wanted.name, account)
            ):
                if "*" in rule.actions:
                    return wanted.actions
                return wanted.actions & rule.actions
        return frozenset()


# -- tokens --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What the caller of a request may do; ``access`` None means everything."""

    account: str | None
    access: tuple[Access, ...] | None = None

    def allows(self, wanted: Access) -> bool:
        if self.access is None:
            return True
        have: set[str] = set()
        for a in self.access:
            if a.type == wanted.type and a.name == wanted.name:
                have |= a.actions
        return "*" in have or wanted.actions <= have


def load_secret(path: Path) -> bytes:
    """The HMAC key tokens are signed with: made once (0600, temp + rename), kept across restarts."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(64))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    return path.read_bytes()


class TokenIssuer:
    """Signs and checks the registry's JWT bearer tokens (HS256)."""

    def __init__(self, secret: bytes, service: str, issuer: str = "skiff-registry", ttl: int = TOKEN_TTL):
        self.secret = secret
        self.service = service
        self.issuer = issuer
        self.ttl = ttl

    def issue(self, account: str, access: Sequence[Access]) -> dict[str, Any]:
        """The token endpoint's JSON answer for ``account`` with ``access`` granted."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "iat": now,
            "nbf": now - 1,
            "exp": now + self.ttl,
            "jti": secrets.token_hex(16),
            "access": [a.claim() for a in access if a.actions],
        }
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.ttl,
            "issued_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        }

    def verify(self, token: str) -> Grant:
        """The grant a token carries; raises jwt.InvalidTokenError when it is not one of ours."""
        claims = jwt.decode(
            token, self.secret, algorithms=["HS256"], audience=self.service, issuer=self.issuer, leeway=30
        )
        access = []
        for item in claims.get("access") or []:
            if not isinstance(item, Mapping):
                raise jwt.InvalidTokenError("malformed access claim")
            access.append(
                Access(
                    str(item.get("type")),
                    str(item.get("name")),
                    frozenset(map(str, item.get("actions") or ())),
                )
            )
        return Grant(str(claims.get("sub", "")), tuple(access))


# -- per-request checks ---------------------------------------------------------------------------


class Authorizer(Protocol):
    """Decides whether a request may do ``needed``; returns the caller's grant or raises UNAUTHORIZED."""

    async def authorize(self, authorization: str | None, realm_base: str, needed: Sequence[Access]) -> Grant:
        """``authorization`` is the request's header; ``realm_base`` its scheme://host."""
        ...


class OpenAccess:
    """No authentication: every request may do everything."""

    async def authorize(self, authorization: str | None, realm_base: str, needed: Sequence[Access]) -> Grant:
        return Grant(None)


class BasicAccess:
    """htpasswd users, each allowed everything."""

    def __init__(self, htpasswd: Htpasswd, realm: str = "skiff-registry") -> None:
        self.htpasswd = htpasswd
        self.realm = realm

    async def authorize(self, authorization: str | None, realm_base: str, needed: Sequence[Access]) -> Grant:
        creds = parse_basic(authorization)
        if creds is not None and await self.htpasswd.check(*creds):
            return Grant(creds[0])
        raise RegistryError(
            "UNAUTHORIZED",
            "authentication required",
            headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'},
        )


class TokenAccess:
    """Bearer tokens from this registry's own token endpoint."""

    def __init__(self, issuer: TokenIssuer, realm: str | None = None) -> None:
        self.issuer = issuer
        self.realm = realm

    def challenge(self, realm_base: str, needed: Sequence[Access], error: str | None = None) -> str:
        realm = self.realm or f"{realm_base}/token"
        value = f'Bearer realm="{realm}",service="{self.issuer.service}"'
        if needed:
            value += f',scope="{" ".join(a.scope() for a in needed)}"'
        if error:
            value += f',error="{error}"'
        return value

    async def authorize(self, authorization: str | None, realm_base: str, needed: Sequence[Access]) -> Grant:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RegistryError(
                "UNAUTHORIZED",
                "authentication required",
                detail=[a.claim() for a in needed] or None,
                headers={"WWW-Authenticate": self.challenge(realm_base, needed)},
            )
        try:
            grant = self.issuer.verify(token.strip())
        except jwt.InvalidTokenError as exc:
            raise RegistryError(
                "UNAUTHORIZED",
                f"invalid token: {exc}",
                headers={"WWW-Authenticate": self.challenge(realm_base, needed, "invalid_token")},
            ) from None
        missing = [a for a in needed if not grant.allows(a)]
        if missing:
            raise RegistryError(
                "UNAUTHORIZED",
                "authentication required: the token does not grant " + ", ".join(a.scope() for a in missing),
                detail=[a.claim() for a in missing],
                headers={"WWW-Authenticate": self.challenge(realm_base, needed, "insufficient_scope")},
            )
        return grant


class TokenService:
    """The ``/token`` endpoint's logic: who is asking, and what the ACL lets them have."""

    def __init__(self, issuer: TokenIssuer, acl: Acl, htpasswd: Htpasswd | None) -> None:
        self.issuer = issuer
        self.acl = acl
        self.htpasswd = htpasswd

    async def account(self, creds: tuple[str, str] | None) -> str:
        """The account of basic credentials ("" for none); UNAUTHORIZED if they are wrong."""
        if creds is None:
            return ""
        if self.htpasswd is not None and await self.htpasswd.check(*creds):
            return creds[0]
        raise RegistryError(
            "UNAUTHORIZED",
            "invalid username or password",
            headers={"WWW-Authenticate": 'Basic realm="skiff-registry"'},
        )

    def token(self, account: str, scopes: Sequence[Access]) -> dict[str, Any]:
        granted = [Access(a.type, a.name, self.acl.granted(account, a)) for a in scopes]
        return self.issuer.issue(account, granted)
