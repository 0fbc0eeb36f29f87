"""Client-side registry auth: credentials, ``WWW-Authenticate`` challenges, bearer tokens.

The flow is the one Docker Hub and distribution use: the client pings ``/v2/``; a ``401``
carries a challenge. ``Basic realm=...`` means "send the credentials with every request";
``Bearer realm=R,service=S`` means "get a token from R for ``service=S`` and the scopes you need
(``repository:library/alpine:pull``), with the credentials as basic auth (or anonymously), and
send it as ``Authorization: Bearer <token>``". Tokens are cached per realm, service, scopes and
credentials until shortly before they expire.

Credentials reach skiffd in ``X-Registry-Auth`` (base64url JSON, as docker clients send it) or
in the body of ``POST /auth``; :class:`AuthConfig` is both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skiff.errors import InvalidArgument

# Docker Hub's names: clients file its credentials under this key, and it is the default server.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
_EXPIRY_MARGIN = 10.0  # seconds before a token's expiry at which it is no longer handed out
_DEFAULT_TOKEN_LIFETIME = 60  # the token spec's default when expires_in is missing


@dataclass(frozen=True)
class AuthConfig:
    """Credentials for one registry (Docker's ``AuthConfig``); all empty means anonymous."""

    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token from an earlier login
    registry_token: str = ""  # a bearer token to send as it is
    server_address: str = ""

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def cache_key(self) -> str:
        """Distinguishes credentials in the token cache without keeping them in the key."""
        raw = "\0".join((self.username, self.password, self.identity_token, self.registry_token))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _str_field(data: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidArgument(f"invalid registry auth: {name} must be a string")
        if value:
            return value
    return ""


def auth_from_json(data: Any) -> AuthConfig:
    """Docker's AuthConfig JSON (``username``, ``password``, ``auth``, ``serveraddress``, ...).

    ``auth`` is base64 ``user:password`` (config.json's form); it fills in what the explicit
    fields leave empty. Keys are matched case-insensitively, as Go's JSON decoder does.
    """
    if data is None:
        return AuthConfig()
    if not isinstance(data, dict):
        raise InvalidArgument("invalid registry auth: expected a JSON object")
    lowered = {str(k).lower(): v for k, v in data.items()}
    username = _str_field(lowered, "username")
    password = _str_field(lowered, "password")
    encoded = _str_field(lowered, "auth")
    if encoded and not (username and password):
        try:
            user, sep, pw = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument("invalid registry auth: auth is not base64 of user:password") from None
        if not sep:
            raise InvalidArgument("invalid registry auth: auth is not base64 of user:password")
        username, password = username or user, password or pw
    return AuthConfig(
        username=username,
        password=password,
        identity_token=_str_field(lowered, "identitytoken"),
        registry_token=_str_field(lowered, "registrytoken"),
        server_address=_str_field(lowered, "serveraddress"),
    )


def decode_registry_auth(header: str | None) -> AuthConfig:
    """The ``X-Registry-Auth`` header: base64url (padded or not; plain base64 too) of AuthConfig JSON."""
    if not header or not header.strip():
        return AuthConfig()
    text = header.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Auth header: expected base64url-encoded JSON") from None
    return auth_from_json(data)


def decode_registry_config(header: str | None) -> dict[str, AuthConfig]:
    """``X-Registry-Config`` (docker build): base64url JSON of ``{registry: AuthConfig}``."""
    if not header or not header.strip():
        return {}
    text = header.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_")))
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Config header: expected base64url-encoded JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid X-Registry-Config header: expected a JSON object")
    return {str(k): auth_from_json(v) for k, v in data.items() if isinstance(v, dict)}


def encode_registry_auth(auth: AuthConfig) -> str:
    """The ``X-Registry-Auth`` value for ``auth`` (``e30=`` when anonymous, as docker clients send)."""
    data: dict[str, str] = {}
    for key, value in (
        ("username", auth.username),
        ("password", auth.password),
        ("serveraddress", auth.server_address),
        ("identitytoken", auth.identity_token),
        ("registrytoken", auth.registry_token),
    ):
        if value:
            data[key] = value
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


# -- challenges ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lower case) and parameters (keys lower case)."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def token68(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos] in _TOKEN_CHARS or self.text[self.pos] in "/="
        ):
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == '"':
                return "".join(out)
            else:
                out.append(c)
        return "".join(out)  # unterminated: take what there is, as lenient clients do


def parse_challenges(headers: list[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` headers (RFC 7235: several per header allowed).

    Lenient where registries are sloppy (unquoted values with ``/`` or ``:``, stray commas);
    a malformed tail ends the parse with what was understood so far.
    """
    out: list[Challenge] = []
    for header in headers:
        s = _Scanner(header)
        while True:
            s.skip_space()
            while s.peek() == ",":
                s.pos += 1
                s.skip_space()
            scheme = s.token()
            if not scheme:
                break
            params: dict[str, str] = {}
            s.skip_space()
            while True:
                save = s.pos
                s.skip_space()
                key = s.token()
                s.skip_space()
                if not key or s.peek() != "=":
                    s.pos = save  # the next challenge's scheme (or a token68 we ignore)
                    if key and not params:
                        s.token68()
                    break
                s.pos += 1
                if not params and s.peek() in ("=", "", ","):
                    while s.peek() == "=":  # token68 padding ("abc=="), not a parameter
                        s.pos += 1
                    break
                s.skip_space()
                if s.peek() == '"':
                    value = s.quoted()
                else:
                    start = s.pos
                    while s.pos < len(s.text) and s.text[s.pos] not in ", \t":
                        s.pos += 1
                    value = s.text[start : s.pos]
                params[key.lower()] = value
                s.skip_space()
                if s.peek() == ",":
                    s.pos += 1
                    continue
                break
            out.append(Challenge(scheme.lower(), params))
            s.skip_space()
            if s.peek() == ",":
                s.pos += 1
            elif s.pos >= len(s.text) or not s.peek():
                break
    return out


# -- scopes and tokens -----------------------------------------------------------------------------


def repository_scope(path: str, *actions: str) -> str:
    """``repository:<path>:<actions>`` as the token spec writes it (actions comma-separated)."""
    return f"repository:{path}:{','.join(actions)}"


@dataclass(frozen=True)
class Token:
    """A bearer token and when it stops being usable (monotonic seconds)."""

    value: str
    expires_at: float
    refresh_token: str = ""


def parse_token_response(body: bytes, now: float | None = None) -> Token:
    """The token endpoint's JSON: ``token`` or ``access_token``, ``expires_in`` (default 60 s)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidArgument("the token server answered with something that is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the token server answered with JSON that is not an object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise InvalidArgument("the token server's answer has no token")
    lifetime = data.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = _DEFAULT_TOKEN_LIFETIME
    refresh = data.get("refresh_token")
    start = time.monotonic() if now is None else now
    return Token(value, start + float(lifetime), refresh if isinstance(refresh, str) else "")


class TokenCache:
    """Bearer tokens by (realm, service, scopes, credentials); expired ones are never returned."""

    def __init__(self, max_entries: int = 256) -> None:
        self._tokens: dict[tuple[str, str, tuple[str, ...], str], Token] = {}
        self._max = max_entries

    @staticmethod
    def key(
        realm: str, service: str, scopes: tuple[str, ...], auth: AuthConfig
    ) -> tuple[str, str, tuple[str, ...], str]:
        return realm, service, tuple(sorted(set(scopes))), auth.cache_key()

    def get(self, key: tuple[str, str, tuple[str, ...], str], now: float | None = None) -> Token | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if token.expires_at - _EXPIRY_MARGIN <= (time.monotonic() if now is None else now):
            del self._tokens[key]
            return None
        return token

    def put(self, key: tuple[str, str, tuple[str, ...], str], token: Token) -> None:
        if len(self._tokens) >= self._max:
            oldest = min(self._tokens, key=lambda k: self._tokens[k].expires_at)
            del self._tokens[oldest]
        self._tokens[key] = token

    def drop(self, key: tuple[str, str, tuple[str, ...], str]) -> None:
        self._tokens.pop(key, None)


def basic_header(auth: AuthConfig) -> str:
    """``Basic base64(user:password)``."""
    raw = f"{auth.username}:{auth.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
