"""Everyday use of the real docker CLI (28.x) against skiffd, as a user types it.

Interactive commands (``run -it``, ``exec -it``) run under a real pseudo-terminal: the test
waits for the shell's prompt, types, and reads what the terminal shows. Every container,
network and volume a test makes is force-removed at its end, even when it fails.
(cp, commit, import and save/load have their own suites.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import secrets
import select
import socket
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_fixture import Daemon

DOCKER = "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the docker CLI")


def docker(
    daemon: Daemon, *args: str, input: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [DOCKER, *args], env=cli_env(daemon), input=input, capture_output=True, timeout=timeout
    )


def docker_ok(daemon: Daemon, *args: str, input: bytes | None = None) -> str:
    r = docker(daemon, *args, input=input)
    assert r.returncode == 0, f"docker {' '.join(args)} -> {r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    return r.stdout.decode()


def cli_env(daemon: Daemon) -> dict[str, str]:
    # A private DOCKER_CONFIG: the CLI neither reads nor writes the user's ~/.docker.
    return {**daemon.env(), "DOCKER_CONFIG": str(daemon.base / "docker-cli-config")}


@contextlib.contextmanager
def objects(daemon: Daemon) -> Iterator[Objects]:
    made = Objects()
    try:
        yield made
    finally:
        for c in made.containers:
            docker(daemon, "rm", "-f", c)
        for n in made.networks:
            docker(daemon, "network", "rm", n)
        for v in made.volumes:
            docker(daemon, "volume", "rm", "-f", v)


class Objects:
    """Names of what a test made, for cleanup; ``container()`` etc. hand out fresh names."""

    def __init__(self) -> None:
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []

    def container(self) -> str:
        self.containers.append(f"skiff-dcli-{secrets.token_hex(4)}")
        return self.containers[-1]

    def network(self) -> str:
        self.networks.append(f"skiff-dcli-net-{secrets.token_hex(3)}")
        return self.networks[-1]

    def volume(self) -> str:
        self.volumes.append(f"skiff-dcli-vol-{secrets.token_hex(3)}")
        return self.volumes[-1]


class Terminal:
    """The docker CLI with a pseudo-terminal (40x100) as stdin, stdout and stderr."""

    def __init__(self, daemon: Daemon, *args: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.proc = subprocess.Popen(
            [DOCKER, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=cli_env(daemon),
            start_new_session=True,
        )
        os.close(slave)
        self.screen = b""
        self._eof = False

    def _read(self, deadline: float) -> None:
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every slave end is closed
            chunk = b""
        if chunk:
            self.screen += chunk
        else:
            self._eof = True

    def expect(self, pattern: bytes, timeout: float = 30) -> re.Match[bytes]:
        """Wait until the screen shows ``pattern`` (a regex)."""
        deadline = time.monotonic() + timeout
        while not (m := re.search(pattern, self.screen)):
            if self._eof or time.monotonic() > deadline:
                raise AssertionError(f"terminal never showed {pattern!r}; it shows {self.screen!r}")
            self._read(deadline)
        return m

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def wait(self, timeout: float = 30) -> int:
        """Read to the end and return the CLI's exit code."""
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            self._read(deadline)
        return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@contextlib.contextmanager
def terminal(daemon: Daemon, *args: str) -> Iterator[Terminal]:
    t = Terminal(daemon, *args)
    try:
        yield t
    finally:
        t.close()


# busybox sh's prompt, perhaps followed by its terminal queries (cursor position, clear to end)
PROMPT = rb"# (?:\x1b\[[0-9;]*[A-Za-z])*$"


def inspect(daemon: Daemon, fmt: str, *names: str) -> str:
    return docker_ok(daemon, "inspect", "--format", fmt, *names).strip()


# -- run ------------------------------------------------------------------------------------


def test_run_output_exit_code_env_and_name(daemon: Daemon) -> None:
    with objects(daemon) as made:
        r = docker(daemon, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
        assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
        name = made.container()
        out = docker_ok(
            daemon,
            "run",
            "--name",
            name,
            "-e",
            "GREETING=hello there",
            "busybox",
            "sh",
            "-c",
            'echo "$GREETING from $(hostname)"',
        )
        cid = inspect(daemon, "{{.Id}}", name)
        assert out == f"hello there from {cid[:12]}\n"
        assert inspect(daemon, "{{.Name}} {{.State.Status}} {{.State.ExitCode}}", name) == f"/{name} exited 0"
        r = docker(daemon, "run", "--name", name, "busybox", "true")
        assert r.returncode == 125
        assert f'Conflict. The container name "/{name}" is already in use' in r.stderr.decode()


def test_run_rm_leaves_nothing(daemon: Daemon) -> None:
    label = f"skiff-dcli-rm={secrets.token_hex(4)}"
    assert docker_ok(daemon, "run", "--rm", "--label", label, "busybox", "echo", "gone") == "gone\n"
    assert docker_ok(daemon, "ps", "-aq", "--filter", f"label={label}") == ""


def test_run_stdin_pipe(daemon: Daemon) -> None:
    r = docker(daemon, "run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done", input=b"typed\n")
    assert (r.returncode, r.stdout) == (0, b"TYPED\ndone\n"), r.stderr


def test_run_it_interactive_shell_under_a_pty(daemon: Daemon) -> None:
    with terminal(daemon, "run", "--rm", "-it", "busybox", "sh") as t:
        t.expect(PROMPT)
        t.type(b"stty size; tty\r")
        t.expect(rb"40 100\r\n/dev/pts/\d+")
        t.type(b"echo $((6*7))\r")
        t.expect(rb"\r\n42\r\n")
        t.type(b"exit 3\r")
        assert t.wait() == 3


def test_run_detached_then_ps_stop_start_kill_rm(daemon: Daemon) -> None:
    # pid 1 ignores signals it has no handler for: SIGTERM does nothing, SIGUSR1 is trapped.
    script = "trap 'exit 42' USR1; echo ready; while :; do sleep 0.1; done"
    with objects(daemon) as made:
        name = made.container()
        cid = docker_ok(daemon, "run", "-d", "--name", name, "busybox", "sh", "-c", script).strip()
        assert re.fullmatch(r"[0-9a-f]{64}", cid)
        row = docker_ok(
            daemon, "ps", "--filter", f"name={name}", "--format", "{{.ID}}|{{.Image}}|{{.Status}}|{{.Names}}"
        )
        short, image, status, names = row.strip().split("|")
        assert (short, image, names) == (cid[:12], "busybox", name)
        assert status.startswith("Up ")
        command = docker_ok(
            daemon, "ps", "--no-trunc", "--filter", f"name={name}", "--format", "{{.Command}}"
        )
        # dockerd (container/view.go) joins the argv with spaces, quoting arguments with a space
        assert command.strip() == f"\"sh -c '{script}'\""
        # stop: SIGTERM is ignored, so SIGKILL after -t
        assert docker_ok(daemon, "stop", "-t", "1", name).strip() == name
        assert inspect(daemon, "{{.State.Status}} {{.State.ExitCode}}", name) == "exited 137"
        assert docker_ok(daemon, "ps", "-q", "--filter", f"name={name}") == ""
        exited = docker_ok(daemon, "ps", "-aq", "--filter", f"name={name}", "--filter", "status=exited")
        assert exited.strip() == cid[:12]
        docker_ok(daemon, "start", name)
        wait_for_log_line(daemon, name, "ready", 2)  # the trap is set
        docker_ok(daemon, "kill", "-s", "USR1", name)
        assert docker_ok(daemon, "wait", name).strip() == "42"
        docker_ok(daemon, "start", name)
        docker_ok(daemon, "kill", name)  # SIGKILL by default
        assert docker_ok(daemon, "wait", name).strip() == "137"
        assert docker_ok(daemon, "rm", name).strip() == name
        r = docker(daemon, "inspect", name)
        assert r.returncode == 1 and f"No such object: {name}" in r.stderr.decode()
        r = docker(daemon, "rm", name)
        assert r.returncode == 1 and f"No such container: {name}" in r.stderr.decode()


def wait_for_log_line(daemon: Daemon, name: str, line: str, count: int) -> None:
    """Follow the logs until ``line`` has been printed ``count`` times."""
    follow = subprocess.Popen([DOCKER, "logs", "-f", name], env=cli_env(daemon), stdout=subprocess.PIPE)
    try:
        assert follow.stdout is not None
        seen = 0
        while seen < count:
            got = follow.stdout.readline()
            assert got, f"logs of {name} ended before {line!r} x{count}"
            seen += got.decode().strip() == line
    finally:
        follow.kill()
        follow.wait()


def test_rm_running_needs_force(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        docker_ok(daemon, "run", "-d", "--name", name, "busybox", "sleep", "300")
        r = docker(daemon, "rm", name)
        assert r.returncode == 1
        assert r.stderr.decode() == (
            "Error response from daemon: You cannot remove a running container "
            f"{inspect(daemon, '{{.Id}}', name)}. Stop the container before attempting removal or force remove\n"
        )
        assert docker_ok(daemon, "rm", "-f", name).strip() == name
        assert docker_ok(daemon, "ps", "-aq", "--filter", f"name={name}") == ""


def test_run_publish_serves_a_page_on_host_loopback(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        script = "mkdir /www && echo skiff-page > /www/index.html && exec httpd -f -p 8080 -h /www"
        docker_ok(daemon, "run", "-d", "--name", name, "-p", "127.0.0.1::8080", "busybox", "sh", "-c", script)
        port_line = docker_ok(daemon, "port", name, "8080/tcp").strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", port_line), port_line
        host_port = int(port_line.rsplit(":", 1)[1])
        assert docker_ok(daemon, "ps", "--filter", f"name={name}", "--format", "{{.Ports}}").strip() == (
            f"127.0.0.1:{host_port}->8080/tcp"
        )
        assert fetch(f"http://127.0.0.1:{host_port}/") == b"skiff-page\n"


def fetch(url: str, timeout: float = 30) -> bytes:
    """GET ``url``, retrying while the server inside the container is not listening yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return bytes(resp.read())
        except (ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            with socket.socket() as s:  # block briefly on a connect instead of spinning
                s.settimeout(0.2)
                with contextlib.suppress(OSError):
                    s.connect(("127.0.0.1", int(url.split(":")[2].split("/")[0])))
                    s.recv(1)


def test_run_bind_mount_and_named_volume(daemon: Daemon, tmp_path: Path) -> None:
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from the host\n")
    with objects(daemon) as made:
        vol = made.volume()
        out = docker_ok(
            daemon,
            "run",
            "--rm",
            "-v",
            f"{host_dir}:/data",
            "-v",
            f"{vol}:/vol",
            "busybox",
            "sh",
            "-c",
            "cat /data/in.txt; echo from-container > /data/out.txt; echo kept > /vol/f",
        )
        assert out == "from the host\n"
        assert (host_dir / "out.txt").read_text() == "from-container\n"
        assert (
            docker_ok(daemon, "run", "--rm", "-v", f"{vol}:/vol:ro", "busybox", "cat", "/vol/f") == "kept\n"
        )
        r = docker(daemon, "run", "--rm", "-v", f"{host_dir}:/data:ro", "busybox", "touch", "/data/x")
        assert r.returncode == 1 and b"Read-only file system" in r.stderr


def test_run_memory_and_cpus(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        docker_ok(
            daemon, "run", "-d", "--name", name, "--memory", "64m", "--cpus", "0.5", "busybox", "sleep", "300"
        )
        assert (
            inspect(daemon, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", name) == "67108864 500000000"
        )
        row = docker_ok(
            daemon, "stats", "--no-stream", "--format", "{{.Name}}|{{.MemUsage}}|{{.CPUPerc}}", name
        )
        stat_name, mem, cpu = row.strip().split("|")
        assert stat_name == name
        assert mem.endswith("/ 64MiB"), mem
        assert cpu.endswith("%"), cpu


def test_run_on_a_user_network_reaches_a_peer_by_name(daemon: Daemon) -> None:
    with objects(daemon) as made:
        net = made.network()
        docker_ok(daemon, "network", "create", "--label", "by=docker-cli", net)
        assert docker_ok(
            daemon, "network", "ls", "--filter", "label=by=docker-cli", "--format", "{{.Name}}"
        ).split() == [net]
        web = made.container()
        script = "mkdir /www && echo peer-page > /www/index.html && exec httpd -f -p 80 -h /www"
        docker_ok(daemon, "run", "-d", "--name", web, "--network", net, "busybox", "sh", "-c", script)
        out = docker_ok(
            daemon,
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "sh",
            "-c",
            f"for i in $(seq 50); do wget -qO- http://{web}/ && exit 0; sleep 0.1; done; exit 1",
        )
        assert out == "peer-page\n"
        nets = json.loads(inspect(daemon, "{{json .NetworkSettings.Networks}}", web))
        assert list(nets) == [net]
        r = docker(daemon, "network", "rm", net)
        assert r.returncode == 1 and "has active endpoints" in r.stderr.decode(), r.stderr
        docker_ok(daemon, "rm", "-f", web)
        assert docker_ok(daemon, "network", "rm", net).strip() == net
        made.networks.remove(net)


def test_volume_commands(daemon: Daemon) -> None:
    with objects(daemon) as made:
        vol = made.volume()
        assert docker_ok(daemon, "volume", "create", "--label", "k=v", vol).strip() == vol
        assert docker_ok(daemon, "volume", "ls", "-q", "--filter", "label=k=v").split() == [vol]
        assert inspect(daemon, "{{.Driver}} {{.Labels.k}}", vol) == "local v"
        assert docker_ok(daemon, "volume", "inspect", "--format", "{{.Name}}", vol).strip() == vol
        assert docker_ok(daemon, "volume", "rm", vol).strip() == vol
        made.volumes.remove(vol)
        r = docker(daemon, "volume", "inspect", vol)
        assert r.returncode == 1


# -- looking at containers -----------------------------------------------------------------


def test_ps_formats_and_filters(daemon: Daemon) -> None:
    label = f"skiff-dcli-ps={secrets.token_hex(3)}"
    with objects(daemon) as made:
        up, done = made.container(), made.container()
        docker_ok(daemon, "run", "-d", "--name", up, "--label", label, "busybox", "sleep", "300")
        assert (
            docker(
                daemon, "run", "--name", done, "--label", label, "busybox", "sh", "-c", "exit 4"
            ).returncode
            == 4
        )

        def names(*args: str) -> list[str]:
            return sorted(
                docker_ok(daemon, "ps", "--format", "{{.Names}}", "--filter", f"label={label}", *args).split()
            )

        assert names() == [up]
        assert names("-a") == sorted([up, done])
        assert names("-a", "--filter", "status=exited") == [done]
        assert names("-a", "--filter", "exited=4") == [done]
        assert names("-a", "--filter", "status=running") == [up]
        assert names("-a", "--filter", "ancestor=busybox") == sorted([up, done])
        assert names("-a", "--filter", f"name={done}") == [done]
        assert names("-a", "--filter", f"before={up}") == []
        assert names("-a", "--filter", f"since={up}") == [done]
        status = docker_ok(daemon, "ps", "-a", "--filter", f"name={done}", "--format", "{{.Status}}").strip()
        assert re.fullmatch(r"Exited \(4\) .* ago", status), status
        table = docker_ok(daemon, "ps", "-a", "--filter", f"label={label}").splitlines()
        assert table[0].split() == [
            "CONTAINER",
            "ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        assert len(table) == 3
        rows = [
            json.loads(line)
            for line in docker_ok(
                daemon, "ps", "-a", "--filter", f"label={label}", "--format", "json"
            ).splitlines()
        ]
        assert sorted(r["Names"] for r in rows) == sorted([up, done])
        assert docker_ok(daemon, "ps", "-aq", "--no-trunc", "--filter", f"name={up}").strip() == inspect(
            daemon, "{{.Id}}", up
        )


def test_images(daemon: Daemon) -> None:
    refs = docker_ok(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert "busybox:latest" in refs
    image_id = inspect(daemon, "{{.Id}}", "busybox:latest")
    assert docker_ok(daemon, "images", "-q", "busybox").split() == [image_id.split(":")[1][:12]]
    table = docker_ok(daemon, "images", "busybox").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:2] == ["busybox", "latest"]


def test_inspect_formats(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        docker_ok(
            daemon, "run", "-d", "--name", name, "-e", "A=1", "--label", "role=web", "busybox", "sleep", "300"
        )
        assert (
            inspect(daemon, "{{.Config.Image}} {{.Config.Labels.role}} {{index .Config.Cmd 0}}", name)
            == "busybox web sleep"
        )
        assert "A=1" in json.loads(inspect(daemon, "{{json .Config.Env}}", name))
        assert inspect(daemon, "{{.State.Running}} {{.State.Pid}}", name).startswith("true ")
        ip = inspect(daemon, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip), ip
        both = docker_ok(daemon, "inspect", "--type", "container", name)
        assert json.loads(both)[0]["Name"] == f"/{name}"
        assert inspect(daemon, "{{.Os}}", "busybox") == "linux"  # falls through to the image


def test_top_and_exec(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        docker_ok(daemon, "run", "-d", "--name", name, "busybox", "sleep", "300")
        top = docker_ok(daemon, "top", name).splitlines()
        assert top[0].split()[:3] == ["UID", "PID", "PPID"]
        assert any(line.endswith("sleep 300") for line in top[1:]), top
        assert docker_ok(daemon, "exec", name, "sh", "-c", "echo $((1+2)); id -u") == "3\n0\n"
        assert docker_ok(daemon, "exec", "-i", name, "cat", input=b"through stdin\n") == "through stdin\n"
        assert (
            docker_ok(daemon, "exec", "-e", "X=y", "-w", "/tmp", name, "sh", "-c", "echo $X $PWD")
            == "y /tmp\n"
        )
        r = docker(daemon, "exec", name, "sh", "-c", "exit 9")
        assert r.returncode == 9
        with terminal(daemon, "exec", "-it", name, "sh") as t:
            t.expect(PROMPT)
            t.type(b"tty; echo $((7*6))\r")
            t.expect(rb"/dev/pts/\d+\r\n42\r\n")
            t.type(b"exit 5\r")
            assert t.wait() == 5


def test_logs_follow_sees_new_lines_and_ends_with_the_container(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        script = "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second >&2; echo third"
        docker_ok(daemon, "run", "-d", "--name", name, "busybox", "sh", "-c", script)
        follow = subprocess.Popen(
            [DOCKER, "logs", "-f", name], env=cli_env(daemon), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert follow.stdout is not None and follow.stderr is not None
            assert follow.stdout.readline() == b"first\n"
            docker_ok(daemon, "exec", name, "touch", "/tmp/go")
            assert follow.stderr.readline() == b"second\n"  # stderr stays stderr
            assert follow.stdout.readline() == b"third\n"
            assert follow.wait(timeout=30) == 0  # the container exited: the follow ends
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
        # stdout and stderr are separate pipes: the last two lines, in either order
        r = docker(daemon, "logs", "--tail", "2", name)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"third\n", b"second\n")
        stamped = docker_ok(daemon, "logs", "-t", name).splitlines()
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z first$", stamped[0]), stamped


def test_attach_forwards_stdin_and_returns_the_exit_code(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        docker_ok(
            daemon,
            "run",
            "-d",
            "-i",
            "--name",
            name,
            "busybox",
            "sh",
            "-c",
            "read line; echo got $line; exit 6",
        )
        r = docker(daemon, "attach", name, input=b"hello\n")
        assert (r.returncode, r.stdout) == (6, b"got hello\n"), r.stderr


def test_attach_under_a_pty_and_detach_keys(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        docker_ok(daemon, "run", "-d", "-it", "--name", name, "busybox", "sh")
        with terminal(daemon, "attach", name) as t:
            t.type(b"echo attached-$((2+3))\r")
            t.expect(rb"attached-5")
            t.type(b"\x10\x11")  # ctrl-p ctrl-q: detach, the container keeps running
            # as with dockerd: the CLI says why it stopped and exits 1
            assert t.wait() == 1
            assert t.screen.endswith(b"read escape sequence\r\n")
        assert inspect(daemon, "{{.State.Running}}", name) == "true"


def test_wait_prints_the_exit_code(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        docker_ok(daemon, "run", "-d", "-i", "--name", name, "busybox", "sh", "-c", "read x; exit 12")
        waiter = subprocess.Popen([DOCKER, "wait", name], env=cli_env(daemon), stdout=subprocess.PIPE)
        try:
            # the container ends when a line reaches its stdin through an attach
            assert docker(daemon, "attach", name, input=b"\n").returncode == 12
            out, _ = waiter.communicate(timeout=30)
            assert out == b"12\n"
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()


def test_events_window_with_filters(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        since = int(time.time())  # the daemon runs on this host: same clock
        docker_ok(daemon, "run", "--name", name, "busybox", "true")
        docker_ok(daemon, "rm", name)
        until = int(time.time()) + 1
        out = docker_ok(
            daemon,
            "events",
            "--since",
            str(since),
            "--until",
            str(until),
            "--filter",
            f"container={name}",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        )
        lines = out.splitlines()
        actions = [line.split()[1] for line in lines]
        for expected in ("create", "start", "die", "destroy"):
            assert expected in actions, lines
        assert (
            actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
        )
        assert all(line.startswith("container ") and line.endswith(f" {name}") for line in lines), lines
        only = docker_ok(
            daemon,
            "events",
            "--since",
            str(since),
            "--until",
            str(until),
            "--filter",
            f"container={name}",
            "--filter",
            "event=die",
            "--format",
            "{{.Action}} {{.Actor.Attributes.exitCode}}",
        )
        assert only.splitlines() == ["die 0"]


def test_events_report_attach(daemon: Daemon) -> None:
    with objects(daemon) as made:
        name = made.container()
        since = int(time.time())
        docker_ok(daemon, "run", "--name", name, "busybox", "true")
        until = int(time.time()) + 1
        out = docker_ok(daemon, "events", "--since", str(since), "--until", str(until), "--filter",
                        f"container={name}", "--format", "{{.Action}}")  # fmt: skip
        assert out.split() == ["create", "attach", "start", "die"]
