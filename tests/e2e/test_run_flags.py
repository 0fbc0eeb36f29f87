"""Every ``skiff run``/``create`` flag, checked where it must take effect: inside the container,
or in the container's cgroup files on the host.

Each test drives the real CLI against the session daemon and removes its containers.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_fixture import Daemon
from tests.e2e._skiff import (
    CAP_CHOWN,
    CAP_NET_ADMIN,
    DOCKER_DEFAULT_CAPS,
    cgroup_file,
    host_status_field,
    named,
    ok,
    root_block_device,
    run_sh,
    running,
    sh_out,
    status_field,
    unique_name,
    wait_for_logs,
)


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_containers(daemon: Daemon) -> Iterator[None]:
    before = ok(daemon, "ps", "-aq", "--no-trunc").split()
    yield
    assert ok(daemon, "ps", "-aq", "--no-trunc").split() == before


# --- flags whose effect one shell command inside the container shows ------------------------

INSIDE = [
    pytest.param(["-e", "FOO=bar", "-e", "EMPTY="], 'echo "$FOO|${EMPTY-unset}|$PATH"', id="env"),
    pytest.param(["-w", "/srv/made/here"], "pwd", id="workdir-created"),
    pytest.param(["-u", "www-data"], "id -u; id -g; id -un", id="user-name"),
    pytest.param(["-u", "1234"], "id -u; id -g", id="user-uid"),
    pytest.param(["-u", "1234:5678"], "id -u; id -g", id="user-uid-gid"),
    pytest.param(["-u", "www-data:wheel"], "id -u; id -g", id="user-name-group"),
    pytest.param(["--hostname", "skiffbox"], "hostname; cat /etc/hostname", id="hostname"),
    pytest.param(["--domainname", "example.test"], "cat /proc/sys/kernel/domainname", id="domainname"),
    pytest.param(["--add-host", "skiff-db:10.1.2.3"], "grep skiff-db /etc/hosts", id="add-host"),
    pytest.param(
        ["--dns", "10.0.0.53", "--dns-search", "corp.test", "--dns-option", "ndots:2"],
        "cat /etc/resolv.conf",
        id="dns",
    ),
    pytest.param(["--shm-size", "32m"], "df -k /dev/shm | tail -1", id="shm-size"),
    pytest.param(["--ulimit", "nofile=1024:2048"], "ulimit -n; ulimit -Hn", id="ulimit"),
    pytest.param(["--oom-score-adj", "321"], "cat /proc/self/oom_score_adj", id="oom-score-adj"),
    pytest.param(["--cpuset-cpus", "0"], "grep Cpus_allowed_list /proc/self/status", id="cpuset-inside"),
    pytest.param(["--security-opt", "no-new-privileges"], "grep NoNewPrivs /proc/self/status", id="nnp"),
    pytest.param([], "grep NoNewPrivs /proc/self/status", id="nnp-default-off"),
    pytest.param(
        ["--tmpfs", "/scratch"], "grep ' /scratch ' /proc/mounts; touch /scratch/f && echo w", id="tmpfs"
    ),
    pytest.param(["--tmpfs", "/scratch:size=1m"], "df -k /scratch | tail -1", id="tmpfs-size"),
    pytest.param(["--sysctl", "net.ipv4.ip_forward=1"], "cat /proc/sys/net/ipv4/ip_forward", id="sysctl-net"),
    pytest.param(["--sysctl", "kernel.msgmax=4321"], "cat /proc/sys/kernel/msgmax", id="sysctl-ipc"),
    pytest.param(["--network", "none"], "tail -n +3 /proc/net/dev | cut -d: -f1", id="network-none"),
    pytest.param(
        ["--device", "/dev/null:/dev/skiffnull"],
        "test -c /dev/skiffnull && echo x > /dev/skiffnull && head -c 1 /dev/skiffnull | wc -c",
        id="device",
    ),
    pytest.param(
        ["--read-only"], "touch /newfile 2>&1; grep ' / ' /proc/mounts | cut -d' ' -f4", id="read-only"
    ),
]


def _check_inside(flag_id: str, out: str) -> None:
    lines = out.strip().splitlines()
    match flag_id:
        case "env":
            assert lines[0].startswith("bar||") and "/bin" in lines[0]
        case "workdir-created":
            assert lines == ["/srv/made/here"]
        case "user-name":
            assert lines == ["33", "33", "www-data"]
        case "user-uid":
            assert lines == ["1234", "0"]
        case "user-uid-gid":
            assert lines == ["1234", "5678"]
        case "user-name-group":
            assert lines == ["33", "10"]
        case "hostname":
            assert lines == ["skiffbox", "skiffbox"]
        case "domainname":
            assert lines == ["example.test"]
        case "add-host":
            assert lines[0].split() == ["10.1.2.3", "skiff-db"]
        case "dns":
            assert "nameserver 10.0.0.53" in lines
            assert "search corp.test" in lines
            assert "options ndots:2" in lines
            assert sum(line.startswith("nameserver") for line in lines) == 1
        case "shm-size":
            assert lines[0].split()[1] == "32768"
        case "ulimit":
            assert lines == ["1024", "2048"]
        case "oom-score-adj":
            assert lines == ["321"]
        case "cpuset-inside":
            assert lines[0].split() == ["Cpus_allowed_list:", "0"]
        case "nnp":
            assert lines[0].split() == ["NoNewPrivs:", "1"]
        case "nnp-default-off":
            assert lines[0].split() == ["NoNewPrivs:", "0"]
        case "tmpfs":
            assert lines[0].split()[2] == "tmpfs" and lines[-1] == "w"
        case "tmpfs-size":
            assert lines[0].split()[1] == "1024"
        case "sysctl-net":
            assert lines == ["1"]
        case "sysctl-ipc":
            assert lines == ["4321"]
        case "network-none":
            assert [x.strip() for x in lines] == ["lo"]
        case "device":
            assert lines == ["0"]
        case "read-only":
            assert "Read-only file system" in out
            assert lines[-1].split(",")[0] == "ro"
        case _:
            raise AssertionError(f"no check for {flag_id}")


@pytest.mark.parametrize(("flags", "script"), INSIDE)
def test_flag_takes_effect_inside(
    daemon: Daemon, request: pytest.FixtureRequest, flags: list[str], script: str
) -> None:
    out = sh_out(daemon, flags, script)
    _check_inside(request.node.callspec.id, out)


def test_group_add(daemon: Daemon) -> None:
    # root is not a member of mail (8) in the image's /etc/group, and 4321 is no group at all.
    out = sh_out(daemon, ["--group-add", "4321", "--group-add", "mail"], "grep Groups /proc/self/status")
    assert {"4321", "8"} <= set(out.split()[1:])


def test_env_copied_from_the_clients_environment(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKIFF_E2E_PASSED", "from-client")
    monkeypatch.delenv("SKIFF_E2E_UNSET", raising=False)
    out = sh_out(
        daemon,
        ["-e", "SKIFF_E2E_PASSED", "-e", "SKIFF_E2E_UNSET"],
        'echo "$SKIFF_E2E_PASSED|${SKIFF_E2E_UNSET-unset}"',
    )
    assert out == "from-client|unset\n"


def test_env_file(daemon: Daemon, tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("# a comment\n\nA=1\nB=two words\nC=x=y\n")
    out = sh_out(daemon, ["--env-file", str(env_file), "-e", "A=override"], 'echo "$A|$B|$C"')
    assert out == "override|two words|x=y\n"


def test_missing_env_file_is_a_usage_error(daemon: Daemon, tmp_path: Path) -> None:
    with named(daemon) as name:
        r = daemon.skiff("run", "--name", name, "--env-file", str(tmp_path / "absent"), "busybox", "true")
        assert r.returncode == 125 and b"absent" in r.stderr
        assert daemon.skiff("inspect", name).returncode != 0


def test_entrypoint_override(daemon: Daemon) -> None:
    with named(daemon) as name:
        r = daemon.skiff("run", "--name", name, "--entrypoint", "echo", "busybox", "hi", "there")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"hi there\n"
        assert json.loads(ok(daemon, "inspect", "-f", "{{json .Config.Entrypoint}}", name)) == ["echo"]


def _entrypoint_image_tar() -> bytes:
    """A minimal rootfs (busybox with a few applets) for an image with an ENTRYPOINT."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = Path("/bin/busybox").read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "cat", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def test_empty_entrypoint_resets_the_image_entrypoint(daemon: Daemon) -> None:
    image = f"skiff-e2e/entrypoint:{unique_name('t')}"
    ok(
        daemon,
        "import",
        "-c",
        'ENTRYPOINT ["echo", "from-entrypoint"]',
        "-",
        image,
        input=_entrypoint_image_tar(),
    )
    try:
        with named(daemon) as name:
            assert ok(daemon, "run", "--name", name, image, "arg") == "from-entrypoint arg\n"
        with named(daemon) as name:
            assert ok(daemon, "run", "--name", name, "--entrypoint", "", image, "echo", "plain") == "plain\n"
    finally:
        daemon.skiff("rmi", "-f", image)


def test_labels_visible_in_inspect(daemon: Daemon, tmp_path: Path) -> None:
    label_file = tmp_path / "labels"
    label_file.write_text("from.file=yes\n")
    with named(daemon) as name:
        ok(
            daemon,
            "create",
            "--name",
            name,
            "-l",
            "a=b",
            "--label",
            "empty=",
            "--label-file",
            str(label_file),
            "busybox",
        )
        labels = json.loads(ok(daemon, "inspect", "-f", "{{json .Config.Labels}}", name))
        assert labels == {"a": "b", "empty": "", "from.file": "yes"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no", {"Name": "no", "MaximumRetryCount": 0}),
        ("always", {"Name": "always", "MaximumRetryCount": 0}),
        ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
        ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
        ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
    ],
)
def test_restart_policy_accepted(daemon: Daemon, value: str, expected: dict[str, object]) -> None:
    with named(daemon) as name:
        ok(daemon, "create", "--name", name, "--restart", value, "busybox")
        policy = json.loads(ok(daemon, "inspect", "-f", "{{json .HostConfig.RestartPolicy}}", name))
        assert policy == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--restart", "on-failure:x"],
        ["--restart", "on-failure:-1"],
        ["--restart", "always:3"],
        ["--restart", "always", "--rm"],
    ],
    ids=["bad-count", "negative-count", "count-on-always", "conflicts-with-rm"],
)
def test_restart_policy_rejected(daemon: Daemon, args: list[str]) -> None:
    with named(daemon) as name:
        r = daemon.skiff("create", "--name", name, *args, "busybox")
        assert r.returncode == 125, (args, r.stdout, r.stderr)
        assert r.stderr.strip()
        assert daemon.skiff("inspect", name).returncode != 0


# --- resource flags, read back from the container's cgroup on the host ----------------------

MiB = 1024 * 1024

CGROUP = [
    pytest.param(["-m", "64m"], [("memory", "memory.limit_in_bytes", str(64 * MiB))], id="memory"),
    pytest.param(
        ["-m", "64m", "--memory-swap", "128m"],
        [
            ("memory", "memory.limit_in_bytes", str(64 * MiB)),
            ("memory", "memory.memsw.limit_in_bytes", str(128 * MiB)),
        ],
        id="memory-swap",
    ),
    pytest.param(
        ["--memory-reservation", "32m"],
        [("memory", "memory.soft_limit_in_bytes", str(32 * MiB))],
        id="reservation",
    ),
    pytest.param(
        ["--cpus", "0.5"],
        [("cpu", "cpu.cfs_quota_us", "50000"), ("cpu", "cpu.cfs_period_us", "100000")],
        id="cpus",
    ),
    pytest.param(
        ["--cpu-period", "50000", "--cpu-quota", "25000"],
        [("cpu", "cpu.cfs_quota_us", "25000"), ("cpu", "cpu.cfs_period_us", "50000")],
        id="cpu-period-quota",
    ),
    pytest.param(["--cpu-shares", "512"], [("cpu", "cpu.shares", "512")], id="cpu-shares"),
    pytest.param(["--cpuset-cpus", "1"], [("cpuset", "cpuset.cpus", "1")], id="cpuset-cpus"),
    pytest.param(["--pids-limit", "42"], [("pids", "pids.max", "42")], id="pids-limit"),
    pytest.param(
        ["-m", "64m", "--oom-kill-disable"],
        [("memory", "memory.oom_control", "oom_kill_disable 1")],
        id="oom-kill-disable",
    ),
]


@pytest.mark.parametrize(("flags", "expected"), CGROUP)
def test_resource_flag_in_cgroup(
    daemon: Daemon, flags: list[str], expected: list[tuple[str, str, str]]
) -> None:
    if "--cpuset-cpus" in flags and (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    with running(daemon, flags) as cid:
        for controller, filename, value in expected:
            content = cgroup_file(daemon, controller, cid, filename)
            if "\n" in content:
                assert value in content.splitlines(), (filename, content)
            else:
                assert content == value, filename


def test_blkio_weight(daemon: Daemon) -> None:
    if not Path("/sys/fs/cgroup/blkio/blkio.weight").exists():
        pytest.skip("this host's blkio controller has no blkio.weight (no CFQ/BFQ weight interface)")
    with running(daemon, ["--blkio-weight", "300"]) as cid:
        assert cgroup_file(daemon, "blkio", cid, "blkio.weight") == "300"


@pytest.mark.parametrize(
    ("flag", "filename", "value", "expected"),
    [
        ("--device-read-bps", "blkio.throttle.read_bps_device", "1mb", "1048576"),
        ("--device-write-bps", "blkio.throttle.write_bps_device", "2m", "2097152"),
        ("--device-read-iops", "blkio.throttle.read_iops_device", "100", "100"),
        ("--device-write-iops", "blkio.throttle.write_iops_device", "200", "200"),
    ],
)
def test_device_throttle_in_cgroup(
    daemon: Daemon, flag: str, filename: str, value: str, expected: str
) -> None:
    try:
        device, majmin = root_block_device()
    except LookupError as e:
        pytest.skip(str(e))
    with running(daemon, [flag, f"{device}:{value}"]) as cid:
        assert f"{majmin} {expected}" in cgroup_file(daemon, "blkio", cid, filename).splitlines()


# --- capabilities and privilege -------------------------------------------------------------


def _cap_eff(daemon: Daemon, flags: list[str], script: str = "true") -> tuple[int, str]:
    out = sh_out(daemon, flags, f"grep CapEff /proc/self/status; {script}")
    first, _, rest = out.partition("\n")
    return int(status_field(first, "CapEff"), 16), rest


def test_cap_add_net_admin(daemon: Daemon) -> None:
    caps, rest = _cap_eff(daemon, ["--cap-add", "NET_ADMIN"], "ip link set lo mtu 1400 && echo changed")
    assert caps == DOCKER_DEFAULT_CAPS | (1 << CAP_NET_ADMIN)
    assert rest == "changed\n"
    # Without it the same command is refused: the flag is what made it work.
    caps, rest = _cap_eff(daemon, [], "ip link set lo mtu 1400 2>/dev/null && echo changed || echo denied")
    assert not caps & (1 << CAP_NET_ADMIN)
    assert rest == "denied\n"


def test_cap_drop_chown(daemon: Daemon) -> None:
    caps, rest = _cap_eff(
        daemon, ["--cap-drop", "CHOWN"], "chown 1:1 /tmp 2>/dev/null && echo changed || echo denied"
    )
    assert caps == DOCKER_DEFAULT_CAPS & ~(1 << CAP_CHOWN)
    assert rest == "denied\n"


def test_cap_drop_all_then_add(daemon: Daemon) -> None:
    caps, _ = _cap_eff(daemon, ["--cap-drop", "ALL", "--cap-add", "cap_kill"])
    assert caps == 1 << 5


def test_privileged(daemon: Daemon) -> None:
    disk, _ = root_block_device()
    caps, rest = _cap_eff(
        daemon,
        ["--privileged"],
        f"test -b {disk} && echo has-disk; grep '^sysfs /sys ' /proc/mounts | cut -d' ' -f4",
    )
    # Every capability the host's bounding set allows (all of them on an unrestricted host).
    assert caps == int(host_status_field("CapBnd"), 16)
    lines = rest.splitlines()
    assert lines[0] == "has-disk"
    assert lines[1].split(",")[0] == "rw"


def test_unprivileged_has_no_host_disks(daemon: Daemon) -> None:
    disk, _ = root_block_device()
    assert sh_out(daemon, [], f"test -e {disk} && echo has-disk || echo none") == "none\n"


# --- stop behaviour, init -------------------------------------------------------------------


def test_stop_signal_is_sent_by_stop(daemon: Daemon) -> None:
    script = "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 0.1; done"
    with named(daemon) as name:
        ok(daemon, "run", "-d", "--name", name, "--stop-signal", "SIGUSR1", "busybox", "sh", "-c", script)
        assert ok(daemon, "inspect", "-f", "{{.Config.StopSignal}}", name).strip() == "SIGUSR1"
        wait_for_logs(daemon, name, "ready")
        ok(daemon, "stop", "-t", "30", name)
        assert ok(daemon, "logs", name) == "ready\ngot-usr1\n"
        assert ok(daemon, "inspect", "-f", "{{.State.ExitCode}}", name).strip() == "0"


def test_stop_timeout_then_kill(daemon: Daemon) -> None:
    # PID 1 ignores SIGTERM, so only the SIGKILL after the timeout ends it.
    script = "trap '' TERM; echo ready; while true; do sleep 0.1; done"
    with named(daemon) as name:
        ok(daemon, "run", "-d", "--name", name, "--stop-timeout", "1", "busybox", "sh", "-c", script)
        assert ok(daemon, "inspect", "-f", "{{.Config.StopTimeout}}", name).strip() == "1"
        wait_for_logs(daemon, name, "ready")
        ok(daemon, "stop", name)
        assert ok(daemon, "inspect", "-f", "{{.State.ExitCode}}", name).strip() == "137"


def test_init_is_pid_1(daemon: Daemon) -> None:
    out = sh_out(daemon, ["--init"], "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$")
    argv, shell_pid = out.splitlines()
    assert os.path.basename(argv.split()[0]) in ("docker-init", "tini", "tini-static")
    assert "sh -c" in argv
    assert shell_pid != "1"


def test_init_reaps_and_forwards_exit_code(daemon: Daemon) -> None:
    r = run_sh(daemon, ["--init"], "exit 7")
    assert r.returncode == 7, r.stderr


# --- volumes --------------------------------------------------------------------------------


def test_bind_mount_read_write(daemon: Daemon, tmp_path: Path) -> None:
    host_dir = tmp_path / "data"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from host\n")
    out = sh_out(daemon, ["-v", f"{host_dir}:/data"], "cat /data/in.txt; echo from container > /data/out.txt")
    assert out == "from host\n"
    assert (host_dir / "out.txt").read_text() == "from container\n"


def test_bind_mount_read_only(daemon: Daemon, tmp_path: Path) -> None:
    host_dir = tmp_path / "data"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from host\n")
    out = sh_out(daemon, ["-v", f"{host_dir}:/data:ro"], "cat /data/in.txt; touch /data/new 2>&1 || true")
    assert out.startswith("from host\n")
    assert "Read-only file system" in out
    assert sorted(p.name for p in host_dir.iterdir()) == ["in.txt"]


# --- health checks, network -----------------------------------------------------------------


def test_health_flags_in_inspect(daemon: Daemon) -> None:
    with named(daemon) as name:
        ok(
            daemon,
            "create",
            "--name",
            name,
            "--health-cmd",
            "test -e /etc/passwd",
            "--health-interval",
            "5s",
            "--health-timeout",
            "2s",
            "--health-retries",
            "4",
            "--health-start-period",
            "1m",
            "busybox",
            "sleep",
            "300",
        )
        health = json.loads(ok(daemon, "inspect", "-f", "{{json .Config.Healthcheck}}", name))
        assert health == {
            "Test": ["CMD-SHELL", "test -e /etc/passwd"],
            "Interval": 5_000_000_000,
            "Timeout": 2_000_000_000,
            "Retries": 4,
            "StartPeriod": 60_000_000_000,
        }


def test_no_healthcheck_in_inspect(daemon: Daemon) -> None:
    with named(daemon) as name:
        ok(daemon, "create", "--name", name, "--no-healthcheck", "busybox")
        health = json.loads(ok(daemon, "inspect", "-f", "{{json .Config.Healthcheck}}", name))
        assert health["Test"] == ["NONE"]


def _host_interfaces() -> list[str]:
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def test_network_host_sees_host_interfaces(daemon: Daemon) -> None:
    out = sh_out(
        daemon, ["--network", "host"], "tail -n +3 /proc/net/dev | cut -d: -f1; readlink /proc/1/ns/net"
    )
    lines = [x.strip() for x in out.splitlines()]
    assert lines[-1] == os.readlink("/proc/self/ns/net")
    assert sorted(lines[:-1]) == _host_interfaces()


def test_network_default_is_not_the_host(daemon: Daemon) -> None:
    out = sh_out(daemon, [], "tail -n +3 /proc/net/dev | cut -d: -f1")
    names = {x.strip() for x in out.splitlines()}
    assert "lo" in names and names != set(_host_interfaces())
