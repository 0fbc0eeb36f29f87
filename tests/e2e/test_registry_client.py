"""Pull, push and login through skiffd with real clients against real registries on loopback.

Registries: Debian's ``docker-registry`` 2.8 (without auth and with htpasswd basic auth) and
``skiff registry serve`` (without auth and with its bearer-token flow), each a process of its
own started and stopped by a fixture. Clients: the docker CLI 28, docker-py and the skiff CLI,
all through the test skiffd. Also: manifest lists, pulls by digest and of every tag, a
docker.io mirror, and pulls interrupted by killing the client or skiffd (resumed with Range).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import trustme
from aiohttp import ClientSession, web

from tests.daemon_fixture import Daemon, running_daemon
from tests.registry_support import (
    DOCKER_REGISTRY,
    Api,
    RegistryProc,
    _wait_for_line,
    distribution_registry,
    docker_archive,
    free_port,
    image_manifest,
    index_manifest,
    layer_tar,
    sha256,
    skiff_registry,
)

DOCKER = "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the docker CLI")

LAYERS = [
    layer_tar({"etc/hello": b"hello\n"}),
    layer_tar({"usr/share/big.bin": os.urandom(3 << 20)}),
    layer_tar({"etc/hello": b"bye\n", "etc/third": b"3\n"}),
]


def run(
    daemon: Daemon, *args: str, config: Path | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**daemon.env(), "DOCKER_CONFIG": str(config or daemon.base / "docker-cli-config")}
    return subprocess.run(
        list(args), env=env, input=input, capture_output=True, timeout=300, text=input is None
    )


def ok(daemon: Daemon, *args: str, config: Path | None = None) -> str:
    p = run(daemon, *args, config=config)
    assert p.returncode == 0, f"{' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return str(p.stdout)


def skiff(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "skiff"), *args]


@contextlib.contextmanager
def loaded_image(daemon: Daemon, tmp_path: Path, name: str) -> Iterator[str]:
    """A three-layer image loaded into skiffd as ``name``; every tag of its ID removed afterwards."""
    archive = tmp_path / "img.tar"
    config = docker_archive(archive, LAYERS, name, marker=secrets.token_hex(4))
    api = daemon.client()
    with open(archive, "rb") as f:
        for _ in api.load_image(f):
            pass
    image_id = sha256(config)
    try:
        yield image_id
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_image(image_id, force=True)


def remove(daemon: Daemon, *names: str) -> None:
    api = daemon.client()
    for n in names:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_image(n, force=True)


# -- registries ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProc]:
    with distribution_registry(tmp_path_factory.mktemp("dist")) as reg:
        yield reg


@pytest.fixture(scope="module")
def skiffreg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProc]:
    with skiff_registry(tmp_path_factory.mktemp("skiffreg") / "root") as reg:
        yield reg


@pytest.fixture(params=["distribution", "skiff"])
def registry(request: pytest.FixtureRequest, dist: RegistryProc, skiffreg: RegistryProc) -> RegistryProc:
    return dist if request.param == "distribution" else skiffreg


def htpasswd(path: Path, *users: tuple[str, str]) -> Path:
    for i, (user, password) in enumerate(users):
        flags = "-Bbc" if i == 0 else "-Bb"
        subprocess.run(["htpasswd", flags, str(path), user, password], check=True, capture_output=True)
    return path


@contextlib.contextmanager
def distribution_with_htpasswd(base: Path, users: Path) -> Iterator[RegistryProc]:
    """docker-registry 2.8 with htpasswd basic auth (its own config, a free loopback port)."""
    port = free_port()
    base.mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "info", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(base / "data")}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
                "auth": {"htpasswd": {"realm": "skiff-test", "path": str(users)}},
            }
        )
    )
    proc = subprocess.Popen(
        [DOCKER_REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    reg = RegistryProc(f"http://127.0.0.1:{port}", proc, base / "data", "distribution")
    try:
        _wait_for_line(proc, proc.stderr, b"listening on", 30)
        threading.Thread(target=lambda: proc.stderr.read() if proc.stderr else None, daemon=True).start()
        yield reg
    finally:
        reg.stop()


# -- push and pull ---------------------------------------------------------------------------------


def test_docker_cli_push_then_pull(daemon: Daemon, registry: RegistryProc, tmp_path: Path) -> None:
    name = f"{registry.host}/e2e/three"
    with loaded_image(daemon, tmp_path, f"{name}:v1") as image_id:
        out = ok(daemon, DOCKER, "push", f"{name}:v1")
        lines = out.splitlines()
        assert lines[0] == f"The push refers to repository [{name}]"
        short = [sha256(t)[7:19] for t in LAYERS]
        assert [ln.split(":")[0] for ln in lines if ln.endswith(": Preparing")] == short[::-1]  # top first
        assert all(f"{s}: Pushed" in lines for s in short)
        digest = lines[-1].split("digest: ")[1].split()[0]
        assert lines[-1] == f"v1: digest: {digest} size: {lines[-1].rsplit(' ', 1)[1]}"
        # Again: the registry has every layer.
        again = ok(daemon, DOCKER, "push", f"{name}:v1").splitlines()
        assert all(f"{s}: Layer already exists" in again for s in short)
        assert again[-1].startswith(f"v1: digest: {digest} ")
        ok(daemon, DOCKER, "rmi", f"{name}:v1")
        pulled = ok(daemon, DOCKER, "pull", f"{name}:v1").splitlines()
        assert pulled[0] == "v1: Pulling from e2e/three"
        assert all(f"{s}: Pull complete" in pulled for s in short)
        assert pulled[-3:] == [
            f"Digest: {digest}",
            f"Status: Downloaded newer image for {name}:v1",
            f"{name}:v1",
        ]
        info = json.loads(ok(daemon, DOCKER, "image", "inspect", f"{name}:v1"))[0]
        assert info["Id"] == image_id  # the config came back byte for byte
        assert info["RootFS"]["Layers"] == [sha256(t) for t in LAYERS]
        assert info["RepoDigests"] == [f"{name}@{digest}"]
        up = ok(daemon, DOCKER, "pull", f"{name}:v1").splitlines()
        assert f"Status: Image is up to date for {name}:v1" in up
        # By digest.
        remove(daemon, f"{name}:v1")
        by_digest = ok(daemon, DOCKER, "pull", f"{name}@{digest}").splitlines()
        assert by_digest[0] == f"{digest}: Pulling from e2e/three"
        assert f"Status: Downloaded newer image for {name}@{digest}" in by_digest
        assert json.loads(ok(daemon, DOCKER, "image", "inspect", f"{name}@{digest}"))[0]["Id"] == image_id


def test_busybox_round_trip_runs(daemon: Daemon, registry: RegistryProc) -> None:
    name = f"{registry.host}/e2e/busybox:latest"
    ok(daemon, DOCKER, "tag", "busybox:latest", name)
    try:
        ok(daemon, DOCKER, "push", name)
        ok(daemon, DOCKER, "rmi", name)
        # docker run pulls what it does not have.
        p = run(daemon, DOCKER, "run", "--rm", "--network", "none", name, "echo", "pulled and ran")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "pulled and ran\n"
        assert f"Unable to find image '{name}' locally" in p.stderr
    finally:
        remove(daemon, name)


def test_mount_from_another_repository_and_kept_manifest(
    daemon: Daemon, dist: RegistryProc, tmp_path: Path
) -> None:
    a, b = f"{dist.host}/mount/a:v1", f"{dist.host}/mount/b:v1"
    with loaded_image(daemon, tmp_path, a):
        first = ok(daemon, DOCKER, "push", a).splitlines()
        ok(daemon, DOCKER, "tag", a, b)
        second = ok(daemon, DOCKER, "push", b).splitlines()
        for t in LAYERS:
            assert f"{sha256(t)[7:19]}: Mounted from mount/a" in second
        assert first[-1].split("digest: ")[1] == second[-1].split("digest: ")[1]  # the same manifest
        reg = Api(dist.url)
        assert reg("GET", "/v2/mount/b/tags/list").json()["tags"] == ["v1"]


def test_docker_py_pull_and_push(daemon: Daemon, registry: RegistryProc, tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    repo = f"{registry.host}/e2e/py"
    with loaded_image(daemon, tmp_path, f"{repo}:one") as image_id:
        out = list(client.api.push(repo, tag="one", stream=True, decode=True))
        assert out[-1]["aux"]["Tag"] == "one"
        client.images.remove(f"{repo}:one")
        image = client.images.pull(repo, tag="one")
        assert image.id == image_id and f"{repo}:one" in image.tags
        dist = client.api.inspect_distribution(f"{repo}:one")
        assert dist["Descriptor"]["digest"] == out[-1]["aux"]["Digest"]
        assert dist["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
        with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
            client.images.pull(repo, tag="nope")
        with pytest.raises(docker.errors.NotFound, match="An image does not exist locally with the tag"):
            list(client.api.push(f"{registry.host}/e2e/none", tag="v1", stream=True, decode=True))
    client.close()


def test_skiff_cli_pull_push_all_tags(daemon: Daemon, registry: RegistryProc, tmp_path: Path) -> None:
    repo = f"{registry.host}/e2e/cli"
    with loaded_image(daemon, tmp_path, f"{repo}:a"):
        ok(daemon, DOCKER, "tag", f"{repo}:a", f"{repo}:b")
        out = ok(daemon, *skiff("push", "-a", repo)).splitlines()
        assert out[0] == f"The push refers to repository [{repo}]"
        assert sum(1 for ln in out if ": digest: sha256:" in ln) == 2
        remove(daemon, f"{repo}:a", f"{repo}:b")
        out = ok(daemon, *skiff("pull", "-a", repo)).splitlines()
        assert out[-1] == repo and f"Status: Downloaded newer image for {repo}" in out
        tags = json.loads(ok(daemon, DOCKER, "image", "inspect", f"{repo}:a"))[0]["RepoTags"]
        assert sorted(tags) == [f"{repo}:a", f"{repo}:b"]
        assert ok(daemon, *skiff("pull", "-q", f"{repo}:a")).splitlines() == [f"{repo}:a"]
        remove(daemon, f"{repo}:b")
    p = run(daemon, *skiff("pull", f"{registry.host}/e2e/nothing-here"))
    assert p.returncode == 1
    # distribution: "manifest for X not found: manifest unknown"; skiff's registry knows the
    # repository does not exist: "repository X not found: name unknown" (dockerd's wordings).
    assert " not found: " in p.stderr and "nothing-here" in p.stderr


def test_manifest_list_and_platform(daemon: Daemon, dist: RegistryProc) -> None:
    reg = Api(dist.url)
    children = []
    for arch in ("amd64", "arm64"):
        layer = layer_tar({"etc/arch": arch.encode()})
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "config": {"Labels": {"arch": arch}},
                "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
            }
        ).encode()
        for blob in (layer, config):
            reg.push_blob("multi/app", blob)
        body = image_manifest(config, [layer])
        assert (
            reg.push_manifest(
                "multi/app", sha256(body), body, "application/vnd.oci.image.manifest.v1+json"
            ).status_code
            == 201
        )
        children.append(("application/vnd.oci.image.manifest.v1+json", body))
    index = index_manifest(children)
    assert (
        reg.push_manifest("multi/app", "v1", index, "application/vnd.oci.image.index.v1+json").status_code
        == 201
    )
    name = f"{dist.host}/multi/app:v1"
    try:
        out = ok(daemon, DOCKER, "pull", name)
        assert f"Digest: {sha256(index)}" in out
        info = json.loads(ok(daemon, DOCKER, "image", "inspect", name))[0]
        assert (info["Architecture"], info["Config"]["Labels"]) == ("amd64", {"arch": "amd64"})
        assert info["RepoDigests"] == [f"{dist.host}/multi/app@{sha256(index)}"]
        ok(daemon, DOCKER, "pull", "--platform", "linux/arm64", name)
        info = json.loads(ok(daemon, DOCKER, "image", "inspect", name))[0]
        assert info["Architecture"] == "arm64"
        p = run(daemon, DOCKER, "pull", "--platform", "linux/s390x", name)
        assert p.returncode != 0 and "no matching manifest for linux/s390x" in p.stderr
        api = daemon.client()
        dist_info = api.inspect_distribution(name)
        assert dist_info["Descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert [p["architecture"] for p in dist_info["Platforms"]] == ["amd64", "arm64"]
    finally:
        remove(daemon, name)


# -- auth ------------------------------------------------------------------------------------------


def test_htpasswd_registry_login_push_pull(daemon: Daemon, tmp_path: Path) -> None:
    users = htpasswd(tmp_path / "htpasswd", ("alice", "s3cret"))
    config = tmp_path / "docker-config"
    with (
        distribution_with_htpasswd(tmp_path / "reg", users) as reg,
        loaded_image(daemon, tmp_path, f"{reg.host}/alice/app:v1"),
    ):
        name = f"{reg.host}/alice/app:v1"
        bad = run(
            daemon,
            DOCKER,
            "login",
            "-u",
            "alice",
            "--password-stdin",
            reg.host,
            config=config,
            input=b"wrong\n",
        )
        assert bad.returncode != 0
        assert b"login attempt to http://" in bad.stderr and b"401 Unauthorized" in bad.stderr
        nocreds = run(daemon, DOCKER, "push", name, config=config)
        assert nocreds.returncode != 0 and "authentication required" in nocreds.stderr
        good = run(
            daemon,
            DOCKER,
            "login",
            "-u",
            "alice",
            "--password-stdin",
            reg.host,
            config=config,
            input=b"s3cret\n",
        )
        assert good.returncode == 0 and b"Login Succeeded" in good.stdout, good.stderr
        assert reg.host in json.loads((config / "config.json").read_text())["auths"]
        ok(daemon, DOCKER, "push", name, config=config)
        remove(daemon, name)
        ok(daemon, DOCKER, "pull", name, config=config)
        # skiff's own login and pull use the same config.json.
        ok(daemon, *skiff("logout", reg.host), config=config)
        remove(daemon, name)
        denied = run(daemon, *skiff("pull", name), config=config)
        assert denied.returncode == 1 and "authentication required" in denied.stderr
        p = run(
            daemon,
            *skiff("login", "-u", "alice", "--password-stdin", reg.host),
            config=config,
            input=b"s3cret\n",
        )
        assert p.returncode == 0 and b"Login Succeeded" in p.stdout
        ok(daemon, *skiff("pull", name), config=config)
        # docker-py sends the credentials it is given.
        api = daemon.client()
        creds = {"username": "alice", "password": "s3cret"}
        lines = list(api.push(f"{reg.host}/alice/app", tag="v1", auth_config=creds, stream=True, decode=True))
        assert "aux" in lines[-1]
        assert (
            api.login("alice", "s3cret", registry=f"http://{reg.host}", reauth=True)["Status"]
            == "Login Succeeded"
        )


def test_bearer_token_registry(daemon: Daemon, tmp_path: Path) -> None:
    users = htpasswd(tmp_path / "htpasswd", ("alice", "pa"), ("bob", "pb"))
    acl = tmp_path / "acl.yml"
    acl.write_text(
        "acl:\n  - match: {account: '/.+/', name: '${account}/*'}\n    actions: [pull, push, delete]\n"
    )
    config = tmp_path / "docker-config"
    args = ["--htpasswd", str(users), "--token-acl", str(acl)]
    with (
        skiff_registry(tmp_path / "root", args) as reg,
        loaded_image(daemon, tmp_path, f"{reg.host}/alice/app:v1"),
    ):
        name = f"{reg.host}/alice/app:v1"
        p = run(
            daemon, DOCKER, "login", "-u", "alice", "--password-stdin", reg.host, config=config, input=b"pa\n"
        )
        assert p.returncode == 0, p.stderr
        p = run(
            daemon,
            DOCKER,
            "login",
            "-u",
            "alice",
            "--password-stdin",
            reg.host,
            config=tmp_path / "other",
            input=b"no\n",
        )
        assert p.returncode != 0 and b"401 Unauthorized" in p.stderr
        ok(daemon, DOCKER, "push", name, config=config)
        remove(daemon, name)
        ok(daemon, DOCKER, "pull", name, config=config)
        # Bob may not read alice's repository: Docker's "pull access denied" 404.
        bob = tmp_path / "bob"
        run(daemon, DOCKER, "login", "-u", "bob", "--password-stdin", reg.host, config=bob, input=b"pb\n")
        p = run(daemon, DOCKER, "pull", name, config=bob)
        assert p.returncode != 0
        assert (
            f"pull access denied for {reg.host}/alice/app, repository does not exist or may require 'docker login'"
            in p.stderr
        )
        ok(daemon, DOCKER, "tag", name, f"{reg.host}/alice/other:v1")
        p = run(daemon, DOCKER, "push", f"{reg.host}/alice/other:v1", config=bob)
        assert p.returncode != 0 and ("denied" in p.stderr or "unauthorized" in p.stderr)
        remove(daemon, f"{reg.host}/alice/other:v1")


# -- mirrors ---------------------------------------------------------------------------------------


def test_registry_mirror_serves_docker_io(daemon: Daemon, dist: RegistryProc) -> None:
    ok(daemon, DOCKER, "tag", "busybox:latest", f"{dist.host}/library/busybox:latest")
    try:
        ok(daemon, DOCKER, "push", f"{dist.host}/library/busybox:latest")
    finally:
        remove(daemon, f"{dist.host}/library/busybox:latest")
    with running_daemon(["--registry-mirror", dist.url]) as mirrored:
        out = ok(mirrored, DOCKER, "pull", "busybox")
        assert "latest: Pulling from library/busybox" in out
        assert out.splitlines()[-1] == "docker.io/library/busybox:latest"
        p = run(mirrored, DOCKER, "run", "--rm", "--network", "none", "busybox", "echo", "from the mirror")
        assert p.stdout == "from the mirror\n", p.stderr
        info = json.loads(ok(mirrored, DOCKER, "info", "--format", "{{json .RegistryConfig}}"))
        assert info["Mirrors"] == [dist.url + "/"]
        # Not on the mirror and Docker Hub unreachable: the pull fails cleanly.
        p = run(mirrored, DOCKER, "pull", "alpine:3.99")
        assert p.returncode != 0 and p.stderr


# -- interruptions ---------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> bool:
    """Poll a condition on state we cannot be notified of (a file another process writes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@dataclass
class StallingProxy:
    """A loopback HTTP proxy in front of a registry that can hold a blob download mid-way.

    ``stall(digest, n)``: GETs of that blob send ``n`` bytes, then wait until ``release()``; a
    client that goes away meanwhile sets ``client_left``. Every blob GET's Range is logged.
    """

    upstream: str
    ranges: list[tuple[str, str]] = field(default_factory=list)
    reached: threading.Event = field(default_factory=threading.Event)
    client_left: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _stalls: dict[str, int] = field(default_factory=dict)
    _stalled_puts: set[str] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None
    _gate: asyncio.Event | None = None

    def stall(self, digest: str, n: int) -> None:
        self._stalls[digest] = n

    def stall_upload(self, digest: str) -> None:
        self._stalled_puts.add(digest)

    def release(self) -> None:
        self._stalls.clear()
        self._stalled_puts.clear()
        assert self._loop is not None and self._gate is not None
        self._loop.call_soon_threadsafe(self._gate.set)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._forward(request)
        except ConnectionResetError:  # the client went away (a killed pull): nothing to answer
            self.client_left.set()
            return web.Response(status=499)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._gate is not None
        digest = request.path.rsplit("/", 1)[-1]
        if "/blobs/" in request.path and request.method == "GET":
            self.ranges.append((digest, request.headers.get("Range", "")))
        body = await request.read()
        if request.method == "PUT" and request.query.get("digest") in self._stalled_puts:
            # The upload's bytes arrived, but no answer comes until release(): then the
            # connection drops, and the registry never saw the blob (a push cut off mid-way).
            self.reached.set()
            await self._gate.wait()
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        # Host as the client sent it: the registry builds its Location URLs from it.
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        async with (
            ClientSession(auto_decompress=False) as s,
            s.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as up,
        ):
            out_headers = {
                k: v
                for k, v in up.headers.items()
                if k.lower() not in ("transfer-encoding", "content-encoding")
            }
            resp = web.StreamResponse(status=up.status, headers=out_headers)
            await resp.prepare(request)
            sent = 0
            stall_at = self._stalls.get(digest)
            async for chunk in up.content.iter_chunked(1 << 16):
                if stall_at is not None and sent + len(chunk) > stall_at:
                    chunk = chunk[: stall_at - sent]
                    await resp.write(chunk)
                    self.reached.set()
                    while not self._gate.is_set():
                        if request.transport is None or request.transport.is_closing():
                            self.client_left.set()
                            return resp
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._gate.wait(), 0.2)
                    if request.transport is not None:
                        request.transport.abort()  # released: this connection is dead anyway
                    return resp
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
            return resp

    @contextlib.contextmanager
    def running(self) -> Iterator[StallingProxy]:
        ready = threading.Event()
        stop: list[asyncio.Event] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._gate = asyncio.Event()
            app = web.Application(client_max_size=1 << 30)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            stop.append(asyncio.Event())
            ready.set()
            await stop[0].wait()
            await runner.cleanup()

        t = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        t.start()
        ready.wait(30)
        try:
            yield self
        finally:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(stop[0].set)
            t.join(30)


def test_killed_client_cancels_and_the_rerun_resumes(dist: RegistryProc, tmp_path: Path) -> None:
    with running_daemon() as d, StallingProxy(dist.url).running() as proxy:
        name = f"127.0.0.1:{proxy.port}/resume/client"
        with loaded_image(d, tmp_path, f"{name}:v1"):
            ok(d, DOCKER, "push", f"{name}:v1")
            remove(d, f"{name}:v1")
            big = sha256(LAYERS[1])
            proxy.stall(big, 1 << 20)
            cli = subprocess.Popen(
                [DOCKER, "pull", f"{name}:v1"],
                env={**d.env(), "DOCKER_CONFIG": str(tmp_path)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert proxy.reached.wait(60)
            cli.kill()
            cli.wait()
            # skiffd notices the client left and cancels the pull, which drops its download.
            assert proxy.client_left.wait(30)
            proxy.release()
            ok(d, DOCKER, "pull", f"{name}:v1")
            assert [r for digest, r in proxy.ranges if digest == big] == ["", f"bytes={1 << 20}-"]
            assert json.loads(ok(d, DOCKER, "image", "inspect", f"{name}:v1"))[0]["RootFS"]["Layers"] == [
                sha256(t) for t in LAYERS
            ]


def test_killed_skiffd_mid_pull_resumes_after_restart(dist: RegistryProc, tmp_path: Path) -> None:
    with running_daemon() as d, StallingProxy(dist.url).running() as proxy:
        name = f"127.0.0.1:{proxy.port}/resume/daemon"
        with loaded_image(d, tmp_path, f"{name}:v1"):
            ok(d, DOCKER, "push", f"{name}:v1")
            remove(d, f"{name}:v1")
            big = sha256(LAYERS[1])
            proxy.stall(big, 2 << 20)
            cli = subprocess.Popen(
                [DOCKER, "pull", f"{name}:v1"],
                env={**d.env(), "DOCKER_CONFIG": str(tmp_path)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert proxy.reached.wait(60)
            # Kill skiffd once the bytes sent are on its disk (the proxy's side says only "sent").
            partial = d.root / "distribution" / "downloads" / f"{big[7:]}.partial"
            assert wait_for(lambda: partial.exists() and partial.stat().st_size == 2 << 20)
            d.stop(signal.SIGKILL)
            cli.wait(60)
            proxy.release()
            d.start()
            # Nothing half-made is visible after the crash ...
            assert d.client().images(name=name) == []
            # ... and the re-run asks only for the rest of the layer.
            ok(d, DOCKER, "pull", f"{name}:v1")
            assert [r for digest, r in proxy.ranges if digest == big] == ["", f"bytes={2 << 20}-"]
            info = json.loads(ok(d, DOCKER, "image", "inspect", f"{name}:v1"))[0]
            assert info["RootFS"]["Layers"] == [sha256(t) for t in LAYERS]
            assert list((d.root / "distribution" / "downloads").iterdir()) == []


def test_killed_skiffd_mid_push_then_push_again(dist: RegistryProc, tmp_path: Path) -> None:
    with running_daemon() as d, StallingProxy(dist.url).running() as proxy:
        name = f"127.0.0.1:{proxy.port}/resume/push:v1"
        with loaded_image(d, tmp_path, name):
            big = sha256(LAYERS[1])
            proxy.stall_upload(big)
            env = {**d.env(), "DOCKER_CONFIG": str(tmp_path)}
            cli = subprocess.Popen(
                [DOCKER, "push", name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            assert proxy.reached.wait(60)
            d.stop(signal.SIGKILL)
            cli.wait(60)
            proxy.release()
            reg = Api(dist.url)
            assert reg("HEAD", f"/v2/resume/push/blobs/{big}").status_code == 404
            assert reg("GET", "/v2/resume/push/manifests/v1").status_code == 404  # nothing half-pushed
            d.start()
            out = ok(d, DOCKER, "push", name).splitlines()
            assert f"{big[7:19]}: Pushed" in out
            digest = out[-1].split("digest: ")[1].split()[0]
            got = reg(
                "GET",
                f"/v2/resume/push/manifests/{digest}",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            )
            assert got.status_code == 200
            assert [layer["digest"] for layer in got.json()["layers"]] == [sha256(t) for t in LAYERS]


def test_tls_registry_on_loopback(daemon: Daemon, tmp_path: Path) -> None:
    # Loopback registries are insecure to dockerd (and skiffd): HTTPS is tried first, without
    # checking the certificate, and used when it answers.
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    args = ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    with skiff_registry(tmp_path / "root", args) as reg:
        assert reg.url.startswith("https://")
        name = f"{reg.host}/tls/img:v1"
        with loaded_image(daemon, tmp_path, name) as image_id:
            ok(daemon, DOCKER, "push", name)
            remove(daemon, name)
            ok(daemon, DOCKER, "pull", name)
            assert json.loads(ok(daemon, DOCKER, "image", "inspect", name))[0]["Id"] == image_id


def test_concurrent_pushes_and_pulls_of_one_image(
    daemon: Daemon, registry: RegistryProc, tmp_path: Path
) -> None:
    name = f"{registry.host}/e2e/concurrent:v1"
    with loaded_image(daemon, tmp_path, name) as image_id:
        env = {**daemon.env(), "DOCKER_CONFIG": str(tmp_path)}
        pushes = [
            subprocess.Popen([DOCKER, "push", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        digests = set()
        for p in pushes:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            digests.add(out.split(b"digest: ")[1].split()[0])
        assert len(digests) == 1  # the same manifest, however the uploads interleaved
        remove(daemon, name)
        pulls = [
            subprocess.Popen([DOCKER, "pull", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        for p in pulls:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        info = json.loads(ok(daemon, DOCKER, "image", "inspect", name))[0]
        assert info["Id"] == image_id and info["RootFS"]["Layers"] == [sha256(t) for t in LAYERS]


def test_build_pulls_a_missing_base_image(daemon: Daemon, skiffreg: RegistryProc, tmp_path: Path) -> None:
    """`docker build` FROM an image only the registry has: pulled first, as dockerd does."""
    api = daemon.client()
    base = f"{skiffreg.host}/skiff-test/buildbase:v1"
    api.tag("busybox:latest", base)
    for line in api.push(base, stream=True, decode=True):
        assert "error" not in line, line
    api.remove_image(base)
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN echo built > /built\n")
    env = {**daemon.env(), "DOCKER_BUILDKIT": "0"}
    try:
        r = subprocess.run(
            ["docker", "build", "-t", "skiff-test-pulled-base", str(tmp_path)],
            env=env,
            capture_output=True,
            timeout=180,
        )
        out = r.stdout.decode() + r.stderr.decode()
        assert r.returncode == 0, out
        assert f"Status: Downloaded newer image for {base}" in out
        assert api.inspect_image(base)["Id"] == api.inspect_image("busybox:latest")["Id"]
    finally:
        for name in ("skiff-test-pulled-base", base):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(name, force=True)
