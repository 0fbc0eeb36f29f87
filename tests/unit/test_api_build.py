"""POST /build's query parameters: Docker's names and forms, bad values as 400s."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import make_mocked_request

from skiff.api.build import build_options
from skiff.engine.build import BuildOptions
from skiff.errors import InvalidArgument


def options_for(params: list[tuple[str, str]]) -> BuildOptions:
    return build_options(make_mocked_request("POST", "/build?" + urlencode(params)))


def test_docker_cli_parameters() -> None:
    # What the docker CLI 28 sends with DOCKER_BUILDKIT=0.
    opts = options_for(
        [
            ("buildargs", json.dumps({"A": "1", "B": None})),
            ("cachefrom", "[]"),
            ("cpusetcpus", ""),
            ("dockerfile", "sub/Dockerfile"),
            ("labels", "{}"),
            ("memory", "0"),
            ("networkmode", "default"),
            ("rm", "1"),
            ("shmsize", "0"),
            ("t", "a:1"),
            ("t", "b"),
            ("target", ""),
            ("ulimits", "null"),
            ("version", "1"),
        ]
    )
    assert opts.tags == ("a:1", "b")
    assert opts.build_args == {"A": "1", "B": None}
    assert opts.dockerfile == "sub/Dockerfile"
    assert opts.network_mode == ""  # "default" is the default bridge
    assert opts.remove and not opts.force_remove and not opts.no_cache
    assert opts.cache_from == ()


def test_docker_py_parameters() -> None:
    opts = options_for(
        [
            ("rm", "False"),
            ("nocache", "True"),
            ("cachefrom", json.dumps(["build1"])),
            ("extrahosts", "a.test:127.0.0.1"),
            ("extrahosts", "b.test:127.0.0.2"),
            ("networkmode", "mynet"),
            ("labels", json.dumps({"k": "v"})),
            ("shmsize", "134217728"),
            ("isolation", "default"),
        ]
    )
    assert not opts.remove and opts.no_cache
    assert opts.cache_from == ("build1",)
    assert opts.extra_hosts == ("a.test:127.0.0.1", "b.test:127.0.0.2")
    assert opts.network_mode == "mynet"
    assert opts.labels == {"k": "v"}
    assert opts.shm_size == 134217728


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("buildargs", "{not json")], "invalid buildargs"),
        ([("buildargs", "[1]")], "expected a JSON dict"),
        ([("buildargs", json.dumps({"A": 1}))], "values must be strings"),
        ([("labels", json.dumps({"k": ["v"]}))], "invalid labels"),
        ([("cachefrom", json.dumps([1]))], "invalid cachefrom"),
        ([("shmsize", "big")], "not an integer"),
        ([("remote", "https://github.com/x/y.git")], "remote build contexts"),
    ],
)
def test_bad_parameters_are_400(params: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        options_for(params)
    assert info.value.status == 400
