"""Create-time rules: config merge, validation, names and signals (pure logic)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from skiff.engine.merge import merge_env, merge_image_config, parse_signal, validate_name, validate_spec
from skiff.errors import InvalidArgument
from skiff.types import ContainerSpec, HealthConfig, HostConfig, ImageConfig, RestartPolicy

IMAGE = ImageConfig(
    env=("PATH=/usr/bin:/bin", "A=image"),
    cmd=("sh",),
    working_dir="/srv",
    user="nobody",
    exposed_ports=("80/tcp",),
    labels={"from": "image", "x": "1"},
    healthcheck=HealthConfig(test=("CMD", "true"), interval=5_000_000_000, retries=2),
)


def test_image_cmd_used_when_nothing_given() -> None:
    merged = merge_image_config(ContainerSpec(image="b"), IMAGE)
    assert merged.cmd == ("sh",)
    assert merged.entrypoint == ()
    assert merged.working_dir == "/srv"
    assert merged.user == "nobody"


def test_user_cmd_replaces_image_cmd() -> None:
    merged = merge_image_config(ContainerSpec(image="b", cmd=("echo", "hi")), IMAGE)
    assert merged.cmd == ("echo", "hi")


def test_user_entrypoint_drops_image_cmd() -> None:
    image = replace(IMAGE, entrypoint=("/init",))
    merged = merge_image_config(ContainerSpec(image="b", entrypoint=("/bin/top",)), image)
    assert merged.entrypoint == ("/bin/top",)
    assert merged.cmd == ()


def test_empty_entrypoint_clears_image_entrypoint() -> None:
    image = replace(IMAGE, entrypoint=("/init",))
    merged = merge_image_config(ContainerSpec(image="b", entrypoint=("",), cmd=("ls",)), image)
    assert merged.entrypoint == ()
    assert merged.cmd == ("ls",)


def test_no_command_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="No command specified"):
        merge_image_config(ContainerSpec(image="b"), ImageConfig())


def test_env_merge_overrides_by_key_keeps_order() -> None:
    assert merge_env(("A=1", "B=2"), ("B=3", "C=4")) == ("A=1", "B=3", "C=4")
    merged = merge_image_config(ContainerSpec(image="b", env=("A=mine",)), IMAGE)
    assert merged.env == ("PATH=/usr/bin:/bin", "A=mine")


def test_labels_and_ports_union() -> None:
    merged = merge_image_config(
        ContainerSpec(image="b", labels={"x": "2"}, exposed_ports=("81/tcp", "80/tcp")), IMAGE
    )
    assert merged.labels == {"from": "image", "x": "2"}
    assert merged.exposed_ports == ("80/tcp", "81/tcp")


def test_healthcheck_inherits_unset_fields() -> None:
    spec = ContainerSpec(image="b", healthcheck=HealthConfig(test=("CMD", "false")))
    merged = merge_image_config(spec, IMAGE)
    assert merged.healthcheck is not None
    assert merged.healthcheck.test == ("CMD", "false")
    assert merged.healthcheck.interval == 5_000_000_000
    assert merged.healthcheck.retries == 2


@pytest.mark.parametrize(
    ("value", "number"),
    [("SIGTERM", 15), ("TERM", 15), ("kill", 9), ("9", 9), ("SIGUSR1", 10), ("SIGRTMIN+1", 35)],
)
def test_parse_signal(value: str, number: int) -> None:
    assert parse_signal(value) == number


@pytest.mark.parametrize("value", ["SIGFOO", "0", "99", "", "-1"])
def test_parse_signal_rejects(value: str) -> None:
    with pytest.raises(InvalidArgument, match="Invalid signal"):
        parse_signal(value)


def test_validate_name() -> None:
    assert validate_name("/web-1") == "web-1"
    for bad in ("a", "-x", "has space", "x/y", ""):
        with pytest.raises(InvalidArgument, match="Invalid container name"):
            validate_name(bad)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (HostConfig(memory=-1), "invalid memory limit"),
        (HostConfig(memory=1024), "Minimum memory limit"),
        (HostConfig(memory=64 << 20, memory_swap=32 << 20), "memoryswap"),
        (HostConfig(nano_cpus=-5), "CPU"),
        (HostConfig(nano_cpus=10, cpu_quota=5), "Conflicting options"),
        (HostConfig(blkio_weight=5), "blkio weight"),
        (HostConfig(restart_policy=RestartPolicy("sometimes")), "invalid restart policy"),
        (HostConfig(restart_policy=RestartPolicy("always", 3)), "maximum retry count"),
        (HostConfig(auto_remove=True, restart_policy=RestartPolicy("always")), "AutoRemove"),
        (HostConfig(network_mode="container:"), "container: needs a container"),
    ],
)
def test_validate_spec_rejects(host: HostConfig, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_spec(ContainerSpec(image="b", host=host))


def test_validate_spec_rejects_bad_stop_signal() -> None:
    with pytest.raises(InvalidArgument):
        validate_spec(ContainerSpec(image="b", stop_signal="SIGNOPE"))


def test_validate_spec_accepts_docker_defaults() -> None:
    validate_spec(
        ContainerSpec(
            image="b",
            host=HostConfig(
                memory=64 << 20,
                memory_swap=-1,
                nano_cpus=500_000_000,
                pids_limit=-1,
                restart_policy=RestartPolicy("on-failure", 3),
            ),
        )
    )
