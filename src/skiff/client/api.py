"""``Client``: the Engine API calls skiff's CLI (and later the cluster agent) make.

Each method is one endpoint, returning the daemon's JSON (Docker's field names) or
a stream. docker-py does the HTTP; every call goes through ``_call`` so failures
become ``skiff.errors`` in one place.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import requests.exceptions

from skiff.client.cluster import ClusterMixin
from skiff.client.errors import mapped_errors, stream_error
from skiff.client.streams import HijackedStream

JSONDict = dict[str, Any]
T = TypeVar("T")
DEFAULT_API_VERSION = "1.41"


class WaitHandle:
    """A ``POST /containers/{id}/wait`` whose headers have arrived; ``result()`` blocks for the body.

    Docker clients send wait *before* start so an immediate exit is not missed;
    the daemon answers headers at once and the JSON when the container exits.
    """

    def __init__(self, fetch: Callable[[], JSONDict]) -> None:
        self._result: JSONDict | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

        def run() -> None:
            try:
                self._result = fetch()
            except BaseException as exc:  # handed to the waiting thread
                self._error = exc
            finally:
                self._done.set()

        self._thread = threading.Thread(target=run, name="skiff-wait", daemon=True)
        self._thread.start()

    def result(self, timeout: float | None = None) -> JSONDict:
        """``{"StatusCode": N, "Error": ...}`` once the container has exited."""
        if not self._done.wait(timeout):
            raise TimeoutError("container did not exit in time")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def done(self) -> bool:
        """True once the daemon has answered."""
        return self._done.is_set()


class Client(ClusterMixin):
    """A connection to one skiffd (or any Docker-compatible daemon)."""

    def __init__(self, api: Any, host: str) -> None:
        self._api = api
        self.host = host

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with mapped_errors(self.host):
            return fn(*args, **kwargs)

    def _url(self, path: str, *args: str, versioned: bool = True) -> str:
        if versioned:
            return str(self._api._url(path, *args))
        return str(self._api.base_url) + path.format(*args)

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        def go() -> Any:
            resp = self._api.request(method, url, **kwargs)
            self._api._raise_for_status(resp)
            return resp.json() if resp.content else None

        return self._call(go)

    def _stream_json(self, method: str, url: str, **kwargs: Any) -> Iterator[JSONDict]:
        """A JSON-lines progress stream; an ``errorDetail`` line raises."""
        with mapped_errors(self.host):
            resp = self._api.request(method, url, stream=True, **kwargs)
            self._api._raise_for_status(resp)
            lines = resp.iter_lines()
            for line in lines:
                if not line.strip():
                    continue
                msg = json.loads(line)
                if isinstance(msg, dict) and ("errorDetail" in msg or "error" in msg):
                    detail = msg.get("errorDetail") or {}
                    raise stream_error(str(detail.get("message") or msg.get("error")))
                yield msg

    def _hijack(self, url: str, params: dict[str, Any], body: JSONDict | None = None) -> HijackedStream:
        headers = {"Connection": "Upgrade", "Upgrade": "tcp"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        with mapped_errors(self.host):
            resp = self._api.post(url, data=data, params=params, stream=True, headers=headers)
            self._api._raise_for_status(resp)
            fp = resp.raw._fp.fp
            sock = fp.raw._sock
            # http.client may have buffered bytes past the 101 headers; pick them up
            # without blocking, or the first output of a fast exec would be lost.
            leftover = b""
            sock.setblocking(False)
            try:
                leftover = fp.peek(65536) or b""
                if leftover:
                    fp.read(len(leftover))
            except OSError:
                leftover = b""
            finally:
                sock.setblocking(True)
            stream = HijackedStream(fp.raw, leftover)
            stream._response = resp  # type: ignore[attr-defined]  # keep it alive
            return stream

    # -- system ------------------------------------------------------------------------------
    def ping(self) -> bool:
        """``GET /_ping``."""
        return bool(self._call(self._api.ping))

    def version(self) -> JSONDict:
        """``GET /version``."""
        return dict(self._call(self._api.version))

    def info(self) -> JSONDict:
        """``GET /info``."""
        return dict(self._call(self._api.info))

    def events(
        self, since: str | None = None, until: str | None = None, filters: dict[str, list[str]] | None = None
    ) -> Iterator[JSONDict]:
        """``GET /events``: one dict per event, until ``until`` or forever."""
        params: dict[str, Any] = {}
        if since:
            params["since"] = since
        if until:
            params["until"] = until
        if filters:
            params["filters"] = json.dumps(filters)
        return self._stream_json("GET", self._url("/events"), params=params, timeout=None)

    def df(self) -> JSONDict:
        """``GET /system/df``."""
        return dict(self._json("GET", self._url("/system/df")))

    # -- containers -------------------------------------------------------------------------
    def containers(
        self,
        all: bool = False,
        limit: int = -1,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[JSONDict]:
        """``GET /containers/json``."""
        params: dict[str, Any] = {"all": int(all), "limit": limit, "size": int(size)}
        if filters:
            params["filters"] = json.dumps(filters)
        return list(self._json("GET", self._url("/containers/json"), params=params))

    def create_container(self, body: JSONDict, name: str | None = None) -> JSONDict:
        """``POST /containers/create``: ``{"Id": .., "Warnings": [..]}``."""
        return dict(self._call(self._api.create_container_from_config, body, name))

    def inspect_container(self, ref: str, size: bool = False) -> JSONDict:
        """``GET /containers/{ref}/json``."""
        params = {"size": 1} if size else {}
        return dict(self._json("GET", self._url("/containers/{0}/json", ref), params=params))

    def start(self, ref: str) -> None:
        """``POST /containers/{ref}/start``."""
        self._call(self._api.start, ref)

    def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        """``POST /containers/{ref}/stop``."""
        params: dict[str, Any] = {}
        if timeout is not None:
            params["t"] = timeout
        if signal:
            params["signal"] = signal
        self._json("POST", self._url("/containers/{0}/stop", ref), params=params, timeout=None)

    def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        """``POST /containers/{ref}/restart``."""
        params: dict[str, Any] = {}
        if timeout is not None:
            params["t"] = timeout
        if signal:
            params["signal"] = signal
        self._json("POST", self._url("/containers/{0}/restart", ref), params=params, timeout=None)

    def kill(self, ref: str, signal: str | None = None) -> None:
        """``POST /containers/{ref}/kill``."""
        self._call(self._api.kill, ref, signal)

    def remove_container(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """``DELETE /containers/{ref}``."""
        self._call(self._api.remove_container, ref, v=volumes, force=force)

    def pause(self, ref: str) -> None:
        """``POST /containers/{ref}/pause``."""
        self._call(self._api.pause, ref)

    def unpause(self, ref: str) -> None:
        """``POST /containers/{ref}/unpause``."""
        self._call(self._api.unpause, ref)

    def rename(self, ref: str, name: str) -> None:
        """``POST /containers/{ref}/rename``."""
        self._call(self._api.rename, ref, name)

    def update(self, ref: str, body: JSONDict) -> JSONDict:
        """``POST /containers/{ref}/update`` with a resources body."""
        return dict(self._json("POST", self._url("/containers/{0}/update", ref), json=body) or {})

    def top(self, ref: str, ps_args: str | None = None) -> JSONDict:
        """``GET /containers/{ref}/top``."""
        return dict(self._call(self._api.top, ref, ps_args))

    def wait(self, ref: str, condition: str = "not-running") -> WaitHandle:
        """Send ``POST /containers/{ref}/wait`` and return once its headers arrived."""
        url = self._url("/containers/{0}/wait", ref)
        with mapped_errors(self.host):
            resp = self._api.post(url, params={"condition": condition}, stream=True, timeout=None)
            self._api._raise_for_status(resp)

        def fetch() -> JSONDict:
            with mapped_errors(self.host):
                return dict(json.loads(resp.content))

        return WaitHandle(fetch)

    def attach(
        self, ref: str, stdin: bool, stdout: bool = True, stderr: bool = True, logs: bool = False
    ) -> HijackedStream:
        """``POST /containers/{ref}/attach`` hijacked."""
        params = {
            "stream": 1,
            "stdin": int(stdin),
            "stdout": int(stdout),
            "stderr": int(stderr),
            "logs": int(logs),
        }
        return self._hijack(self._url("/containers/{0}/attach", ref), params)

    def resize(self, ref: str, height: int, width: int) -> None:
        """``POST /containers/{ref}/resize``."""
        self._call(self._api.resize, ref, height, width)

    def logs(self, ref: str, params: dict[str, Any]) -> Iterator[bytes]:
        """``GET /containers/{ref}/logs``: raw bytes (frames unless the container has a TTY)."""
        with mapped_errors(self.host):
            resp = self._api.get(
                self._url("/containers/{0}/logs", ref), params=params, stream=True, timeout=None
            )
            self._api._raise_for_status(resp)
            yield from resp.iter_content(chunk_size=None)

    def stats(self, ref: str, stream: bool = False) -> Iterator[JSONDict]:
        """``GET /containers/{ref}/stats``: one sample, or a sample per second when streaming."""
        params = {"stream": int(stream)}
        return self._stream_json("GET", self._url("/containers/{0}/stats", ref), params=params, timeout=None)

    # -- a container's files (cp, diff, export, commit) ---------------------------------------
    def stat_path(self, ref: str, path: str) -> JSONDict:
        """``HEAD /containers/{ref}/archive?path=``: Docker's ContainerPathStat of ``path``."""

        def go() -> JSONDict:
            resp = self._api.head(self._url("/containers/{0}/archive", ref), params={"path": path})
            self._api._raise_for_status(resp)
            return _path_stat(resp.headers.get("X-Docker-Container-Path-Stat", ""))

        return self._call(go)

    def get_archive(self, ref: str, path: str) -> tuple[JSONDict, Iterator[bytes]]:
        """``GET /containers/{ref}/archive?path=``: (the path's stat, the tar's bytes)."""
        with mapped_errors(self.host):
            resp = self._api.get(
                self._url("/containers/{0}/archive", ref), params={"path": path}, stream=True, timeout=None
            )
            self._api._raise_for_status(resp)
        info = _path_stat(resp.headers.get("X-Docker-Container-Path-Stat", ""))

        return info, self._stream_body(resp, "archive")

    def put_archive(
        self,
        ref: str,
        path: str,
        data: IO[bytes] | Iterator[bytes],
        *,
        copy_uid_gid: bool = False,
        no_overwrite_dir_non_dir: bool = True,
    ) -> None:
        """``PUT /containers/{ref}/archive?path=``: extract the tar ``data`` into directory ``path``."""
        params = {
            "path": path,
            "noOverwriteDirNonDir": "true" if no_overwrite_dir_non_dir else "false",
            "copyUIDGID": "true" if copy_uid_gid else "false",
        }
        url = self._url("/containers/{0}/archive", ref)
        headers = {"Content-Type": "application/x-tar"}
        self._json("PUT", url, params=params, data=data, headers=headers, timeout=None)

    def container_changes(self, ref: str) -> list[JSONDict]:
        """``GET /containers/{ref}/changes``: ``[{"Path": .., "Kind": 0|1|2}]``."""
        return list(self._json("GET", self._url("/containers/{0}/changes", ref)) or [])

    def export_container(self, ref: str) -> Iterator[bytes]:
        """``GET /containers/{ref}/export``: the root filesystem as a tar."""
        with mapped_errors(self.host):
            resp = self._api.get(self._url("/containers/{0}/export", ref), stream=True, timeout=None)
            self._api._raise_for_status(resp)
        yield from self._stream_body(resp, "export")

    def _stream_body(self, resp: Any, what: str) -> Iterator[bytes]:
        """A streamed response body; a stream the daemon cut short raises."""
        from requests.exceptions import ChunkedEncodingError

        with mapped_errors(self.host):
            try:
                yield from resp.iter_content(chunk_size=1 << 16)
            except ChunkedEncodingError as exc:
                raise stream_error(f"the {what} stream was cut short by the daemon: {exc}") from None

    def commit(
        self,
        ref: str,
        repository: str | None = None,
        tag: str | None = None,
        *,
        message: str = "",
        author: str = "",
        pause: bool = True,
        changes: list[str] | None = None,
    ) -> JSONDict:
        """``POST /commit``: ``{"Id": "sha256:.."}``."""
        params: dict[str, Any] = {"container": ref, "pause": "1" if pause else "0"}
        if repository:
            params["repo"] = repository
        if tag:
            params["tag"] = tag
        if message:
            params["comment"] = message
        if author:
            params["author"] = author
        if changes:
            params["changes"] = changes
        return dict(self._json("POST", self._url("/commit"), params=params, timeout=None))

    # -- exec ----------------------------------------------------------------------------------
    def exec_create(self, ref: str, body: JSONDict) -> str:
        """``POST /containers/{ref}/exec``: the exec id."""
        res = self._json("POST", self._url("/containers/{0}/exec", ref), json=body)
        return str(res["Id"])

    def exec_start(self, exec_id: str, tty: bool, detach: bool = False) -> HijackedStream | None:
        """``POST /exec/{id}/start``: hijacked unless ``detach``."""
        url = self._url("/exec/{0}/start", exec_id)
        body = {"Detach": detach, "Tty": tty}
        if detach:
            self._json("POST", url, json=body)
            return None
        return self._hijack(url, {}, body)

    def exec_inspect(self, exec_id: str) -> JSONDict:
        """``GET /exec/{id}/json``."""
        return dict(self._call(self._api.exec_inspect, exec_id))

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """``POST /exec/{id}/resize``."""
        self._call(self._api.exec_resize, exec_id, height=height, width=width)

    # -- images --------------------------------------------------------------------------------
    def images(
        self, all: bool = False, filters: dict[str, list[str]] | None = None, digests: bool = False
    ) -> list[JSONDict]:
        """``GET /images/json``."""
        params: dict[str, Any] = {"all": int(all)}
        if filters:
            params["filters"] = json.dumps(filters)
        if digests:
            params["digests"] = 1
        return list(self._json("GET", self._url("/images/json"), params=params))

    def inspect_image(self, ref: str) -> JSONDict:
        """``GET /images/{ref}/json``."""
        return dict(self._call(self._api.inspect_image, ref))

    def remove_image(self, ref: str, force: bool = False, noprune: bool = False) -> list[JSONDict]:
        """``DELETE /images/{ref}``: ``[{"Untagged": ..}, {"Deleted": ..}]``."""
        return list(self._call(self._api.remove_image, ref, force=force, noprune=noprune) or [])

    def prune_images(self, filters: dict[str, list[str]] | None = None) -> JSONDict:
        """``POST /images/prune``."""
        return dict(self._call(self._api.prune_images, filters))

    def history(self, ref: str) -> list[JSONDict]:
        """``GET /images/{ref}/history``."""
        return list(self._call(self._api.history, ref))

    def tag(self, ref: str, repository: str, tag: str | None = None) -> None:
        """``POST /images/{ref}/tag``."""
        self._call(self._api.tag, ref, repository, tag)

    def pull(
        self,
        repository: str,
        tag: str | None = None,
        platform: str | None = None,
        registry_auth: str = "e30=",
        all_tags: bool = False,
    ) -> Iterator[JSONDict]:
        """``POST /images/create?fromImage=``: progress messages (``all_tags``: no tag, every tag)."""
        params: dict[str, Any] = {"fromImage": repository}
        if not all_tags:
            params["tag"] = tag or "latest"
        if platform:
            params["platform"] = platform
        headers = {"X-Registry-Auth": registry_auth}
        return self._stream_json(
            "POST", self._url("/images/create"), params=params, headers=headers, timeout=None
        )

    def push(
        self, repository: str, tag: str | None = None, registry_auth: str = "e30="
    ) -> Iterator[JSONDict]:
        """``POST /images/{name}/push?tag=``: progress messages (no tag: every tag of the repository)."""
        params: dict[str, Any] = {"tag": tag} if tag else {}
        headers = {"X-Registry-Auth": registry_auth}
        url = self._url("/images/{0}/push", repository)
        return self._stream_json("POST", url, params=params, headers=headers, timeout=None)

    def login(self, username: str, password: str, server: str, identity_token: str = "") -> JSONDict:
        """``POST /auth``: ``{"Status": "Login Succeeded", "IdentityToken": ..}`` or 401."""
        body: JSONDict = {"username": username, "password": password, "serveraddress": server}
        if identity_token:
            body["identitytoken"] = identity_token
        headers = {"Content-Type": "application/json"}
        return dict(self._json("POST", self._url("/auth"), data=json.dumps(body), headers=headers) or {})

    def distribution(self, name: str, registry_auth: str = "e30=") -> JSONDict:
        """``GET /distribution/{name}/json``: the registry's descriptor and platforms of an image."""
        headers = {"X-Registry-Auth": registry_auth}
        return dict(self._json("GET", self._url("/distribution/{0}/json", name), headers=headers) or {})

    def import_image(
        self,
        source: IO[bytes],
        repository: str | None,
        tag: str | None,
        message: str | None,
        changes: list[str],
    ) -> Iterator[JSONDict]:
        """``POST /images/create?fromSrc=-`` with a tar body: progress messages."""
        params: dict[str, Any] = {"fromSrc": "-"}
        if repository:
            params["repo"] = repository
        if tag:
            params["tag"] = tag
        if message:
            params["message"] = message
        if changes:
            params["changes"] = changes
        headers = {"Content-Type": "application/tar"}
        url = self._url("/images/create")
        return self._stream_json("POST", url, params=params, data=source, headers=headers, timeout=None)

    def save_images(self, names: list[str], fmt: str = "docker") -> Iterator[bytes]:
        """``GET /images/get?names=..``: the archive's bytes, in chunks (``fmt="oci"`` is skiff-only)."""
        params: dict[str, Any] = {"names": names}
        if fmt != "docker":
            params["format"] = fmt
        with mapped_errors(self.host):
            resp = self._api.get(self._url("/images/get"), params=params, stream=True, timeout=None)
            self._api._raise_for_status(resp)
            try:
                yield from resp.iter_content(chunk_size=1 << 20)
            except requests.exceptions.ChunkedEncodingError as exc:
                # The daemon cuts the stream when it cannot finish the archive (see its log).
                raise stream_error(f"the archive stream was cut short by the daemon: {exc}") from None

    def load_images(self, source: IO[bytes] | Iterator[bytes], quiet: bool = False) -> Iterator[JSONDict]:
        """``POST /images/load`` with an archive body: progress and ``Loaded image`` messages."""
        headers = {"Content-Type": "application/x-tar"}
        url = self._url("/images/load")
        params = {"quiet": "1" if quiet else "0"}
        return self._stream_json("POST", url, params=params, data=source, headers=headers, timeout=None)

    def bootstrap_image(self, name: str, tag: str | None = None) -> Iterator[JSONDict]:
        """skiff-only ``POST /skiff/images/bootstrap``: build a base image locally; progress messages."""
        params: dict[str, Any] = {"name": name}
        if tag:
            params["tag"] = tag
        url = self._url("/skiff/images/bootstrap", versioned=False)
        return self._stream_json("POST", url, params=params, timeout=None)

    def build(self, context: IO[bytes], params: dict[str, Any]) -> Iterator[JSONDict]:
        """``POST /build`` with a tar context: the build's messages, ``errorDetail`` lines included.

        Unlike the other progress streams an error line does not raise here: ``docker build``
        prints it and exits with its ``code`` (a failed RUN's status).
        """
        headers = {"Content-Type": "application/x-tar", "X-Registry-Config": "e30="}
        with mapped_errors(self.host):
            resp = self._api.request(
                "POST",
                self._url("/build"),
                params=params,
                data=context,
                headers=headers,
                stream=True,
                timeout=None,
            )
            self._api._raise_for_status(resp)
            for line in resp.iter_lines():
                if line.strip():
                    msg = json.loads(line)
                    if isinstance(msg, dict):
                        yield msg

    def prune_builds(self, all_: bool = False) -> JSONDict:
        """``POST /build/prune``: ``{"CachesDeleted": [..], "SpaceReclaimed": n}``."""
        return dict(self._json("POST", self._url("/build/prune"), params={"all": int(all_)}) or {})

    # -- networks ------------------------------------------------------------------------------
    def networks(self, filters: dict[str, list[str]] | None = None) -> list[JSONDict]:
        """``GET /networks``."""
        params = {"filters": json.dumps(filters)} if filters else {}
        return list(self._json("GET", self._url("/networks"), params=params) or [])

    def inspect_network(self, ref: str, verbose: bool = False) -> JSONDict:
        """``GET /networks/{ref}``."""
        params = {"verbose": "true"} if verbose else {}
        return dict(self._json("GET", self._url("/networks/{0}", ref), params=params))

    def create_network(self, body: JSONDict) -> JSONDict:
        """``POST /networks/create``: ``{"Id": .., "Warning": ..}``."""
        return dict(self._json("POST", self._url("/networks/create"), json=body))

    def remove_network(self, ref: str) -> None:
        """``DELETE /networks/{ref}``."""
        self._json("DELETE", self._url("/networks/{0}", ref))

    def connect_network(self, ref: str, container: str, endpoint_config: JSONDict | None = None) -> None:
        """``POST /networks/{ref}/connect``."""
        body: JSONDict = {"Container": container, "EndpointConfig": endpoint_config or {}}
        self._json("POST", self._url("/networks/{0}/connect", ref), json=body)

    def disconnect_network(self, ref: str, container: str, force: bool = False) -> None:
        """``POST /networks/{ref}/disconnect``."""
        body: JSONDict = {"Container": container, "Force": force}
        self._json("POST", self._url("/networks/{0}/disconnect", ref), json=body)

    def prune_networks(self, filters: dict[str, list[str]] | None = None) -> JSONDict:
        """``POST /networks/prune``: ``{"NetworksDeleted": [names]}``."""
        params = {"filters": json.dumps(filters)} if filters else {}
        return dict(self._json("POST", self._url("/networks/prune"), params=params) or {})

    # -- volumes -------------------------------------------------------------------------------
    def volumes(self, filters: dict[str, list[str]] | None = None) -> JSONDict:
        """``GET /volumes``: ``{"Volumes": [..], "Warnings": [..]}``."""
        params = {"filters": json.dumps(filters)} if filters else {}
        return dict(self._json("GET", self._url("/volumes"), params=params) or {})

    def create_volume(self, body: JSONDict) -> JSONDict:
        """``POST /volumes/create`` with ``Name``, ``Driver``, ``DriverOpts``, ``Labels``."""
        return dict(self._json("POST", self._url("/volumes/create"), json=body))

    def inspect_volume(self, name: str) -> JSONDict:
        """``GET /volumes/{name}``."""
        return dict(self._json("GET", self._url("/volumes/{0}", name)))

    def remove_volume(self, name: str, force: bool = False) -> None:
        """``DELETE /volumes/{name}``."""
        self._json("DELETE", self._url("/volumes/{0}", name), params={"force": int(force)})

    def prune_volumes(self, filters: dict[str, list[str]] | None = None) -> JSONDict:
        """``POST /volumes/prune``: ``{"VolumesDeleted": [..], "SpaceReclaimed": n}``."""
        params = {"filters": json.dumps(filters)} if filters else {}
        return dict(self._json("POST", self._url("/volumes/prune"), params=params))

    def close(self) -> None:
        """Release pooled connections."""
        self._api.close()


def _path_stat(header: str) -> JSONDict:
    """The ``X-Docker-Container-Path-Stat`` header (base64 JSON) decoded; {} if absent."""
    import base64

    if not header:
        return {}
    try:
        value = json.loads(base64.b64decode(header))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
