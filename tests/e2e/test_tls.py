"""skiffd's TCP listener with mutual TLS, driven by the docker CLI, docker-py and skiff's CLI.

Certificates come from trustme (a CA, a server cert for 127.0.0.1, a client cert, and a client
cert from another CA). The test daemon listens on its unix socket (the fixture's) and on a free
loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import requests
import trustme

from tests.daemon_fixture import BIN, Daemon, bootstrap_busybox, running_daemon

DOCKER = "/usr/local/bin/docker"


@dataclass(frozen=True)
class Pki:
    server_dir: Path  # ca.pem, server-cert.pem, server-key.pem
    client_dir: Path  # ca.pem, cert.pem, key.pem: what DOCKER_CERT_PATH points at
    stranger_dir: Path  # ca.pem (ours) with cert.pem/key.pem from another CA
    ca_only_dir: Path  # ca.pem alone: verifies the server, presents no certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("skiff-tls")
    ca = trustme.CA()
    dirs = Pki(*(base / n for n in ("server", "client", "stranger", "ca-only")))
    for d in (dirs.server_dir, dirs.client_dir, dirs.stranger_dir, dirs.ca_only_dir):
        d.mkdir()
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(dirs.server_dir / "server-cert.pem"))
    server.private_key_pem.write_to_path(str(dirs.server_dir / "server-key.pem"))
    for directory, issuer in ((dirs.client_dir, ca), (dirs.stranger_dir, trustme.CA())):
        cert = issuer.issue_cert("skiff-e2e-client")
        cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
        cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    return dirs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TLSDaemon:
    daemon: Daemon
    port: int
    pki: Pki

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def docker(
        self, *args: str, cert_dir: Path | None = None, input: bytes | None = None, tls: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """The docker CLI over TCP; with ``tls`` as a user sets it up (DOCKER_TLS_VERIFY + cert dir)."""
        env = client_env()
        env["DOCKER_HOST"] = self.url
        env["DOCKER_CONFIG"] = str(self.daemon.base / "docker-config")
        if tls:
            env["DOCKER_TLS_VERIFY"] = "1"
            env["DOCKER_CERT_PATH"] = str(cert_dir or self.pki.client_dir)
        return subprocess.run([DOCKER, *args], env=env, input=input, capture_output=True, timeout=120)


def client_env() -> dict[str, str]:
    """The environment without docker/skiff settings, and without the CA-bundle variables that
    make requests ignore a session's own CA file (psf/requests#3829)."""
    drop = {"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "SKIFF_HOST", "REQUESTS_CA_BUNDLE"}
    return {k: v for k, v in os.environ.items() if k not in drop and k != "CURL_CA_BUNDLE"}


@pytest.fixture(scope="module")
def tls(pki: Pki) -> Iterator[TLSDaemon]:
    port = free_port()
    s = pki.server_dir
    flags = ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(s / "ca.pem")]
    flags += ["--tlscert", str(s / "server-cert.pem"), "--tlskey", str(s / "server-key.pem")]
    with running_daemon(flags) as d:
        bootstrap_busybox(d)
        yield TLSDaemon(d, port, pki)


def test_docker_cli_version_and_run_over_mutual_tls(tls: TLSDaemon) -> None:
    r = tls.docker("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split()[1] == "1.41"
    r = tls.docker("run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    assert "(TLS, client certificates signed by" in tls.daemon.log_tail(400)


def test_docker_cli_stdin_eof_keeps_output_flowing_over_tls(tls: TLSDaemon) -> None:
    """The docker CLI ends stdin with a TLS close_notify; output after it must still arrive."""
    r = tls.docker("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo after-eof", input=b"one\ntwo\n")
    assert (r.returncode, r.stdout) == (0, b"one\ntwo\nafter-eof\n"), r.stderr


def test_docker_py_with_tls_config(tls: TLSDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    c = tls.pki.client_dir
    config = docker.tls.TLSConfig(
        client_cert=(str(c / "cert.pem"), str(c / "key.pem")), ca_cert=str(c / "ca.pem"), verify=True
    )
    api = docker.APIClient(base_url=f"https://127.0.0.1:{tls.port}", tls=config, version="1.41", timeout=60)
    assert api.version()["ApiVersion"] == "1.41"
    cid = api.create_container("busybox", ["sh", "-c", "echo from-docker-py"])["Id"]
    try:
        api.start(cid)
        assert api.wait(cid, timeout=60)["StatusCode"] == 0
        assert api.logs(cid) == b"from-docker-py\n"
    finally:
        api.remove_container(cid, force=True)
    # from_env: what docker-py users do with DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH
    env = {"DOCKER_HOST": tls.url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(c)}
    assert docker.from_env(environment=env, version="1.41").ping() is True


def test_client_without_certificate_is_refused(tls: TLSDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    r = tls.docker("version", cert_dir=tls.pki.ca_only_dir)
    assert r.returncode != 0
    assert b"certificate required" in r.stderr, r.stderr
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    config = docker.tls.TLSConfig(ca_cert=str(tls.pki.ca_only_dir / "ca.pem"), verify=True)
    api = docker.APIClient(base_url=f"https://127.0.0.1:{tls.port}", tls=config, version="1.41")
    with pytest.raises(requests.exceptions.ConnectionError):
        api.containers()
    assert "peer did not return a certificate" in tls.daemon.log_tail(400)


def test_certificate_from_another_ca_is_refused(tls: TLSDaemon) -> None:
    r = tls.docker("ps", cert_dir=tls.pki.stranger_dir)
    assert r.returncode != 0
    assert b"unknown certificate authority" in r.stderr, r.stderr
    r = tls.docker("run", "--rm", "busybox", "true", cert_dir=tls.pki.stranger_dir)
    assert r.returncode != 0
    assert tls.daemon.client().ping()  # still serving


def test_plain_http_to_the_tls_port_fails_cleanly(tls: TLSDaemon) -> None:
    r = tls.docker("version", tls=False)
    assert r.returncode != 0
    assert b"Client sent an HTTP request to an HTTPS server." in r.stderr, r.stderr
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{tls.port}/_ping"],
        capture_output=True,
        timeout=30,
    )
    assert r.stdout == b"Client sent an HTTP request to an HTTPS server.\n"
    assert tls.daemon.client().ping()


def test_skiff_cli_tls_flags(tls: TLSDaemon) -> None:
    def skiff(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(BIN / "skiff"), *args], env=client_env(), input=input, capture_output=True, timeout=120
        )

    c = tls.pki.client_dir
    flags = ["-H", tls.url, "--tlsverify", "--tlscacert", str(c / "ca.pem")]
    flags += ["--tlscert", str(c / "cert.pem"), "--tlskey", str(c / "key.pem")]
    r = skiff(*flags, "run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    r = skiff(*flags, "run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo after-eof", input=b"in\n")
    assert (r.returncode, r.stdout) == (0, b"in\nafter-eof\n"), r.stderr
    r = skiff("-H", tls.url, "--tlsverify", "--tlscacert", str(c / "ca.pem"), "ps")
    assert r.returncode != 0
    assert b"TLS error talking to the skiff daemon" in r.stderr and b"certificate required" in r.stderr
    s = tls.pki.stranger_dir
    r = skiff(
        "-H",
        tls.url,
        "--tlsverify",
        "--tlscacert",
        str(c / "ca.pem"),
        "--tlscert",
        str(s / "cert.pem"),
        "--tlskey",
        str(s / "key.pem"),
        "ps",
    )
    assert r.returncode != 0 and b"unknown ca" in r.stderr, r.stderr


def test_plain_tcp_needs_the_explicit_opt_in(tmp_path: Path) -> None:
    """Without TLS flags a tcp:// host is refused before skiffd touches anything."""
    root = tmp_path / "root"
    r = subprocess.run(
        [
            str(BIN / "skiffd"),
            "--root",
            str(root),
            "--run-dir",
            str(tmp_path / "run"),
            "-H",
            f"tcp://127.0.0.1:{free_port()}",
            "--cgroup-parent",
            "skiff-test-refused",
        ],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert b"refusing to listen on tcp://127.0.0.1" in r.stderr and b"--tls=false" in r.stderr
    assert not root.exists() and not (tmp_path / "run").exists()


def test_insecure_opt_in_serves_plain_tcp_and_warns() -> None:
    port = free_port()
    with running_daemon(["-H", f"tcp://127.0.0.1:{port}", "--tls=false"]) as d:
        env = {**client_env(), "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_CONFIG": str(d.base / "dc")}
        r = subprocess.run([DOCKER, "ps", "-a"], env=env, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"CONTAINER ID")
        log = d.log_tail(400)
        assert "level=warning" in log and f"API listening on tcp://127.0.0.1:{port} WITHOUT TLS" in log
        assert "has root on this machine" in log
