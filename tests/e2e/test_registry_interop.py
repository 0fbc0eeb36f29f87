"""skopeo (containers/image, a real third-party client) against ``skiff registry serve``: copies in
and out (docker-archive -> registry -> oci layout, registry -> registry), multi-platform indexes,
deletes, htpasswd basic auth, the bearer-token flow, and TLS with a given certificate."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme

from tests.registry_support import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Api,
    RegistryProc,
    docker_archive,
    index_manifest,
    layer_tar,
    sha256,
    skiff_registry,
)

PLAIN = ["--src-tls-verify=false", "--dest-tls-verify=false"]


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProc]:
    with skiff_registry(tmp_path_factory.mktemp("interop") / "root") as reg:
        yield reg


LAYERS = [layer_tar({"etc/hello": b"hello\n"}), layer_tar({"usr/share/data.bin": bytes(range(256)) * 4000})]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("archive") / "img.tar"
    docker_archive(path, LAYERS, "example/img:v1", marker="interop")
    return path


def blobs_in(root: Path) -> set[str]:
    return {"sha256:" + p.name for p in (root / "content/blobs/sha256").iterdir()}


def read_layout(layout: Path, tag: str) -> tuple[dict[str, object], list[bytes]]:
    """An OCI layout's manifest for ``tag`` and its layers, each checked against its digest."""
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )

    def blob(digest: str) -> bytes:
        data = (layout / "blobs/sha256" / digest[7:]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    manifest = json.loads(blob(entry["digest"]))
    blob(manifest["config"]["digest"])
    return manifest, [blob(layer["digest"]) for layer in manifest["layers"]]


def test_skopeo_round_trip(registry: RegistryProc, archive: Path, tmp_path: Path) -> None:
    ref = f"docker://{registry.host}/example/img:v1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", ref)
    info = json.loads(skopeo("inspect", "--tls-verify=false", ref).stdout)
    assert info["Labels"] == {"marker": "interop"}
    assert info["RepoTags"] == ["v1"]
    assert len(info["Layers"]) == 2
    # Out into an OCI layout: the same layer bytes come back.
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path}/layout:v1")
    manifest, layers = read_layout(tmp_path / "layout", "v1")
    assert manifest["mediaType"] == OCI_MANIFEST
    assert [gunzipped(b) for b in layers] == LAYERS  # skopeo gzips layers for a registry
    # And back from the layout into the registry under another name, as OCI.
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{tmp_path}/layout:v1",
        f"docker://{registry.host}/from/layout:oci",
    )
    r = requests.get(
        f"{registry.url}/v2/from/layout/manifests/oci", headers={"Accept": OCI_MANIFEST}, timeout=30
    )
    assert r.headers["Content-Type"] == OCI_MANIFEST


def gunzipped(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def test_registry_to_registry_shares_blobs(registry: RegistryProc, archive: Path) -> None:
    src = f"docker://{registry.host}/share/src:v1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", src)
    before = blobs_in(registry.root)
    skopeo("copy", *PLAIN, src, f"docker://{registry.host}/share/dst:v1")
    assert blobs_in(registry.root) == before  # one copy per digest across repositories
    log = registry.log.read_text() if registry.log else ""
    assert "mount=sha256" in log  # skopeo mounted the layers instead of uploading them again
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/share/dst").stdout)
    assert tags["Tags"] == ["v1"]
    skopeo("delete", "--tls-verify=false", f"docker://{registry.host}/share/dst:v1")
    missing = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/share/dst:v1", check=False)
    assert missing.returncode != 0
    assert "manifest unknown" in missing.stderr


def test_index_copied_with_all_platforms(registry: RegistryProc, tmp_path: Path) -> None:
    api = Api(registry.url)
    children = []
    for arch in ("amd64", "arm64"):
        # gzip layers: skopeo keeps them as they are, so every digest survives the copy.
        layer = gzip.compress(layer_tar({"arch": arch.encode()}), mtime=0)
        _, body = api.push_image(
            "multi/arch",
            f"only-{arch}",
            [layer],
            marker=arch,
            layer_type="application/vnd.oci.image.layer.v1.tar+gzip",
        )
        children.append((OCI_MANIFEST, body))
    index = index_manifest(children)
    assert api.push_manifest("multi/arch", "latest", index, OCI_INDEX).status_code == 201
    skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{registry.host}/multi/arch:latest",
        f"oci:{tmp_path}/l:latest",
    )
    layout_index = json.loads((tmp_path / "l/index.json").read_text())
    assert layout_index["manifests"][0]["digest"] == sha256(index)
    for _, body in children:
        assert (tmp_path / "l/blobs/sha256" / sha256(body)[7:]).read_bytes() == body


def test_docker_schema2_from_archive(registry: RegistryProc, archive: Path) -> None:
    skopeo(
        "copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{registry.host}/d/s2:v1"
    )
    r = requests.get(f"{registry.url}/v2/d/s2/manifests/v1", headers={"Accept": DOCKER_MANIFEST}, timeout=30)
    assert r.headers["Content-Type"] == DOCKER_MANIFEST


# -- auth and TLS --------------------------------------------------------------------------------


def _htpasswd(path: Path, user: str, password: str) -> Path:
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(path), user, password], check=True, capture_output=True)
    return path


def test_basic_auth_with_skopeo(tmp_path: Path, archive: Path) -> None:
    users = _htpasswd(tmp_path / "htpasswd", "alice", "s3cret")
    with skiff_registry(tmp_path / "root", ["--htpasswd", str(users)]) as reg:
        dest = f"docker://{reg.host}/alice/img:v1"
        denied = skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", dest, check=False)
        assert denied.returncode != 0
        assert "authentication required" in denied.stderr or "unauthorized" in denied.stderr.lower()
        wrong = skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:nope",
            f"docker-archive:{archive}",
            dest,
            check=False,
        )
        assert wrong.returncode != 0
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            f"docker-archive:{archive}",
            dest,
        )
        info = json.loads(skopeo("inspect", "--tls-verify=false", "--creds", "alice:s3cret", dest).stdout)
        assert info["Labels"] == {"marker": "interop"}


def test_token_auth_with_skopeo(tmp_path: Path, archive: Path) -> None:
    users = _htpasswd(tmp_path / "htpasswd", "alice", "pa")
    subprocess.run(["htpasswd", "-B", "-b", str(users), "bob", "pb"], check=True, capture_output=True)
    acl = tmp_path / "acl.yml"
    acl.write_text(
        "acl:\n"
        "  - match: {account: '/.+/', name: '${account}/*'}\n"
        "    actions: [pull, push, delete]\n"
        "  - match: {name: 'alice/public'}\n"
        "    actions: [pull]\n"
    )
    with skiff_registry(tmp_path / "root", ["--htpasswd", str(users), "--token-acl", str(acl)]) as reg:
        src = f"docker-archive:{archive}"
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:pa",
            src,
            f"docker://{reg.host}/alice/app:v1",
        )
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:pa",
            src,
            f"docker://{reg.host}/alice/public:v1",
        )
        # Bob may not push into alice's namespace, nor read her private repository.
        denied = skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:pb",
            src,
            f"docker://{reg.host}/alice/app:v2",
            check=False,
        )
        assert denied.returncode != 0
        denied = skopeo(
            "inspect",
            "--tls-verify=false",
            "--creds",
            "bob:pb",
            f"docker://{reg.host}/alice/app:v1",
            check=False,
        )
        assert denied.returncode != 0
        # Anonymous pulls of the public repository work; bob pushes into his own.
        skopeo("inspect", "--tls-verify=false", "--no-creds", f"docker://{reg.host}/alice/public:v1")
        skopeo(
            "copy", *PLAIN, "--src-creds", "alice:pa", "--dest-creds", "bob:pb",
            f"docker://{reg.host}/alice/public:v1", f"docker://{reg.host}/bob/copy:v1",
        )  # fmt: skip


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    (tmp_path / "ca").mkdir()
    ca.cert_pem.write_to_path(str(tmp_path / "ca/ca.crt"))
    return tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca"


def test_tls(tmp_path: Path, archive: Path, certs: tuple[Path, Path, Path]) -> None:
    cert, key, ca_dir = certs
    with skiff_registry(tmp_path / "root", ["--tls-cert", str(cert), "--tls-key", str(key)]) as reg:
        assert reg.url.startswith("https://")
        assert requests.get(f"{reg.url}/v2/", verify=str(ca_dir / "ca.crt"), timeout=30).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{reg.url}/v2/", timeout=30)  # not a CA the system trusts
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://{reg.host}/v2/", timeout=30)  # plain HTTP on the TLS port
        dest = f"docker://{reg.host}/tls/img:v1"
        skopeo("copy", "--dest-cert-dir", str(ca_dir), f"docker-archive:{archive}", dest)
        skopeo("copy", "--src-cert-dir", str(ca_dir), dest, f"oci:{tmp_path}/layout:v1")
        read_layout(tmp_path / "layout", "v1")
        untrusted = skopeo("inspect", dest, check=False)
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr
