"""Networks in the API layer: create bodies, network JSON, filters, container NetworkSettings and
ports, and the /networks routes against a fake NetworkService (no kernel objects)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from skiff.api.app import create_app
from skiff.api.convert import spec_from_create
from skiff.api.filters import (
    check_container_filters,
    check_network_filters,
    container_matches,
    network_matches,
    network_prune_matcher,
    parse_until,
    port_filter_set,
)
from skiff.api.networks import network_create_from_json, network_json
from skiff.api.render import container_inspect, container_summary, network_settings_json, ports_summary
from skiff.engine.model import Container
from skiff.errors import Conflict, Forbidden, InvalidArgument, NotFound
from skiff.types import (
    ContainerSpec,
    ContainerState,
    Endpoint,
    EndpointConfig,
    HostConfig,
    NetworkRecord,
    NetworkState,
    PortBinding,
)

BRIDGE = NetworkRecord(
    id="b" * 64,
    name="bridge",
    created="2026-01-01T00:00:00.000000000Z",
    subnet="10.211.0.0/16",
    gateway="10.211.0.1",
    bridge="skiff0",
    builtin=True,
    options={"com.docker.network.bridge.name": "skiff0"},
)
HOST = NetworkRecord(id="h" * 64, name="host", created=BRIDGE.created, driver="host", builtin=True)
USER = NetworkRecord(
    id="c0ffee" + "1" * 58,
    name="appnet",
    created="2026-01-02T00:00:00.000000000Z",
    subnet="10.213.5.0/24",
    gateway="10.213.5.1",
    ip_range="10.213.5.128/25",
    labels={"team": "web"},
    bridge="sk-c0ffee111111",
    ipam_options={},  # as the docker CLI creates it
)
NETWORKS = {n.name: n for n in (BRIDGE, HOST, USER)}
CID = "a" * 64


def _ep(rec: NetworkRecord, ip: str, ifname: str = "eth0", aliases: tuple[str, ...] = ()) -> Endpoint:
    return Endpoint(
        network_id=rec.id,
        network_name=rec.name,
        endpoint_id="e" * 64,
        ifname=ifname,
        ip_address=ip,
        prefix_len=int(rec.subnet.split("/")[1]),
        gateway=rec.gateway,
        mac_address="02:42:0a:d3:00:05",
        aliases=aliases,
    )


def _container(
    networks: dict[str, EndpointConfig],
    *,
    status: str = "running",
    endpoints: tuple[Endpoint, ...] = (),
    ports: tuple[PortBinding, ...] = (),
    host: HostConfig | None = None,
    exposed: tuple[str, ...] = (),
) -> Container:
    running = status == "running"
    return Container(
        id=CID,
        name="web",
        created="2026-01-01T00:00:00.000000000Z",
        image_id="sha256:" + "d" * 64,
        spec=ContainerSpec(
            image="busybox",
            exposed_ports=exposed,
            networks=networks,
            host=host or HostConfig(network_mode=next(iter(networks), "none")),
        ),
        state=replace(ContainerState(), status=status, pid=42 if running else 0),
        network=NetworkState(
            netns=f"/run/skiff/netns/{CID}" if running else "",
            endpoints=endpoints if running else (),
            ports=ports if running else (),
        ),
    )


# -- create bodies --------------------------------------------------------------------------------
# What `docker network create --subnet 10.213.9.0/24 --gateway 10.213.9.1 --ip-range 10.213.9.0/25
#   --internal --label a=b -o com.docker.network.bridge.name=sk-test appnet` sends (docker CLI 28).
DOCKER_CLI_CREATE = {
    "Name": "appnet",
    "CheckDuplicate": True,
    "Driver": "bridge",
    "Scope": "",
    "EnableIPv6": False,
    "IPAM": {
        "Driver": "default",
        "Options": {},
        "Config": [
            {
                "Subnet": "10.213.9.0/24",
                "IPRange": "10.213.9.0/25",
                "Gateway": "10.213.9.1",
                "AuxiliaryAddresses": {},
            }
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


def test_create_body_from_docker_cli() -> None:
    req = network_create_from_json(DOCKER_CLI_CREATE)
    assert (req.name, req.driver, req.subnet, req.gateway, req.ip_range) == (
        "appnet",
        "bridge",
        "10.213.9.0/24",
        "10.213.9.1",
        "10.213.9.0/25",
    )
    assert req.internal and not req.attachable
    assert req.labels == {"a": "b"}
    assert req.options == {"com.docker.network.bridge.name": "sk-test"}


def test_create_body_minimal_defaults_to_bridge() -> None:
    req = network_create_from_json({"Name": "n"})
    assert (req.driver, req.subnet, req.gateway) == ("bridge", "", "")


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"EnableIPv6": True}, InvalidArgument, "IPv6"),
        ({"Ingress": True}, InvalidArgument, "ingress"),
        ({"Name": ""}, InvalidArgument, "name"),
        ({"Driver": "overlay"}, NotFound, 'plugin "overlay" not found'),
        ({"Driver": "host"}, Forbidden, 'only one instance of "host"'),
        ({"ConfigOnly": True}, InvalidArgument, "config-only"),
        ({"Scope": "swarm"}, InvalidArgument, "scope"),
        ({"IPAM": {"Driver": "dhcp"}}, NotFound, "IPAM driver"),
        (
            {"IPAM": {"Config": [{"Subnet": "10.1.0.0/24"}, {"Subnet": "10.2.0.0/24"}]}},
            InvalidArgument,
            "one",
        ),
        ({"IPAM": {"Config": [{"Gateway": "10.1.0.1"}]}}, InvalidArgument, "corresponding subnet"),
        ({"IPAM": {"Config": [{"Subnet": "fd00::/64"}]}}, InvalidArgument, "IPv6"),
        ({"IPAM": {"Config": [{"Subnet": "10.300.0.0/24"}]}}, InvalidArgument, "subnet"),
        ({"IPAM": {"Config": [{"Subnet": "10.1.0.0/24", "Gateway": "nope"}]}}, InvalidArgument, "gateway"),
        ({"Labels": ["a"]}, InvalidArgument, "Labels"),
    ],
)
def test_create_body_refusals(changes: dict[str, Any], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        network_create_from_json({**DOCKER_CLI_CREATE, **changes})


# -- network JSON -------------------------------------------------------------------------------------
NETWORK_KEYS = {
    "Name",
    "Id",
    "Created",
    "Scope",
    "Driver",
    "EnableIPv6",
    "IPAM",
    "Internal",
    "Attachable",
    "Ingress",
    "ConfigFrom",
    "ConfigOnly",
    "Containers",
    "Options",
    "Labels",
}


def test_network_json_shape() -> None:
    body = network_json(USER)
    assert set(body) == NETWORK_KEYS
    assert body["Scope"] == "local" and body["EnableIPv6"] is False and body["Ingress"] is False
    assert body["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [{"Subnet": "10.213.5.0/24", "IPRange": "10.213.5.128/25", "Gateway": "10.213.5.1"}],
    }
    assert body["ConfigFrom"] == {"Network": ""}
    assert body["Containers"] == {} and body["Labels"] == {"team": "web"}
    host = network_json(HOST)
    assert host["Driver"] == "host" and host["IPAM"] == {"Driver": "default", "Options": None, "Config": []}
    # docker-py sends no IPAM options: dockerd echoes null; auxiliary addresses show in the config
    aux = replace(USER, ipam_options=None, aux_addresses={"a": "10.213.5.5"})
    assert network_json(aux)["IPAM"]["Options"] is None
    assert network_json(aux)["IPAM"]["Config"][0]["AuxiliaryAddresses"] == {"a": "10.213.5.5"}


def test_auxiliary_addresses_and_ipam_options_are_parsed() -> None:
    req = network_create_from_json(
        {
            "Name": "n",
            "IPAM": {"Config": [{"Subnet": "10.213.7.0/24", "AuxiliaryAddresses": {"a": "10.213.7.5"}}]},
        }
    )
    assert req.aux_addresses == {"a": "10.213.7.5"} and req.ipam_options is None
    with pytest.raises(InvalidArgument, match="auxiliary address"):
        network_create_from_json(
            {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.213.7.0/24", "AuxiliaryAddresses": {"a": "x"}}]}}
        )


def test_network_json_lists_running_endpoints_only() -> None:
    running = _container({"appnet": EndpointConfig()}, endpoints=(_ep(USER, "10.213.5.130"),))
    stopped = replace(_container({"appnet": EndpointConfig()}, status="exited"), id="f" * 64)
    body = network_json(USER, [(running, running.network.endpoints[0]), (stopped, None)])
    assert body["Containers"] == {
        CID: {
            "Name": "web",
            "EndpointID": "e" * 64,
            "MacAddress": "02:42:0a:d3:00:05",
            "IPv4Address": "10.213.5.130/24",
            "IPv6Address": "",
        }
    }


# -- filters --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filters", "names"),
    [
        ({}, {"bridge", "host", "appnet"}),
        ({"type": ["custom"]}, {"appnet"}),
        ({"type": ["builtin"]}, {"bridge", "host"}),
        ({"driver": ["host"]}, {"host"}),
        ({"name": ["app"]}, {"appnet"}),  # a substring (docker matches names as a pattern)
        ({"name": ["^b"]}, {"bridge"}),
        ({"id": ["c0ffee"]}, {"appnet"}),
        ({"label": ["team"]}, {"appnet"}),
        ({"label": ["team=db"]}, set()),
        ({"scope": ["local"]}, {"bridge", "host", "appnet"}),
        ({"scope": ["swarm"]}, set()),
        ({"dangling": ["true"]}, {"appnet"}),  # builtin networks are never dangling
        ({"dangling": ["0"]}, {"bridge", "host"}),
    ],
)
def test_network_filters(filters: dict[str, list[str]], names: set[str]) -> None:
    check_network_filters(filters)
    assert {n.name for n in NETWORKS.values() if network_matches(n, filters, in_use=False)} == names


def test_network_filters_dangling_respects_use() -> None:
    assert not network_matches(USER, {"dangling": ["true"]}, in_use=True)
    assert network_matches(USER, {"dangling": ["false"]}, in_use=True)


@pytest.mark.parametrize(
    "filters",
    [{"bogus": ["1"]}, {"type": ["special"]}, {"dangling": ["maybe"]}, {"dangling": ["true", "false"]}],
)
def test_network_filters_refused(filters: dict[str, list[str]]) -> None:
    with pytest.raises(InvalidArgument):
        check_network_filters(filters)


def test_prune_matcher_labels_and_until() -> None:
    now = 1_800_000_000.0  # 2027-01-15: both records are older than 24h
    assert network_prune_matcher({}, now)(USER)
    assert network_prune_matcher({"label": ["team=web"]}, now)(USER)
    assert not network_prune_matcher({"label": ["team=db"]}, now)(USER)
    assert not network_prune_matcher({"label!": ["team"]}, now)(USER)
    assert network_prune_matcher({"label!": ["other"]}, now)(USER)
    assert network_prune_matcher({"until": ["24h"]}, now)(USER)
    assert not network_prune_matcher({"until": ["2026-01-01T12:00:00Z"]}, now)(USER)  # created after
    assert network_prune_matcher({"until": ["2026-01-03"]}, now)(USER)
    with pytest.raises(InvalidArgument):
        network_prune_matcher({"dangling": ["true"]}, now)
    with pytest.raises(InvalidArgument):
        network_prune_matcher({"until": ["yesterday"]}, now)


def test_parse_until_forms() -> None:
    assert parse_until("1700000000", now=0) == 1_700_000_000
    assert parse_until("1h30m", now=10_000) == 10_000 - 5400
    assert parse_until("1970-01-01T00:01:00Z") == 60


def test_port_filter_values() -> None:
    assert port_filter_set("publish", ["80"]) == {"80/tcp"}
    assert port_filter_set("expose", ["53/udp", "8000-8002"]) == {
        "53/udp",
        "8000/tcp",
        "8001/tcp",
        "8002/tcp",
    }
    for bad in ("8080:80", "x", "90-80"):
        with pytest.raises(InvalidArgument):
            port_filter_set("publish", [bad])


def test_container_filters_network_publish_expose() -> None:
    c = _container(
        {"appnet": EndpointConfig()},
        endpoints=(_ep(USER, "10.213.5.130"),),
        host=HostConfig(network_mode="appnet", port_bindings={"80/tcp": (("", "8080"),)}),
        exposed=("80/tcp", "443/tcp"),
    )
    ids = {n.name: n.id for n in NETWORKS.values()}
    check_container_filters({"network": ["x"], "publish": ["80"], "expose": ["443"]})
    assert container_matches(c, {"network": ["appnet"]}, network_ids=ids)
    assert container_matches(c, {"network": ["c0ffee"]}, network_ids=ids)  # id prefix
    assert not container_matches(c, {"network": ["bridge"]}, network_ids=ids)
    assert not container_matches(c, {"network": [BRIDGE.id[:12]]}, network_ids=ids)
    assert container_matches(c, {"publish": ["80/tcp"]})
    assert container_matches(c, {"publish": ["79-81"]})
    assert not container_matches(c, {"publish": ["443"]})
    assert not container_matches(c, {"publish": ["80/udp"]})
    assert container_matches(c, {"expose": ["443"]})
    assert not container_matches(c, {"expose": ["8080"]})
    all_ports = replace(
        c, spec=replace(c.spec, host=HostConfig(network_mode="appnet", publish_all_ports=True))
    )
    assert container_matches(all_ports, {"publish": ["443"]})  # -P publishes every exposed port


# -- convert: create bodies' networking ---------------------------------------------------------------
def test_create_body_networking_fields() -> None:
    # `docker run --network appnet --ip 10.213.5.9 --network-alias db --link cache:c
    #   --mac-address 92:D0:C6:0A:29:33 -P busybox` at API 1.41
    spec = spec_from_create(
        {
            "Image": "busybox",
            "MacAddress": "92:D0:C6:0A:29:33",
            "HostConfig": {
                "NetworkMode": "appnet",
                "PublishAllPorts": True,
                "Links": ["cache:c", "/db:/web/d", "x"],
            },
            "NetworkingConfig": {
                "EndpointsConfig": {
                    "appnet": {
                        "IPAMConfig": {"IPv4Address": "10.213.5.9", "IPv6Address": ""},
                        "Links": ["cache:c"],
                        "Aliases": ["db"],
                        "NetworkID": "appnet",
                    }
                }
            },
        }
    )
    assert spec.mac_address == "92:d0:c6:0a:29:33"
    assert spec.host.publish_all_ports is True
    assert spec.host.links == ("cache:c", "db:d", "x:x")
    assert spec.networks == {
        "appnet": EndpointConfig(aliases=("db",), ipv4_address="10.213.5.9", links=("cache:c",))
    }


@pytest.mark.parametrize(
    ("networking", "words"),
    [
        ({"appnet": {"IPAMConfig": {"IPv4Address": "10.213.5.999"}}}, "invalid IPv4 address"),
        ({"appnet": {"IPAMConfig": {"IPv6Address": "fd00::zz"}}}, "invalid IPv6 address"),
        ({"bridge": {"IPAMConfig": {"IPv4Address": "10.211.0.9"}}}, "user defined networks only"),
        ({"default": {"Aliases": ["x"]}}, "user defined networks"),
        ({"appnet": {"MacAddress": "nope"}}, "MAC"),
        ({"appnet": []}, "expected an object"),
    ],
)
def test_create_body_networking_refusals(networking: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        spec_from_create({"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": networking}})


def test_create_body_bad_link_and_mac() -> None:
    with pytest.raises(InvalidArgument, match="link"):
        spec_from_create({"Image": "busybox", "HostConfig": {"Links": ["a:b:c"]}})
    with pytest.raises(InvalidArgument, match="MAC"):
        spec_from_create({"Image": "busybox", "MacAddress": "00:11"})


# -- render: NetworkSettings, ports, links ---------------------------------------------------------------
def test_network_settings_on_default_bridge() -> None:
    c = _container(
        {"bridge": EndpointConfig()},
        endpoints=(_ep(BRIDGE, "10.211.0.5"),),
        ports=(PortBinding(80, "tcp", "0.0.0.0", 8080),),
        exposed=("80/tcp", "443/tcp"),
        host=HostConfig(
            network_mode="bridge",
            port_bindings={"80/tcp": (("", "8080"),)},
            links=("db:database",),
            publish_all_ports=False,
        ),
    )
    body = container_inspect(c, "/var/lib/skiff", networks=NETWORKS)
    json.dumps(body)
    ns = body["NetworkSettings"]
    # The top-level addresses are the default bridge's endpoint.
    assert (ns["IPAddress"], ns["IPPrefixLen"], ns["Gateway"]) == ("10.211.0.5", 16, "10.211.0.1")
    assert ns["MacAddress"] == "02:42:0a:d3:00:05" and ns["EndpointID"] == "e" * 64
    assert ns["SandboxKey"] == f"/run/skiff/netns/{CID}" and ns["SandboxID"] == CID
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}
    bridge = ns["Networks"]["bridge"]
    assert bridge["NetworkID"] == BRIDGE.id and bridge["IPAddress"] == "10.211.0.5"
    assert bridge["Aliases"] is None and bridge["DNSNames"] is None and bridge["IPAMConfig"] is None
    assert set(bridge) == {
        "IPAMConfig",
        "Links",
        "Aliases",
        "NetworkID",
        "EndpointID",
        "Gateway",
        "IPAddress",
        "IPPrefixLen",
        "IPv6Gateway",
        "GlobalIPv6Address",
        "GlobalIPv6PrefixLen",
        "MacAddress",
        "DriverOpts",
        "DNSNames",
    }
    hc = body["HostConfig"]
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert hc["Links"] == ["/db:/web/database"]
    assert hc["PublishAllPorts"] is False


def test_network_settings_on_user_network() -> None:
    cfg = EndpointConfig(aliases=("db",), ipv4_address="10.213.5.130", links=("cache:c",))
    c = _container(
        {"appnet": cfg},
        endpoints=(_ep(USER, "10.213.5.130", aliases=("db", CID[:12])),),
        host=HostConfig(network_mode="appnet", publish_all_ports=True),
    )
    ns = network_settings_json(c, NETWORKS)
    # Only the default bridge fills the top-level addresses (as dockerd).
    assert ns["IPAddress"] == "" and ns["Gateway"] == "" and ns["Ports"] == {}
    net = ns["Networks"]["appnet"]
    assert net["IPAMConfig"] == {"IPv4Address": "10.213.5.130"}
    assert net["Aliases"] == ["db", CID[:12]]
    assert net["DNSNames"] == ["web", "db", CID[:12]]
    assert net["Links"] == ["cache:c"]
    assert (net["NetworkID"], net["IPAddress"], net["IPPrefixLen"]) == (USER.id, "10.213.5.130", 24)
    assert container_inspect(c, "/x", networks=NETWORKS)["HostConfig"]["PublishAllPorts"] is True


def test_network_settings_of_stopped_container_keep_network_ids_only() -> None:
    c = _container(
        {"appnet": EndpointConfig(aliases=("db",))},
        status="exited",
        exposed=("80/tcp",),
        host=HostConfig(network_mode="appnet", port_bindings={"80/tcp": (("", "8080"),)}),
    )
    ns = network_settings_json(c, NETWORKS)
    assert ns["Ports"] == {} and ns["SandboxKey"] == "" and ns["SandboxID"] == ""
    net = ns["Networks"]["appnet"]
    assert net["NetworkID"] == USER.id
    assert (net["EndpointID"], net["IPAddress"], net["IPPrefixLen"], net["MacAddress"]) == ("", "", 0, "")
    assert net["Aliases"] == ["db", CID[:12]]
    assert ports_summary(c) == []
    configured = replace(
        c, spec=replace(c.spec, networks={"appnet": EndpointConfig(mac_address="02:42:ac:11:00:02")})
    )
    assert (
        network_settings_json(configured, NETWORKS)["Networks"]["appnet"]["MacAddress"] == "02:42:ac:11:00:02"
    )


@pytest.mark.parametrize("mode", ["host", "none"])
def test_network_settings_host_and_none(mode: str) -> None:
    c = _container({}, host=HostConfig(network_mode=mode), exposed=("80/tcp",))
    ns = network_settings_json(c, NETWORKS)
    assert list(ns["Networks"]) == [mode]
    assert ns["Ports"] == {}  # no namespace of its own: nothing to publish
    if mode == "host":
        assert ns["Networks"]["host"]["NetworkID"] == HOST.id


def test_network_settings_container_mode_has_no_networks() -> None:
    c = _container({}, host=HostConfig(network_mode="container:" + "f" * 64))
    assert network_settings_json(c, NETWORKS)["Networks"] == {}


def test_ps_summary_ports_and_networks() -> None:
    c = _container(
        {"bridge": EndpointConfig()},
        endpoints=(_ep(BRIDGE, "10.211.0.5"),),
        ports=(PortBinding(80, "tcp", "0.0.0.0", 8080), PortBinding(53, "udp", "127.0.0.1", 5353)),
        exposed=("80/tcp", "443/tcp", "53/udp"),
    )
    summary = container_summary(c, 0.0, networks=NETWORKS)
    assert sorted(summary["Ports"], key=lambda p: (p["PrivatePort"], p["Type"])) == [
        {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
    assert summary["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == "10.211.0.5"


# -- routes -----------------------------------------------------------------------------------------------
class FakeNetworks:
    """NetworkService's interface over a dict; records every call."""

    def __init__(self) -> None:
        self.records = {n.id: n for n in (BRIDGE, HOST, USER)}
        self.calls: list[tuple[Any, ...]] = []
        self.users: dict[str, list[tuple[Container, Endpoint | None]]] = {}

    def list(self) -> list[NetworkRecord]:
        return sorted(self.records.values(), key=lambda n: n.name)

    def get(self, ref: str) -> NetworkRecord:
        for rec in self.records.values():
            if ref in (rec.id, rec.name):
                return rec
        matches = [r for r in self.records.values() if ref and r.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"network {ref} not found")

    async def create(self, name: str, **kwargs: Any) -> NetworkRecord:
        self.calls.append(("create", name, kwargs))
        if any(r.name == name for r in self.records.values()):
            raise Conflict(f"network with name {name} already exists")
        rec = NetworkRecord(id="9" * 64, name=name, created="2026-01-03T00:00:00Z")
        self.records[rec.id] = rec
        return rec

    async def remove(self, ref: str) -> None:
        rec = self.get(ref)
        self.calls.append(("remove", rec.name))
        if rec.builtin:
            raise Forbidden(f"{rec.name} is a pre-defined network and cannot be removed")
        del self.records[rec.id]

    async def prune(self, match: Callable[[NetworkRecord], bool]) -> list[str]:
        gone = [r.name for r in self.list() if not r.builtin and match(r)]
        self.calls.append(("prune", gone))
        return gone

    async def connect(self, network_ref: str, container_ref: str, config: EndpointConfig) -> None:
        self.calls.append(("connect", self.get(network_ref).name, container_ref, config))

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        self.calls.append(("disconnect", self.get(network_ref).name, container_ref, force))

    def attached(self, rec: NetworkRecord) -> list[tuple[Container, Endpoint | None]]:
        return self.users.get(rec.id, [])


class FakeEngine:
    def __init__(self) -> None:
        self.networks = FakeNetworks()


def _call(engine: FakeEngine, method: str, path: str, **kwargs: Any) -> tuple[int, Any, str]:
    async def go() -> tuple[int, Any, str]:
        async with TestClient(TestServer(create_app(engine))) as client:  # type: ignore[arg-type]
            resp = await client.request(method, path, **kwargs)
            body = await resp.read()
            return resp.status, json.loads(body) if body else None, resp.headers.get("Content-Type", "")

    return asyncio.run(go())


def test_route_list_and_filters() -> None:
    engine = FakeEngine()
    status, body, _ = _call(engine, "GET", "/v1.41/networks")
    assert status == 200 and [n["Name"] for n in body] == ["appnet", "bridge", "host"]
    assert all(n["Containers"] == {} for n in body)
    status, body, _ = _call(engine, "GET", "/networks", params={"filters": json.dumps({"type": ["custom"]})})
    assert [n["Name"] for n in body] == ["appnet"]
    status, body, ctype = _call(engine, "GET", "/networks", params={"filters": '{"nope":["1"]}'})
    assert status == 400 and body == {"message": "invalid filter 'nope'"}
    assert ctype == "application/json"  # exactly: the docker CLI decodes the message only then


def test_route_dangling_uses_attached_containers() -> None:
    engine = FakeEngine()
    c = _container({"appnet": EndpointConfig()}, status="exited")
    engine.networks.users[USER.id] = [(c, None)]
    _, body, _ = _call(engine, "GET", "/networks", params={"filters": '{"dangling":["true"]}'})
    assert body == []
    engine.networks.users.clear()
    _, body, _ = _call(engine, "GET", "/networks", params={"filters": '{"dangling":["true"]}'})
    assert [n["Name"] for n in body] == ["appnet"]


def test_route_inspect() -> None:
    engine = FakeEngine()
    c = _container({"appnet": EndpointConfig()}, endpoints=(_ep(USER, "10.213.5.130"),))
    engine.networks.users[USER.id] = [(c, c.network.endpoints[0])]
    status, body, _ = _call(engine, "GET", "/v1.41/networks/c0ffee", params={"verbose": "true"})
    assert status == 200 and body["Name"] == "appnet"
    assert body["Containers"][CID]["IPv4Address"] == "10.213.5.130/24"
    status, body, _ = _call(engine, "GET", "/networks/nothing")
    assert status == 404 and body == {"message": "network nothing not found"}
    status, _, _ = _call(engine, "GET", "/networks/appnet", params={"scope": "swarm"})
    assert status == 404


def test_route_create() -> None:
    engine = FakeEngine()
    status, body, _ = _call(engine, "POST", "/v1.41/networks/create", json=DOCKER_CLI_CREATE)
    assert status == 409 and "already exists" in body["message"]
    status, body, _ = _call(engine, "POST", "/networks/create", json={**DOCKER_CLI_CREATE, "Name": "other"})
    assert status == 201 and body == {"Id": "9" * 64, "Warning": ""}
    kind, name, kwargs = engine.networks.calls[-1]
    assert (kind, name) == ("create", "other")
    assert kwargs == {
        "driver": "bridge",
        "subnet": "10.213.9.0/24",
        "gateway": "10.213.9.1",
        "ip_range": "10.213.9.0/25",
        "internal": True,
        "attachable": False,
        "labels": {"a": "b"},
        "options": {"com.docker.network.bridge.name": "sk-test"},
        "aux_addresses": {},
        "ipam_options": {},
        "enable_ipv6": False,
        "subnet6": "",
        "gateway6": "",
        "ip_range6": "",
    }
    status, body, _ = _call(engine, "POST", "/networks/create", json={"Name": "v6", "EnableIPv6": True})
    assert status == 400 and "IPv6" in body["message"]
    assert engine.networks.calls[-1][1] == "other"  # nothing reached the service


def test_route_remove() -> None:
    engine = FakeEngine()
    status, body, _ = _call(engine, "DELETE", "/v1.41/networks/appnet")
    assert status == 204 and body is None and USER.id not in engine.networks.records
    status, body, _ = _call(engine, "DELETE", "/networks/bridge")
    assert status == 403 and "pre-defined" in body["message"]


def test_route_connect_and_disconnect() -> None:
    engine = FakeEngine()
    payload = {
        "Container": "web",
        "EndpointConfig": {
            "IPAMConfig": {"IPv4Address": "10.213.5.140", "IPv6Address": ""},
            "Aliases": ["w"],
        },
    }
    status, _, _ = _call(engine, "POST", "/v1.41/networks/appnet/connect", json=payload)
    assert status == 200
    assert engine.networks.calls[-1] == (
        "connect",
        "appnet",
        "web",
        EndpointConfig(aliases=("w",), ipv4_address="10.213.5.140"),
    )
    status, _, _ = _call(engine, "POST", "/networks/appnet/connect", json={"Container": "web"})
    assert status == 200 and engine.networks.calls[-1][3] == EndpointConfig()
    status, body, _ = _call(engine, "POST", "/networks/appnet/connect", json={"EndpointConfig": {}})
    assert status == 400 and "Container" in body["message"]
    status, _, _ = _call(
        engine, "POST", "/networks/appnet/disconnect", json={"Container": "web", "Force": True}
    )
    assert status == 200 and engine.networks.calls[-1] == ("disconnect", "appnet", "web", True)


def test_route_prune() -> None:
    engine = FakeEngine()
    status, body, _ = _call(
        engine, "POST", "/v1.41/networks/prune", params={"filters": json.dumps({"label": ["team=db"]})}
    )
    assert status == 200 and body == {"NetworksDeleted": None}
    status, body, _ = _call(
        engine, "POST", "/networks/prune", params={"filters": json.dumps({"label": ["team"]})}
    )
    assert body == {"NetworksDeleted": ["appnet"]}
    status, body, _ = _call(engine, "POST", "/networks/prune", params={"filters": '{"driver":["bridge"]}'})
    assert status == 400


def test_create_body_default_endpoint_is_the_bridge() -> None:
    # docker CLI 28 without --network sends an EndpointsConfig entry named "default".
    spec = spec_from_create(
        {
            "Image": "busybox",
            "HostConfig": {"NetworkMode": "default"},
            "NetworkingConfig": {"EndpointsConfig": {"default": {}}},
        }
    )
    assert spec.networks == {"bridge": EndpointConfig()}
    assert spec.host.network_mode == "default"
