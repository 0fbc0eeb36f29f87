"""The CLI side of networks and ports: flag parsing into docker's request bodies, the network
formatter, and the commands against a fake daemon (canned JSON on a unix socket)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skiff.cli.containers import run
from skiff.cli.networks import NetworkRow, consolidate_ipam, network_create_body
from skiff.cli.options.body import build_create_request
from skiff.cli.options.network import networking_config, parse_link, parse_mac
from skiff.errors import InvalidArgument
from tests.unit.test_cli_fake_daemon import FakeDaemon, invoke

NID = "7e2b18845736" + "0" * 52
NETWORKS = [
    {
        "Name": "none",
        "Id": "17fc5ebc530a" + "1" * 52,
        "Created": "2026-11-25T13:35:18.230505000Z",
        "Scope": "local",
        "Driver": "null",
        "EnableIPv6": False,
        "Internal": False,
        "Labels": {},
    },
    {
        "Name": "net10",
        "Id": "aaaaaaaaaaaa" + "2" * 52,
        "Created": "2026-11-25T13:35:18Z",
        "Scope": "local",
        "Driver": "bridge",
        "Labels": {},
    },
    {
        "Name": "net9",
        "Id": NID,
        "Created": "2026-11-25T13:35:34.650933100Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": False,
        "Internal": True,
        "Labels": {"team": "web", "a": "b"},
    },
]


# -- parsing ---------------------------------------------------------------------------------------------
def test_consolidate_ipam_pairs_gateways_and_ranges_with_their_subnet() -> None:
    configs = consolidate_ipam(
        ("10.213.1.0/24", "10.213.2.0/24"), ("10.213.2.128/25",), ("10.213.2.1", "10.213.1.254")
    )
    assert configs == [
        {"Subnet": "10.213.1.0/24", "IPRange": "", "Gateway": "10.213.1.254", "AuxiliaryAddresses": {}},
        {
            "Subnet": "10.213.2.0/24",
            "IPRange": "10.213.2.128/25",
            "Gateway": "10.213.2.1",
            "AuxiliaryAddresses": {},
        },
    ]
    assert consolidate_ipam((), (), ()) == []


@pytest.mark.parametrize(
    ("subnets", "ranges", "gateways", "words"),
    [
        ((), (), ("10.213.1.1",), "corresponding subnet"),
        (("10.213.0.0/16", "10.213.1.0/24"), (), (), "overlapping"),
        (("10.213.1.0/24",), (), ("10.213.9.1",), "no matching subnet for gateway"),
        (("10.213.1.0/24",), ("10.213.9.0/25",), (), "no matching subnet for range"),
        (("10.213.1.0/24",), (), ("10.213.1.1", "10.213.1.2"), "corresponding subnet"),
        (("10.213.1.0/24", "10.213.2.0/24"), (), ("10.213.1.1", "10.213.1.2"), "multiple gateways"),
        (("10.213.1.0/33",), (), (), "invalid CIDR"),
    ],
)
def test_consolidate_ipam_refusals(
    subnets: tuple[str, ...], ranges: tuple[str, ...], gateways: tuple[str, ...], words: str
) -> None:
    with pytest.raises(InvalidArgument, match=words):
        consolidate_ipam(subnets, ranges, gateways)


def test_network_create_body_matches_docker_cli() -> None:
    body = network_create_body(
        "appnet",
        subnets=("10.213.9.0/24",),
        gateways=("10.213.9.1",),
        internal=True,
        labels=("a=b",),
        opts=("com.docker.network.bridge.name=sk-test",),
    )
    assert body == {
        "Name": "appnet",
        "CheckDuplicate": True,
        "Driver": "bridge",
        "Scope": "",
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [
                {"Subnet": "10.213.9.0/24", "IPRange": "", "Gateway": "10.213.9.1", "AuxiliaryAddresses": {}}
            ],
        },
        "Internal": True,
        "Attachable": False,
        "Ingress": False,
        "ConfigOnly": False,
        "ConfigFrom": None,
        "Options": {"com.docker.network.bridge.name": "sk-test"},
        "Labels": {"a": "b"},
    }


def _run_body(args: list[str]) -> dict[str, Any]:
    ctx = run.make_context("run", [*args, "busybox"])
    params = dict(ctx.params)
    return build_create_request(params, params.pop("image"), params.pop("command")).body


def test_run_networking_flags_on_user_network() -> None:
    body = _run_body(
        [
            "--network",
            "appnet",
            "--ip",
            "10.213.9.5",
            "--network-alias",
            "db",
            "--network-alias",
            "database",
            "--link",
            "cache:c",
            "--mac-address",
            "92:d0:c6:0a:29:33",
            "-P",
        ]
    )
    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {
            "appnet": {
                "Aliases": ["db", "database"],
                "Links": ["cache:c"],
                "IPAMConfig": {"IPv4Address": "10.213.9.5"},
            }
        }
    }
    assert body["MacAddress"] == "92:d0:c6:0a:29:33"
    host = body["HostConfig"]
    assert host["NetworkMode"] == "appnet"
    assert host["Links"] == ["cache:c"]
    assert host["PublishAllPorts"] is True


def test_run_links_on_default_bridge_are_legacy_links_only() -> None:
    body = _run_body(["--link", "db:database"])
    assert body["NetworkingConfig"] == {"EndpointsConfig": {}}
    assert body["HostConfig"]["Links"] == ["db:database"]
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert "MacAddress" not in body


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--network-alias", "x"], "only supported for user-defined networks"),
        (["--network", "bridge", "--network-alias", "x"], "only supported for user-defined networks"),
        (["--network", "appnet", "--ip", "10.213.9.300"], "not an IPv4 address"),
        (["--mac-address", "92:d0:c6"], "not a valid mac address"),
        (["--link", "a:b:c"], "bad format for links"),
    ],
)
def test_run_networking_flag_errors(args: list[str], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        _run_body(args)


def test_small_parsers() -> None:
    assert parse_link("db") == "db" and parse_link("db:x") == "db:x"
    assert parse_mac("92-D0-C6-0A-29-33") == "92-D0-C6-0A-29-33"
    assert networking_config("container:web", (), (), None) == {"EndpointsConfig": {}}
    assert networking_config("appnet", (), (), None) == {"EndpointsConfig": {}}


def test_network_row_fields() -> None:
    row = NetworkRow(NETWORKS[2])
    assert (row.ID, row.Name, row.Driver, row.Scope) == ("7e2b18845736", "net9", "bridge", "local")
    assert (row.IPv6, row.Internal, row.Labels, row.Label("team")) == ("false", "true", "a=b,team=web", "web")
    # Go's time.Time.String(): trailing zeros of the fraction dropped
    assert row.CreatedAt == "2026-11-25 13:35:34.6509331 +0000 UTC"
    assert NetworkRow(NETWORKS[1]).CreatedAt == "2026-11-25 13:35:18 +0000 UTC"
    assert NetworkRow(NETWORKS[2], trunc=False).ID == NID
    assert set(row.to_json()) == {"CreatedAt", "Driver", "ID", "IPv6", "Internal", "Labels", "Name", "Scope"}


# -- commands against a fake daemon ----------------------------------------------------------------------
@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(tmp_path / "skiff-test.sock")
    try:
        yield daemon
    finally:
        daemon.close()


def test_network_ls_table_sorted_naturally(fake: FakeDaemon) -> None:
    fake.route("GET", "/networks", 200, NETWORKS)
    result = invoke(fake, ["network", "ls"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "NETWORK ID     NAME      DRIVER    SCOPE",
        "7e2b18845736   net9      bridge    local",
        "aaaaaaaaaaaa   net10     bridge    local",
        "17fc5ebc530a   none      null      local",
    ]


def test_network_ls_quiet_filter_format(fake: FakeDaemon) -> None:
    fake.route("GET", "/networks", 200, NETWORKS)
    result = invoke(fake, ["network", "ls", "-q", "--no-trunc", "-f", "driver=bridge", "--filter", "label=a"])
    assert result.output.split() == [NID, "aaaaaaaaaaaa" + "2" * 52, "17fc5ebc530a" + "1" * 52]
    assert json.loads(fake.requests[-1][2]["filters"][0]) == {"driver": ["bridge"], "label": ["a"]}
    result = invoke(fake, ["network", "list", "--format", '{{.Name}}:{{.Internal}}:{{.Label "team"}}'])
    assert result.output.splitlines() == ["net9:true:web", "net10:false:", "none:false:"]
    result = invoke(fake, ["network", "ls", "--format", "json"])
    assert json.loads(result.output.splitlines()[0])["Name"] == "net9"
    result = invoke(fake, ["network", "ls", "-f", "nonsense"])
    assert result.exit_code == 125


def test_network_create_sends_body_and_prints_id(fake: FakeDaemon) -> None:
    fake.route("POST", "/networks/create", 201, {"Id": NID, "Warning": ""})
    result = invoke(
        fake,
        [
            "network",
            "create",
            "--subnet",
            "10.213.9.0/24",
            "--ip-range",
            "10.213.9.128/25",
            "--gateway",
            "10.213.9.1",
            "--internal",
            "--attachable",
            "--label",
            "a=b",
            "-o",
            "com.docker.network.bridge.name=sk-test",
            "appnet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output == NID + "\n"
    body = json.loads(fake.requests[-1][3])
    assert body["Name"] == "appnet" and body["Internal"] is True and body["Attachable"] is True
    assert body["IPAM"]["Config"] == [
        {
            "Subnet": "10.213.9.0/24",
            "IPRange": "10.213.9.128/25",
            "Gateway": "10.213.9.1",
            "AuxiliaryAddresses": {},
        }
    ]
    assert body["Options"] == {"com.docker.network.bridge.name": "sk-test"}


def test_network_create_errors(fake: FakeDaemon) -> None:
    result = invoke(fake, ["network", "create", "--gateway", "10.213.9.1", "appnet"])
    assert result.exit_code == 125 and "corresponding subnet" in result.output
    assert fake.requests == []  # refused before any request
    fake.route("POST", "/networks/create", 409, {"message": "network with name appnet already exists"})
    result = invoke(fake, ["network", "create", "appnet"])
    assert result.exit_code == 1
    assert "Error response from daemon: network with name appnet already exists" in result.output


def test_network_rm_reports_each_and_force_ignores_missing(fake: FakeDaemon) -> None:
    fake.route("DELETE", "/networks/appnet", 204, None)
    fake.route("DELETE", "/networks/gone", 404, {"message": "network gone not found"})
    result = invoke(fake, ["network", "rm", "appnet", "gone"])
    assert result.exit_code == 1
    assert "appnet\n" in result.output
    assert "Error response from daemon: network gone not found" in result.output
    result = invoke(fake, ["network", "remove", "-f", "gone"])
    assert result.exit_code == 0 and "gone" in result.output


def test_network_inspect_format(fake: FakeDaemon) -> None:
    fake.route(
        "GET", "/networks/net9", 200, {**NETWORKS[2], "IPAM": {"Config": [{"Subnet": "10.213.9.0/24"}]}}
    )
    result = invoke(fake, ["network", "inspect", "-f", "{{.Name}} {{(index .IPAM.Config 0).Subnet}}", "net9"])
    assert result.output == "net9 10.213.9.0/24\n"
    result = invoke(fake, ["network", "inspect", "net9"])
    assert json.loads(result.output)[0]["Id"] == NID


def test_network_prune(fake: FakeDaemon) -> None:
    fake.route("POST", "/networks/prune", 200, {"NetworksDeleted": ["net9", "net10"]})
    result = invoke(fake, ["network", "prune", "-f", "--filter", "label=team=web"])
    assert result.output == "Deleted Networks:\nnet9\nnet10\n"
    assert json.loads(fake.requests[-1][2]["filters"][0]) == {"label": ["team=web"]}
    fake.route("POST", "/networks/prune", 200, {"NetworksDeleted": None})
    assert invoke(fake, ["network", "prune", "-f"]).output == ""


def test_network_connect_and_disconnect_bodies(fake: FakeDaemon) -> None:
    fake.route("POST", "/networks/appnet/connect", 200, None)
    fake.route("POST", "/networks/appnet/disconnect", 200, None)
    result = invoke(
        fake, ["network", "connect", "--alias", "w", "--ip", "10.213.9.7", "--link", "db:d", "appnet", "web"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(fake.requests[-1][3]) == {
        "Container": "web",
        "EndpointConfig": {
            "IPAMConfig": {"IPv4Address": "10.213.9.7", "IPv6Address": ""},
            "Links": ["db:d"],
            "Aliases": ["w"],
        },
    }
    result = invoke(fake, ["network", "disconnect", "-f", "appnet", "web"])
    assert result.exit_code == 0
    assert json.loads(fake.requests[-1][3]) == {"Container": "web", "Force": True}
    result = invoke(fake, ["network", "connect", "--ip", "bad", "appnet", "web"])
    assert result.exit_code == 125


PORTS = {
    "443/tcp": None,
    "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
    "9/udp": [{"HostIp": "127.0.0.1", "HostPort": "9999"}],
}


def test_port_lists_like_docker(fake: FakeDaemon) -> None:
    fake.route("GET", "/containers/web/json", 200, {"NetworkSettings": {"Ports": PORTS}})
    result = invoke(fake, ["port", "web"])
    assert result.output == "9/udp -> 127.0.0.1:9999\n80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    assert invoke(fake, ["port", "web", "80"]).output == "0.0.0.0:8080\n[::]:8080\n"
    assert invoke(fake, ["port", "web", "9/udp"]).output == "127.0.0.1:9999\n"
    result = invoke(fake, ["port", "web", "443"])
    assert result.exit_code == 1 and "Error: No public port '443' published for web" in result.output
    result = invoke(fake, ["port", "web", "http"])
    assert result.exit_code == 1 and "invalid port" in result.output


def test_ps_ports_column(fake: FakeDaemon) -> None:
    item = {
        "Id": "f" * 64,
        "Names": ["/web"],
        "Image": "busybox",
        "Command": "sleep 1000",
        "Created": 1_700_000_000,
        "Ports": [
            {"PrivatePort": 443, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": 8000, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 8001, "PublicPort": 8001, "Type": "tcp"},
        ],
        "State": "running",
        "Status": "Up 3 seconds",
    }
    fake.route("GET", "/containers/json", 200, [item])
    result = invoke(fake, ["ps", "--format", "{{.Ports}}"])
    assert result.output == "443/tcp, 0.0.0.0:8000-8001->8000-8001/tcp, 0.0.0.0:8080->80/tcp\n"
