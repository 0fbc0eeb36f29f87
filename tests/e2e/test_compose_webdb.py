"""examples/compose/web-db for real: the original Compose format, a PostgreSQL image and a
Python web app built from the bootstrapped Debian with apt-get, a one-off migration, the web
app reading the rows from the database through the link.

Slow (SKIFF_SLOW=1): it bootstraps debian:bookworm when the daemon lacks it, and both builds
apt-get from the host's apt mirror through the default bridge network.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.daemon_fixture import Daemon
from tests.e2e.compose_suite import Engine, Project
from tests.e2e.test_build_nginx import ensure_debian

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "compose" / "web-db"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("SKIFF_SLOW") != "1", reason="slow (debootstrap, apt-get): set SKIFF_SLOW=1"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page(url: str, deadline: float) -> tuple[int, str]:
    """(status, body) once the server answers at all."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_web_and_database_app_in_the_original_format(daemon: Daemon, tmp_path: Path) -> None:
    ensure_debian(daemon)
    work = tmp_path / "web-db"
    shutil.copytree(EXAMPLE, work)
    project = Project(Engine("skiffd", daemon.host), work, f"webdb{os.getpid()}")
    port = free_port()
    (work / ".env").write_text(f"WEB_PORT={port}\n")  # the loader reads .env from the project dir
    try:
        r = project.compose("up", "-d", timeout=1800)
        assert "Successfully tagged" in r.stderr
        web = project.inspect(f"{project.name}-web-1")
        assert web["HostConfig"]["Links"], "the link to db is a real link"
        status, body = page(f"http://127.0.0.1:{port}/", time.monotonic() + 120)
        assert status == 503 and "greetings" in body  # up, but not migrated yet

        r = project.compose("run", "--rm", "-T", "web", "python3", "manage.py", "migrate", timeout=300)
        assert "migrated: table greetings ready" in r.stdout
        status, body = page(f"http://127.0.0.1:{port}/", time.monotonic() + 60)
        assert status == 200
        assert body.splitlines() == [
            "hello from PostgreSQL",
            "served by Python",
            "built and run by skiff compose",
        ]
        logs = project.compose("logs", "web").stdout
        assert '"GET / HTTP/1.1" 200' in logs

        # A no-change up keeps both containers; the data lives on in the container's layer.
        before = {n: c["Id"] for n, c in project.containers().items()}
        project.compose("up", "-d")
        assert {n: c["Id"] for n, c in project.containers().items()} == before
    finally:
        project.compose("down", "--rmi", "local", check=False, timeout=300)
        project.cleanup()
