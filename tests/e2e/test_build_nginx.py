"""The talk's Dockerfile on Debian (examples/nginx): build, run -d -p, fetch the page, rebuild cached.

Slow (SKIFF_SLOW=1): it bootstraps debian:bookworm when the daemon lacks it, and its RUN
step apt-gets nginx from the host's apt mirror through the default bridge network.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
import urllib.request
from pathlib import Path

import docker
import pytest

from tests.daemon_fixture import Daemon

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nginx"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("SKIFF_SLOW") != "1", reason="slow (debootstrap, apt-get): set SKIFF_SLOW=1"
    ),
]


def ensure_debian(daemon: Daemon) -> None:
    api = daemon.client()
    with contextlib.suppress(docker.errors.ImageNotFound):
        api.inspect_image("debian:bookworm")
        return
    resp = api._post(
        api._url("/skiff/images/bootstrap"), params={"name": "debian"}, stream=True, timeout=1800
    )
    resp.raise_for_status()
    for line in resp.iter_lines():
        msg = json.loads(line)
        assert "error" not in msg, msg


def fetch(url: str, deadline: float) -> str:
    """The page, once nginx listens (it starts a moment after the container)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_talk_dockerfile_builds_runs_and_rebuilds_from_cache(daemon: Daemon) -> None:
    ensure_debian(daemon)
    tag = f"skiff-nginx-{secrets.token_hex(4)}"
    name = f"skiff-nginx-{secrets.token_hex(4)}"
    try:
        r = daemon.skiff("build", "-t", tag, str(EXAMPLE), timeout=1800)
        out = r.stdout.decode()
        assert r.returncode == 0, out + r.stderr.decode()
        assert "Step 7/7 : CMD" in out and f"Successfully tagged {tag}:latest" in out
        config = daemon.client().inspect_image(tag)["Config"]
        assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
        assert "80/tcp" in config["ExposedPorts"]

        r = daemon.skiff("run", "-d", "--name", name, "-p", "127.0.0.1::80", tag)
        assert r.returncode == 0, r.stderr.decode()
        port = daemon.client().port(name, 80)[0]["HostPort"]
        page = fetch(f"http://127.0.0.1:{port}/", time.monotonic() + 60)
        assert page == "nginx on Debian, built by skiff\n"

        again = daemon.skiff("build", "-t", tag, str(EXAMPLE), timeout=600)
        text = again.stdout.decode()
        assert again.returncode == 0, text
        assert text.count(" ---> Using cache") == 6  # every step after FROM
        assert "Running in" not in text
    finally:
        daemon.skiff("rm", "-f", name)
        daemon.skiff("rmi", "-f", tag)
