"""Images in and out as archives against a real skiffd: docker save/load/import, skopeo, docker-py, skiff.

Every image, tag and file a test makes is removed at its end, even when it fails.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import secrets
import socketserver
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.daemon_fixture import Daemon
from tests.e2e._skiff import ok

DOCKER = "/usr/local/bin/docker"


def run(
    daemon: Daemon, cmd: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A shell pipeline with DOCKER_HOST/SKIFF_HOST pointing at the test daemon."""
    env = {**daemon.env(), "DOCKER_CONFIG": str(daemon.base / "docker-config"), "PATH": _path()}
    r = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert r.returncode == 0, f"{cmd} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _path() -> str:
    venv_bin = str(Path(sys.executable).parent)
    return f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"


@contextlib.contextmanager
def scratch(daemon: Daemon) -> Iterator[tuple[Path, list[str]]]:
    """A temp dir and a list of image refs to remove at the end."""
    d = daemon.base / f"archive-{secrets.token_hex(4)}"
    d.mkdir()
    refs: list[str] = []
    try:
        yield d, refs
    finally:
        api = daemon.client()
        for ref in refs:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(ref, force=True)
        subprocess.run(["rm", "-rf", str(d)], check=False)


def inspect(daemon: Daemon, ref: str) -> dict[str, object]:
    return daemon.client().inspect_image(ref)


def tiny_rootfs(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def snapshot_dirs(daemon: Daemon) -> set[str]:
    return {p.name for p in (daemon.root / "snapshots").iterdir() if p.is_dir()}


# -- the docker CLI ---------------------------------------------------------------------------------


def test_docker_save_pipe_load_keeps_the_image(daemon: Daemon) -> None:
    before = inspect(daemon, "busybox")
    r = run(daemon, f"{DOCKER} save busybox | {DOCKER} load")
    assert "Loaded image: busybox:latest" in r.stdout
    after = inspect(daemon, "busybox")
    assert after["Id"] == before["Id"]
    assert after["RootFS"] == before["RootFS"]


def test_docker_save_o_skopeo_inspect_and_copy_to_oci_then_skiff_load(daemon: Daemon) -> None:
    with scratch(daemon) as (d, refs):
        archive = d / "busybox.tar"
        run(daemon, f"{DOCKER} save -o {archive} busybox:latest")
        bb = inspect(daemon, "busybox")
        diff_ids = bb["RootFS"]["Layers"]  # type: ignore[index]
        info = json.loads(run(daemon, f"skopeo inspect docker-archive:{archive}").stdout)
        assert info["Layers"] == diff_ids
        assert info["Os"] == "linux"
        # skopeo turns it into an OCI layout (gzip layers, an OCI config); skiff loads the directory.
        refs.append("busybox:from-skopeo")
        run(daemon, f"skopeo copy docker-archive:{archive} oci:{d / 'oci'}:busybox:from-skopeo")
        out = ok(daemon, "load", "-i", str(d / "oci"))
        assert "Loaded image: busybox:from-skopeo" in out
        loaded = inspect(daemon, "busybox:from-skopeo")
        assert loaded["RootFS"]["Layers"] == diff_ids  # type: ignore[index]
        # The same layout as a tar, through the docker CLI.
        refs.append("busybox:from-oci-tar")
        run(daemon, f"skopeo copy docker-archive:{archive} oci-archive:{d / 'oci.tar'}:busybox:from-oci-tar")
        r = run(daemon, f"{DOCKER} load -i {d / 'oci.tar'}")
        assert "Loaded image: busybox:from-oci-tar" in r.stdout


def test_docker_save_of_unknown_image_is_404(daemon: Daemon) -> None:
    r = run(daemon, f"{DOCKER} save skiff-no-such-image:1 > /dev/null", check=False)
    assert r.returncode != 0
    assert "No such image: skiff-no-such-image:1" in r.stderr


def test_docker_load_of_garbage_fails_cleanly(daemon: Daemon) -> None:
    r = run(daemon, f"head -c 3000 /dev/urandom | {DOCKER} load", check=False)
    assert r.returncode == 1
    assert "invalid archive" in r.stderr
    assert daemon.client().ping()


def test_load_with_wrong_diff_id_fails_and_leaves_no_layer(daemon: Daemon) -> None:
    layer = tiny_rootfs({"a": b"one"})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "ab" * 32]},
        }
    ).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["skiff-bad:1"], "Layers": ["l.tar"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("l.tar", layer), ("c.json", config), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    before = snapshot_dirs(daemon)
    with scratch(daemon) as (d, _):
        (d / "bad.tar").write_bytes(buf.getvalue())
        r = run(daemon, f"{DOCKER} load -i {d / 'bad.tar'}", check=False)
    assert r.returncode == 1
    assert "invalid diffID for layer 0" in r.stderr
    assert snapshot_dirs(daemon) == before
    with pytest.raises(docker.errors.ImageNotFound):
        daemon.client().inspect_image("skiff-bad:1")


def test_docker_import_file_and_stdin(daemon: Daemon) -> None:
    with scratch(daemon) as (d, refs):
        (d / "root.tar").write_bytes(tiny_rootfs({"hello": b"hi\n"}))
        refs += ["skiff-imp:file", "skiff-imp:stdin"]
        r = run(daemon, f"{DOCKER} import -c 'CMD [\"/hello\"]' -m note {d / 'root.tar'} skiff-imp:file")
        image_id = r.stdout.strip()
        assert image_id.startswith("sha256:")
        img = inspect(daemon, "skiff-imp:file")
        assert img["Id"] == image_id
        assert img["Config"]["Cmd"] == ["/hello"]  # type: ignore[index]
        assert img["Comment"] == "note"
        run(daemon, f"gzip -c {d / 'root.tar'} | {DOCKER} import - skiff-imp:stdin")
        assert inspect(daemon, "skiff-imp:stdin")["RootFS"] == img["RootFS"]


def test_layer_changed_on_disk_cuts_the_save_stream(daemon: Daemon) -> None:
    """A layer that no longer matches its diff_id must not be written as a plausible archive."""
    api = daemon.client()
    with scratch(daemon) as (d, refs):
        refs.append("skiff-tamper:1")
        out = api.import_image_from_data(tiny_rootfs({"f": b"original"}), repository="skiff-tamper", tag="1")
        assert "error" not in out
        chain = inspect(daemon, "skiff-tamper:1")["RootFS"]["Layers"][0]  # type: ignore[index]
        # Find the committed snapshot holding the layer and change its file behind skiff's back.
        victims = [p for p in (daemon.root / "snapshots").glob("*/fs/f") if p.read_bytes() == b"original"]
        assert victims, chain
        for v in victims:
            v.write_bytes(b"tampered")
        r = run(daemon, f"{DOCKER} save -o {d / 'x.tar'} skiff-tamper:1", check=False)
        assert r.returncode != 0
        assert not (d / "x.tar").exists()
        assert "no longer matches its diff_id" in daemon.log_tail(200)


# -- skiff's own CLI ---------------------------------------------------------------------------------


def test_skiff_save_load_and_image_aliases(daemon: Daemon) -> None:
    with scratch(daemon) as (d, refs):
        refs.append("skiff-copy:1")
        ok(daemon, "tag", "busybox", "skiff-copy:1")
        ok(daemon, "save", "-o", str(d / "a.tar"), "skiff-copy:1")
        with tarfile.open(d / "a.tar") as tf:
            names = tf.getnames()
        assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(names)
        ok(daemon, "rmi", "skiff-copy:1")
        out = ok(daemon, "image", "load", "-i", str(d / "a.tar"))
        assert out.strip() == "Loaded image: skiff-copy:1"
        assert inspect(daemon, "skiff-copy:1")["Id"] == inspect(daemon, "busybox")["Id"]
        # stdout / stdin, quiet
        r = run(daemon, "skiff image save skiff-copy:1 | skiff load -q")
        assert r.stdout.strip() == "Loaded image: skiff-copy:1"


def test_skiff_save_format_oci_is_a_plain_layout_skopeo_reads(daemon: Daemon) -> None:
    with scratch(daemon) as (d, _):
        ok(daemon, "save", "--format", "oci", "-o", str(d / "o.tar"), "busybox:latest")
        with tarfile.open(d / "o.tar") as tf:
            names = set(tf.getnames())
        assert "manifest.json" not in names and "index.json" in names
        info = json.loads(run(daemon, f"skopeo inspect oci-archive:{d / 'o.tar'}:latest").stdout)
        assert info["Layers"] == inspect(daemon, "busybox")["RootFS"]["Layers"]  # type: ignore[index]


def test_skopeo_inspects_a_built_image_as_docker_archive_and_as_oci_directories(daemon: Daemon) -> None:
    """A three-layer image from a build: skopeo reads skiff's save as ``docker-archive:`` and,
    unpacked, as ``oci:DIR`` (both the default save, which is also an OCI layout, and
    ``--format oci``); ``skopeo copy`` out of the layout checks every blob's digest."""
    with scratch(daemon) as (d, refs):
        ctx = d / "ctx"
        ctx.mkdir()
        (ctx / "data.txt").write_text("copied\n")
        (ctx / "Dockerfile").write_text(
            "FROM busybox\nRUN echo built > /built\nCOPY data.txt /data.txt\n"
            'LABEL org.example.test=skopeo\nENV MODE=test\nCMD ["cat", "/data.txt"]\n'
        )
        name = f"skiff-skopeo-{secrets.token_hex(4)}:v1"
        refs.append(name)
        ok(daemon, "build", "-q", "-t", name, str(ctx))
        image = inspect(daemon, name)
        diff_ids = image["RootFS"]["Layers"]  # type: ignore[index]
        assert len(diff_ids) == 3

        ok(daemon, "save", "-o", str(d / "docker.tar"), name)
        info = json.loads(run(daemon, f"skopeo inspect docker-archive:{d / 'docker.tar'}").stdout)
        assert info["Layers"] == diff_ids
        assert info["Labels"] == {"org.example.test": "skopeo"}
        assert "MODE=test" in info["Env"] and (info["Os"], info["Architecture"]) == ("linux", "amd64")
        raw = json.loads(run(daemon, f"skopeo inspect --raw docker-archive:{d / 'docker.tar'}").stdout)
        assert raw["config"]["digest"] == image["Id"]

        for kind, args in (("default", ()), ("oci", ("--format", "oci"))):
            archive = d / f"{kind}.tar"
            layout = d / f"{kind}-layout"
            ok(daemon, "save", *args, "-o", str(archive), name)
            layout.mkdir()
            with tarfile.open(archive) as tf:
                tf.extractall(layout, filter="data")
            assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
            for ref in (f"oci:{layout}", f"oci:{layout}:v1"):
                info = json.loads(run(daemon, f"skopeo inspect {ref}").stdout)
                assert info["Labels"] == {"org.example.test": "skopeo"}, kind
                assert info["Os"] == "linux" and len(info["Layers"]) == 3, kind
            config = json.loads(run(daemon, f"skopeo inspect --config oci:{layout}:v1").stdout)
            assert config["rootfs"]["diff_ids"] == diff_ids
            assert config["config"]["Cmd"] == ["cat", "/data.txt"]
            raw = json.loads(run(daemon, f"skopeo inspect --raw oci:{layout}:v1").stdout)
            assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
            assert raw["config"]["digest"] == image["Id"]
            run(daemon, f"skopeo copy --quiet oci:{layout}:v1 dir:{d / (kind + '-copy')}")


def test_untagged_save_loads_as_image_id(daemon: Daemon) -> None:
    image_id = str(inspect(daemon, "busybox")["Id"])
    with scratch(daemon) as (d, _):
        ok(daemon, "save", "-o", str(d / "id.tar"), image_id[7:19])
        out = ok(daemon, "load", "-i", str(d / "id.tar"))
        assert out.strip() == f"Loaded image ID: {image_id}"


def test_load_emits_load_and_tag_events(daemon: Daemon) -> None:
    api = daemon.client()
    with scratch(daemon) as (d, refs):
        refs.append("skiff-ev:1")
        ok(daemon, "tag", "busybox", "skiff-ev:1")
        ok(daemon, "save", "-o", str(d / "e.tar"), "skiff-ev:1")
        start = time.time()
        ok(daemon, "load", "-i", str(d / "e.tar"))
        events = list(
            api.events(since=start - 1, until=time.time() + 1, decode=True, filters={"type": "image"})
        )
        actions = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in events]
        image_id = inspect(daemon, "skiff-ev:1")["Id"]
        assert ("load", image_id) in actions
        assert ("tag", "skiff-ev:1") in actions


# -- docker-py --------------------------------------------------------------------------------------


def test_docker_py_save_and_load(daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=120)
    image = client.images.get("busybox:latest")
    data = b"".join(image.save())
    result = client.images.load(data)
    assert [i.id for i in result] == [image.id]
    # low-level: get_image / load_image stream lines
    raw = b"".join(client.api.get_image("busybox:latest"))
    lines = list(client.api.load_image(raw))
    assert {"stream": "Loaded image: busybox:latest\n"} in lines


def test_docker_py_save_named_and_load_repo_name(daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=120)
    image = client.images.get("busybox:latest")
    extra = f"skiff-dpy-{secrets.token_hex(3)}"
    image.tag(extra)
    try:
        image.reload()
        data = b"".join(image.save(named=f"{extra}:latest"))
        client.images.remove(extra, force=True)
        result = client.images.load(data)
        assert len(result) == 1 and result[0].id == image.id
        assert f"{extra}:latest" in result[0].tags
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(extra, force=True)


def test_docker_py_load_error(daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    with pytest.raises(docker.errors.ImageLoadError):
        client.images.load("abc")


def _dummy_tar(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("testdata")
        ti.size = size
        tf.addfile(ti, io.BytesIO(b"\0" * (size - 1) + b"A"))
    return buf.getvalue()


def test_docker_py_import_from_data_file_and_stream(daemon: Daemon, tmp_path: Path) -> None:
    api = daemon.client()
    ids: list[str] = []
    try:
        out = api.import_image_from_data(
            _dummy_tar(500), repository="test/import-from-bytes", changes=["USER foobar", 'CMD ["echo"]']
        )
        last = json.loads(out.splitlines()[-1])
        assert "error" not in last
        ids.append(last["status"])
        cfg = api.inspect_image(last["status"])["Config"]
        assert cfg["Cmd"] == ["echo"] and cfg["User"] == "foobar"
        path = tmp_path / "dummy.tar"
        path.write_bytes(_dummy_tar(512 * 1024))
        last = json.loads(
            api.import_image_from_file(str(path), repository="test/import-from-file").splitlines()[-1]
        )
        assert "error" not in last
        ids.append(last["status"])
        with open(path, "rb") as f:
            last = json.loads(api.import_image(src=f, repository="test/import-from-stream").splitlines()[-1])
        assert "error" not in last
        ids.append(last["status"])
    finally:
        for ref in ("test/import-from-bytes", "test/import-from-file", "test/import-from-stream", *ids):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(ref, force=True)


@contextlib.contextmanager
def http_file(data: bytes, host: str = "127.0.0.1") -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.TCPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/rootfs.tar"
    finally:
        server.shutdown()
        server.server_close()


def test_import_from_loopback_url_and_refusal_elsewhere(daemon: Daemon) -> None:
    api = daemon.client()
    try:
        with http_file(_dummy_tar(10240)) as url:
            last = json.loads(api.import_image(src=url, repository="test/import-from-url").splitlines()[-1])
        assert "error" not in last, last
        assert api.inspect_image("test/import-from-url")["Id"] == last["status"]
        with pytest.raises(docker.errors.APIError) as err:
            api.import_image(src="http://192.0.2.1:9/x.tar", repository="test/import-refused")
        assert err.value.status_code == 400
        assert "loopback" in str(err.value)
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_image("test/import-from-url", force=True)


# -- bad input: never a 500 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names, status",
    [
        (["skiff-nope"], 404),
        ([""], 404),
        (["UPPER/Case"], 404),
        (["../../etc/passwd"], 404),
        (["busybox@sha256:" + "0" * 64], 404),
        (["sha256:" + "0" * 64], 404),
        (["a" * 300], 404),
    ],
)
def test_save_bad_names(daemon: Daemon, names: list[str], status: int) -> None:
    api = daemon.client()
    resp = api._get(api._url("/images/get"), params={"names": names}, stream=True)
    assert resp.status_code == status, resp.text
    assert "message" in resp.json()


def test_save_unknown_format_is_400(daemon: Daemon) -> None:
    api = daemon.client()
    resp = api._get(api._url("/images/busybox/get"), params={"format": "zip"})
    assert resp.status_code == 400
    assert "unknown archive format" in resp.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x1f\x8b\x08\x00garbage",
        b"\x28\xb5\x2f\xfd zstd",
        tiny_rootfs({"manifest.json": b"{not json"}),
        tiny_rootfs({"manifest.json": b'[{"Config": "c", "Layers": ["l"]}]', "c": b'{"config": 1}'}),
        tiny_rootfs(
            {"index.json": b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:..", "size": 1}]}'}
        ),
        tiny_rootfs(
            {
                "index.json": b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:'
                + b"a" * 64
                + b'", "size": 1}]}'
            }
        ),
    ],
)
def test_load_bad_bodies_answer_in_stream(daemon: Daemon, body: bytes) -> None:
    api = daemon.client()
    resp = api._post(api._url("/images/load"), data=body, params={"quiet": "1"})
    assert resp.status_code == 200
    lines = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    assert lines and "error" in lines[-1], lines
    assert "internal error" not in lines[-1]["error"]
