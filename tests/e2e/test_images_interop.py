"""Archives between skiffd and the real thing: Debian's dockerd 20.10 and podman, both ways.

dockerd runs privately (own data/exec roots, socket, cgroup parent, no bridge, no iptables) and
is stopped by its pid; podman runs with private --root/--runroot. Both are only asked to load and
save images, so no container or network object is made. Slow (dockerd start-up).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_fixture import Daemon, remove_cgroup_tree, unmount_under
from tests.e2e._skiff import ok

pytestmark = pytest.mark.slow
DOCKER = "/usr/local/bin/docker"


@contextlib.contextmanager
def private_dockerd() -> Iterator[dict[str, str]]:
    """A dockerd of our own; yields the environment for the docker CLI to talk to it."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd (Debian docker.io) is not installed")
    tag = secrets.token_hex(4)
    base = Path(f"/tmp/skiff-test-dockerd-{tag}")
    base.mkdir(parents=True)
    (base / "daemon.json").write_text("{}\n")
    sock = base / "docker.sock"
    cgroup = f"skiff-test-dockerd-{tag}"
    argv = [
        "dockerd",
        f"--data-root={base}/root",
        f"--exec-root={base}/exec",
        f"--pidfile={base}/pid",
        f"--config-file={base}/daemon.json",
        f"-H=unix://{sock}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        f"--cgroup-parent=/{cgroup}",
        "--storage-driver=overlay2",
        "--log-level=warn",
    ]
    log = (base / "dockerd.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/bin",
        "DOCKER_HOST": f"unix://{sock}",
        "DOCKER_CONFIG": str(base / "cli"),
    }
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(base / 'dockerd.log').read_text()[-2000:]}")
            if subprocess.run([DOCKER, "version"], env=env, capture_output=True).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not answer within 60 s")
            time.sleep(0.2)
        yield env
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it stops its managed containerd itself
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        unmount_under(base)
        remove_cgroup_tree(cgroup)
        shutil.rmtree(base, ignore_errors=True)


def sh(cmd: list[str], env: dict[str, str], stdin: bytes | None = None) -> str:
    r = subprocess.run(cmd, env=env, input=stdin, capture_output=True, timeout=300)
    assert r.returncode == 0, f"{cmd} -> {r.returncode}\n{r.stdout.decode()}\n{r.stderr.decode()}"
    return r.stdout.decode()


def test_dockerd_loads_skiff_archives_and_skiff_loads_dockerd_archives(
    daemon: Daemon, tmp_path: Path
) -> None:
    bb = daemon.client().inspect_image("busybox:latest")
    ok(daemon, "save", "-o", str(tmp_path / "skiff.tar"), "busybox:latest")
    with private_dockerd() as env:
        out = sh([DOCKER, "load", "-i", str(tmp_path / "skiff.tar")], env)
        assert "Loaded image: busybox:latest" in out
        theirs = json.loads(sh([DOCKER, "image", "inspect", "busybox:latest"], env))[0]
        assert theirs["Id"] == bb["Id"]  # same config bytes, same layers: the same image to Docker
        assert theirs["RootFS"]["Layers"] == bb["RootFS"]["Layers"]
        # dockerd 20.10 runs what skiff saved.
        assert (
            sh([DOCKER, "run", "--rm", "--network", "none", "busybox", "echo", "ran"], env).strip() == "ran"
        )
        # And back: Docker 20.10 writes the legacy <id>/layer.tar form; a second tag, an image ID.
        sh([DOCKER, "tag", "busybox:latest", "skiff-interop/from-docker:v1"], env)
        sh([DOCKER, "save", "-o", str(tmp_path / "docker.tar"), "skiff-interop/from-docker:v1"], env)
    try:
        out = ok(daemon, "load", "-i", str(tmp_path / "docker.tar"))
        assert "Loaded image: skiff-interop/from-docker:v1" in out
        back = daemon.client().inspect_image("skiff-interop/from-docker:v1")
        assert back["Id"] == bb["Id"]
    finally:
        daemon.skiff("rmi", "skiff-interop/from-docker:v1")


def test_podman_loads_skiff_archives_and_skiff_loads_podman_archives(daemon: Daemon, tmp_path: Path) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    store = Path(f"/tmp/skiff-test-podman-{secrets.token_hex(4)}")  # podman wants a short runroot
    podman = [
        "podman",
        f"--root={store}/root",
        f"--runroot={store}/runroot",
        f"--tmpdir={store}/tmp",
        "--storage-driver=overlay",
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
    ]
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "HOME": str(tmp_path)}
    bb = daemon.client().inspect_image("busybox:latest")
    ok(daemon, "save", "-o", str(tmp_path / "skiff.tar"), "busybox:latest")
    try:
        sh([*podman, "load", "-i", str(tmp_path / "skiff.tar")], env)
        theirs = json.loads(sh([*podman, "image", "inspect", "busybox:latest"], env))[0]
        assert theirs["RootFS"]["Layers"] == bb["RootFS"]["Layers"]
        sh([*podman, "tag", "busybox:latest", "skiff-interop/from-podman:v1"], env)
        # podman qualifies short names with localhost/; the archives carry that full name.
        name = "localhost/skiff-interop/from-podman:v1"
        for fmt in ("docker-archive", "oci-archive"):
            path = tmp_path / f"{fmt}.tar"
            sh([*podman, "save", "--format", fmt, "-o", str(path), "skiff-interop/from-podman:v1"], env)
            out = ok(daemon, "load", "-i", str(path))
            assert out.strip() == f"Loaded image: {name}", (fmt, out)
            back = daemon.client().inspect_image(name)
            assert back["Id"] == bb["Id"]  # podman keeps the config bytes
            daemon.skiff("rmi", name)
    finally:
        daemon.skiff("rmi", "localhost/skiff-interop/from-podman:v1")
        subprocess.run([*podman, "system", "reset", "-f"], env=env, capture_output=True, check=False)
        unmount_under(store)
        shutil.rmtree(store, ignore_errors=True)
