"""Registries for tests: skiff's (``skiff registry serve``) and Debian's docker-registry 2.8, each
a real process on a loopback port with its state in a temp dir, stopped by pid at the end.

Readiness is the process's own "listening" line, read from its output (no polling).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

BIN = Path(sys.executable).parent
DOCKER_REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_line(proc: subprocess.Popen[bytes], stream: IO[bytes], needle: bytes, timeout: float) -> bytes:
    """Read ``stream`` until a line holds ``needle``; the lines read so far on failure."""
    deadline = time.monotonic() + timeout
    seen = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
        for line in seen.splitlines():
            if needle in line:
                return line
    proc.kill()
    raise RuntimeError(f"registry did not start (exit {proc.poll()}): {seen.decode(errors='replace')}")


@dataclass
class RegistryProc:
    """A running registry process."""

    url: str
    proc: subprocess.Popen[bytes]
    root: Path
    kind: str  # "skiff" or "distribution"
    log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """host:port, as image references and skopeo want it."""
        return self.url.split("://", 1)[1]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


def start_skiff(
    root: Path,
    args: Sequence[str] = (),
    *,
    env: dict[str, str] | None = None,
    addr: str = "127.0.0.1:0",
) -> RegistryProc:
    """``skiff registry serve`` on a free port (``--addr 127.0.0.1:0``); the URL comes from its ready line."""
    root.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"{root.name}.log"
    proc = subprocess.Popen(
        [str(BIN / "skiff"), "registry", "serve", "--addr", addr, "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=open(log, "ab"),
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = _wait_for_line(proc, proc.stdout, b"listening on", 30).decode()
    url = line.rsplit(" ", 1)[1].strip()
    return RegistryProc(url, proc, root, "skiff", log)


@contextlib.contextmanager
def skiff_registry(root: Path, args: Sequence[str] = (), **kw: Any) -> Iterator[RegistryProc]:
    reg = start_skiff(root, args, **kw)
    try:
        yield reg
    finally:
        reg.stop()


@contextlib.contextmanager
def distribution_registry(base: Path) -> Iterator[RegistryProc]:
    """Debian's docker-registry 2.8 with a config of our own (deletes enabled, no purging)."""
    port = free_port()
    base.mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "info", "accesslog": {"disabled": True}},
                "storage": {
                    "filesystem": {"rootdirectory": str(base / "data")},
                    "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}},
                },
                "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
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
        # Keep draining its log so a chatty registry never blocks on a full pipe.
        sink = open(base / "registry.log", "wb")
        threading.Thread(target=shutil.copyfileobj, args=(proc.stderr, sink), daemon=True).start()
        yield reg
    finally:
        reg.stop()


# -- content -------------------------------------------------------------------------------------


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar with ``files`` (deterministic bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_config(diff_ids: Sequence[str], marker: str = "") -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Labels": {"marker": marker}},
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created_by": f"layer {i}"} for i in range(len(diff_ids))],
        },
        sort_keys=True,
    ).encode()


def docker_archive(path: Path, layers: Sequence[bytes], tag: str, marker: str = "") -> bytes:
    """Write a docker-archive (``docker save`` format) of one image; returns its config."""
    config = image_config([sha256(t) for t in layers], marker)
    manifest = [
        {
            "Config": f"{sha256(config)[7:]}.json",
            "RepoTags": [tag],
            "Layers": [f"{sha256(t)[7:]}/layer.tar" for t in layers],
        }
    ]
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))

        add(manifest[0]["Config"], config)  # type: ignore[arg-type]
        for t in layers:
            add(f"{sha256(t)[7:]}/layer.tar", t)
        add("manifest.json", json.dumps(manifest).encode())
    return config


# -- speaking the API (plain requests, so a test shows every header) -------------------------------


class Api:
    """A thin requests wrapper rooted at a registry URL."""

    def __init__(self, url: str, session: requests.Session | None = None, **kw: Any) -> None:
        self.url = url.rstrip("/")
        self.s = session or requests.Session()
        self.kw = kw

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        target = path if path.startswith("http") else self.url + path
        merged = {**self.kw, **kw}
        merged["headers"] = {**self.kw.get("headers", {}), **kw.get("headers", {})}
        return self.s.request(method, target, timeout=60, allow_redirects=False, **merged)

    def location(self, r: requests.Response) -> str:
        loc = r.headers["Location"]
        return loc if loc.startswith("http") else self.url + loc

    def push_blob(self, name: str, data: bytes) -> str:
        """POST then PUT (the portable way); returns the digest."""
        digest = sha256(data)
        r = self("POST", f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        r = self(
            "PUT",
            self.location(r),
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        return digest

    def push_manifest(self, name: str, ref: str, body: bytes, media_type: str) -> requests.Response:
        return self("PUT", f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type})

    def push_image(
        self,
        name: str,
        ref: str,
        layers: Sequence[bytes],
        *,
        marker: str = "",
        oci: bool = True,
        layer_type: str | None = None,
    ) -> tuple[str, bytes]:
        """Push layers, a config and a manifest; returns (manifest digest, manifest bytes)."""
        config = image_config([sha256(t) for t in layers], marker)
        for blob in (*layers, config):
            self.push_blob(name, blob)
        body = image_manifest(config, layers, oci=oci, layer_type=layer_type)
        mt = OCI_MANIFEST if oci else DOCKER_MANIFEST
        r = self.push_manifest(name, ref, body, mt)
        assert r.status_code == 201, r.text
        return sha256(body), body


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def image_manifest(
    config: bytes,
    layers: Sequence[bytes],
    *,
    oci: bool = True,
    config_type: str | None = None,
    layer_type: str | None = None,
    **extra: Any,
) -> bytes:
    if oci:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config_type or "application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor(layer_type or "application/vnd.oci.image.layer.v1.tar", t) for t in layers],
            **extra,
        }
    else:
        doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor("application/vnd.docker.container.image.v1+json", config),
            "layers": [
                descriptor(layer_type or "application/vnd.docker.image.rootfs.diff.tar", t) for t in layers
            ],
            **extra,
        }
    return json.dumps(doc, indent=2).encode()


def index_manifest(children: Sequence[tuple[str, bytes]], *, oci: bool = True, **extra: Any) -> bytes:
    """An OCI index / Docker manifest list of (media type, manifest bytes) children, amd64+arm64."""
    arches = ["amd64", "arm64", "riscv64", "s390x"]
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX if oci else DOCKER_LIST,
            "manifests": [
                descriptor(mt, body, platform={"architecture": arches[i % 4], "os": "linux"})
                for i, (mt, body) in enumerate(children)
            ],
            **extra,
        }
    ).encode()
