"""Pull against a tiny in-process registry that misbehaves on purpose, into a real ImageStore.

The fake speaks just enough of the Distribution API (manifests, blobs with Range) to cut a
connection mid-blob, ignore Range, send wrong bytes, lose a blob halfway, or demand bearer
tokens; each test checks what the pull left behind: the image or nothing half-made.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from skiff.errors import NotFound, SkiffError
from skiff.images.imagestore import ImageStore
from skiff.images.oci import chain_ids
from skiff.images.reference import parse_reference
from skiff.registry.auth import AuthConfig
from skiff.registry.client import RegistryError
from skiff.registry.client_endpoints import RegistryConfig
from skiff.registry.client_events import Platform, Progress, PushedTag
from skiff.registry.client_pull import Puller
from skiff.registry.client_session import Registries
from tests.registry_support import layer_tar, sha256

GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class FakeRegistry:
    """Blobs and manifests by digest, tags, and switches for bad behaviour."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> (type, body)
    tags: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, Range
    cut_once: dict[str, int] = field(default_factory=dict)  # digest -> bytes to send before dropping
    stall: dict[str, tuple[int, asyncio.Event]] = field(default_factory=dict)  # send n, then wait
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    corrupt: set[str] = field(default_factory=set)
    ignore_range: bool = False
    token_user: tuple[str, str] | None = None  # bearer auth with this basic login at /token
    token_requests: int = 0
    port: int = 0

    def add_blob(self, data: bytes) -> str:
        d = sha256(data)
        self.blobs[d] = data
        return d

    def add_image(
        self, layers: list[tuple[bytes, bool]], tag: str = "v1", arch: str = "amd64", marker: str = ""
    ) -> tuple[str, bytes, list[str]]:
        """Layers as (uncompressed tar, gzip?); returns (manifest digest, config, layer digests)."""
        descs, diff_ids = [], []
        for tar, gz in layers:
            blob = gzip.compress(tar, mtime=0) if gz else tar
            descs.append({"mediaType": GZ if gz else TAR, "digest": self.add_blob(blob), "size": len(blob)})
            diff_ids.append(sha256(tar))
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "config": {"Labels": {"marker": marker}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": self.add_blob(config),
                    "size": len(config),
                },
                "layers": descs,
            }
        ).encode()
        digest = sha256(manifest)
        self.manifests[digest] = ("application/vnd.docker.distribution.manifest.v2+json", manifest)
        if tag:
            self.tags[tag] = digest
        return digest, config, [str(d["digest"]) for d in descs]

    def add_index(self, children: list[tuple[str, str]], tag: str) -> str:
        """A manifest list of (manifest digest, architecture)."""
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [
                {
                    "mediaType": self.manifests[d][0],
                    "digest": d,
                    "size": len(self.manifests[d][1]),
                    "platform": {"os": "linux", "architecture": arch},
                }
                for d, arch in children
            ],
        }
        body = json.dumps(doc).encode()
        digest = sha256(body)
        self.manifests[digest] = (doc["mediaType"], body)  # type: ignore[assignment]
        self.tags[tag] = digest
        return digest

    # -- the server ------------------------------------------------------------------------------

    def _auth_ok(self, request: web.Request) -> bool:
        return self.token_user is None or request.headers.get("Authorization") == "Bearer good-token"

    def _challenge(self, scope: str = "", error: str = "") -> web.Response:
        params = f'realm="http://127.0.0.1:{self.port}/token",service="fake"'
        if scope:
            params += f',scope="{scope}"'
        if error:
            params += f',error="{error}"'
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        return web.Response(status=401, text=body, headers={"WWW-Authenticate": "Bearer " + params})

    async def ping(self, request: web.Request) -> web.Response:
        if not self._auth_ok(request):
            return self._challenge()
        return web.json_response({})

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        assert self.token_user is not None
        want = "Basic " + base64.b64encode(":".join(self.token_user).encode()).decode()
        if request.headers.get("Authorization") != want:
            return web.json_response({"details": "incorrect username or password"}, status=401)
        scopes = request.query.getall("scope", [])
        if any(s.startswith("repository:secret/") for s in scopes):
            return web.json_response({"token": "weak-token", "expires_in": 300})
        return web.json_response({"token": "good-token", "expires_in": 300})

    async def manifest(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path, ""))
        name, ref = request.match_info["name"], request.match_info["ref"]
        if not self._auth_ok(request):
            error = "insufficient_scope" if request.headers.get("Authorization") else ""
            return self._challenge(f"repository:{name}:pull", error)
        digest = self.tags.get(ref, ref)
        if digest not in self.manifests:
            body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
            return web.json_response(body, status=404)
        media_type, data = self.manifests[digest]
        return web.Response(body=data, headers={"Content-Type": media_type, "Docker-Content-Digest": digest})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        rng = request.headers.get("Range", "")
        self.requests.append((request.method, request.path, rng))
        if not self._auth_ok(request):
            return self._challenge(f"repository:{request.match_info['name']}:pull")
        if digest not in self.blobs:
            return web.json_response(
                {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}, status=404
            )
        data = self.blobs[digest]
        if digest in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start = 0
        if rng and not self.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
        headers = {"Content-Length": str(len(data) - start), "Docker-Content-Digest": digest}
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        resp = web.StreamResponse(status=status, headers=headers)
        await resp.prepare(request)
        body = data[start:]
        if digest in self.cut_once:
            n = self.cut_once.pop(digest)
            await resp.write(body[:n])
            assert request.transport is not None
            request.transport.abort()  # the connection drops mid-blob
            return resp
        if digest in self.stall:
            n, gate = self.stall[digest]
            await resp.write(body[:n])
            self.reached.set()
            await gate.wait()
            if digest not in self.blobs:  # deleted meanwhile: the storage under the response is gone
                assert request.transport is not None
                request.transport.abort()
                return resp
            body = body[n:]
        for i in range(0, len(body), 1 << 16):
            await resp.write(body[i : i + 1 << 16])
        await resp.write_eof()
        return resp


@asynccontextmanager
async def serving(fake: FakeRegistry) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v2/", fake.ping)
    app.router.add_get("/token", fake.token)
    app.router.add_get(r"/v2/{name:.+}/manifests/{ref}", fake.manifest)
    app.router.add_route("*", r"/v2/{name:.+}/blobs/{digest}", fake.blob)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{fake.port}"
    finally:
        await runner.cleanup()


@dataclass
class Env:
    store: ImageStore
    registries: Registries
    events: list[Progress | PushedTag]

    async def pull(self, name: str, auth: AuthConfig = AuthConfig(), platform: Platform | None = None) -> Any:
        return await Puller(self.registries, self.store, self.events.append).pull(
            parse_reference(name), auth, platform
        )

    def statuses(self) -> list[str]:
        return [e.status for e in self.events if isinstance(e, Progress)]

    def partials(self) -> list[Path]:
        return sorted(self.registries.downloads.root.iterdir())


def run(store: ImageStore, tmp_path: Path, body: Callable[[Env], Any]) -> None:
    async def main() -> None:
        registries = Registries(RegistryConfig(certs_dirs=()), tmp_path / "distribution")
        try:
            await body(Env(store, registries, []))
        finally:
            await registries.close()

    asyncio.run(main())


def committed(store: ImageStore) -> list[str]:
    return sorted(i.key for i in store.snapshotter.walk())


BIG = os.urandom(3 << 20)
L1 = layer_tar({"etc/one": b"first layer\n", "bin/data": BIG})
L2 = layer_tar({"etc/two": b"second layer\n", "usr/share/blob": os.urandom(1 << 20)})
L3 = layer_tar({"etc/three": b"third\n"})


def test_pull_multi_layer_through_a_manifest_list(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()
    amd, config, _ = fake.add_image([(L1, True), (L2, False), (L3, True)], tag="", marker="amd64")
    arm, _, _ = fake.add_image([(L3, False)], tag="", arch="arm64", marker="arm64")
    index = fake.add_index([(arm, "arm64"), (amd, "amd64")], "v1")

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            result = await env.pull(f"{host}/app:v1")
            assert result.updated and result.digest == index
            image = result.image
            assert image.id == sha256(config)
            assert image.repo_tags == (f"{host}/app:v1",)
            assert image.repo_digests == (f"{host}/app@{index}",)
            assert image.manifest_digest == amd
            chains = chain_ids([sha256(L1), sha256(L2), sha256(L3)])
            assert image.chain_ids == tuple(chains)
            assert (store.snapshotter.upper_dir(chains[0]) / "bin/data").read_bytes() == BIG
            assert (store.snapshotter.upper_dir(chains[2]) / "etc/three").read_bytes() == b"third\n"
            s = env.statuses()
            assert s[0] == "Pulling from app"
            assert s.count("Pulling fs layer") == 3 and s.count("Pull complete") == 3
            assert s.count("Download complete") == 3 and "Downloading" in s and "Extracting" in s
            assert s[-1] == f"Digest: {index}"
            assert env.partials() == []  # downloads are deleted once extracted
            # The kept manifest and layer sources (for a later push).
            kept = env.registries.metadata.manifests(image.id)
            assert [k.digest for k in kept] == [amd]
            assert env.registries.metadata.layer_sources(sha256(L1))[0].media_type == GZ
            # Again: nothing to download, and the image is up to date.
            env.events.clear()
            again = await env.pull(f"{host}/app:v1")
            assert not again.updated
            assert env.statuses().count("Already exists") == 3
            # The other platform, asked for.
            env.events.clear()
            other = await env.pull(f"{host}/app:v1", platform=Platform("linux", "arm64"))
            assert other.image.config.labels == {"marker": "arm64"}
            with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
                await env.pull(f"{host}/app:v1", platform=Platform("linux", "s390x"))

    run(store, tmp_path, body)


def test_dropped_connection_resumes_with_range(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()
    _, _, (blob,) = fake.add_image([(L1, False)])
    fake.cut_once[blob] = 1 << 20

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            result = await env.pull(f"{host}/app:v1")
            gets = [r for r in fake.requests if r[1].endswith(blob)]
            assert [r[2] for r in gets] == ["", f"bytes={1 << 20}-"]  # resumed where it broke
            assert result.image.diff_ids == (sha256(L1),)

    run(store, tmp_path, body)


def test_registry_ignoring_range_still_gives_the_right_bytes(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry(ignore_range=True)
    _, _, (blob,) = fake.add_image([(L1, True)])
    fake.cut_once[blob] = 100_000

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            result = await env.pull(f"{host}/app:v1")
            assert result.image.diff_ids == (sha256(L1),)
            assert len([r for r in fake.requests if r[1].endswith(blob)]) == 2

    run(store, tmp_path, body)


@pytest.mark.parametrize("bad", [1, 0], ids=["gzip layer", "uncompressed layer"])
def test_digest_mismatch_is_rejected_and_leaves_nothing(store: ImageStore, tmp_path: Path, bad: int) -> None:
    fake = FakeRegistry()
    _, _, blobs = fake.add_image([(L3, False), (L2, True)])
    fake.corrupt.add(blobs[bad])

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            with pytest.raises(
                RegistryError, match=f"filesystem layer verification failed for digest {blobs[bad]}"
            ):
                await env.pull(f"{host}/app:v1")
            assert store.list() == []
            assert committed(store) == []  # the first layer, extracted already, was removed again
            # Bad bytes are not kept for a resume (a good layer's download may be).
            assert env.registries.downloads.path(blobs[bad]) not in env.partials()
            fake.corrupt.clear()
            assert (await env.pull(f"{host}/app:v1")).image.diff_ids == (sha256(L3), sha256(L2))

    run(store, tmp_path, body)


def test_partial_download_from_an_earlier_attempt_is_resumed(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()
    _, _, (blob,) = fake.add_image([(L1, True)])
    data = fake.blobs[blob]

    async def body(env: Env) -> None:
        partial = env.registries.downloads.path(blob)
        partial.write_bytes(data[:200_000])  # what a killed skiffd left
        async with serving(fake) as host:
            await env.pull(f"{host}/app:v1")
            assert [r[2] for r in fake.requests if r[1].endswith(blob)] == ["bytes=200000-"]
            assert not partial.exists()

    run(store, tmp_path, body)


def test_corrupt_partial_download_fails_once_then_starts_over(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()
    _, _, (blob,) = fake.add_image([(L1, False)])

    async def body(env: Env) -> None:
        partial = env.registries.downloads.path(blob)
        partial.write_bytes(b"\0" * 1000)
        async with serving(fake) as host:
            with pytest.raises(RegistryError, match=r"filesystem layer verification failed .* starts over"):
                await env.pull(f"{host}/app:v1")
            assert not partial.exists() and store.list() == [] and committed(store) == []
            await env.pull(f"{host}/app:v1")

    run(store, tmp_path, body)


def test_blob_deleted_during_the_pull_fails_cleanly(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()
    manifest, _, blobs = fake.add_image([(L3, False), (L1, False)])
    gate = asyncio.Event()
    fake.stall[blobs[1]] = (1 << 20, gate)

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            pull = asyncio.create_task(env.pull(f"{host}/app:v1"))
            await fake.reached.wait()
            # The manifest and its blobs go away while the big layer is half-downloaded.
            del fake.manifests[manifest], fake.tags["v1"], fake.blobs[blobs[1]]
            fake.stall.clear()
            gate.set()
            with pytest.raises(SkiffError, match="blob unknown"):
                await pull
            assert store.list() == [] and committed(store) == []
            assert [s for s in store.snapshotter.walk()] == []

    run(store, tmp_path, body)


def test_cancelled_pull_keeps_its_partial_download(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()
    _, _, (blob,) = fake.add_image([(L1, False)])
    gate = asyncio.Event()
    fake.stall[blob] = (1 << 20, gate)

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            pull = asyncio.create_task(env.pull(f"{host}/app:v1"))
            await fake.reached.wait()
            pull.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pull
            assert committed(store) == [] and store.list() == []
            (partial,) = env.partials()
            assert partial.stat().st_size == 1 << 20
            fake.stall.clear()
            gate.set()
            await env.pull(f"{host}/app:v1")
            assert [r[2] for r in fake.requests if r[1].endswith(blob)] == ["", f"bytes={1 << 20}-"]

    run(store, tmp_path, body)


def test_concurrent_pulls_share_one_download(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()
    _, _, (blob,) = fake.add_image([(L1, True)], tag="a")
    fake.tags["b"] = fake.tags["a"]

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            a, b = await asyncio.gather(env.pull(f"{host}/app:a"), env.pull(f"{host}/app:b"))
            assert a.image.id == b.image.id
            assert len([r for r in fake.requests if r[1].endswith(blob)]) == 1
            assert sorted(store.get(a.image.id).repo_tags) == [f"{host}/app:a", f"{host}/app:b"]

    run(store, tmp_path, body)


def test_bearer_tokens(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry(token_user=("alice", "pw"))
    fake.add_image([(L3, False)])

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            alice = AuthConfig("alice", "pw")
            await env.pull(f"{host}/app:v1", alice)
            await env.pull(f"{host}/app:v1", alice)
            assert fake.token_requests == 1  # the second pull used the cached token
            with pytest.raises(RegistryError, match="unauthorized: incorrect username or password") as bad:
                await env.pull(f"{host}/app:v1", AuthConfig("alice", "wrong"))
            assert bad.value.status == 401
            with pytest.raises(RegistryError, match=r"pull access denied for .*/secret/x") as denied:
                await env.pull(f"{host}/secret/x:v1", alice)
            assert denied.value.status == 404

    run(store, tmp_path, body)


def test_unknown_manifest_is_a_404(store: ImageStore, tmp_path: Path) -> None:
    fake = FakeRegistry()

    async def body(env: Env) -> None:
        async with serving(fake) as host:
            with pytest.raises(
                RegistryError, match=f"manifest for {host}/nope:v1 not found: manifest unknown"
            ) as e:
                await env.pull(f"{host}/nope:v1")
            assert e.value.status == 404
            with pytest.raises(RegistryError, match=r"connect|refused|Cannot connect") as e:
                await env.pull("127.0.0.1:1/nope:v1")
            assert e.value.unreachable

    run(store, tmp_path, body)
