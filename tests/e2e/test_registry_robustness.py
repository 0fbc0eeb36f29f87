"""``skiff registry serve`` under stress: uploads killed and resumed, crashes at the commit points
(failpoints), digest mismatches, concurrent pushes of one blob, ``skiff registry gc`` while pushes
run, and clean stops."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.registry_support import BIN, Api, image_config, sha256, skiff_registry, start_skiff


def on_disk(root: Path) -> set[str]:
    d = root / "content/blobs/sha256"
    return {"sha256:" + p.name for p in d.iterdir()} if d.is_dir() else set()


def gc(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "skiff"), "registry", "gc", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def resume(api: Api, location: str, data: bytes) -> requests.Response:
    """Finish an upload from wherever the registry says it stands (as a resuming client does)."""
    for _ in range(5):
        status = api("GET", location)
        assert status.status_code == 204, status.text
        offset = int(status.headers["Range"].split("-")[1]) + 1 if status.headers["Range"] != "0-0" else 0
        assert offset <= len(data)
        r = api(
            "PATCH",
            api.location(status),
            data=data[offset:],
            headers={"Content-Range": f"{offset}-{len(data) - 1}"},
        )
        if r.status_code == 416:  # the interrupted request was still landing: ask again
            continue
        assert r.status_code == 202, r.text
        return api("PUT", api.location(r), params={"digest": sha256(data)})
    raise AssertionError("upload did not settle")


def test_upload_resumes_after_kill9(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = secrets.token_bytes(5 * 1024 * 1024 + 3)
    reg = start_skiff(root)
    try:
        api = Api(reg.url)
        r = api("POST", "/v2/resume/me/blobs/uploads/")
        path = r.headers["Location"]
        r = api("PATCH", path, data=data[: 2 << 20], headers={"Content-Range": f"0-{(2 << 20) - 1}"})
        assert r.status_code == 202
    finally:
        reg.kill9()
    with skiff_registry(root) as reg:
        api = Api(reg.url)
        r = api("GET", path)
        assert r.headers["Range"] == f"0-{(2 << 20) - 1}"
        r = resume(api, reg.url + path, data)
        assert r.status_code == 201, r.text
        assert api("GET", f"/v2/resume/me/blobs/{sha256(data)}").content == data


def test_upload_cut_mid_body_resumes(tmp_path: Path) -> None:
    data = secrets.token_bytes(6 * 1024 * 1024)
    with skiff_registry(tmp_path / "root") as reg:
        api = Api(reg.url)
        r = api("POST", "/v2/cut/body/blobs/uploads/")
        path = r.headers["Location"]
        # A PATCH announcing 6 MiB that stops after 2.5 MiB: the client dies mid-body.
        u = urlsplit(reg.url)
        with socket.create_connection((u.hostname, u.port)) as s:
            s.sendall(
                f"PATCH {path} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
            )
            s.sendall(data[: 5 << 19])
        r = resume(api, reg.url + path, data)
        assert r.status_code == 201, r.text
        assert api("GET", f"/v2/cut/body/blobs/{sha256(data)}").content == data
        assert not list((reg.root / "uploads").iterdir())


def test_crash_between_rename_and_link_leaves_nothing_visible(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = secrets.token_bytes(100_000)
    reg = start_skiff(root, env={"SKIFF_FAILPOINTS": "registry-upload-after-adopt"})
    try:
        api = Api(reg.url)
        r = api("POST", "/v2/crash/a/blobs/uploads/")
        with pytest.raises(requests.exceptions.ConnectionError):
            api("PUT", api.location(r), params={"digest": sha256(data)}, data=data)
        assert reg.proc.wait(30) == 137
    finally:
        reg.stop()
    assert sha256(data) in on_disk(root)  # renamed in, never linked
    with skiff_registry(root) as reg:
        api = Api(reg.url)
        assert api("HEAD", f"/v2/crash/a/blobs/{sha256(data)}").status_code == 404
        out = gc(root)
        assert out.returncode == 0, out.stderr
        assert f"removed blob {sha256(data)}" in out.stdout
        assert on_disk(root) == set()
        assert api.push_blob("crash/a", data) == sha256(data)
        assert api("GET", f"/v2/crash/a/blobs/{sha256(data)}").content == data


def test_gc_crash_before_commit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shared, only_a, only_b = b"shared layer", b"only in a", b"only in b"
    with skiff_registry(root) as reg:
        api = Api(reg.url)
        a, _ = api.push_image("gc/a", "v1", [shared, only_a])
        b, _ = api.push_image("gc/b", "v1", [shared, only_b])
        assert api("DELETE", f"/v2/gc/a/manifests/{a}").status_code == 202
        out = gc(root, env={"SKIFF_FAILPOINTS": "registry-gc-before-commit"})
        assert out.returncode == 137
        # The files went, the transaction did not: nothing of b is touched, a's blobs read as absent.
        assert api("HEAD", f"/v2/gc/a/blobs/{sha256(only_a)}").status_code == 404
        for layer in (shared, only_b):
            assert api("GET", f"/v2/gc/b/blobs/{sha256(layer)}").content == layer
        assert api("GET", f"/v2/gc/b/manifests/{b}").status_code == 200
        out = gc(root)
        assert out.returncode == 0, out.stderr
        assert api("GET", "/v2/_catalog").json()["repositories"] == ["gc/b"]
        assert sha256(only_a) not in on_disk(root)


def test_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    data = secrets.token_bytes(300_000)
    with skiff_registry(tmp_path / "root") as reg:
        api = Api(reg.url)
        r = api("POST", "/v2/mismatch/x/blobs/uploads/")
        r = api("PATCH", api.location(r), data=data[:100_000], headers={"Content-Range": "0-99999"})
        wrong = sha256(data[:-1] + b"x")
        r = api("PUT", api.location(r), params={"digest": wrong}, data=data[100_000:])
        assert r.status_code == 400
        assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert on_disk(reg.root) == set()
        assert not list((reg.root / "uploads").iterdir())
        for digest in (wrong, sha256(data)):
            assert api("HEAD", f"/v2/mismatch/x/blobs/{digest}").status_code == 404


def test_concurrent_pushes_of_one_blob(tmp_path: Path) -> None:
    data = secrets.token_bytes(8 * 1024 * 1024)
    digest = sha256(data)
    with skiff_registry(tmp_path / "root") as reg:
        start = threading.Barrier(12)

        def push(i: int) -> int:
            api = Api(reg.url)
            name = "same/repo" if i % 2 else f"repo{i}/x"
            r = api("POST", f"/v2/{name}/blobs/uploads/")
            location = api.location(r)
            start.wait()
            r = api("PATCH", location, data=data)
            r = api("PUT", api.location(r), params={"digest": digest})
            return r.status_code

        with ThreadPoolExecutor(12) as pool:
            assert list(pool.map(push, range(12))) == [201] * 12
        assert on_disk(reg.root) == {digest}
        assert not list((reg.root / "uploads").iterdir())
        api = Api(reg.url)
        for name in ["same/repo", *(f"repo{i}/x" for i in range(0, 12, 2))]:
            assert api("GET", f"/v2/{name}/blobs/{digest}").content == data


def test_gc_while_serving(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shared = secrets.token_bytes(200_000)
    with skiff_registry(root) as reg:
        api = Api(reg.url)
        gone_layers = [secrets.token_bytes(50_000), secrets.token_bytes(50_000)]
        gone, _ = api.push_image("busy/old", "v1", [shared, *gone_layers])
        assert api("DELETE", f"/v2/busy/old/manifests/{gone}").status_code == 202

        done = threading.Event()
        gc_runs: list[subprocess.CompletedProcess[str]] = []

        def collector() -> None:
            while not done.is_set() or len(gc_runs) < 3:
                gc_runs.append(gc(root))

        def pusher(worker: int) -> list[tuple[str, str, list[bytes]]]:
            pushed = []
            client = Api(reg.url)
            for i in range(6):
                layers = [shared, secrets.token_bytes(30_000 + i)]
                tag = f"w{worker}-{i}"
                digest, _ = client.push_image("busy/new", tag, layers, marker=tag)
                pushed.append((tag, digest, layers))
            return pushed

        thread = threading.Thread(target=collector)
        thread.start()
        try:
            with ThreadPoolExecutor(4) as pool:
                results = [p for batch in pool.map(pusher, range(4)) for p in batch]
        finally:
            done.set()
            thread.join(120)
        assert len(gc_runs) >= 3
        assert all(run.returncode == 0 for run in gc_runs), [run.stderr for run in gc_runs]
        # Every push completed and reads back whole.
        for tag, digest, layers in results:
            r = api("GET", f"/v2/busy/new/manifests/{tag}")
            assert r.headers["Docker-Content-Digest"] == digest
            config = image_config([sha256(t) for t in layers], tag)
            for blob in (*layers, config):
                assert api("GET", f"/v2/busy/new/blobs/{sha256(blob)}").content == blob
        # The deleted image's own blobs are gone; the layer it shared stayed.
        disk = on_disk(root)
        assert not {sha256(b) for b in gone_layers} & disk
        assert gone not in disk
        assert sha256(shared) in disk


def test_sigterm_stop_and_one_server_per_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    reg = start_skiff(root)
    try:
        second = subprocess.run(
            [str(BIN / "skiff"), "registry", "serve", "--addr", "127.0.0.1:0", "--root", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"another skiff registry is serving {root}" in second.stderr
    finally:
        assert reg.stop(signal.SIGTERM) == 0
    with skiff_registry(root) as again:  # the lock went with the process
        assert requests.get(f"{again.url}/v2/", timeout=30).status_code == 200
