"""Docker API details found by docker-py's suite: detach keys, log config, cgroup fields."""

from __future__ import annotations

import pytest

from skiff.api.convert import host_config_from_json, spec_from_create
from skiff.api.render import host_config_json
from skiff.api.streams import EscapeProxy, parse_detach_keys
from skiff.errors import InvalidArgument
from skiff.runtime.spec import device_cgroup_rule


def test_detach_keys_grammar() -> None:
    assert parse_detach_keys("") == b"\x10\x11"  # ctrl-p,ctrl-q
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\") == b"\x00\x1b\x1c"
    for bad in ("ctrl-1", "ab", "ctrl-", "ctrl-aa"):
        with pytest.raises(InvalidArgument, match="Invalid detach keys"):
            parse_detach_keys(bad)


def test_escape_proxy_holds_a_prefix_and_flushes_it_on_mismatch() -> None:
    proxy = EscapeProxy(b"\x10\x11")
    assert proxy.feed(b"ab\x10") == (b"ab", False)  # ^P held back
    assert proxy.feed(b"c") == (b"\x10c", False)  # not the sequence: both forwarded
    assert proxy.feed(b"x\x10") == (b"x", False)
    assert proxy.feed(b"\x11rest") == (b"", True)  # detach; nothing of the keys reaches the process


def test_log_config_defaults_to_json_file_and_rejects_unknown_drivers() -> None:
    h = host_config_from_json({"LogConfig": {"Type": "", "Config": {"max-file": "100"}}})
    assert (h.log_type, h.log_options) == ("json-file", {"max-file": "100"})
    assert host_config_json(h)["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "100"}}
    with pytest.raises(InvalidArgument, match="logger: no log driver named 'asdf' is registered"):
        host_config_from_json({"LogConfig": {"Type": "asdf"}})
    with pytest.raises(InvalidArgument, match="unknown log opt 'bogus'"):
        host_config_from_json({"LogConfig": {"Type": "json-file", "Config": {"bogus": "1"}}})
    with pytest.raises(InvalidArgument, match="invalid size"):
        host_config_from_json({"LogConfig": {"Type": "json-file", "Config": {"max-size": "lots"}}})


def test_cgroup_fields_round_trip_and_validate() -> None:
    spec = spec_from_create(
        {
            "Image": "busybox",
            "HostConfig": {
                "CgroupnsMode": "private",
                "DeviceCgroupRules": ["c 7:128 rwm", "b *:* r"],
                "Isolation": "default",
                "VolumeDriver": "local",
            },
        }
    )
    out = host_config_json(spec.host)
    assert out["CgroupnsMode"] == "private" and out["Isolation"] == "default"
    assert out["DeviceCgroupRules"] == ["c 7:128 rwm", "b *:* r"] and out["VolumeDriver"] == "local"
    with pytest.raises(InvalidArgument, match="invalid device cgroup rule format"):
        host_config_from_json({"DeviceCgroupRules": ["c 7 rwm"]})
    with pytest.raises(InvalidArgument, match="invalid cgroup namespace mode"):
        host_config_from_json({"CgroupnsMode": "shared"})
    assert device_cgroup_rule("c 7:128 rwm") == {
        "allow": True,
        "type": "c",
        "access": "rwm",
        "major": 7,
        "minor": 128,
    }
    assert device_cgroup_rule("b *:* r") == {"allow": True, "type": "b", "access": "r"}


def test_list_command_quotes_arguments_with_spaces_as_dockerd() -> None:
    from dataclasses import replace

    from skiff.api.render import _format_command
    from skiff.engine.model import Container
    from skiff.types import ContainerSpec

    c = Container(
        id="a" * 64,
        name="x",
        created="2026-01-01T00:00:00Z",
        image_id="",
        spec=ContainerSpec(image="busybox"),
    )
    c = replace(c, path="sh", args=("-c", "echo hi"))
    assert _format_command(c) == "sh -c 'echo hi'"
