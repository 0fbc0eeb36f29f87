"""TTY sessions under a real pseudo-terminal, and following logs, through the skiff CLI."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

from tests.daemon_fixture import BIN, Daemon


def run_in_pty(daemon: Daemon, args: list[str], send: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """Run ``skiff args`` with a pty as its terminal; type ``send``; return (exit code, screen output)."""
    master, slave = pty.openpty()
    # A real terminal has a size; the CLI forwards it to the container's tty (resize).
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(
        [str(BIN / "skiff"), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=daemon.env(),
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    sent = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if send and not sent and out:
                os.write(master, send)
                sent = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=10), out
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_run_it_gives_a_terminal(daemon: Daemon) -> None:
    code, out = run_in_pty(daemon, ["run", "--rm", "-it", "busybox", "sh", "-c", "tty; stty size; exit 4"])
    assert code == 4, out
    assert b"/dev/pts/0" in out
    assert b"40 100" in out, out  # the terminal's size reached the container


def test_run_it_interactive_shell(daemon: Daemon) -> None:
    code, out = run_in_pty(daemon, ["run", "--rm", "-it", "busybox", "sh"], send=b"echo $((6*7)); exit 3\r")
    assert code == 3, out
    assert b"42" in out


def test_exec_it(daemon: Daemon) -> None:
    name = "skiff-e2e-exec-tty"
    r = daemon.skiff("run", "-d", "--name", name, "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        code, out = run_in_pty(daemon, ["exec", "-it", name, "sh", "-c", "tty; stty size; exit 5"])
        assert code == 5, out
        assert b"/dev/pts/" in out
        assert b"40 100" in out, out
    finally:
        daemon.skiff("rm", "-f", name)


def test_logs_follow_streams_until_exit_and_timestamps(daemon: Daemon) -> None:
    name = "skiff-e2e-logs-follow"
    r = daemon.skiff(
        "run",
        "-d",
        "--name",
        name,
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done",
    )
    assert r.returncode == 0, r.stderr
    try:
        follow = daemon.skiff("logs", "-f", name, timeout=30)
        assert follow.returncode == 0, follow.stderr
        assert follow.stdout.decode().split() == [f"line{i}" for i in range(1, 6)]
        stamped = daemon.skiff("logs", "-t", "--tail", "2", name).stdout.decode().splitlines()
        assert len(stamped) == 2 and stamped[1].endswith(" line5")
        assert stamped[0][:4].isdigit() and "T" in stamped[0].split()[0]
        since = daemon.skiff("logs", "--since", "2000-01-01T00:00:00Z", name).stdout.decode().split()
        assert len(since) == 5
        none = daemon.skiff("logs", "--until", "2000-01-01T00:00:00Z", name).stdout.decode().split()
        assert none == []
    finally:
        daemon.skiff("rm", "-f", name)
