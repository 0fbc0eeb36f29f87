"""Build contexts from git and URLs, fetched by the client (skiff CLI and docker CLI) over loopback.

The git server is ``git daemon --inetd`` started per connection on a socket this test listens
on (ready before any client connects: no start-up race), the URL server an http.server; both
stop at the end of the module, and every image a test tags is removed.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import socket
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_fixture import Daemon
from tests.e2e.test_build import DOCKER, cli_env, needs_docker, run_output, tags, unique


def _git(repo: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def make_repository(base: Path) -> None:
    """``base/repo.git`` (bare): tag v1 has sub/hello.txt "v1"; main's newest commit "v2"."""
    work = base / "work"
    (work / "sub").mkdir(parents=True)
    (work / "Dockerfile").write_text('FROM busybox\nCOPY root.txt /root.txt\nCMD ["cat", "/root.txt"]\n')
    (work / "root.txt").write_text("root\n")
    (work / "sub" / "Dockerfile.alt").write_text(
        'FROM busybox\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n'
    )
    (work / "sub" / "hello.txt").write_text("v1\n")
    _git(work, "init", "--quiet", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "commit", "--quiet", "-m", "v1")
    _git(work, "tag", "v1")
    (work / "sub" / "hello.txt").write_text("v2\n")
    _git(work, "commit", "--quiet", "-am", "v2")
    _git(base, "clone", "--quiet", "--bare", str(work), str(base / "repo.git"))


@contextlib.contextmanager
def git_server(base: Path) -> Iterator[str]:
    """git:// on loopback: each connection is served by its own ``git daemon --inetd``."""
    listener = socket.create_server(("127.0.0.1", 0))
    children: list[subprocess.Popen[bytes]] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                command = ["git", "daemon", "--inetd", "--export-all", f"--base-path={base}", str(base)]
                children.append(subprocess.Popen(command, stdin=conn, stdout=conn, stderr=subprocess.DEVNULL))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"git://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=10)
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()


@contextlib.contextmanager
def http_server(files: dict[str, bytes]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b"not here"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def git_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("git")
    make_repository(base)
    with git_server(base) as url:
        yield url


def build(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    return daemon.skiff("build", "-q", *args, timeout=300)


def test_skiff_build_from_git_default_branch_tag_and_subdirectory(daemon: Daemon, git_url: str) -> None:
    with tags(daemon) as made:
        head, tagged = unique(), unique()
        made += [head, tagged]
        r = build(daemon, "-t", head, f"{git_url}/repo.git")
        assert r.returncode == 0, r.stderr.decode()
        assert run_output(daemon, head) == "root\n"
        # A tag and a directory in it; -f is relative to that directory, as with docker.
        r = build(daemon, "-t", tagged, "-f", "Dockerfile.alt", f"{git_url}/repo.git#v1:sub")
        assert r.returncode == 0, r.stderr.decode()
        assert run_output(daemon, tagged) == "v1\n"
        assert run_output(daemon, tagged, "ls", "/").count("root.txt") == 0


def test_git_errors_are_clean(daemon: Daemon, git_url: str) -> None:
    r = build(daemon, f"{git_url}/no-such-repo.git")
    assert r.returncode != 0
    assert b"unable to 'git clone' to temporary context directory" in r.stderr
    r = build(daemon, f"{git_url}/repo.git#main:no-such-dir")
    assert r.returncode != 0
    assert b"not a directory: no-such-dir" in r.stderr
    r = build(daemon, f"{git_url}/repo.git#--upload-pack=touch")
    assert r.returncode != 0 and b"invalid refspec: --upload-pack=touch" in r.stderr


@needs_docker
def test_docker_cli_builds_the_same_git_context(daemon: Daemon, git_url: str) -> None:
    # The docker CLI leaves its clone (docker-build-git*) in TMPDIR: give it one of ours.
    with tags(daemon) as made, tempfile.TemporaryDirectory(prefix="skiff-e2e-") as tmp:
        name = unique()
        made.append(name)
        r = subprocess.run(
            [DOCKER, "build", "-q", "-t", name, "-f", "Dockerfile.alt", f"{git_url}/repo.git#main:sub"],
            env={**cli_env(daemon), "TMPDIR": tmp},
            capture_output=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr.decode()
        assert run_output(daemon, name) == "v2\n"


def test_skiff_build_from_url_archive_and_plain_dockerfile(daemon: Daemon) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tf:
        for name, data in (
            ("Dockerfile", b'FROM busybox\nCOPY note.txt /note.txt\nCMD ["cat", "/note.txt"]\n'),
            ("note.txt", b"from a tarball\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    files = {
        "/ctx.tar.gz": archive.getvalue(),
        "/Dockerfile": b'FROM busybox\nCMD ["echo", "lone dockerfile"]\n',
    }
    with http_server(files) as base, tags(daemon) as made:
        from_tar, from_file = unique(), unique()
        made += [from_tar, from_file]
        r = build(daemon, "-t", from_tar, f"{base}/ctx.tar.gz")
        assert r.returncode == 0, r.stderr.decode()
        assert run_output(daemon, from_tar) == "from a tarball\n"
        r = build(daemon, "-t", from_file, f"{base}/Dockerfile")
        assert r.returncode == 0, r.stderr.decode()
        assert run_output(daemon, from_file) == "lone dockerfile\n"
        r = build(daemon, f"{base}/missing")
        assert r.returncode != 0
        assert f"failed to GET {base}/missing with status 404 Not Found: not here".encode() in r.stderr
