"""Docker JSON <-> skiff types, filters and human status strings (pure logic)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from skiff.api.convert import spec_from_create, update_host_config
from skiff.api.filters import container_matches, event_matches, image_matches
from skiff.api.render import container_inspect, container_status, container_summary, parse_time
from skiff.engine.model import Container
from skiff.errors import InvalidArgument
from skiff.types import ContainerSpec, ContainerState, Event, HostConfig, ImageConfig, ImageRecord
from skiff.types.codec import decode, to_plain
from skiff.units import human_duration as duration

# What `docker run -d --name web -m 64m --cpus 1.5 --pids-limit 50 -e A=1 -l tier=web
#   --restart on-failure:3 --cap-add NET_ADMIN --ulimit nofile=1024:2048 -p 8080:80 busybox httpd -f`
# sends (trimmed to the fields skiff reads, plus one unknown field newer clients send).
DOCKER_CLI_BODY = {
    "Hostname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "ExposedPorts": {"80/tcp": {}},
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": ["A=1"],
    "Cmd": ["httpd", "-f"],
    "Image": "busybox",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "Labels": {"tier": "web"},
    "HostConfig": {
        "Memory": 67108864,
        "NanoCpus": 1500000000,
        "PidsLimit": 50,
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "CapAdd": ["NET_ADMIN"],
        "Ulimits": [{"Name": "nofile", "Hard": 2048, "Soft": 1024}],
        "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        "NetworkMode": "default",
        "SomethingNew": True,
    },
    "NetworkingConfig": {"EndpointsConfig": {}},
}


def test_spec_from_docker_cli_body() -> None:
    spec = spec_from_create(DOCKER_CLI_BODY)
    assert spec.image == "busybox"
    assert spec.cmd == ("httpd", "-f")
    assert spec.env == ("A=1",)
    assert spec.labels == {"tier": "web"}
    assert spec.exposed_ports == ("80/tcp",)
    h = spec.host
    assert (h.memory, h.nano_cpus, h.pids_limit) == (64 << 20, 1_500_000_000, 50)
    assert (h.restart_policy.name, h.restart_policy.maximum_retry_count) == ("on-failure", 3)
    assert h.cap_add == ("NET_ADMIN",)
    assert h.ulimits[0].name == "nofile" and h.ulimits[0].soft == 1024 and h.ulimits[0].hard == 2048
    assert h.port_bindings == {"80/tcp": (("", "8080"),)}


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"Image": 5},
        {"Image": "b", "Cmd": [1, 2]},
        {"Image": "b", "HostConfig": {"Memory": "lots"}},
        {"Image": "b", "HostConfig": {"Memory": 10**30}},
        {"Image": "b", "HostConfig": []},
        {"Image": "b", "Labels": ["a"]},
        {},
    ],
)
def test_bad_bodies_are_invalid_argument(body: object) -> None:
    with pytest.raises(InvalidArgument):
        spec_from_create(body)


def test_update_changes_only_given_fields() -> None:
    host = HostConfig(memory=64 << 20, cpu_shares=512, pids_limit=10)
    updated = update_host_config(host, {"Memory": 128 << 20})
    assert updated.memory == 128 << 20
    assert updated.cpu_shares == 512 and updated.pids_limit == 10


def _container(**state: object) -> Container:
    return Container(
        id="a" * 64,
        name="web",
        created="2026-01-01T00:00:00.000000000Z",
        image_id="sha256:" + "b" * 64,
        spec=ContainerSpec(image="busybox", cmd=("sh",), labels={"tier": "web"}),
        state=replace(ContainerState(), **state),  # type: ignore[arg-type]
        path="sh",
        hostname="aaaaaaaaaaaa",
        has_been_started=True,
    )


def test_container_record_round_trips_through_json() -> None:
    c = _container(status="running", pid=42, health_log=({"ExitCode": 0},))
    assert Container.from_json(c.to_json()) == c
    assert decode(ContainerState, to_plain(c.state)) == c.state


def test_status_strings() -> None:
    now = float(int(time.time()))  # whole seconds: the timestamps below are built from it
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 3)) + ".000000000Z"
    assert container_status(_container(status="running", started_at=started), now) == "Up 3 seconds"
    assert container_status(_container(status="paused", started_at=started), now) == "Up 3 seconds (Paused)"
    assert (
        container_status(_container(status="running", started_at=started, health_status="healthy"), now)
        == "Up 3 seconds (healthy)"
    )
    finished = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 120)) + ".000000000Z"
    assert container_status(_container(status="exited", exit_code=137, finished_at=finished), now) == (
        "Exited (137) 2 minutes ago"
    )
    assert container_status(replace(_container(status="created"), has_been_started=False), now) == "Created"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (7200, "2 hours"),
        (86400 * 3, "3 days"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_parse_time_handles_nanoseconds() -> None:
    assert parse_time("1970-01-01T00:00:01.500000000Z") == pytest.approx(1.5)
    assert parse_time("0001-01-01T00:00:00Z") == 0.0


def test_inspect_and_summary_shapes_are_json() -> None:
    c = _container(status="exited", exit_code=3)
    body = container_inspect(c, "/var/lib/skiff")
    json.dumps(body)
    assert body["Name"] == "/web"
    assert body["State"]["ExitCode"] == 3 and body["State"]["Running"] is False
    assert body["Config"]["Cmd"] == ["sh"]
    summary = container_summary(c, time.time())
    assert summary["Names"] == ["/web"] and summary["State"] == "exited"


def test_container_filters() -> None:
    c = _container(status="exited", exit_code=1)
    assert container_matches(c, {"label": ["tier=web"]})
    assert not container_matches(c, {"label": ["tier=db"]})
    assert container_matches(c, {"label": ["tier"], "status": ["exited"]})
    assert container_matches(c, {"exited": ["1"]})
    assert not container_matches(c, {"exited": ["0"]})
    assert container_matches(c, {"name": ["we"]})
    assert container_matches(c, {"id": ["aaa"]})
    assert not container_matches(c, {"status": ["running"]})
    assert container_matches(c, {"health": ["none"]})


def test_image_filters() -> None:
    img = ImageRecord(
        id="sha256:" + "c" * 64,
        config=ImageConfig(labels={"v": "1"}),
        diff_ids=(),
        chain_ids=(),
        created="2026-01-01T00:00:00Z",
        repo_tags=("busybox:latest",),
    )
    assert image_matches(img, {"reference": ["busybox"]})
    assert image_matches(img, {"reference": ["busy*:latest"]})
    assert not image_matches(img, {"reference": ["alpine"]})
    assert image_matches(img, {"dangling": ["false"], "label": ["v=1"]})
    assert not image_matches(img, {"dangling": ["true"]})
    with pytest.raises(InvalidArgument):
        image_matches(img, {"bogus": ["1"]})


def test_event_filters() -> None:
    e = Event("container", "die", "a" * 64, {"image": "busybox", "name": "web", "exitCode": "0"})
    assert event_matches(e, {"type": ["container"], "event": ["die"]})
    assert event_matches(e, {"container": ["web"]})
    assert event_matches(e, {"image": ["busybox"]})
    assert not event_matches(e, {"event": ["start"]})
    health = Event("container", "health_status: healthy", "a" * 64, {})
    assert event_matches(health, {"event": ["health_status"]})


def test_console_size_reaches_the_oci_process() -> None:
    from skiff.runtime.spec import generate_spec

    spec = spec_from_create(
        {"Image": "b", "Tty": True, "Cmd": ["sh"], "HostConfig": {"ConsoleSize": [40, 100]}}
    )
    assert spec.host.console_size == (40, 100)
    oci = generate_spec(
        spec, container_id="c" * 64, rootfs="/r", hostname="h", netns_path=None, cgroups_path="/x/c"
    )
    assert oci["process"]["consoleSize"] == {"height": 40, "width": 100}
    no_tty = spec_from_create({"Image": "b", "Cmd": ["sh"], "HostConfig": {"ConsoleSize": [40, 100]}})
    oci = generate_spec(
        no_tty, container_id="c" * 64, rootfs="/r", hostname="h", netns_path=None, cgroups_path="/x/c"
    )
    assert "consoleSize" not in oci["process"]


@pytest.mark.parametrize("bad", [[1], [1, 2, 3], "40x100", [-1, 5], [1, 70000], ["a", "b"]])
def test_bad_console_size(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="ConsoleSize"):
        spec_from_create({"Image": "b", "HostConfig": {"ConsoleSize": bad}})
