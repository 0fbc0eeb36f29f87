"""The skiff CLI end to end against a running skiffd (subprocess, as a user runs it)."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest

from tests.daemon_fixture import Daemon


def ok(daemon: Daemon, *args: str, input: bytes | None = None) -> str:
    r = daemon.skiff(*args, input=input)
    assert r.returncode == 0, (
        f"skiff {' '.join(args)} -> {r.returncode}\n{r.stdout.decode()}\n{r.stderr.decode()}"
    )
    return r.stdout.decode()


def test_run_attached_streams_output_and_exit_code(daemon: Daemon) -> None:
    r = daemon.skiff("run", "--rm", "busybox", "sh", "-c", "echo hello; echo oops >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == b"hello\n"
    assert r.stderr.endswith(b"oops\n")


def test_run_stdin(daemon: Daemon) -> None:
    r = daemon.skiff("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input=b"piped text\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"PIPED TEXT\n"


def test_run_command_not_found_is_127(daemon: Daemon) -> None:
    r = daemon.skiff("run", "--rm", "busybox", "skiff-no-such-command")
    assert r.returncode == 127, r.stderr
    assert b"skiff-no-such-command" in r.stderr


def test_bad_flag_values_exit_125_and_create_nothing(daemon: Daemon) -> None:
    before = ok(daemon, "ps", "-aq")
    for args in (
        ["--memory", "-5"],
        ["--memory", "lots"],
        ["--restart", "sometimes"],
        ["--cpus", "many"],
        ["--stop-signal", "SIGNOPE"],
    ):
        r = daemon.skiff("run", *args, "busybox", "true")
        assert r.returncode == 125, (args, r.stderr)
        assert r.stderr.strip(), args
    assert ok(daemon, "ps", "-aq") == before


def test_detached_lifecycle(daemon: Daemon) -> None:
    name = "skiff-e2e-cli-web"
    cid = ok(
        daemon,
        "run",
        "-d",
        "--name",
        name,
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "-e",
        "GREETING=hi",
        "-l",
        "suite=e2e",
        "busybox",
        "sh",
        "-c",
        "echo started; echo $GREETING; exec sleep 300",
    ).strip()
    try:
        assert len(cid) == 64
        assert name in ok(daemon, "ps")
        assert ok(daemon, "ps", "-q", "--no-trunc", "--filter", "label=suite=e2e").split() == [cid]
        assert ok(daemon, "ps", "--format", "{{.Names}} {{.State}}", "--filter", f"name={name}").strip() == (
            f"{name} running"
        )
        assert ok(daemon, "inspect", "-f", "{{.State.Status}} {{.HostConfig.Memory}}", name).strip() == (
            "running 67108864"
        )
        deadline = time.monotonic() + 10
        while "hi" not in ok(daemon, "logs", name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ok(daemon, "logs", name) == "started\nhi\n"
        assert ok(daemon, "logs", "--tail", "1", name) == "hi\n"
        assert ok(daemon, "exec", name, "cat", "/etc/hostname").strip() == cid[:12]
        assert ok(daemon, "exec", "-e", "X=1", name, "sh", "-c", "echo $X").strip() == "1"
        top = ok(daemon, "top", name)
        assert "sleep 300" in top and "PID" in top
        stats = ok(daemon, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name)
        assert stats.split()[0] == name
        r = daemon.skiff("rm", name)
        assert r.returncode != 0 and b"running" in r.stderr
        ok(daemon, "stop", "-t", "2", name)
        assert ok(daemon, "inspect", "-f", "{{.State.Status}}", name).strip() == "exited"
    finally:
        daemon.skiff("rm", "-f", name)
    assert name not in ok(daemon, "ps", "-a")


def test_name_conflict_message(daemon: Daemon) -> None:
    name = "skiff-e2e-cli-dup"
    ok(daemon, "create", "--name", name, "busybox", "true")
    try:
        r = daemon.skiff("run", "--name", name, "busybox", "true")
        assert r.returncode == 125
        assert b"is already in use" in r.stderr
    finally:
        ok(daemon, "rm", name)


def test_images_tag_rmi_history(daemon: Daemon) -> None:
    assert "busybox" in ok(daemon, "images")
    ok(daemon, "tag", "busybox", "skiff-e2e/tagged:v1")
    listing = ok(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert "skiff-e2e/tagged:v1" in listing.split()
    assert "Untagged: skiff-e2e/tagged:v1" in ok(daemon, "rmi", "skiff-e2e/tagged:v1")
    assert ok(daemon, "history", "-q", "busybox").strip()
    image = json.loads(ok(daemon, "image", "inspect", "busybox"))
    assert image[0]["Config"]["Cmd"] == ["sh"]


def test_rmi_refused_while_in_use(daemon: Daemon) -> None:
    # Removing one of several tags only untags (as Docker); an image's last tag is protected.
    ok(daemon, "import", "-c", 'CMD ["true"]', "-", "skiff-e2e/inuse:1", input=_rootfs_tar())
    cid = ok(daemon, "create", "skiff-e2e/inuse:1").strip()
    try:
        r = daemon.skiff("rmi", "skiff-e2e/inuse:1")
        assert r.returncode != 0 and b"container" in r.stderr, r
        forced = ok(daemon, "rmi", "-f", "skiff-e2e/inuse:1")
        assert "Untagged: skiff-e2e/inuse:1" in forced and "Deleted" not in forced
        assert ok(daemon, "inspect", "-f", "{{.State.Status}}", cid).strip() == "created"
    finally:
        ok(daemon, "rm", cid)
    assert ok(daemon, "image", "prune", "-f")


def _rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = open("/bin/busybox", "rb").read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "cat", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        msg = b"imported\n"
        info = tarfile.TarInfo("etc/message")
        info.size = len(msg)
        tar.addfile(info, io.BytesIO(msg))
    return buf.getvalue()


def test_import_with_changes_then_run(daemon: Daemon) -> None:
    out = ok(
        daemon,
        "import",
        "-c",
        'CMD ["cat", "/etc/message"]',
        "-c",
        "ENV FROM_IMPORT=yes",
        "-",
        "skiff-e2e/imported:1",
        input=_rootfs_tar(),
    )
    assert out.strip().startswith("sha256:")
    try:
        r = daemon.skiff("run", "--rm", "skiff-e2e/imported:1")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"imported\n"
        env = ok(daemon, "image", "inspect", "-f", "{{json .Config.Env}}", "skiff-e2e/imported:1")
        assert "FROM_IMPORT=yes" in env
    finally:
        daemon.skiff("rmi", "skiff-e2e/imported:1")


def test_events_since_until(daemon: Daemon) -> None:
    since = str(int(time.time()) - 1)
    cid = ok(daemon, "run", "-d", "busybox", "true").strip()
    time.sleep(1)
    until = str(int(time.time()) + 1)
    out = ok(
        daemon,
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        f"container={cid}",
        "--format",
        "{{.Action}}",
    )
    assert out.split()[:3] == ["create", "start", "die"]
    ok(daemon, "rm", cid)


@pytest.mark.parametrize("command", [["ps", "--help"], ["run", "--help"], ["images", "--help"]])
def test_help_is_helpful(daemon: Daemon, command: list[str]) -> None:
    text = ok(daemon, *command)
    assert "Usage" in text or "usage" in text
