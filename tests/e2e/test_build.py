"""Dockerfile builds end to end: docker CLI (classic builder), docker-py and the skiff CLI.

Every image a test tags and every container it leaves is removed at its end (the build's
own intermediate containers are removed by the build itself: ``rm`` is the CLI default).
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import os
import re
import secrets
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.daemon_fixture import BIN, Daemon, bootstrap_busybox, running_daemon

DOCKER = "/usr/local/bin/docker"
needs_docker = pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the docker CLI")


def cli_env(daemon: Daemon) -> dict[str, str]:
    return {**daemon.env(), "DOCKER_CONFIG": str(daemon.base / "docker-cli-config"), "DOCKER_BUILDKIT": "0"}


def docker_build(daemon: Daemon, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [DOCKER, "build", *args], env=cli_env(daemon), input=input, capture_output=True, timeout=300
    )
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


@contextlib.contextmanager
def tags(daemon: Daemon) -> Iterator[list[str]]:
    """Names for images; whatever got them is removed (with its step images) afterwards."""
    names: list[str] = []
    try:
        yield names
    finally:
        api = daemon.client()
        for name in names:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_image(name, force=True)


def unique(prefix: str = "skiff-build") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def run_output(daemon: Daemon, image: str, *cmd: str) -> str:
    r = daemon.skiff("run", "--rm", image, *cmd)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def docker_py_build(daemon: Daemon, **kwargs: Any) -> list[dict[str, Any]]:
    return list(daemon.client().build(decode=True, rm=True, **kwargs))


def stream_text(messages: list[dict[str, Any]]) -> str:
    return "".join(str(m.get("stream", "")) for m in messages)


# -- the docker CLI ------------------------------------------------------------------------------

APP = {
    "Dockerfile": """# a comment
FROM busybox
ARG GREETING=hello
ENV APP_HOME=/srv/app
WORKDIR $APP_HOME
COPY app/ ./
RUN echo "$GREETING from $(pwd)" > greeting.txt && echo to-stderr >&2
USER nobody
EXPOSE 8080/tcp
HEALTHCHECK --interval=30s --retries=2 CMD test -f /srv/app/greeting.txt
LABEL org.example.kind=test
CMD ["cat", "greeting.txt"]
""",
    "app/main.sh": "#!/bin/sh\necho main\n",
    "app/conf/settings": "debug=0\n",
    "ignored.log": "never in the image\n",
    ".dockerignore": "*.log\n",
}


@needs_docker
def test_docker_cli_build_cache_hits_and_misses(daemon: Daemon, tmp_path: Path) -> None:
    ctx = write(tmp_path, APP)
    with tags(daemon) as made:
        name = unique()
        made.append(name)
        r = docker_build(daemon, "-t", name, str(ctx), "--build-arg", "GREETING=hi")
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert "Step 1/11 : FROM busybox" in out
        assert "Step 6/11 : RUN echo" in out
        assert " ---> Running in " in out and "Removing intermediate container" in out
        assert "to-stderr" in out
        assert out.rstrip().endswith(f"Successfully tagged {name}:latest")
        assert run_output(daemon, name) == "hi from /srv/app\n"
        listing = run_output(daemon, name, "find", "/srv/app", "-type", "f")
        assert sorted(listing.split()) == [
            "/srv/app/conf/settings",
            "/srv/app/greeting.txt",
            "/srv/app/main.sh",
        ]
        config = daemon.client().inspect_image(name)["Config"]
        assert config["User"] == "nobody"
        assert config["WorkingDir"] == "/srv/app"
        assert "APP_HOME=/srv/app" in config["Env"]
        assert "8080/tcp" in config["ExposedPorts"]
        assert config["Healthcheck"]["Test"] == ["CMD-SHELL", "test -f /srv/app/greeting.txt"]
        assert config["Healthcheck"]["Retries"] == 2
        assert config["Labels"] == {"org.example.kind": "test"}
        first_id = daemon.client().inspect_image(name)["Id"]

        again = docker_build(daemon, "-t", name, str(ctx), "--build-arg", "GREETING=hi")
        assert again.returncode == 0, again.stderr
        assert again.stdout.count(" ---> Using cache") == 10  # every step but FROM
        assert "Running in" not in again.stdout
        assert daemon.client().inspect_image(name)["Id"] == first_id
        fresh = docker_build(daemon, "--no-cache", "-t", name, str(ctx), "--build-arg", "GREETING=hi")
        assert fresh.returncode == 0, fresh.stderr
        assert "Using cache" not in fresh.stdout and fresh.stdout.count("Running in") == 1

        # A changed file misses from its COPY on; a changed build arg from its RUN on.
        (ctx / "app" / "main.sh").write_text("#!/bin/sh\necho changed\n")
        changed = docker_build(daemon, "-t", name, str(ctx), "--build-arg", "GREETING=hi")
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout.count(" ---> Using cache") == 3  # ARG, ENV, WORKDIR
        assert "Step 5/11 : COPY app/ ./\n ---> Using cache" not in changed.stdout
        other_arg = docker_build(daemon, "-t", name, str(ctx), "--build-arg", "GREETING=bye")
        assert other_arg.stdout.count(" ---> Using cache") == 4  # up to the RUN that uses it
        assert run_output(daemon, name) == "bye from /srv/app\n"


@needs_docker
def test_docker_cli_errors(daemon: Daemon, tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM busybox\n\nRUNN echo hi\n"})
    r = docker_build(daemon, str(tmp_path))
    assert r.returncode == 1
    assert "dockerfile parse error on line 3 of Dockerfile: unknown instruction: RUNN" in r.stderr
    r = docker_build(daemon, "-f", "missing.Dockerfile", str(tmp_path))
    assert r.returncode != 0
    r = docker_build(daemon, "-", input=b"FROM busybox\nCOPY nothing-here /x\n")
    assert r.returncode == 1
    assert "COPY failed: file not found in build context" in r.stderr


@needs_docker
def test_docker_cli_context_as_a_tarball_on_stdin(daemon: Daemon) -> None:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:gz") as tf:
        for name, data in (
            ("build/Dockerfile", b'FROM busybox\nCOPY note /note\nCMD ["cat", "/note"]\n'),
            ("note", b"from stdin\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with tags(daemon) as made:
        name = unique()
        made.append(name)
        r = docker_build(daemon, "-t", name, "-f", "build/Dockerfile", "-", input=body.getvalue())
        assert r.returncode == 0, r.stdout + r.stderr
        assert run_output(daemon, name) == "from stdin\n"


@needs_docker
def test_failing_run_stops_cleanly(daemon: Daemon, tmp_path: Path) -> None:
    api = daemon.client()
    write(
        tmp_path, {"Dockerfile": "FROM busybox\nRUN echo done > /ok\nRUN echo partial > /p; exit 7\nCMD x\n"}
    )
    with tags(daemon) as made:
        name = unique()
        made.append(name)
        before = {i["Id"] for i in api.images(all=True)}
        r = docker_build(daemon, "-t", name, str(tmp_path))
        assert r.returncode == 7  # the docker CLI exits with the RUN's status
        assert "The command '/bin/sh -c echo partial > /p; exit 7' returned a non-zero code: 7" in r.stderr
        with pytest.raises(docker.errors.ImageNotFound):
            api.inspect_image(name)
        new = [i for i in api.images(all=True) if i["Id"] not in before]
        # Only the complete step (RUN echo done) became an image; the failed one did not.
        assert len(new) <= 1
        for image in new:
            assert api.history(image["Id"])[0]["CreatedBy"].endswith("echo done > /ok")
        # The failed step's container stays for inspection (docker: without --force-rm).
        failed = [c for c in api.containers(all=True) if "exit 7" in c["Command"]]
        assert failed and failed[0]["State"] == "exited"
        for c in failed:
            api.remove_container(c["Id"], force=True)
        r = docker_build(daemon, "--force-rm", str(tmp_path))
        assert r.returncode == 7
        assert not [c for c in api.containers(all=True) if "exit 7" in c["Command"]]


@needs_docker
def test_every_instruction_reaches_the_image_and_later_steps(daemon: Daemon, tmp_path: Path) -> None:
    """MAINTAINER, SHELL, USER and WORKDIR as RUN sees them, COPY wildcards with --chown by name,
    a predefined proxy ARG, VOLUME, STOPSIGNAL, ENTRYPOINT, HEALTHCHECK NONE, --label, two -t."""
    dockerfile = """FROM busybox
MAINTAINER skiff tests <t@example.com>
SHELL ["/bin/sh", "-ec"]
RUN echo app:x:1234:1234::/tmp:/bin/sh >> /etc/passwd; echo app:x:1234: >> /etc/group
WORKDIR /work/deep
USER app
RUN id -u > /tmp/uid; pwd > /tmp/pwd; echo "$0 $-" > /tmp/shell
COPY --chown=app files/*.txt /data/
USER root
RUN echo "$HTTP_PROXY" > /tmp/proxy
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /tmp/uid /tmp/pwd /tmp/shell /tmp/proxy; stat -c '%u %n' /data/*"]
HEALTHCHECK NONE
"""
    write(tmp_path, {"Dockerfile": dockerfile, "files/a.txt": "a", "files/b.txt": "b", "files/c.md": "c"})
    with tags(daemon) as made:
        one, two = unique(), f"{unique()}:second"
        made += [one, two]
        r = docker_build(
            daemon, "-t", one, "-t", two, "--label", "org.example.built-by=test",
            "--build-arg", "HTTP_PROXY=http://proxy.invalid:3128", str(tmp_path),
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert "were not consumed" not in r.stdout + r.stderr  # predefined ARGs need no ARG line
        api = daemon.client()
        image = api.inspect_image(one)
        assert api.inspect_image(two)["Id"] == image["Id"]
        config = image["Config"]
        assert image["Author"] == "skiff tests <t@example.com>"
        assert config["Shell"] == ["/bin/sh", "-ec"]
        assert (config["User"], config["WorkingDir"]) == ("root", "/work/deep")
        assert config["Volumes"] == {"/data": {}}
        assert config["StopSignal"] == "SIGUSR1"
        assert config["Entrypoint"] == ["/bin/sh", "-c"]
        assert config["Healthcheck"] == {"Test": ["NONE"]}
        assert config["Labels"] == {"org.example.built-by": "test"}
        assert not any("HTTP_PROXY" in e for e in config["Env"])
        # Docker keeps a predefined ARG out of the history unless the Dockerfile declares it.
        assert not any("proxy.invalid" in h["CreatedBy"] for h in api.history(one))
        uid, pwd, shell, proxy, *owners = run_output(daemon, one).splitlines()
        assert (uid, pwd, proxy) == ("1234", "/work/deep", "http://proxy.invalid:3128")
        name, flags = shell.split()
        assert name == "/bin/sh" and "e" in flags  # RUN ran under SHELL's -e
        assert owners == ["1234 /data/a.txt", "1234 /data/b.txt"]  # c.md not matched


@needs_docker
def test_docker_history_names_every_step_image(daemon: Daemon, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "Dockerfile": 'FROM busybox\nENV A=1\nRUN echo hi > /f\nCOPY data /data\nCMD ["sh"]\n',
            "data": "x" * 100,
        },
    )
    with tags(daemon) as made:
        name = unique()
        made.append(name)
        r = docker_build(daemon, "-t", name, str(tmp_path))
        assert r.returncode == 0, r.stdout + r.stderr
        # " ---> <id>" after each step: busybox for FROM, then every step's image.
        steps = [line[6:] for line in r.stdout.splitlines() if re.fullmatch(r" ---> [0-9a-f]{12}", line)]
        assert len(steps) == 5, r.stdout
        h = subprocess.run(
            [DOCKER, "history", "--format", "{{.ID}}|{{.CreatedBy}}", name],
            env=cli_env(daemon),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert h.returncode == 0, h.stderr
        rows = [line.split("|", 1) for line in h.stdout.splitlines()]
        assert [row[0] for row in rows] == steps[::-1], h.stdout  # newest first, none <missing>
        assert 'CMD ["sh"]' in rows[0][1] and "ENV A=1" in rows[3][1]
        api = daemon.client()
        history = api.history(name)
        assert history[0]["Tags"] == [f"{name}:latest"]
        assert history[-1]["Tags"] == ["busybox:latest"]
        # Each row carries its own layer's size; config-only steps none.
        assert [row["Size"] > 0 for row in history] == [False, True, True, False, True]
        assert sum(row["Size"] for row in history) == api.inspect_image(name)["Size"]


# -- docker-py -----------------------------------------------------------------------------------


def test_docker_py_multi_stage_target_and_copy_from(daemon: Daemon) -> None:
    dockerfile = b"""
FROM busybox AS base
RUN echo base > /base.txt
FROM base AS builder
RUN echo built > /artifact && mkdir /out && cp /artifact /out/
FROM busybox
COPY --from=builder /out/ /app/
COPY --from=0 /base.txt /app/
COPY --from=busybox:latest /bin/busybox /app/bb
ONBUILD RUN echo not-here
"""
    with tags(daemon) as made:
        final, target = unique(), unique()
        made += [final, target]
        messages = docker_py_build(daemon, fileobj=io.BytesIO(dockerfile), tag=final)
        assert "errorDetail" not in messages[-1], messages[-1]
        assert any("aux" in m for m in messages)
        assert run_output(daemon, final, "sh", "-c", "cat /app/artifact /app/base.txt; test -x /app/bb") == (
            "built\nbase\n"
        )
        config = daemon.client().inspect_image(final)["Config"]
        assert config["OnBuild"] == ["RUN echo not-here"]
        messages = docker_py_build(daemon, fileobj=io.BytesIO(dockerfile), tag=target, target="builder")
        text = stream_text(messages)
        assert "Step 4/4 : RUN echo built" in text and "Step 5/" not in text
        assert run_output(daemon, target, "cat", "/artifact") == "built\n"
        assert not daemon.client().inspect_image(target)["Config"].get("OnBuild")
        bad = daemon.client().build(fileobj=io.BytesIO(dockerfile), target="nope", decode=True)
        with pytest.raises(docker.errors.APIError, match="failed to reach build target nope"):
            list(bad)


def test_docker_py_images_build_onbuild_and_args(daemon: Daemon, tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    with tags(daemon) as made:
        parent, child = unique(), unique()
        made += [parent, child]
        write(
            tmp_path / "parent",
            {"Dockerfile": "FROM busybox\nONBUILD COPY marker /marker\nONBUILD RUN cat /marker\n"},
        )
        image, _ = client.images.build(path=str(tmp_path / "parent"), tag=parent)
        assert image.attrs["Config"]["OnBuild"] == ["COPY marker /marker", "RUN cat /marker"]
        write(
            tmp_path / "child",
            {
                "Dockerfile": f"FROM {parent}\nARG WHO\nARG UNUSED_DEFAULT=x\nRUN echo hello $WHO > /who\n",
                "marker": "child's marker\n",
            },
        )
        image, logs = client.images.build(
            path=str(tmp_path / "child"), tag=child, buildargs={"WHO": "skiff", "EXTRA": "1"}
        )
        text = "".join(str(line.get("stream", "")) for line in logs)
        assert "# Executing 2 build triggers" in text
        assert "child's marker" in text
        assert "[Warning] One or more build-args [EXTRA] were not consumed" in text
        assert run_output(daemon, child, "cat", "/who", "/marker") == "hello skiff\nchild's marker\n"
        assert not image.attrs["Config"].get("OnBuild")
        history = client.api.history(child)
        # RUN's history names the declared ARGs in effect, as Docker records them.
        assert any(
            "|2 UNUSED_DEFAULT=x WHO=skiff /bin/sh -c echo hello $WHO" in h["CreatedBy"] for h in history
        )


def test_add_archives_urls_and_chown(daemon: Daemon, tmp_path: Path) -> None:
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tf:
        info = tarfile.TarInfo("pkg/readme")
        info.size, info.uid, info.gid = 6, 42, 43
        tf.addfile(info, io.BytesIO(b"readme"))
    (tmp_path / "pkg.tar.gz").write_bytes(payload.getvalue())
    (tmp_path / "plain.txt").write_text("plain\n")
    served = gzip.compress(b"not extracted")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(served)))
            self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            self.end_headers()
            self.wfile.write(served)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/files/remote.gz"
    write(
        tmp_path,
        {
            "Dockerfile": f"FROM busybox\nADD pkg.tar.gz /opt/\nADD {url} /dl/\n"
            "COPY --chown=nobody:nogroup --chmod=600 plain.txt /owned\n"
        },
    )
    try:
        with tags(daemon) as made:
            name = unique()
            made.append(name)
            messages = docker_py_build(daemon, path=str(tmp_path), tag=name)
            assert "errorDetail" not in messages[-1], messages[-1]
            script = "stat -c '%u:%g %a %n' /opt/pkg/readme /dl/remote.gz /owned; cat /opt/pkg/readme"
            out = run_output(daemon, name, "sh", "-c", script).splitlines()
            assert out[0] == "42:43 644 /opt/pkg/readme"  # extracted, owners from the archive
            assert out[1] == "0:0 600 /dl/remote.gz"  # downloaded, not extracted
            assert out[2] == "65534:65534 600 /owned"
            assert out[3] == "readme"
    finally:
        server.shutdown()


def test_add_url_names_owners_cache_and_errors(daemon: Daemon, tmp_path: Path) -> None:
    """ADD from a loopback HTTP server: placement, --chown, a cache keyed on the downloaded bytes
    (so a changed file misses and an unchanged one hits), and dockerd's errors in the stream."""
    served = {"/files/v.txt": b"version 1\n", "/": b"an index"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b"gone"
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    dockerfile = (
        f"FROM busybox\nADD {base}/files/v.txt /dl/\nADD --chown=nobody:nogroup {base}/files/v.txt /renamed\n"
        "RUN cat /dl/v.txt /renamed > /both\n"
    )
    try:
        with tags(daemon) as made:
            name = unique()
            made.append(name)
            first = stream_text(docker_py_build(daemon, fileobj=io.BytesIO(dockerfile.encode()), tag=name))
            assert "Successfully tagged" in first, first
            script = "stat -c '%u:%g %a %Y %n' /dl/v.txt /renamed; cat /both"
            out = run_output(daemon, name, "sh", "-c", script).splitlines()
            assert out == [
                "0:0 600 1445412480 /dl/v.txt",
                "65534:65534 600 1445412480 /renamed",
                "version 1",
                "version 1",
            ]
            again = stream_text(docker_py_build(daemon, fileobj=io.BytesIO(dockerfile.encode()), tag=name))
            assert again.count(" ---> Using cache") == 3, again  # fetched again, same bytes: hits
            served["/files/v.txt"] = b"version 2\n"
            changed = stream_text(docker_py_build(daemon, fileobj=io.BytesIO(dockerfile.encode()), tag=name))
            assert "Using cache" not in changed, changed
            assert run_output(daemon, name, "cat", "/both") == "version 2\nversion 2\n"

            missing = docker_py_build(
                daemon, fileobj=io.BytesIO(f"FROM busybox\nADD {base}/nope /x\n".encode()), tag=unique()
            )
            error = missing[-1].get("error", "")
            assert error == f"failed to GET {base}/nope with status 404 Not Found: gone", missing[-1]
            nameless = docker_py_build(
                daemon, fileobj=io.BytesIO(f"FROM busybox\nADD {base}/ /d/\n".encode())
            )
            assert nameless[-1].get("error") == f"cannot determine filename for source {base}/", nameless[-1]
    finally:
        server.shutdown()
        server.server_close()


# -- the skiff CLI -------------------------------------------------------------------------------


def test_skiff_build_stdin_quiet_iidfile_and_ignore(daemon: Daemon, tmp_path: Path) -> None:
    write(tmp_path, {"keep.txt": "kept\n", "secret.key": "no\n", ".dockerignore": "*.key\n"})
    iid = tmp_path.parent / f"{tmp_path.name}.iid"
    with tags(daemon) as made:
        name = unique()
        made.append(name)
        r = daemon.skiff(
            "build", "-q", "--iidfile", str(iid), "-t", name, "-f", "-", str(tmp_path),
            input=b"FROM busybox\nCOPY . /ctx/\nCMD [\"ls\", \"-A\", \"/ctx\"]\n",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        image_id = r.stdout.decode().strip()
        assert image_id.startswith("sha256:") and iid.read_text() == image_id
        # Neither the excluded file nor the Dockerfile from stdin is copied (.dockerignore is,
        # as with docker: it does not list itself).
        assert run_output(daemon, name).split() == [".dockerignore", "keep.txt"]
        r = daemon.skiff("build", "-", input=b"FROM busybox\nRUN exit 4\n")
        assert r.returncode == 4
        assert b"returned a non-zero code: 4" in r.stderr


def test_network_modes_and_extra_hosts(daemon: Daemon) -> None:
    api = daemon.client()
    dockerfile = b"FROM busybox\nRUN grep -q 'extra.test' /etc/hosts && ip -o link | grep -c ': ' > /links\n"
    with tags(daemon) as made:
        name = unique()
        made.append(name)
        messages = docker_py_build(
            daemon, fileobj=io.BytesIO(dockerfile), tag=name, network_mode="none",
            extra_hosts={"extra.test": "127.0.0.1"}, nocache=True,
        )  # fmt: skip
        assert "errorDetail" not in messages[-1], messages[-1]
        assert run_output(daemon, name, "cat", "/links") == "1\n"  # only lo with --network none
        failing = list(
            api.build(fileobj=io.BytesIO(b"FROM busybox\nRUN ping -c1 -W1 192.0.2.1\n"),
                      network_mode="none", decode=True, rm=True)
        )  # fmt: skip
        assert failing[-1]["errorDetail"]["code"] == 1


def test_interrupted_build_leaves_no_half_written_image(daemon: Daemon, tmp_path: Path) -> None:
    api = daemon.client()
    marker = secrets.token_hex(6)
    write(
        tmp_path,
        {"Dockerfile": f"FROM busybox\nRUN echo {marker} > /done\nRUN echo started-{marker}; sleep 300\n"},
    )
    before = {i["Id"] for i in api.images(all=True)}
    since = int(time.time()) - 1
    proc = subprocess.Popen(
        [str(BIN / "skiff"), "build", str(tmp_path)],
        env=daemon.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    container = ""
    for raw in proc.stdout:
        line = raw.decode()
        if "Running in" in line:
            container = line.split("Running in")[1].strip()
        if line.strip() == f"started-{marker}":  # the RUN's own output, not its Step line
            break
    assert container, "the build never reached the second RUN"
    full = next(c["Id"] for c in api.containers(all=True) if c["Id"].startswith(container))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The daemon notices the client is gone, kills and removes the RUN container.
    for event in api.events(since=since, filters={"container": full}, decode=True):
        if event.get("status") == "destroy" or event.get("Action") == "destroy":
            break
    after = [i for i in api.images(all=True) if i["Id"] not in before]
    for image in after:  # only the complete first RUN became an image
        assert marker in api.history(image["Id"])[0]["CreatedBy"]
        assert "sleep 300" not in api.history(image["Id"])[0]["CreatedBy"]
    builds = daemon.root / "builds"
    assert not any(builds.iterdir())


def test_cache_survives_restart_and_prune_clears_it(tmp_path: Path) -> None:
    dockerfile = b"FROM busybox\nENV A=1\nRUN echo cached > /c\n"
    with running_daemon() as d:
        bootstrap_busybox(d)
        first = docker_py_build(d, fileobj=io.BytesIO(dockerfile), tag="cached")
        assert "errorDetail" not in first[-1]
        d.stop()
        d.start()
        second = docker_py_build(d, fileobj=io.BytesIO(dockerfile), tag="cached")
        assert stream_text(second).count("Using cache") == 2
        result = d.client().prune_builds()
        assert isinstance(result["SpaceReclaimed"], int)
        third = docker_py_build(d, fileobj=io.BytesIO(dockerfile), tag="cached2")
        assert "Using cache" not in stream_text(third)
        r = d.skiff("builder", "prune", "-f")
        assert r.returncode == 0 and b"Total reclaimed space" in r.stdout


def test_skiffd_killed_mid_build_recovers_cleanly(tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo first > /first\nRUN echo in-run; sleep 300\n"})
    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        proc = subprocess.Popen(
            [str(BIN / "skiff"), "build", str(tmp_path)],
            env=d.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        container = ""
        for raw in proc.stdout:
            line = raw.decode()
            if "Running in" in line:
                container = line.split("Running in")[1].strip()
            if line.strip() == "in-run":
                break
        images_before_crash = {i["Id"] for i in api.images(all=True)}
        d.stop(signal.SIGKILL)
        proc.wait(30)
        d.start()
        api = d.client()
        # The interrupted RUN's container is gone, no image appeared for its step, nothing of
        # the job is left on disk, and no snapshot of a file step or view remains.
        assert not [c for c in api.containers(all=True) if c["Id"].startswith(container)]
        assert {i["Id"] for i in api.images(all=True)} == images_before_crash
        assert not any((d.root / "builds").iterdir())
        with open("/proc/self/mountinfo") as f:
            assert str(d.root / "builds") not in f.read()
        # The step that finished before the crash is still a cache hit.
        messages = docker_py_build(d, fileobj=io.BytesIO(b"FROM busybox\nRUN echo first > /first\n"))
        assert "Using cache" in stream_text(messages)


def test_heredocs(daemon: Daemon) -> None:
    dockerfile = (
        b"FROM busybox\nENV NAME=skiff\n"
        b'RUN <<EOF\necho "from a script: $NAME" > /script.txt\nEOF\n'
        b"RUN cat <<A > /shell.txt\nshell reads $NAME\nA\n"
        b'COPY <<CONF /etc/app.conf\nname=$NAME\nquoted="kept"\nCONF\n'
        b"COPY <<-'RAW' /etc/raw.conf\n\tliteral=$NAME\n\tRAW\n"
    )
    with tags(daemon) as made:
        name = unique()
        made.append(name)
        messages = docker_py_build(daemon, fileobj=io.BytesIO(dockerfile), tag=name)
        assert "errorDetail" not in messages[-1], messages[-1]
        out = run_output(daemon, name, "cat", "/script.txt", "/shell.txt", "/etc/app.conf", "/etc/raw.conf")
        assert out == 'from a script: skiff\nshell reads skiff\nname=skiff\nquoted="kept"\nliteral=$NAME\n'
