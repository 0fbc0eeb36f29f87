"""The same ``skiff compose`` suite against a real dockerd (Debian docker.io), which proves
compose uses nothing but the Engine API. Skipped when dockerd is not installed.

The dockerd is private: its own data and exec roots, socket, cgroup parent and address
pool (user networks get 10.248.x.0/24 bridges named br-<id>, which it deletes with the
networks), no default bridge, no iptables changes. busybox:latest is the same static busybox
root filesystem the benches import. Stopped by its pid; everything removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from bench.common import remove_cgroups, unmount_all_under
from bench.rootfs import build_rootfs_tar

from tests.e2e.compose_suite import ComposeSuite, Engine

DOCKERD = shutil.which("dockerd")
POOL = "10.248.0.0/16"

pytestmark = pytest.mark.skipif(
    DOCKERD is None, reason="dockerd is not installed (apt-get install docker.io)"
)


def _pool_is_free() -> bool:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
    return not any(line.startswith("10.248.") for line in routes.splitlines())


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Engine]:
    assert DOCKERD is not None
    if not _pool_is_free():
        pytest.skip(f"{POOL} is routed on this host; the private dockerd needs it")
    tag = secrets.token_hex(4)
    base = Path(f"/tmp/skiff-compose-dockerd-{tag}")
    base.mkdir()
    (base / "daemon.json").write_text("{}\n")
    sock = base / "docker.sock"
    cgroup = f"skiff-compose-dockerd-{tag}"
    argv = [
        DOCKERD,
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
        f"--default-address-pool=base={POOL},size=24",
        "--storage-driver=overlay2",
        "--log-level=warn",
    ]
    log = (base / "dockerd.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = Engine("dockerd", f"unix://{sock}")
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(base / 'dockerd.log').read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                if engine.api().ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not answer within 60 s")
            time.sleep(0.2)
        rootfs = build_rootfs_tar(base / "rootfs.tar")
        subprocess.run(
            ["docker", "import", "--change", 'CMD ["sh"]', str(rootfs), "busybox:latest"],
            env={**os.environ, "DOCKER_HOST": engine.host, "DOCKER_CONFIG": str(base / "client")},
            check=True,
            capture_output=True,
        )
        yield engine
    finally:
        with contextlib.suppress(Exception):
            api = docker.APIClient(base_url=engine.host, version="1.41", timeout=30)
            for c in api.containers(all=True):
                with contextlib.suppress(Exception):
                    api.remove_container(c["Id"], force=True, v=True)
            for n in api.networks():
                if n["Name"] not in ("bridge", "host", "none"):
                    with contextlib.suppress(Exception):
                        api.remove_network(n["Id"])
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        unmount_all_under(base)
        remove_cgroups(cgroup)
        shutil.rmtree(base, ignore_errors=True)


class TestComposeOnDockerd(ComposeSuite):
    @pytest.fixture
    def engine(self, dockerd: Engine) -> Engine:
        return dockerd
