"""A small asyncio client of the Docker Engine API (aiohttp), for code that runs inside an
event loop: the cluster's node agent drives its local skiffd with it.

``HttpEngine`` covers what the agent needs (images, containers, events, logs; the
``skiff.cluster.agent.EngineClient`` protocol), over a unix socket
(``unix:///run/skiff/skiff.sock`` or a bare path) or TCP (``tcp://host:port``). Any Docker
Engine API server does: it never calls skiff-only endpoints. Errors come back as
``skiff.errors`` by HTTP status, with the daemon's own message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from skiff import errors
from skiff.client.streams import STDERR, STDOUT, FrameDecoder
from skiff.images.reference import parse_reference

_BY_STATUS: dict[int, type[errors.SkiffError]] = {
    304: errors.NotModified,
    400: errors.InvalidArgument,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    503: errors.Unavailable,
}


def _base(host: str) -> tuple[str, str | None]:
    """The URL prefix for ``host`` and the unix socket path (None for TCP)."""
    if host.startswith("unix://"):
        return "http://localhost", host.removeprefix("unix://")
    if host.startswith("/"):
        return "http://localhost", host
    if host.startswith("tcp://"):
        return "http://" + host.removeprefix("tcp://").rstrip("/"), None
    if host.startswith(("http://", "https://")):
        return host.rstrip("/"), None
    raise errors.InvalidArgument(f"invalid engine address {host!r}: use unix:///path or tcp://host:port")


class HttpEngine:
    """The Engine API at ``host``, asynchronously (see module doc)."""

    def __init__(self, host: str, *, connect_timeout: float = 10.0, request_timeout: float = 120.0) -> None:
        self.host = host
        self.request_timeout = request_timeout
        self._url, self._socket = _base(host)
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self._socket is not None:
                connector = aiohttp.UnixConnector(path=self._socket)
            else:
                connector = aiohttp.TCPConnector()
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        allow: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> aiohttp.ClientResponse:
        """A response with a success status (or one in ``allow``); the caller releases it.
        ``timeout`` bounds the whole request (default ``request_timeout``; streams pass 0: none)."""
        limit = self.request_timeout if timeout is None else timeout
        kwargs: dict[str, Any] = {
            "params": dict(params or {}),
            "timeout": aiohttp.ClientTimeout(total=limit or None, connect=self._connect_timeout),
        }
        if body is not None:
            kwargs["json"] = body
        try:
            resp = await self._client().request(method, self._url + path, **kwargs)
        except aiohttp.ClientError as exc:
            raise errors.Unavailable(f"cannot reach the engine at {self.host}: {exc}") from exc
        except TimeoutError as exc:
            raise errors.Unavailable(
                f"the engine at {self.host} did not answer {method} {path} in time"
            ) from exc
        if resp.status < 300 or resp.status in allow:
            return resp
        try:
            text = await resp.text()
        finally:
            resp.release()
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            message = text
        raise _BY_STATUS.get(resp.status, errors.RuntimeFailure)(
            str(message).strip() or f"HTTP {resp.status}"
        )

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self._request(method, path, **kwargs)
        try:
            if resp.status == 204:
                return None
            return await resp.json(content_type=None)
        finally:
            resp.release()

    async def _discard(self, method: str, path: str, **kwargs: Any) -> int:
        resp = await self._request(method, path, **kwargs)
        try:
            await resp.read()
            return resp.status
        finally:
            resp.release()

    async def info(self) -> dict[str, Any]:
        out: dict[str, Any] = await self._json("GET", "/info")
        return out

    async def image_exists(self, ref: str) -> bool:
        try:
            await self._json("GET", f"/images/{quote(ref, safe='/:@')}/json")
        except errors.NotFound:
            return False
        return True

    async def pull(self, ref: str) -> None:
        params = {"fromImage": ref}
        parsed = parse_reference(ref, default_tag=False)
        if parsed.tag is None and parsed.digest is None:
            params["tag"] = "latest"  # without a tag the engine pulls every tag of the repository
        resp = await self._request("POST", "/images/create", params=params, timeout=0)
        try:
            async for raw in resp.content:
                line = raw.strip()
                if not line:
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and (msg.get("error") or msg.get("errorDetail")):
                    detail = msg.get("errorDetail") or {}
                    raise errors.NotFound(str(msg.get("error") or detail.get("message") or msg))
        finally:
            resp.release()

    async def create(self, name: str, config: dict[str, Any]) -> str:
        out = await self._json("POST", "/containers/create", params={"name": name}, body=config)
        return str(out["Id"])

    async def start(self, container_id: str) -> None:
        await self._discard("POST", f"/containers/{container_id}/start", allow=(304,))

    async def stop(self, container_id: str, *, timeout: int) -> None:
        await self._discard(
            "POST",
            f"/containers/{container_id}/stop",
            params={"t": str(timeout)},
            allow=(304,),
            timeout=timeout + self.request_timeout,
        )

    async def remove(self, container_id: str, *, force: bool = True) -> None:
        params = {"force": "1" if force else "0", "v": "1"}
        await self._discard("DELETE", f"/containers/{container_id}", params=params)

    async def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        out: list[dict[str, Any]] = await self._json(
            "GET", "/containers/json", params={"all": "1", "filters": filters}
        )
        return out

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = await self._json("GET", f"/containers/{container_id}/json")
        except errors.NotFound:
            return None
        return out

    async def events(
        self, filters: Mapping[str, list[str]], *, since: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        params = {"filters": json.dumps(dict(filters))}
        if since is not None:
            params["since"] = f"{since:.9f}"
        resp = await self._request("GET", "/events", params=params, timeout=0)
        try:
            async for raw in resp.content:
                line = raw.strip()
                if line:
                    yield json.loads(line)
        finally:
            resp.release()

    async def logs(
        self, container_id: str, *, follow: bool = False, tail: str = "all", timestamps: bool = False
    ) -> AsyncIterator[tuple[str, bytes]]:
        params = {
            "stdout": "1",
            "stderr": "1",
            "follow": "1" if follow else "0",
            "tail": tail,
            "timestamps": "1" if timestamps else "0",
        }
        info = await self.inspect(container_id)
        if info is None:
            raise errors.NotFound(f"No such container: {container_id}")
        # API 1.41 calls both kinds raw-stream: a container without a TTY has framed logs
        tty = bool((info.get("Config") or {}).get("Tty"))
        resp = await self._request(
            "GET", f"/containers/{container_id}/logs", params=params, timeout=0 if follow else None
        )
        framed = "multiplexed" in resp.headers.get("Content-Type", "") or not tty
        decoder = FrameDecoder()
        partial = {STDOUT: b"", STDERR: b""}
        names = {STDOUT: "stdout", STDERR: "stderr"}
        try:
            async for chunk in resp.content.iter_any():
                frames = decoder.feed(chunk) if framed else [(STDOUT, chunk)]
                for stream, payload in frames:
                    if stream not in partial:
                        continue
                    data = partial[stream] + payload
                    *lines, partial[stream] = data.split(b"\n")
                    for line in lines:
                        yield names[stream], line + b"\n"
            for stream, rest in partial.items():
                if rest:
                    yield names[stream], rest
        finally:
            resp.release()
