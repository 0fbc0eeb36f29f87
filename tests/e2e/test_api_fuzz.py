"""Fuzzing the Engine API with hypothesis against a running skiffd.

Malformed JSON, wrong types, huge values, unknown ids, odd query strings and path tricks:
the daemon must answer each with a 4xx and Docker's ``{"message": ...}`` body (or succeed),
never a 500, never die, and never lose or change what existed before.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_fixture import Daemon

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples every run: CI stays reproducible
)

# Values of every JSON type, including the ones that break naive code: huge and negative
# numbers, NaN-free floats, long strings, NUL bytes, nested structures.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "../../etc/passwd", "a" * 5000, "-1", "1e400", "true", "{}", "[]"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

CONFIG_KEYS = [
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "Tty", "OpenStdin", "StdinOnce",
    "Env", "Cmd", "Entrypoint", "Image", "Labels", "WorkingDir", "ExposedPorts", "Volumes",
    "StopSignal", "StopTimeout", "Healthcheck", "NetworkDisabled", "MacAddress", "NetworkingConfig",
]  # fmt: skip
HOST_KEYS = [
    "Binds", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
    "CpuQuota", "CpusetCpus", "PidsLimit", "BlkioWeight", "BlkioDeviceReadBps", "Devices", "CapAdd",
    "CapDrop", "Privileged", "ReadonlyRootfs", "SecurityOpt", "Ulimits", "Init", "NetworkMode",
    "RestartPolicy", "AutoRemove", "Mounts", "Tmpfs", "PortBindings", "PublishAllPorts", "Links",
    "VolumesFrom", "Dns", "DnsOptions", "ExtraHosts", "OomScoreAdj", "ShmSize", "Sysctls",
    "GroupAdd", "IpcMode", "PidMode", "UTSMode", "LogConfig", "CgroupnsMode", "DeviceCgroupRules",
    "ConsoleSize", "MaskedPaths", "ReadonlyPaths",
]  # fmt: skip


class Api:
    """Raw requests through docker-py's transport (unix socket, keep-alive)."""

    def __init__(self, client: docker.APIClient) -> None:
        self.client = client

    def call(
        self, method: str, path: str, body: bytes | None = None, params: Any = None
    ) -> requests.Response:
        url = self.client._url(path)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        return self.client.request(method, url, data=body, params=params, headers=headers, timeout=60)


def assert_sane(resp: requests.Response) -> None:
    assert resp.status_code < 500, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text[:300]}"
    )
    if resp.status_code >= 400:
        body = resp.json()
        assert isinstance(body.get("message"), str) and body["message"], resp.text[:300]


@pytest.fixture(scope="module")
def fuzz_env(daemon: Daemon) -> Iterator[tuple[Api, dict[str, Any]]]:
    client = daemon.client()
    # Canaries: what exists before must exist, unchanged, afterwards.
    canary = client.create_container(
        "busybox", ["sleep", "9999"], name="skiff-fuzz-canary", labels={"k": "v"}
    )["Id"]
    client.start(canary)
    client.create_volume("skiff-fuzz-vol")
    net = client.create_network("skiff-fuzz-net")["Id"]
    before = {
        "container": client.inspect_container(canary),
        "volume": client.inspect_volume("skiff-fuzz-vol"),
        "network": client.inspect_network(net),
        "images": sorted(i["Id"] for i in client.images()),
    }
    own = {}
    for name in ("shadow", "hostname", "passwd"):
        exec_id = client.exec_create(canary, ["cat", f"/etc/{name}"])["Id"]
        own[name] = client.exec_start(exec_id)
    yield Api(client), {"canary": canary, "net": net, "before": before, "own": own}
    after_c = client.inspect_container(canary)
    assert after_c["State"]["Running"] and after_c["Config"] == before["container"]["Config"]
    assert client.inspect_volume("skiff-fuzz-vol") == before["volume"]
    assert client.inspect_network(net)["IPAM"] == before["network"]["IPAM"]
    assert sorted(i["Id"] for i in client.images()) == before["images"]
    for c in client.containers(all=True, filters={"label": "skiff-fuzz"}):
        client.remove_container(c["Id"], force=True)
    client.remove_container(canary, force=True)
    client.remove_volume("skiff-fuzz-vol")
    client.remove_network(net)
    client.close()


@FUZZ
@given(section=st.sampled_from(["Config", "HostConfig"]), key=st.data(), value=VALUES)
def test_container_create_with_wrong_types_never_500s(
    fuzz_env: tuple[Api, dict[str, Any]], section: str, key: st.DataObject, value: Any
) -> None:
    api, _ = fuzz_env
    name = key.draw(st.sampled_from(CONFIG_KEYS if section == "Config" else HOST_KEYS))
    body: dict[str, Any] = {
        "Image": "busybox",
        "Cmd": ["true"],
        "Labels": {"skiff-fuzz": "1"},
        "HostConfig": {},
    }
    if section == "Config":
        body[name] = value
    else:
        body["HostConfig"][name] = value
    resp = api.call("POST", "/containers/create", json.dumps(body).encode())
    assert_sane(resp)
    if resp.status_code == 201:
        api.client.remove_container(resp.json()["Id"], force=True)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_malformed_bodies_are_400s(fuzz_env: tuple[Api, dict[str, Any]], raw: bytes) -> None:
    api, env = fuzz_env
    for path in (
        "/containers/create",
        "/networks/create",
        "/volumes/create",
        f"/containers/{env['canary']}/exec",
    ):
        resp = api.call("POST", path, raw)
        assert_sane(resp)
        if resp.status_code == 201 and path == "/containers/create":
            api.client.remove_container(resp.json()["Id"], force=True)
        elif resp.status_code == 201 and path == "/networks/create":
            api.client.remove_network(resp.json()["Id"])
        elif resp.status_code == 201 and path == "/volumes/create":
            api.client.remove_volume(resp.json()["Name"])


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from(
            ["Name", "Driver", "IPAM", "Internal", "Labels", "Options", "EnableIPv6", "Attachable"]
        ),
        VALUES,
        max_size=4,
    )
)
def test_network_and_volume_create_with_wrong_types(
    fuzz_env: tuple[Api, dict[str, Any]], body: dict[str, Any]
) -> None:
    api, _ = fuzz_env
    resp = api.call("POST", "/networks/create", json.dumps(body).encode())
    assert_sane(resp)
    if resp.status_code == 201:
        api.client.remove_network(resp.json()["Id"])
    resp = api.call("POST", "/volumes/create", json.dumps(body).encode())
    assert_sane(resp)
    if resp.status_code == 201 and resp.json()["Name"] != "skiff-fuzz-vol":
        api.client.remove_volume(resp.json()["Name"])


IDS = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from(["..", ".", "sha256:", "0" * 64, "a" * 300, "%2e%2e", "skiff-fuzz-canary/x"]),
)


@FUZZ
@given(
    ident=IDS,
    verb=st.sampled_from(
        [
            "json",
            "top",
            "logs",
            "stats",
            "changes",
            "export",
            "wait",
            "kill",
            "stop",
            "restart",
            "pause",
            "unpause",
        ]
    ),
)
def test_unknown_ids_are_404s(fuzz_env: tuple[Api, dict[str, Any]], ident: str, verb: str) -> None:
    api, env = fuzz_env
    if ident in ("skiff-fuzz-canary", env["canary"]) or env["canary"].startswith(ident):
        return
    method = "GET" if verb in ("json", "top", "logs", "stats", "changes", "export") else "POST"
    params = {"stream": "0"} if verb == "stats" else {"stdout": "1"} if verb == "logs" else None
    resp = api.call(method, f"/containers/{requests.utils.quote(ident, safe='')}/{verb}", params=params)
    assert_sane(resp)
    assert resp.status_code in (400, 404), (ident, verb, resp.status_code, resp.text[:200])
    for path in (
        f"/images/{requests.utils.quote(ident, safe='')}/json",
        f"/networks/{requests.utils.quote(ident, safe='')}",
        f"/volumes/{requests.utils.quote(ident, safe='')}",
        f"/exec/{requests.utils.quote(ident, safe='')}/json",
    ):
        resp = api.call("GET", path)
        assert_sane(resp)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "all",
                "limit",
                "size",
                "filters",
                "since",
                "before",
                "tail",
                "timestamps",
                "until",
                "t",
                "signal",
                "condition",
                "ps_args",
                "force",
                "v",
            ]
        ),
        st.one_of(
            st.text(max_size=30),
            st.sampled_from(
                [
                    "-1",
                    "99999999999999999999",
                    "{",
                    '{"status":["nope"]}',
                    '{"label":5}',
                    '["x"]',
                    "1.5",
                    "1e400",
                    "nan",
                    "-inf",
                    "2026-13-45T99:99:99Z",
                ]
            ),
        ),
        max_size=4,
    )
)
def test_query_strings_with_odd_values(fuzz_env: tuple[Api, dict[str, Any]], params: dict[str, str]) -> None:
    api, env = fuzz_env
    for method, path in (
        ("GET", "/containers/json"),
        ("GET", "/images/json"),
        ("GET", "/networks"),
        ("GET", "/volumes"),
        ("GET", f"/containers/{env['canary']}/logs"),
        ("GET", f"/containers/{env['canary']}/top"),
        ("GET", "/system/df"),
        ("GET", "/events"),
    ):
        resp = api.call(
            method,
            path,
            params={**params, "follow": "0", "stdout": "1"}
            if path.endswith("/logs")
            else {**params, "until": "1"}  # a past end: the stream ends at once
            if path == "/events"
            else params,
        )
        assert_sane(resp)


@FUZZ
@given(
    path=st.one_of(
        st.sampled_from(
            [
                "/../../../etc/shadow",
                "../../proc/1/root/etc/hostname",
                "/proc/self/root/../../etc/hostname",
                "//etc//hostname/.",
                "/etc/hostname/..",
                "",
                "\x00",
                "/" + "a" * 5000,
                "/nonexistent/../etc/hostname",
            ]
        ),
        st.text(max_size=60),
    )
)
def test_archive_path_tricks_stay_inside_the_container(
    fuzz_env: tuple[Api, dict[str, Any]], path: str
) -> None:
    api, env = fuzz_env
    resp = api.call("HEAD", f"/containers/{env['canary']}/archive", params={"path": path})
    assert resp.status_code < 500, (path, resp.status_code)
    if resp.status_code == 200:
        stat = json.loads(base64.b64decode(resp.headers["X-Docker-Container-Path-Stat"]))
        assert isinstance(stat["name"], str)
    resp = api.call("GET", f"/containers/{env['canary']}/archive", params={"path": path})
    assert_sane(resp)
    if resp.status_code == 200:
        # Whatever a trick reaches is the container's own file, never the host's.
        with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in env["own"]:
                    data = tar.extractfile(member)
                    assert data is not None and data.read() == env["own"][base], (path, member.name)


def test_daemon_is_alive_and_answers_after_fuzzing(fuzz_env: tuple[Api, dict[str, Any]]) -> None:
    api, _ = fuzz_env
    assert api.client.ping() is True
