"""Flag value parsing and the create body, checked against what the docker CLI sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from skiff.cli.containers import run
from skiff.cli.options.body import build_create_request
from skiff.cli.options.ports import parse_expose, parse_publish
from skiff.cli.options.values import (
    parse_cpus,
    parse_device,
    parse_duration,
    parse_mount,
    parse_restart,
    parse_size,
    parse_throttle_bps,
    parse_ulimit,
    read_kv_file,
)
from skiff.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("512k", 512 << 10),
        ("100b", 100),
        ("100", 100),
        ("1.5g", 3 << 29),
        ("2MB", 2 << 20),
        ("1GiB", 1 << 30),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "12x", "-1m", "1..5m"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30 * 10**9),
        ("1m30s", 90 * 10**9),
        ("500ms", 5 * 10**8),
        ("1h", 3600 * 10**9),
        ("0", 0),
        ("1.5s", 1_500_000_000),
        ("10us", 10_000),
    ],
)
def test_parse_duration(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "1d", "s", "-5s", "1m x"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid duration"):
        parse_duration(text)


def test_parse_cpus() -> None:
    assert parse_cpus("1.5") == 1_500_000_000
    assert parse_cpus("0.01") == 10_000_000
    with pytest.raises(InvalidArgument):
        parse_cpus("lots")


def test_parse_ulimit() -> None:
    assert parse_ulimit("nofile=1024:2048") == {"Name": "nofile", "Soft": 1024, "Hard": 2048}
    assert parse_ulimit("nproc=64") == {"Name": "nproc", "Soft": 64, "Hard": 64}
    for bad in ("nofile", "bogus=1", "nofile=a:b", "nofile=10:5"):
        with pytest.raises(InvalidArgument):
            parse_ulimit(bad)


def test_parse_device() -> None:
    assert parse_device("/dev/sda:/dev/xvda:rwm") == {
        "PathOnHost": "/dev/sda",
        "PathInContainer": "/dev/xvda",
        "CgroupPermissions": "rwm",
    }
    assert parse_device("/dev/fuse") == {
        "PathOnHost": "/dev/fuse",
        "PathInContainer": "/dev/fuse",
        "CgroupPermissions": "rwm",
    }
    assert parse_device("/dev/null:r")["CgroupPermissions"] == "r"
    for bad in ("sda", "/dev/sda:xvda", "/dev/sda:/dev/x:rwx"):
        with pytest.raises(InvalidArgument):
            parse_device(bad)


def test_parse_throttle() -> None:
    assert parse_throttle_bps("/dev/sda:1mb") == {"Path": "/dev/sda", "Rate": 1 << 20}
    with pytest.raises(InvalidArgument):
        parse_throttle_bps("sda:1mb")


def test_parse_restart() -> None:
    assert parse_restart("no") == {"Name": "no", "MaximumRetryCount": 0}
    assert parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert parse_restart("unless-stopped")["Name"] == "unless-stopped"
    for bad in ("sometimes", "always:2", "on-failure:x"):
        with pytest.raises(InvalidArgument):
            parse_restart(bad)


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKIFF_TEST_FROM_ENV", "host")
    monkeypatch.delenv("SKIFF_TEST_UNSET", raising=False)
    path = tmp_path / "env"
    path.write_text("# comment\n\nA=1\nB = 2\nSKIFF_TEST_FROM_ENV\nSKIFF_TEST_UNSET\nC=x=y\n")
    with pytest.raises(InvalidArgument, match="whitespace"):
        read_kv_file(str(path), env_lookup=True)
    path.write_text("# comment\n\nA=1\nSKIFF_TEST_FROM_ENV\nSKIFF_TEST_UNSET\nC=x=y\nEMPTY=\n")
    assert read_kv_file(str(path), env_lookup=True) == ["A=1", "SKIFF_TEST_FROM_ENV=host", "C=x=y", "EMPTY="]


def test_ports() -> None:
    assert parse_publish("8080:80") == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert parse_publish("127.0.0.1:53:53/udp") == {"53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}]}
    assert parse_publish("80") == {"80/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert parse_publish("127.0.0.1::80") == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert parse_publish("8000-8001:80-81") == {
        "80/tcp": [{"HostIp": "", "HostPort": "8000"}],
        "81/tcp": [{"HostIp": "", "HostPort": "8001"}],
    }
    assert parse_expose("7000-7001/udp") == ["7000/udp", "7001/udp"]
    for bad in ("80/xyz", "abc", "8000-8002:80-81", "0:80"):
        with pytest.raises(InvalidArgument):
            parse_publish(bad)


def test_mount() -> None:
    assert parse_mount("type=bind,source=/a,target=/b,readonly") == {
        "Type": "bind",
        "Source": "/a",
        "Target": "/b",
        "ReadOnly": True,
    }
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m")["TmpfsOptions"] == {"SizeBytes": 64 << 20}
    for bad in ("type=bind,target=/b", "type=nfs,target=/b", "source=/a", "type=bind,src=/a,dst=/b,bogus=1"):
        with pytest.raises(InvalidArgument):
            parse_mount(bad)


def _parse_run(args: list[str]) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    """Parse a `skiff run` command line with the real click command, without running it."""
    ctx = run.make_context("run", args)
    params = dict(ctx.params)
    return params, params.pop("image"), params.pop("command")


def test_options_after_image_belong_to_the_command() -> None:
    params, image, command = _parse_run(["-e", "A=1", "busybox", "ls", "-l", "-e", "x"])
    assert image == "busybox"
    assert command == ("ls", "-l", "-e", "x")
    assert params["env"] == ("A=1",)


def test_rich_run_create_body_matches_docker_cli(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text("team=infra\n")
    params, image, command = _parse_run(
        [
            "-it",
            "--rm",
            "--name",
            "web",
            "-e",
            "A=1",
            "-w",
            "/srv",
            "-u",
            "1000:1000",
            "--entrypoint",
            "/bin/sh",
            "--hostname",
            "h1",
            "-l",
            "tier=front",
            "--label-file",
            str(labels),
            "-m",
            "64m",
            "--memory-swap",
            "128m",
            "--memory-reservation",
            "32m",
            "--cpus",
            "1.5",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0-1",
            "--pids-limit",
            "100",
            "--blkio-weight",
            "300",
            "--device-read-bps",
            "/dev/sda:1mb",
            "--device-write-iops",
            "/dev/sda:100",
            "--device",
            "/dev/fuse",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "MKNOD",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "--ulimit",
            "nofile=1024:2048",
            "--stop-signal",
            "SIGINT",
            "--stop-timeout",
            "5",
            "--init",
            "--health-cmd",
            "true",
            "--health-interval",
            "30s",
            "--health-timeout",
            "5s",
            "--health-retries",
            "3",
            "--health-start-period",
            "1m",
            "--network",
            "bridge",
            "-p",
            "8080:80",
            "--expose",
            "443",
            "-v",
            "/host:/data:ro",
            "-v",
            "/anon",
            "--tmpfs",
            "/run:size=1m",
            "--add-host",
            "db:10.0.0.2",
            "--dns",
            "1.1.1.1",
            "--shm-size",
            "128m",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--oom-kill-disable",
            "--group-add",
            "audio",
            "--restart",
            "no",
            "busybox",
            "-c",
            "echo hi",
        ]
    )
    req = build_create_request(params, image, command)
    body = req.body
    assert req.name == "web"
    host = body.pop("HostConfig")
    assert body == {
        "Hostname": "h1",
        "Domainname": "",
        "User": "1000:1000",
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": True,
        "OpenStdin": True,
        "StdinOnce": True,
        "Env": ["A=1"],
        "Cmd": ["-c", "echo hi"],
        "Image": "busybox",
        "WorkingDir": "/srv",
        "Entrypoint": ["/bin/sh"],
        "Labels": {"team": "infra", "tier": "front"},
        "ExposedPorts": {"443/tcp": {}, "80/tcp": {}},
        "Volumes": {"/anon": {}},
        "StopSignal": "SIGINT",
        "StopTimeout": 5,
        "Healthcheck": {
            "Test": ["CMD-SHELL", "true"],
            "Interval": 30 * 10**9,
            "Timeout": 5 * 10**9,
            "StartPeriod": 60 * 10**9,
            "Retries": 3,
        },
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
    expected_host = {
        "Binds": ["/host:/data:ro"],
        "NetworkMode": "bridge",
        "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": True,
        "CapAdd": ["NET_ADMIN"],
        "CapDrop": ["MKNOD"],
        "Dns": ["1.1.1.1"],
        "ExtraHosts": ["db:10.0.0.2"],
        "GroupAdd": ["audio"],
        "Privileged": False,
        "PublishAllPorts": False,
        "ReadonlyRootfs": True,
        "SecurityOpt": ["no-new-privileges"],
        "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}],
        "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1 << 20}],
        "BlkioDeviceWriteIOps": [{"Path": "/dev/sda", "Rate": 100}],
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
        "OomKillDisable": True,
        "Memory": 64 << 20,
        "MemorySwap": 128 << 20,
        "MemoryReservation": 32 << 20,
        "NanoCpus": 1_500_000_000,
        "CpuShares": 512,
        "CpusetCpus": "0-1",
        "PidsLimit": 100,
        "BlkioWeight": 300,
        "Init": True,
        "ShmSize": 128 << 20,
        "Tmpfs": {"/run": "size=1m"},
        "Sysctls": {"net.ipv4.ip_forward": "1"},
    }
    for key, value in expected_host.items():
        assert host[key] == value, key


def test_detached_run_does_not_attach() -> None:
    params, image, command = _parse_run(["-d", "-i", "busybox"])
    body = build_create_request(params, image, command).body
    assert (body["AttachStdin"], body["AttachStdout"], body["AttachStderr"], body["StdinOnce"]) == (
        False,
        False,
        False,
        False,
    )
    assert body["Cmd"] is None and body["HostConfig"]["NetworkMode"] == "default"


@pytest.mark.parametrize(
    "args",
    [
        ["--rm", "--restart", "always", "busybox"],
        ["--cpus", "1", "--cpu-quota", "50000", "busybox"],
        ["--no-healthcheck", "--health-cmd", "x", "busybox"],
        ["-d", "-a", "stdout", "busybox"],
        ["--blkio-weight", "5", "busybox"],
    ],
)
def test_conflicting_flags_are_refused(args: list[str]) -> None:
    params, image, command = _parse_run(args)
    with pytest.raises(InvalidArgument):
        build_create_request(params, image, command)


def test_no_healthcheck() -> None:
    params, image, command = _parse_run(["--no-healthcheck", "busybox"])
    assert build_create_request(params, image, command).body["Healthcheck"] == {"Test": ["NONE"]}


def test_click_rejects_unknown_flag() -> None:
    with pytest.raises(click.UsageError):
        _parse_run(["--bogus", "busybox"])
