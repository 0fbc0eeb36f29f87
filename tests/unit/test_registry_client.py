"""The registry client's pure parts: challenges, credentials, tokens, errors, endpoints, platforms,
pull/push request parsing, progress shaping, docker's config.json, skiffd's registry settings."""

from __future__ import annotations

import base64
import gzip
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skiff.api.distribution import messages
from skiff.client.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    CredentialStore,
    registry_auth_header,
    server_key,
)
from skiff.daemon.config import DaemonConfig, merge
from skiff.daemon.main import build_config, parse_args
from skiff.engine.distribution import login_domain, pull_spec, push_spec
from skiff.errors import InvalidArgument
from skiff.images.reference import parse_reference
from skiff.registry.auth import (
    AuthConfig,
    Challenge,
    TokenCache,
    auth_from_json,
    decode_registry_auth,
    encode_registry_auth,
    parse_challenges,
    parse_token_response,
)
from skiff.registry.client import error_from_body
from skiff.registry.client_download import GunzipReader
from skiff.registry.client_endpoints import (
    EndpointResolver,
    RegistryConfig,
    validate_insecure,
    validate_mirror,
)
from skiff.registry.client_events import (
    IndexEntry,
    Platform,
    Progress,
    PushedTag,
    parse_index_entries,
    parse_platform,
    select_manifest,
)
from skiff.registry.client_metadata import DistributionMetadata, KeptManifest, LayerSource
from skiff.registry.client_pull import translate_pull_error

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64

# -- challenges ------------------------------------------------------------------------------------


def test_bearer_challenge_as_docker_hub_sends_it() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
    (c,) = parse_challenges([header])
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }


def test_basic_challenge_and_several_in_one_header() -> None:
    got = parse_challenges(['Basic realm="Registry Realm", Bearer realm="http://t/token",service=reg'])
    assert got == [
        Challenge("basic", {"realm": "Registry Realm"}),
        Challenge("bearer", {"realm": "http://t/token", "service": "reg"}),
    ]


def test_challenges_across_headers_case_and_escapes() -> None:
    got = parse_challenges(
        ['BASIC Realm="a \\"quoted\\" realm"', 'bearer realm=http://x/t?a=b , error="insufficient_scope"']
    )
    assert got[0] == Challenge("basic", {"realm": 'a "quoted" realm'})
    assert got[1].params == {"realm": "http://x/t?a=b", "error": "insufficient_scope"}


def test_token68_challenge_is_kept_without_params() -> None:
    assert parse_challenges(["Negotiate abc123=="]) == [Challenge("negotiate", {})]


@given(st.text(max_size=200))
def test_challenge_parser_never_raises(text: str) -> None:
    for c in parse_challenges([text]):
        assert c.scheme == c.scheme.lower()


# -- credentials in X-Registry-Auth and /auth ---------------------------------------------------------


def _b64url(obj: object, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()
    return text if pad else text.rstrip("=")


def test_x_registry_auth_forms() -> None:
    assert decode_registry_auth(None).anonymous
    assert decode_registry_auth("").anonymous
    assert decode_registry_auth("e30=").anonymous  # {} as the docker CLI sends when not logged in
    full = {"username": "u", "password": "p?>", "serveraddress": "localhost:5000"}
    for header in (
        _b64url(full),
        _b64url(full, pad=False),
        base64.b64encode(json.dumps(full).encode()).decode(),
    ):
        auth = decode_registry_auth(header)
        assert (auth.username, auth.password, auth.server_address) == ("u", "p?>", "localhost:5000")
    token = decode_registry_auth(_b64url({"identitytoken": "tok", "registrytoken": "rt"}))
    assert (token.identity_token, token.registry_token, token.anonymous) == ("tok", "rt", False)
    assert decode_registry_auth(encode_registry_auth(AuthConfig("a", "b", server_address="s"))) == AuthConfig(
        "a", "b", server_address="s"
    )


def test_auth_field_and_case_insensitive_keys() -> None:
    encoded = base64.b64encode(b"alice:se:cret").decode()
    auth = auth_from_json({"Auth": encoded, "ServerAddress": "r"})
    assert (auth.username, auth.password, auth.server_address) == ("alice", "se:cret", "r")
    assert auth_from_json({"username": "bob", "password": "x", "auth": encoded}).username == "bob"


@pytest.mark.parametrize(
    "bad",
    ["%%%", base64.b64encode(b"not json").decode(), _b64url([1, 2]), _b64url({"username": 3})],
)
def test_bad_x_registry_auth_is_400(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        decode_registry_auth(bad)


def test_bad_auth_field() -> None:
    with pytest.raises(InvalidArgument, match="user:password"):
        auth_from_json({"auth": base64.b64encode(b"nocolon").decode()})


# -- tokens ----------------------------------------------------------------------------------------


def test_token_response_forms() -> None:
    t = parse_token_response(b'{"token": "abc", "expires_in": 300}', now=100.0)
    assert (t.value, t.expires_at) == ("abc", 400.0)
    t = parse_token_response(b'{"access_token": "xyz", "refresh_token": "r"}', now=0.0)
    assert (t.value, t.expires_at, t.refresh_token) == ("xyz", 60.0, "r")  # the spec's default 60 s
    for bad in (b"nope", b"[]", b'{"expires_in": 5}', b'{"token": ""}'):
        with pytest.raises(InvalidArgument):
            parse_token_response(bad)


def test_token_cache_keys_and_expiry() -> None:
    cache = TokenCache()
    alice = AuthConfig("alice", "pw")
    key = TokenCache.key("r", "s", ("repository:a:pull", "repository:b:pull"), alice)
    assert key == TokenCache.key("r", "s", ("repository:b:pull", "repository:a:pull"), alice)
    assert key != TokenCache.key(
        "r", "s", ("repository:a:pull", "repository:b:pull"), AuthConfig("bob", "pw")
    )
    assert "pw" not in repr(key)
    cache.put(key, parse_token_response(b'{"token": "t", "expires_in": 100}', now=0.0))
    assert cache.get(key, now=50.0) is not None
    assert cache.get(key, now=95.0) is None  # within the safety margin: fetch a new one
    assert cache.get(key, now=50.0) is None  # and it is gone


# -- registry errors -------------------------------------------------------------------------------


def test_registry_error_bodies() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}'
    err = error_from_body(404, body)
    assert (err.code, err.message, err.registry_status) == (
        "MANIFEST_UNKNOWN",
        "manifest unknown: manifest unknown",
        404,
    )
    err = error_from_body(401, b"")
    assert (err.code, err.message) == ("UNAUTHORIZED", "unauthorized: authentication required")
    scope = [Challenge("bearer", {"realm": "r", "error": "insufficient_scope"})]
    err = error_from_body(401, body, scope)
    assert (err.code, err.message) == ("DENIED", "denied: requested access to the resource is denied")
    err = error_from_body(502, b"<html>bad gateway</html>")
    assert err.code == "" and "502" in err.message and not err.unreachable
    err = error_from_body(401, b'{"details":"incorrect username or password"}')
    assert err.message == "unauthorized: incorrect username or password"


def test_pull_errors_read_as_dockerd_says_them() -> None:
    ref = parse_reference("localhost:5000/app:v1")
    err = translate_pull_error(
        error_from_body(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'), ref
    )
    assert (err.status, err.message) == (
        404,
        "manifest for localhost:5000/app:v1 not found: manifest unknown: manifest unknown",
    )
    denied = [Challenge("bearer", {"error": "insufficient_scope"})]
    err = translate_pull_error(error_from_body(401, b"", denied), parse_reference("nope"))
    assert err.status == 404
    assert err.message == (
        "pull access denied for nope, repository does not exist or may require 'docker login': "
        "denied: requested access to the resource is denied"
    )
    err = translate_pull_error(
        error_from_body(
            404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}'
        ),
        ref,
    )
    assert (err.status, err.message) == (
        404,
        "repository localhost:5000/app not found: name unknown: repository name not known to registry",
    )
    assert translate_pull_error(error_from_body(401, b""), ref).status == 401


# -- endpoints -------------------------------------------------------------------------------------


def test_insecure_registries() -> None:
    r = EndpointResolver(RegistryConfig(insecure=("myreg:5000", "10.20.0.0/16", "plainhost")))
    for host in (
        "localhost",
        "localhost:5000",
        "127.0.0.1:5000",
        "127.3.4.5",
        "[::1]:5000",
        "myreg:5000",
        "10.20.3.4:80",
        "plainhost:443",
    ):
        assert r.is_insecure(host), host
    for host in ("myreg:5001", "10.21.0.1:5000", "192.0.2.1:5000"):
        assert not r.is_insecure(host), host


def test_endpoints_mirrors_only_for_docker_io_pulls() -> None:
    r = EndpointResolver(RegistryConfig(mirrors=("http://127.0.0.1:5000/", "https://mirror.example:443")))
    eps = r.pull_endpoints("docker.io")
    assert [e.base for e in eps] == [
        "http://127.0.0.1:5000",
        "https://mirror.example:443",
        "https://registry-1.docker.io",
    ]
    assert [e.mirror for e in eps] == [True, True, False]
    assert not eps[1].http_fallback and eps[1].verify_tls
    assert not eps[2].http_fallback and eps[2].verify_tls
    assert [e.base for e in r.pull_endpoints("localhost:5000")] == ["https://localhost:5000"]
    assert r.pull_endpoints("localhost:5000")[0].http_fallback  # tried over HTTPS, then plain HTTP
    assert r.push_endpoint("docker.io").base == "https://registry-1.docker.io"
    assert not r.push_endpoint("docker.io").mirror
    assert r.push_endpoint("localhost:5000").as_http().base == "http://localhost:5000"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "unsupported scheme"),
        ("http://u:p@x", "credentials"),
        ("http://x/path", "path"),
        ("http://x/?a=b", "query"),
        ("mirror.example", "unsupported scheme"),
    ],
)
def test_bad_mirrors(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_mirror(url)


def test_mirror_and_insecure_validation() -> None:
    assert validate_mirror("https://m.example:5000/") == "https://m.example:5000"
    assert validate_insecure("10.0.0.0/8") == "10.0.0.0/8"
    with pytest.raises(InvalidArgument, match="should not contain"):
        validate_insecure("http://x:5000")
    with pytest.raises(InvalidArgument):
        validate_insecure("10.0.0.0/99")


def test_certs_d_trust(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    (tmp_path / "reg.example:5000").mkdir()
    ca.cert_pem.write_to_path(str(tmp_path / "reg.example:5000" / "ca.crt"))
    r = EndpointResolver(RegistryConfig(certs_dirs=(tmp_path,)))
    ep = r.push_endpoint("reg.example:5000")
    ctx = r.ssl_context(ep)
    assert not isinstance(ctx, bool) and ctx.cert_store_stats()["x509_ca"] >= 1
    assert r.ssl_context(ep) is ctx  # loaded once
    (tmp_path / "reg.example:5000" / "client.cert").write_text("x")
    r2 = EndpointResolver(RegistryConfig(certs_dirs=(tmp_path,)))
    with pytest.raises(InvalidArgument, match=r"missing key client\.key"):
        r2.ssl_context(ep)


# -- platforms -------------------------------------------------------------------------------------


def test_parse_platform() -> None:
    assert parse_platform("linux/amd64") == Platform("linux", "amd64")
    assert parse_platform("linux/arm64/v8") == Platform("linux", "arm64")  # v8 is arm64's default
    assert parse_platform("linux/arm") == Platform("linux", "arm", "v7")
    assert parse_platform("LINUX/x86_64") == Platform("linux", "amd64")
    assert parse_platform("arm64") == Platform("linux", "arm64")
    for bad in ("", "linux//amd64", "a/b/c/d", "/amd64"):
        with pytest.raises(InvalidArgument, match="unknown operating system or architecture"):
            parse_platform(bad)


def _entry(digest: str, os_: str, arch: str, variant: str = "", **kw: object) -> IndexEntry:
    return IndexEntry(
        "application/vnd.oci.image.manifest.v1+json", digest, 100, Platform(os_, arch, variant), **kw
    )  # type: ignore[arg-type]


def test_select_manifest() -> None:
    entries = [
        _entry(D1, "linux", "arm64", "v8"),
        _entry(D2, "linux", "amd64"),
        _entry(D3, "unknown", "unknown", attestation=True),
    ]
    assert select_manifest(entries, Platform("linux", "amd64")) == entries[1]
    assert select_manifest(entries, Platform("linux", "aarch64")) == entries[0]
    assert select_manifest(entries, Platform("linux", "s390x")) is None
    assert select_manifest(entries, Platform("windows", "amd64")) is None
    arm = [_entry(D1, "linux", "arm", "v6"), _entry(D2, "linux", "arm", "v7")]
    assert select_manifest(arm, Platform("linux", "arm")) == arm[1]  # arm means v7
    assert select_manifest(arm, Platform("linux", "arm", "v6")) == arm[0]
    # amd64 micro-architecture levels: the plain entry wins, whatever the order.
    levels = [_entry(D1, "linux", "amd64", "v3"), _entry(D2, "linux", "amd64")]
    assert select_manifest(levels, Platform("linux", "amd64")) == levels[1]
    assert select_manifest([_entry(D1, "linux", "amd64", "v3")], Platform("linux", "amd64")) == _entry(
        D1, "linux", "amd64", "v3"
    )


def test_parse_index_entries() -> None:
    doc = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "m",
                "digest": D1,
                "size": 5,
                "platform": {"os": "linux", "architecture": "arm", "variant": "v6"},
            },
            {
                "mediaType": "m",
                "digest": D2,
                "size": 5,
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            },
        ],
    }
    got = parse_index_entries(json.dumps(doc).encode())
    assert got[0].platform == Platform("linux", "arm", "v6") and not got[0].attestation
    assert got[1].platform is None and got[1].attestation
    for bad in (b"[]", b'{"manifests": [{"digest": "x", "size": 1}]}', b'{"manifests": [1]}', b"{"):
        with pytest.raises(InvalidArgument):
            parse_index_entries(bad)


# -- what the API is asked -------------------------------------------------------------------------


def test_pull_spec() -> None:
    s = pull_spec("busybox", "latest")
    assert (s.ref.canonical(), s.all_tags) == ("docker.io/library/busybox:latest", False)
    s = pull_spec("localhost:5000/app", D1)
    assert (s.ref.digest, s.ref.tag) == (D1, None)
    assert pull_spec("localhost:5000/app", "").all_tags  # no tag anywhere: every tag
    assert pull_spec("busybox:1.36", "").ref.tag == "1.36"
    assert pull_spec("busybox:1.36", "1.37").ref.tag == "1.37"  # the tag parameter wins
    assert pull_spec("alpine", "3", "linux/arm64").platform == Platform("linux", "arm64")
    for bad in (("", "latest"), ("UPPER", "x"), ("busybox", "bad tag!")):
        with pytest.raises(InvalidArgument):
            pull_spec(*bad)


def test_push_spec_and_login_domain() -> None:
    assert push_spec("localhost:5000/app", "v1").familiar() == "localhost:5000/app:v1"
    assert push_spec("localhost:5000/app", "").tag is None  # every tag
    with pytest.raises(InvalidArgument, match="digest"):
        push_spec("app", D1)
    assert login_domain("") == "docker.io"
    assert login_domain("https://index.docker.io/v1/") == "docker.io"
    assert login_domain("http://localhost:5000/v2/") == "localhost:5000"
    assert login_domain("reg.example:443") == "reg.example:443"


def test_progress_messages_as_dockerd_writes_them() -> None:
    assert messages(Progress("Pulling from library/alpine", id="latest")) == [
        {"status": "Pulling from library/alpine", "id": "latest"}
    ]
    assert messages(Progress("Pulling fs layer", id="abc", layer=True)) == [
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "abc"}
    ]
    (m,) = messages(Progress("Downloading", id="abc", layer=True, current=1_500_000, total=3_000_000))
    assert list(m) == ["status", "progressDetail", "progress", "id"]
    assert m["progressDetail"] == {"current": 1_500_000, "total": 3_000_000}
    assert m["progress"].startswith("[" + "=" * 25 + ">") and m["progress"].endswith("1.5MB/3MB")
    assert messages(Progress(f"Digest: {D1}")) == [{"status": f"Digest: {D1}"}]
    assert messages(PushedTag("latest", D1, 528)) == [
        {"status": f"latest: digest: {D1} size: 528"},
        {"progressDetail": {}, "aux": {"Tag": "latest", "Digest": D1, "Size": 528}},
    ]


# -- docker's config.json ----------------------------------------------------------------------------


def test_credential_store_round_trip(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"psFormat": "table {{.ID}}", "auths": {"other:1": {"auth": "eDp5"}}})
    )
    store = CredentialStore(tmp_path)
    assert store.get("localhost:5000") is None
    store.store("localhost:5000", Credentials("alice", "p:w"))
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["psFormat"] == "table {{.ID}}"  # other settings stay
    assert data["auths"]["localhost:5000"] == {"auth": base64.b64encode(b"alice:p:w").decode()}
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o600
    assert store.get("http://localhost:5000/v2/") == Credentials("alice", "p:w")
    store.store("https://index.docker.io/v1/", Credentials("bob", "", "idtoken"))
    assert store.get("docker.io") == Credentials("bob", "", "idtoken")
    assert (
        json.loads((tmp_path / "config.json").read_text())["auths"][DOCKER_HUB_KEY]["identitytoken"]
        == "idtoken"
    )
    assert store.erase("localhost:5000")
    assert not store.erase("localhost:5000")
    assert store.get("other:1") == Credentials("x", "y")
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp files left


def test_credentials_header_and_server_keys(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    assert registry_auth_header("localhost:5000", store) == "e30="
    store.store("localhost:5000", Credentials("u", "p"))
    header = registry_auth_header("localhost:5000", store)
    assert decode_registry_auth(header) == AuthConfig("u", "p", server_address="localhost:5000")
    assert server_key("") == server_key("docker.io") == server_key("index.docker.io") == DOCKER_HUB_KEY
    assert server_key("https://reg:5000/v2/") == "reg:5000"


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    state = tmp_path / "secrets"
    helper.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n'
        f"  store) cat > {state} ;;\n"
        f'  get) if [ -f {state} ]; then cat {state}; else echo "credentials not found in native keychain"; exit 1; fi ;;\n'
        f"  erase) rm -f {state} ;;\n"
        "esac\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    store = CredentialStore(tmp_path)
    assert store.get("reg:5000") is None
    store.store("reg:5000", Credentials("carol", "s3"))
    assert json.loads(state.read_text()) == {"ServerURL": "reg:5000", "Username": "carol", "Secret": "s3"}
    assert json.loads((tmp_path / "config.json").read_text())["auths"] == {
        "reg:5000": {}
    }  # no secret in the file
    assert store.get("reg:5000") == Credentials("carol", "s3")
    assert store.erase("reg:5000") and not state.exists()


def test_broken_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        CredentialStore(tmp_path).get("x")


# -- skiffd's settings -----------------------------------------------------------------------------


def test_daemon_registry_settings() -> None:
    c = merge(
        DaemonConfig(),
        {"registry-mirrors": ["http://127.0.0.1:5000/"], "insecure-registries": ["reg:5000", "10.0.0.0/8"]},
    )
    assert c.registry_mirrors == ("http://127.0.0.1:5000",)
    assert c.insecure_registries == ("reg:5000", "10.0.0.0/8")
    with pytest.raises(InvalidArgument):
        merge(DaemonConfig(), {"registry-mirrors": ["ftp://x"]})
    with pytest.raises(InvalidArgument, match="list of strings"):
        merge(DaemonConfig(), {"insecure-registries": [1]})
    args = parse_args(
        ["--registry-mirror", "https://m.example", "--insecure-registry", "a:1", "--insecure-registry", "b:2"]
    )
    c = build_config(args)
    assert (c.registry_mirrors, c.insecure_registries) == (("https://m.example",), ("a:1", "b:2"))


# -- distribution metadata -------------------------------------------------------------------------


def test_distribution_metadata(tmp_path: Path) -> None:
    md = DistributionMetadata(tmp_path / "d.db")
    src = LayerSource(D1, D2, "application/vnd.docker.image.rootfs.diff.tar.gzip", 10, "localhost:5000/a/b")
    assert (src.registry, src.path) == ("localhost:5000", "a/b")
    md.record(KeptManifest(D3, "localhost:5000/a/b", D1, "m", b"{}"), [src])
    assert md.manifests(D3) == [KeptManifest(D3, "localhost:5000/a/b", D1, "m", b"{}")]
    assert md.layer_sources(D1) == [src]
    md.forget_source(src)
    assert md.layer_sources(D1) == []
    md.record(None, [src])
    md.prune(image_ids=set(), diff_ids={D1})
    assert md.manifests(D3) == [] and md.layer_sources(D1) == [src]
    md.prune(image_ids=set(), diff_ids=set())
    assert md.layer_sources(D1) == []
    md.close()


# -- gunzip ----------------------------------------------------------------------------------------


class _Chunks:
    """A reader that hands out at most ``step`` bytes per read (as a download does)."""

    def __init__(self, data: bytes, step: int = 7000) -> None:
        self.data, self.pos, self.step = data, 0, step

    def read(self, n: int = -1) -> bytes:
        size = self.step if n < 0 else min(n, self.step)
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out


def _drain(reader: GunzipReader) -> bytes:
    out = bytearray()
    while chunk := reader.read(1 << 16):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("chunk", [1 << 10, 1 << 20])
def test_gunzip_reader(chunk: int) -> None:
    plain = os.urandom(300_000) + b"a" * 500_000
    assert _drain(GunzipReader(_Chunks(gzip.compress(plain)), chunk)) == plain  # type: ignore[arg-type]
    two = gzip.compress(plain[:1000]) + b"\0" * 3000 + gzip.compress(plain[1000:]) + b"\0" * 10
    assert _drain(GunzipReader(_Chunks(two), chunk)) == plain  # members, zero padding  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="gzip"):
        _drain(GunzipReader(_Chunks(gzip.compress(plain) + b"garbage"), chunk))  # type: ignore[arg-type]
    assert _drain(GunzipReader(_Chunks(plain), chunk)) == plain  # not gzip: passed through  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="ends early"):
        _drain(GunzipReader(_Chunks(gzip.compress(plain)[:-100]), chunk))  # type: ignore[arg-type]
    bad = bytearray(gzip.compress(plain))
    bad[-6] ^= 0xFF  # the CRC
    with pytest.raises(InvalidArgument, match="gzip"):
        _drain(GunzipReader(_Chunks(bytes(bad)), chunk))  # type: ignore[arg-type]
