"""skiff's registry served in-process (a thread, a loopback port): auth modes, manifest and upload
rules beyond the conformance workflows, restarts, and what gc keeps."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
import string
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import bcrypt
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skiff.errors import Conflict
from skiff.registry.server import ServeConfig, collect_garbage, serve
from skiff.registry.server.serve import lock_root
from tests.registry_support import OCI_MANIFEST, Api, image_config, image_manifest, sha256


class Server:
    """serve() on its own loop in a thread; stopped through its ``stop`` event."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        assert self.url, "registry did not start"

    def _run(self) -> None:
        def ready(url: str) -> None:
            self.url = url
            self._ready.set()

        try:
            self._loop.run_until_complete(serve(self.config, on_ready=ready, stop=self._stop))
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def server(root: Path) -> Iterator[Server]:
    s = Server(ServeConfig(root=root, port=0))
    yield s
    s.stop()


@pytest.fixture
def api(server: Server) -> Api:
    return Api(server.url)


def codes(r: requests.Response) -> list[str]:
    return [e["code"] for e in r.json()["errors"]]


def htpasswd(path: Path, users: dict[str, str]) -> Path:
    path.write_text(
        "".join(
            f"{u}:$2y${bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode()[4:]}\n" for u, p in users.items()
        )
    )
    return path


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- HTTP details -------------------------------------------------------------------------------


def test_errors_and_headers(api: Api) -> None:
    r = api("GET", "/v2/nothing/here")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/json"
    assert codes(r) == ["UNSUPPORTED"]
    r = api("PUT", "/v2/a/tags/list")
    assert (r.status_code, codes(r)) == (405, ["UNSUPPORTED"])
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    r = api("GET", "/v2/a/tags/list", params={"n": "-1"})
    assert r.status_code == 400
    r = api("GET", "/v2/A/tags/list")
    assert (r.status_code, codes(r)) == (400, ["NAME_INVALID"])


def test_head_manifest_has_no_body(api: Api) -> None:
    digest, body = api.push_image("x/y", "v1", [b"layer"])
    r = api("HEAD", "/v2/x/y/manifests/v1")
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(body)
    assert r.content == b""
    assert r.headers["ETag"] == f'"{digest}"'


def test_manifest_rules(api: Api) -> None:
    config = image_config([], "rules")
    api.push_blob("m/r", config)
    body = image_manifest(config, [])
    r = api.push_manifest("m/r", "v1", body, "application/vnd.docker.distribution.manifest.v2+json")
    assert r.status_code == 400
    assert "does not match Content-Type" in r.json()["errors"][0]["message"]
    r = api.push_manifest("m/r", ".bad", body, OCI_MANIFEST)
    assert (r.status_code, codes(r)) == (400, ["MANIFEST_INVALID"])
    huge = body[:-1] + b"," + b" " * (4 * 1024 * 1024) + b"}"
    r = api.push_manifest("m/r", "huge", huge, OCI_MANIFEST)
    assert (r.status_code, codes(r)) == (413, ["SIZE_INVALID"])
    # By digest with extra tags: one OCI-Tag per tag.
    r = api(
        "PUT",
        f"/v2/m/r/manifests/{sha256(body)}?tag=a&tag=b",
        data=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201
    assert r.headers.get("OCI-Tag") == "a, b"
    assert api("GET", "/v2/m/r/tags/list").json()["tags"] == ["a", "b"]
    # A tag moves to a new manifest.
    config2 = image_config([], "rules2")
    api.push_blob("m/r", config2)
    body2 = image_manifest(config2, [])
    assert api.push_manifest("m/r", "a", body2, OCI_MANIFEST).status_code == 201
    assert api("GET", "/v2/m/r/manifests/a").content == body2
    assert api("GET", "/v2/m/r/manifests/b").content == body


def test_blobs_are_per_repository(api: Api, root: Path) -> None:
    data = secrets.token_bytes(1000)
    digest = api.push_blob("one/repo", data)
    assert api("HEAD", f"/v2/other/repo/blobs/{digest}").status_code == 404
    api.push_blob("other/repo", data)
    assert api("HEAD", f"/v2/other/repo/blobs/{digest}").status_code == 200
    # One copy on disk for both.
    assert [p.name for p in (root / "content/blobs/sha256").iterdir()] == [digest[7:]]


def test_upload_errors(api: Api, root: Path) -> None:
    r = api("POST", "/v2/u/a/blobs/uploads/")
    location = api.location(r)
    # Another repository cannot use this session.
    other = location.replace("/v2/u/a/", "/v2/u/b/")
    assert codes(api("GET", other)) == ["BLOB_UPLOAD_UNKNOWN"]
    assert codes(api("GET", location.rsplit("/", 1)[0] + "/../../x")) in (
        ["BLOB_UPLOAD_UNKNOWN"],
        ["UNSUPPORTED"],
    )
    r = api("PUT", location, data=b"abc")
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])
    r = api("PATCH", location, data=b"abcd", headers={"Content-Range": "0-9"})
    assert (r.status_code, codes(r)) == (400, ["SIZE_INVALID"])
    r = api("PATCH", location, data=b"abcd", headers={"Content-Range": "4-0"})
    assert (r.status_code, codes(r)) == (400, ["BLOB_UPLOAD_INVALID"])
    r = api("POST", "/v2/u/a/blobs/uploads/", params={"digest-algorithm": "sha512"})
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])
    # A monolithic POST with the wrong digest leaves nothing behind.
    r = api("POST", "/v2/u/a/blobs/uploads/", params={"digest": sha256(b"x")}, data=b"y")
    assert (r.status_code, codes(r)) == (400, ["DIGEST_INVALID"])
    assert not (root / "content/blobs/sha256").exists() or not list((root / "content/blobs/sha256").iterdir())
    assert len(list((root / "uploads").iterdir())) == 1  # only the session opened above


def test_resume_after_restart(root: Path) -> None:
    data = secrets.token_bytes(3 * 1024 * 1024 + 17)
    first = Server(ServeConfig(root=root, port=0))
    try:
        api = Api(first.url)
        r = api("POST", "/v2/r/s/blobs/uploads/")
        path = r.headers["Location"]
        r = api("PATCH", path, data=data[:2_000_000], headers={"Content-Range": "0-1999999"})
        assert r.headers["Range"] == "0-1999999"
    finally:
        first.stop()
    second = Server(ServeConfig(root=root, port=0))
    try:
        api = Api(second.url)
        r = api("GET", path)
        assert (r.status_code, r.headers["Range"]) == (204, "0-1999999")
        r = api("PATCH", path, data=data[2_000_000:], headers={"Content-Range": f"2000000-{len(data) - 1}"})
        assert r.status_code == 202
        r = api("PUT", path, params={"digest": sha256(data)})
        assert r.status_code == 201
        assert api("GET", f"/v2/r/s/blobs/{sha256(data)}").content == data
        assert not list((root / "uploads").iterdir())
    finally:
        second.stop()


def test_one_server_per_root(server: Server, root: Path) -> None:
    with pytest.raises(Conflict, match="another skiff registry"):
        lock_root(root)


# -- basic auth ---------------------------------------------------------------------------------


def test_basic_auth(tmp_path: Path) -> None:
    config = ServeConfig(
        root=tmp_path / "r", port=0, htpasswd=htpasswd(tmp_path / "htpasswd", {"alice": "pw"})
    )
    s = Server(config)
    try:
        api = Api(s.url)
        r = api("GET", "/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="skiff-registry"'
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert codes(r) == ["UNAUTHORIZED"]
        assert api("GET", "/v2/", headers=basic("alice", "nope")).status_code == 401
        assert api("GET", "/v2/", headers=basic("bob", "pw")).status_code == 401
        good = Api(s.url, headers=basic("alice", "pw"))
        assert good("GET", "/v2/").status_code == 200
        good.push_image("alice/app", "v1", [b"l"])
        assert good("GET", "/v2/_catalog").json()["repositories"] == ["alice/app"]
        assert api("GET", "/v2/alice/app/manifests/v1").status_code == 401
    finally:
        s.stop()


# -- token auth ---------------------------------------------------------------------------------

ACL = {
    "acl": [
        {"match": {"account": "admin"}, "actions": ["*"]},
        {"match": {"account": "/.+/", "name": "${account}/*"}, "actions": ["pull", "push", "delete"]},
        {"match": {"name": "public/*"}, "actions": ["pull"]},
    ]
}


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "acl.json").write_text(json.dumps(ACL))
    config = ServeConfig(
        root=tmp_path / "r",
        port=0,
        htpasswd=htpasswd(tmp_path / "htpasswd", {"alice": "pa", "bob": "pb", "admin": "px"}),
        token_acl=tmp_path / "acl.json",
    )
    s = Server(config)
    yield s
    s.stop()


def token(url: str, scope: str | list[str], user: str | None = None, password: str = "") -> str:
    headers = basic(user, password) if user else {}
    r = requests.get(
        f"{url}/token", params={"service": "skiff-registry", "scope": scope}, headers=headers, timeout=30
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] > 0
    return str(body["token"])


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def test_token_flow(token_server: Server) -> None:
    url = token_server.url
    api = Api(url)
    r = api("GET", "/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="{url}/token",service="skiff-registry"'
    r = api("HEAD", "/v2/alice/app/blobs/" + sha256(b""))
    assert r.headers["WWW-Authenticate"].endswith(',scope="repository:alice/app:pull"')
    r = api("POST", "/v2/alice/app/blobs/uploads/")
    assert r.headers["WWW-Authenticate"].endswith(',scope="repository:alice/app:pull,push"')

    alice = Api(url, headers=bearer(token(url, "repository:alice/app:pull,push", "alice", "pa")))
    assert alice("GET", "/v2/").status_code == 200
    digest, _ = alice.push_image("alice/app", "v1", [b"layer"])
    # The same token does not reach other repositories or actions.
    r = alice("DELETE", f"/v2/alice/app/manifests/{digest}")
    assert r.status_code == 401
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert 'scope="repository:alice/app:delete"' in r.headers["WWW-Authenticate"]
    # Bob asks for alice's repository: his token carries no grant for it.
    bob = Api(url, headers=bearer(token(url, "repository:alice/app:pull,push", "bob", "pb")))
    assert bob("GET", "/v2/alice/app/manifests/v1").status_code == 401
    # Anonymous: public pulls only.
    anon = token(url, ["repository:public/x:pull,push", "repository:alice/app:pull"])
    assert Api(url, headers=bearer(anon))("GET", "/v2/alice/app/manifests/v1").status_code == 401
    # Wrong password, wrong service.
    r = requests.get(
        f"{url}/token", params={"scope": "repository:a:pull"}, headers=basic("alice", "no"), timeout=30
    )
    assert r.status_code == 401
    r = requests.get(f"{url}/token", params={"service": "elsewhere"}, timeout=30)
    assert (r.status_code, codes(r)) == (403, ["DENIED"])
    # The catalog needs registry:catalog:*, which only admin has.
    assert (
        Api(url, headers=bearer(token(url, "registry:catalog:*", "alice", "pa")))(
            "GET", "/v2/_catalog"
        ).status_code
        == 401
    )
    r = Api(url, headers=bearer(token(url, "registry:catalog:*", "admin", "px")))("GET", "/v2/_catalog")
    assert r.json()["repositories"] == ["alice/app"]
    # OAuth2 password grant (POST), as containerd-based clients ask first.
    r = requests.post(
        f"{url}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "pa",
            "scope": "repository:alice/app:pull",
            "service": "skiff-registry",
        },
        timeout=30,
    )
    assert r.status_code == 200
    assert (
        Api(url, headers=bearer(r.json()["access_token"]))("GET", "/v2/alice/app/manifests/v1").status_code
        == 200
    )


def test_mount_needs_pull_on_the_source(token_server: Server) -> None:
    url = token_server.url
    data = b"shared layer"
    admin = Api(
        url,
        headers=bearer(
            token(url, ["repository:public/base:pull,push", "repository:bob/secret:pull,push"], "admin", "px")
        ),
    )
    digest = admin.push_blob("public/base", data)
    admin.push_blob("bob/secret", data)
    scopes = ["repository:alice/app:pull,push", "repository:public/base:pull", "repository:bob/secret:pull"]
    alice = Api(url, headers=bearer(token(url, scopes, "alice", "pa")))
    r = alice("POST", "/v2/alice/app/blobs/uploads/", params={"mount": digest, "from": "bob/secret"})
    assert r.status_code == 202  # no pull on bob/secret: an upload, not a mount
    r = alice("POST", "/v2/alice/app/blobs/uploads/", params={"mount": digest, "from": "public/base"})
    assert r.status_code == 201
    assert alice("GET", f"/v2/alice/app/blobs/{digest}").content == data


# -- gc ----------------------------------------------------------------------------------------


def test_gc_keeps_what_is_needed(server: Server, root: Path) -> None:
    api = Api(server.url)
    shared = b"shared"
    kept_digest, _ = api.push_image("g/kept", "v1", [shared, b"kept only"])
    gone_digest, _ = api.push_image("g/gone", "v1", [shared, b"gone only"])
    pending = api.push_blob("g/pending", b"uploaded, no manifest yet")
    dry = collect_garbage(root, dry_run=True)
    assert dry.sweep.blobs == []
    assert api("DELETE", f"/v2/g/gone/manifests/{gone_digest}").status_code == 202
    dry = collect_garbage(root, dry_run=True)
    assert sorted(b.digest for b in dry.sweep.blobs) == sorted(
        [sha256(b"gone only"), gone_digest, sha256(image_config([sha256(shared), sha256(b"gone only")]))]
    )
    assert dry.sweep.repositories == ["g/gone"]
    assert api("HEAD", f"/v2/g/gone/blobs/{sha256(b'gone only')}").status_code == 200  # dry: nothing changed
    report = collect_garbage(root)
    assert sorted(b.digest for b in report.sweep.blobs) == sorted(b.digest for b in dry.sweep.blobs)
    assert report.sweep.repositories == ["g/gone"]
    assert api("HEAD", f"/v2/g/gone/blobs/{sha256(b'gone only')}").status_code == 404
    assert api("GET", f"/v2/g/kept/manifests/{kept_digest}").status_code == 200
    for layer in (shared, b"kept only"):
        assert api("GET", f"/v2/g/kept/blobs/{sha256(layer)}").content == layer
    # The pending upload survives the grace period, not a zero grace.
    assert api("HEAD", f"/v2/g/pending/blobs/{pending}").status_code == 200
    assert collect_garbage(root, grace=0).sweep.blobs[0].digest == pending
    assert api("HEAD", f"/v2/g/pending/blobs/{pending}").status_code == 404
    assert collect_garbage(root, grace=0).sweep.blobs == []
    assert sorted(api("GET", "/v2/_catalog").json()["repositories"]) == ["g/kept"]


def test_gc_removes_orphans_and_stale_uploads(server: Server, root: Path) -> None:
    api = Api(server.url)
    # A blob file no repository links (what a crash between rename and link leaves).
    orphan = root / "content/blobs/sha256" / ("0" * 64)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan")
    r = api("POST", "/v2/up/x/blobs/uploads/")
    api("PATCH", api.location(r), data=b"partial")
    report = collect_garbage(root)
    assert [b.digest for b in report.sweep.blobs] == ["sha256:" + "0" * 64]
    assert report.uploads == []
    report = collect_garbage(root, upload_expiry=-1)
    assert len(report.uploads) == 1
    assert api("GET", api.location(r)).status_code == 404


def test_gc_waits_for_writers(server: Server, root: Path) -> None:
    """gc's sweep and a blob commit serialise on the database's write lock."""
    db = sqlite3.connect(root / "registry.db", timeout=0.1)
    db.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            from skiff.registry.server.storage import RegistryStore

            RegistryStore(root, busy_timeout=0.2).sweep(0)
    finally:
        db.execute("ROLLBACK")
        db.close()


def test_config_errors(tmp_path: Path) -> None:
    base = ServeConfig(root=tmp_path / "r", port=0)
    for config, message in [
        (replace(base, tls_cert=tmp_path / "c.pem"), "go together"),
        (replace(base, token_realm="https://x/token"), "needs --token-acl"),
    ]:
        with pytest.raises(Exception, match=message):
            Server(config)


# -- never a 500 -----------------------------------------------------------------------------------

_SEGMENT = st.one_of(
    st.sampled_from(["a", "A", "a/b", "..", "_catalog", "x" * 300, "%2e%2e", "a//b", "blobs", "manifests"]),
    st.text(string.ascii_letters + string.digits + "._-:/%", max_size=40),
)
_REF = st.one_of(
    st.sampled_from(["latest", "sha256:" + "a" * 64, "sha256:xyz", "sha512:" + "b" * 128, ".x", "-"]),
    st.text(string.printable.strip(), max_size=20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]),
    name=_SEGMENT,
    kind=st.sampled_from(["manifests", "blobs", "blobs/uploads", "tags/list", "referrers"]),
    ref=_REF,
    query=st.dictionaries(
        st.sampled_from(["digest", "mount", "from", "n", "last", "tag", "artifactType", "digest-algorithm"]),
        st.text(string.printable.strip(), max_size=20),
        max_size=3,
    ),
    headers=st.dictionaries(
        st.sampled_from(["Content-Range", "Range", "Content-Type", "Authorization"]),
        st.text(string.ascii_letters + string.digits + " -=/*,:;", max_size=30),
        max_size=3,
    ),
    body=st.binary(max_size=200),
)
def test_hostile_requests_are_never_500(
    api: Api,
    method: str,
    name: str,
    kind: str,
    ref: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
) -> None:
    r = api(method, f"/v2/{name}/{kind}/{ref}", params=query, headers=headers, data=body)
    assert r.status_code < 500, r.text
    if r.status_code >= 400 and method != "HEAD":
        assert r.json()["errors"][0]["code"]
