"""The registry HTTP client: one endpoint, one set of credentials, the Distribution API's calls.

``RegistryClient`` pings ``/v2/`` once (learning the auth challenge, and for an insecure
registry whether it speaks HTTPS or plain HTTP), then answers challenges on the way: basic
credentials, or bearer tokens per scope from the :class:`~skiff.registry.auth.TokenCache`. A
``401`` on a request is retried once with a fresh token.

Registry errors arrive as the spec's JSON (``{"errors": [{"code", "message", "detail"}]}``) and
become :class:`RegistryError` with Docker's wording (``manifest unknown: manifest unknown``);
transport failures read like Go's (``Get "http://...": connection refused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from skiff.errors import SkiffError
from skiff.registry import media
from skiff.registry.auth import (
    AuthConfig,
    Challenge,
    Token,
    TokenCache,
    basic_header,
    parse_challenges,
    parse_token_response,
)
from skiff.registry.client_endpoints import Endpoint, EndpointResolver

MAX_MANIFEST_SIZE = 4 << 20  # distribution's own limit on a manifest's size
MAX_CONFIG_SIZE = 16 << 20
_SCHEMA1 = (media.DOCKER_MANIFEST_V1, media.DOCKER_MANIFEST_V1_SIGNED, "application/json")
_ACCEPT = ", ".join([*sorted(media.MANIFESTS), media.DOCKER_MANIFEST_V1_SIGNED, media.DOCKER_MANIFEST_V1])


def _code_words(code: str) -> str:
    return code.lower().replace("_", " ")


class RegistryError(SkiffError):
    """A registry said no (``code`` is the spec's error code) or could not be reached (``code`` "").

    ``status`` is what skiffd answers with; callers that know better (pull: 404 for an unknown
    manifest) set it. ``registry_status`` is the registry's own HTTP status (0: no answer).
    """

    def __init__(self, message: str, *, code: str = "", registry_status: int = 0, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.registry_status = registry_status
        self.status = status

    @property
    def unreachable(self) -> bool:
        return self.registry_status == 0


def error_from_body(status: int, body: bytes, challenges: list[Challenge] = ()) -> RegistryError:  # type: ignore[assignment]
    """The registry's error response as distribution's client reads it.

    A bearer challenge's ``error=insufficient_scope`` is DENIED and ``invalid_token``
    UNAUTHORIZED (RFC 6750); otherwise the first error of the JSON body; otherwise a 401 is
    UNAUTHORIZED and anything else an unexpected status.
    """
    for c in challenges:
        if c.scheme == "bearer" and c.params.get("error") in ("insufficient_scope", "invalid_token"):
            code = "DENIED" if c.params["error"] == "insufficient_scope" else "UNAUTHORIZED"
            text = c.params.get("error_description") or (
                "requested access to the resource is denied"
                if code == "DENIED"
                else "authentication required"
            )
            return RegistryError(f"{_code_words(code)}: {text}", code=code, registry_status=status)
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = str(first.get("code") or "UNKNOWN").upper()
        message = str(first.get("message") or _code_words(code))
        return RegistryError(f"{_code_words(code)}: {message}", code=code, registry_status=status)
    if isinstance(data, dict) and isinstance(data.get("details"), str) and status == 401:
        return RegistryError(f"unauthorized: {data['details']}", code="UNAUTHORIZED", registry_status=status)
    if status == 401:
        return RegistryError(
            "unauthorized: authentication required", code="UNAUTHORIZED", registry_status=status
        )
    snippet = body[:200].decode("utf-8", "replace").strip()
    text = f"received unexpected HTTP status: {status}" + (f" ({snippet})" if snippet else "")
    return RegistryError(text, registry_status=status)


def transport_error(method: str, url: str, exc: BaseException) -> RegistryError:
    """A failure to talk to the registry at all, worded like Go's ``*url.Error``."""
    if isinstance(exc, asyncio.TimeoutError):
        reason = "timeout awaiting response"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp's own text names the SSL context object; say what Go says instead.
        os_error = exc.os_error
        if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError):
            why = f"tls: {os_error}"
        elif isinstance(os_error, socket.gaierror):
            why = f"lookup {exc.host}: no such host"
        elif isinstance(os_error, OSError) and os_error.errno:
            why = "connect: " + os.strerror(os_error.errno).lower()
        else:
            why = str(os_error)
        where = "dial tcp:" if isinstance(os_error, socket.gaierror) else f"dial tcp {exc.host}:{exc.port}:"
        reason = f"{where} {why}"
    else:
        reason = str(exc) or type(exc).__name__
    words = {"GET": "Get", "HEAD": "Head", "PUT": "Put", "POST": "Post", "PATCH": "Patch", "DELETE": "Delete"}
    return RegistryError(f'{words.get(method, method)} "{url}": {reason}')


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A manifest as fetched: its bytes, media type (from the document or Content-Type) and digest."""

    data: bytes
    media_type: str
    digest: str


Body = bytes | Callable[[], AsyncIterable[bytes]]


class RegistryClient:
    """The Distribution API on one endpoint as one user; see the module docstring."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        auth: AuthConfig,
        tokens: TokenCache,
        resolver: EndpointResolver,
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.auth = auth
        self.tokens = tokens
        self.resolver = resolver
        self.challenge: Challenge | None = None
        self._pinged = False

    # -- plumbing --------------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        return self.resolver.ssl_context(self.endpoint)

    async def ping(self) -> int:
        """``GET /v2/``: learn the challenge (and HTTPS vs HTTP for insecure registries); returns status."""
        try:
            status = await self._ping_once()
        except RegistryError as e:
            if not (e.unreachable and self.endpoint.http_fallback):
                raise
            self.endpoint = self.endpoint.as_http()
            status = await self._ping_once()
        self._pinged = True
        return status

    async def _ping_once(self) -> int:
        url = self.endpoint.url("/v2/")
        try:
            async with self.session.get(url, ssl=self._ssl(), allow_redirects=True) as resp:
                body = await resp.content.read(64 << 10)
                if resp.status == 401:
                    challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
                    self.challenge = next((c for c in challenges if c.scheme in ("bearer", "basic")), None)
                    return 401
                if resp.status != 200:
                    raise error_from_body(resp.status, body)
                self.challenge = None
                return 200
        except aiohttp.ClientError as e:
            raise transport_error("GET", url, e) from None
        except (TimeoutError, OSError) as e:
            raise transport_error("GET", url, e) from None

    async def _token(self, scopes: tuple[str, ...], fresh: bool) -> str:
        assert self.challenge is not None
        if self.auth.registry_token:
            return self.auth.registry_token
        realm = self.challenge.realm
        service = self.challenge.params.get("service", "")
        key = TokenCache.key(realm, service, scopes, self.auth)
        if fresh:
            self.tokens.drop(key)
        cached = self.tokens.get(key)
        if cached is not None:
            return cached.value
        token = await self.fetch_token(realm, service, scopes)
        self.tokens.put(key, token)
        return token.value

    async def fetch_token(
        self, realm: str, service: str, scopes: tuple[str, ...], *, offline: bool = False
    ) -> Token:
        """Ask the token server (GET with basic credentials, or POST with an identity token)."""
        if not realm:
            raise RegistryError("the registry asked for a bearer token without naming a realm")
        parts = urlsplit(realm)
        realm_ssl: ssl.SSLContext | bool = False
        if parts.scheme == "https":
            realm_ssl = self.resolver.ssl_context(
                Endpoint(f"https://{parts.netloc}", parts.netloc, not self.resolver.is_insecure(parts.netloc))
            )
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params += [("scope", s) for s in sorted(set(scopes))]
        headers: dict[str, str] = {}
        method = "GET"
        data: dict[str, str] | None = None
        if self.auth.identity_token:
            method = "POST"
            data = {
                "grant_type": "refresh_token",
                "refresh_token": self.auth.identity_token,
                "client_id": "skiff",
                "service": service,
                "scope": " ".join(sorted(set(scopes))),
            }
            params = []
        else:
            if not self.auth.anonymous:
                headers["Authorization"] = basic_header(self.auth)
                params.append(("account", self.auth.username))
            params.append(("client_id", "skiff"))
            if offline:
                params.append(("offline_token", "true"))
        url = realm + ("&" if "?" in realm else "?") + urlencode(params) if params else realm
        try:
            async with self.session.request(method, url, headers=headers, data=data, ssl=realm_ssl) as resp:
                body = await resp.content.read(1 << 20)
                if resp.status != 200:
                    err = error_from_body(resp.status, body)
                    if resp.status == 401 and err.code == "":
                        err = RegistryError(
                            "unauthorized: authentication required", code="UNAUTHORIZED", registry_status=401
                        )
                    raise err
        except aiohttp.ClientError as e:
            raise transport_error(method, realm, e) from None
        except (TimeoutError, OSError) as e:
            raise transport_error(method, realm, e) from None
        try:
            return parse_token_response(body)
        except SkiffError as e:
            raise RegistryError(f"{realm}: {e.message}") from None

    async def authorization(self, scopes: tuple[str, ...], fresh: bool = False) -> dict[str, str]:
        """The ``Authorization`` header for a request needing ``scopes`` (empty when anonymous)."""
        if not self._pinged:
            await self.ping()
        if self.challenge is None:
            return {}
        if self.challenge.scheme == "basic":
            return {} if self.auth.anonymous else {"Authorization": basic_header(self.auth)}
        return {"Authorization": "Bearer " + await self._token(scopes, fresh)}

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        path_or_url: str,
        scopes: tuple[str, ...],
        *,
        headers: dict[str, str] | None = None,
        body: Body | None = None,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One API request with auth; a 401 is retried once with a fresh token. Errors are the caller's."""
        url = path_or_url if "://" in path_or_url else self.endpoint.url(path_or_url)
        for attempt in range(2):
            hdrs = dict(headers or {})
            hdrs.update(await self.authorization(scopes, fresh=attempt > 0))
            data: Any = body() if callable(body) else body
            try:
                resp = await self.session.request(
                    method, url, headers=hdrs, data=data, params=params, ssl=self._ssl()
                )
            except aiohttp.ClientError as e:
                raise transport_error(method, url, e) from None
            except (TimeoutError, OSError) as e:
                raise transport_error(method, url, e) from None
            if resp.status == 401 and attempt == 0:
                challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
                usable = next((c for c in challenges if c.scheme in ("bearer", "basic")), None)
                if usable is not None and (self.challenge is None or usable.scheme != self.challenge.scheme):
                    self.challenge = usable
                if (
                    self.challenge is not None
                    and self.challenge.scheme == "bearer"
                    and not self.auth.registry_token
                ):
                    resp.release()
                    continue
            try:
                yield resp
            finally:
                resp.release()
            return

    async def _fail(self, resp: aiohttp.ClientResponse) -> RegistryError:
        body = await resp.content.read(64 << 10)
        return error_from_body(
            resp.status, body, parse_challenges(resp.headers.getall("WWW-Authenticate", []))
        )

    # -- the API ---------------------------------------------------------------------------------

    async def get_manifest(self, path: str, reference: str) -> Manifest:
        """``GET /v2/<path>/manifests/<tag|digest>``; a digest reference is checked against the bytes."""
        scopes = (f"repository:{path}:pull",)
        url = f"/v2/{path}/manifests/{reference}"
        async with self.request("GET", url, scopes, headers={"Accept": _ACCEPT}) as resp:
            if resp.status != 200:
                raise await self._fail(resp)
            if (resp.content_length or 0) > MAX_MANIFEST_SIZE:
                raise RegistryError(f"manifest {reference} is larger than {MAX_MANIFEST_SIZE} bytes")
            try:
                data = await resp.content.read(MAX_MANIFEST_SIZE + 1)
            except aiohttp.ClientError as e:
                raise transport_error("GET", str(resp.url), e) from None
            if len(data) > MAX_MANIFEST_SIZE:
                raise RegistryError(f"manifest {reference} is larger than {MAX_MANIFEST_SIZE} bytes")
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest", "")
        digest = digest_of(data)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"manifest verification failed for digest {reference}", code="DIGEST_INVALID")
        if header_digest.startswith("sha256:") and header_digest != digest:
            raise RegistryError(
                f"manifest verification failed: the registry says {header_digest}, the bytes hash to {digest}",
                code="DIGEST_INVALID",
            )
        return Manifest(data, _media_type(data, content_type), digest)

    async def get_blob(self, path: str, digest: str, max_size: int = MAX_CONFIG_SIZE) -> bytes:
        """A small blob (a config), checked against its digest."""
        async with self.request("GET", f"/v2/{path}/blobs/{digest}", (f"repository:{path}:pull",)) as resp:
            if resp.status != 200:
                raise await self._fail(resp)
            try:
                data = await resp.content.read(max_size + 1)
            except aiohttp.ClientError as e:
                raise transport_error("GET", str(resp.url), e) from None
        if len(data) > max_size:
            raise RegistryError(f"blob {digest} is larger than {max_size} bytes")
        if digest_of(data) != digest:
            raise RegistryError(f"blob {digest} does not match its digest", code="DIGEST_INVALID")
        return data

    @contextlib.asynccontextmanager
    async def open_blob(
        self, path: str, digest: str, offset: int = 0
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``GET`` a blob from ``offset`` (a Range request); the response is 200 or 206, else raises."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self.request(
            "GET", f"/v2/{path}/blobs/{digest}", (f"repository:{path}:pull",), headers=headers
        ) as resp:
            if resp.status not in (200, 206):
                raise await self._fail(resp)
            yield resp

    async def blob_size(self, path: str, digest: str, scopes: tuple[str, ...] | None = None) -> int | None:
        """``HEAD`` a blob: its size if the repository has it, else None."""
        async with self.request(
            "HEAD", f"/v2/{path}/blobs/{digest}", scopes or (f"repository:{path}:pull",)
        ) as resp:
            if resp.status == 200:
                return int(resp.headers.get("Content-Length") or 0)
            if resp.status == 404:
                return None
            raise await self._fail(resp)

    def _push_scopes(self, path: str, *extra: str) -> tuple[str, ...]:
        return (f"repository:{path}:pull,push", *extra)

    async def mount_blob(self, path: str, digest: str, from_path: str) -> bool:
        """Cross-repository mount; False when the registry started a plain upload instead (cancelled)."""
        scopes = self._push_scopes(path, f"repository:{from_path}:pull")
        params = {"mount": digest, "from": from_path}
        async with self.request("POST", f"/v2/{path}/blobs/uploads/", scopes, params=params) as resp:
            if resp.status == 201:
                return True
            if resp.status == 202:
                location = resp.headers.get("Location", "")
                if location:
                    with contextlib.suppress(RegistryError):
                        async with self.request("DELETE", str(resp.url.join(URL(location))), scopes):
                            pass
                return False
            raise await self._fail(resp)

    async def upload_blob(self, path: str, digest: str, size: int, body: Body) -> None:
        """``POST`` an upload, then ``PUT`` the whole blob with ``?digest=`` (a monolithic upload)."""
        scopes = self._push_scopes(path)
        async with self.request("POST", f"/v2/{path}/blobs/uploads/", scopes) as resp:
            if resp.status != 202:
                raise await self._fail(resp)
            location = resp.headers.get("Location", "")
            if not location:
                raise RegistryError("the registry started an upload without a Location")
            target = resp.url.join(URL(location)).update_query({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        async with self.request("PUT", str(target), scopes, headers=headers, body=body) as resp:
            if resp.status not in (201, 204):
                raise await self._fail(resp)
            got = resp.headers.get("Docker-Content-Digest", digest)
            if got != digest:
                raise RegistryError(f"the registry stored {got} for blob {digest}", code="DIGEST_INVALID")

    async def put_manifest(self, path: str, reference: str, media_type: str, data: bytes) -> str:
        """``PUT /v2/<path>/manifests/<tag>``; returns the manifest's digest."""
        headers = {"Content-Type": media_type}
        scopes = self._push_scopes(path)
        async with self.request(
            "PUT", f"/v2/{path}/manifests/{reference}", scopes, headers=headers, body=data
        ) as resp:
            if resp.status not in (200, 201, 202):
                raise await self._fail(resp)
        return digest_of(data)

    async def tags(self, path: str) -> list[str]:
        """Every tag of the repository (following ``Link`` pagination)."""
        out: list[str] = []
        url = f"/v2/{path}/tags/list"
        for _ in range(10_000):
            async with self.request("GET", url, (f"repository:{path}:pull",)) as resp:
                if resp.status != 200:
                    raise await self._fail(resp)
                data = json.loads(await resp.content.read(MAX_MANIFEST_SIZE))
                link = resp.headers.get("Link", "")
                base = resp.url
            tags = data.get("tags") if isinstance(data, dict) else None
            out += [t for t in tags or [] if isinstance(t, str)]
            if not link.startswith("<"):
                break
            url = str(base.join(URL(link[1 : link.index(">")])))
        return out


def _media_type(data: bytes, content_type: str) -> str:
    """The manifest's own ``mediaType`` wins; schema 1 and plain JSON are recognised."""
    try:
        doc = json.loads(data)
    except ValueError:
        return content_type
    if isinstance(doc, dict):
        declared = doc.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        if doc.get("schemaVersion") == 1:
            return media.DOCKER_MANIFEST_V1_SIGNED
        if "manifests" in doc:
            return media.OCI_INDEX
        if "config" in doc:
            return media.OCI_MANIFEST
    return content_type if content_type not in _SCHEMA1 else media.DOCKER_MANIFEST_V1_SIGNED
