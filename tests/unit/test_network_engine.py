"""NetworkService's pure parts and the CNI configuration it writes (no root, no kernel objects)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from skiff.engine.events import EventBus
from skiff.engine.model import Container
from skiff.engine.networks import NetworkConfig, NetworkService, _mappings, _valid_mac
from skiff.errors import Conflict, Forbidden, InvalidArgument, NotFound
from skiff.network.cni import BridgeNetwork, CniError, bridge_conf, parse_add_result, portmap_conf
from skiff.store.metadata import MetadataDB
from skiff.types import ContainerSpec, EndpointConfig, HostConfig, NetworkRecord, PortBinding


class FakeContainers:
    """Just enough of ContainerService for normalize()/_users(): a name -> container map."""

    def __init__(self, *containers: Container) -> None:
        self._containers = {c.id: c for c in containers}

    def list(self) -> list[Container]:
        return list(self._containers.values())

    def get(self, ref: str) -> Container:
        for c in self._containers.values():
            if ref in (c.id, c.name):
                return c
        raise NotFound(f"No such container: {ref}")


def service(tmp_path: Path, *containers: Container) -> NetworkService:
    db = MetadataDB(tmp_path / "metadata.db")
    svc = NetworkService(
        root=tmp_path,
        run_dir=tmp_path / "run",
        db=db,
        events=EventBus(db),
        config=NetworkConfig(pool="10.230.0.0/22", pool_size=24),
    )
    svc.containers = FakeContainers(*containers)  # type: ignore[assignment]
    for rec in (
        NetworkRecord(
            id="b" * 64,
            name="bridge",
            created="",
            subnet="10.211.0.0/16",
            gateway="10.211.0.1",
            bridge="skiff0",
            builtin=True,
        ),
        NetworkRecord(id="h" * 64, name="host", created="", driver="host", builtin=True),
        NetworkRecord(id="n" * 64, name="none", created="", driver="null", builtin=True),
        NetworkRecord(
            id="u" * 64, name="user", created="", subnet="10.230.0.0/24", gateway="10.230.0.1", bridge="sk-u"
        ),
    ):
        svc._put(rec)
    return svc


def ctr(name: str, cid: str, **host: Any) -> Container:
    return Container(
        id=cid * 64,
        name=name,
        created="",
        image_id="",
        spec=ContainerSpec(image="busybox", host=HostConfig(**host)),
    )


def test_subnets_come_from_the_pool_without_overlap(tmp_path: Path) -> None:
    svc = service(tmp_path)
    first = svc._choose_subnet("")
    assert str(first) == "10.230.1.0/24"  # 10.230.0.0/24 is taken by "user"
    with pytest.raises(Conflict, match="overlaps"):
        svc._choose_subnet("10.230.0.128/25")
    with pytest.raises(InvalidArgument, match="CIDR"):
        svc._choose_subnet("10.230.300.0/24")
    with pytest.raises(InvalidArgument, match="IPv6"):
        svc._choose_subnet("fd00::/64")


def test_gateway_and_ip_range_checks() -> None:
    import ipaddress

    net = ipaddress.IPv4Network("10.231.0.0/24")
    assert NetworkService._gateway(net, "") == "10.231.0.1"
    assert NetworkService._gateway(net, "10.231.0.254") == "10.231.0.254"
    for bad in ("10.231.1.1", "10.231.0.0", "10.231.0.255", "nope"):
        with pytest.raises(InvalidArgument):
            NetworkService._gateway(net, bad)
    assert NetworkService._ip_range(net, "10.231.0.128/25") == "10.231.0.128/25"
    with pytest.raises(InvalidArgument, match="not inside"):
        NetworkService._ip_range(net, "10.232.0.0/25")


def test_normalize_keys_networks_by_name_and_validates(tmp_path: Path) -> None:
    target = ctr("db", "d")
    svc = service(tmp_path, target)
    spec = svc.normalize(ContainerSpec(image="busybox", host=HostConfig(network_mode="default")), "c" * 64)
    assert spec.host.network_mode == "bridge" and list(spec.networks) == ["bridge"]
    spec = svc.normalize(
        ContainerSpec(
            image="busybox",
            mac_address="02:42:ac:11:00:02",
            host=HostConfig(network_mode="u" * 12),
            networks={"u" * 12: EndpointConfig(aliases=("web",), ipv4_address="10.230.0.9")},
        ),
        "c" * 64,
    )
    assert spec.host.network_mode == "user"
    assert spec.networks == {
        "user": EndpointConfig(aliases=("web",), ipv4_address="10.230.0.9", mac_address="02:42:ac:11:00:02")
    }
    spec = svc.normalize(
        ContainerSpec(image="busybox", host=HostConfig(network_mode="container:db")), "c" * 64
    )
    assert spec.host.network_mode == f"container:{target.id}" and spec.networks == {}
    bad = [
        (HostConfig(network_mode="nosuch"), NotFound, "network nosuch not found"),
        (
            HostConfig(network_mode="container:db", port_bindings={"80/tcp": (("", "8080"),)}),
            InvalidArgument,
            "port publishing",
        ),
        (
            HostConfig(network_mode="bridge", links=("ghost:g",)),
            InvalidArgument,
            "could not get container for ghost",
        ),
    ]
    for host, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            svc.normalize(ContainerSpec(image="busybox", host=host), "c" * 64)
    with pytest.raises(InvalidArgument, match="user configured subnets"):
        svc.normalize(
            ContainerSpec(
                image="busybox",
                host=HostConfig(network_mode="default"),
                networks={"bridge": EndpointConfig(ipv4_address="10.211.0.9")},
            ),
            "c" * 64,
        )
    with pytest.raises(InvalidArgument, match="no configured subnet"):
        svc.normalize(
            ContainerSpec(
                image="busybox",
                host=HostConfig(network_mode="user"),
                networks={"user": EndpointConfig(ipv4_address="10.99.0.9")},
            ),
            "c" * 64,
        )
    with pytest.raises(InvalidArgument, match="user defined networks"):
        svc.normalize(
            ContainerSpec(
                image="busybox",
                host=HostConfig(network_mode="bridge"),
                networks={"bridge": EndpointConfig(aliases=("x",))},
            ),
            "c" * 64,
        )


def test_builtin_networks_cannot_be_removed_and_users_block_removal(tmp_path: Path) -> None:
    asyncio.run(_removal(tmp_path))


async def _removal(tmp_path: Path) -> None:
    from dataclasses import replace

    user = ctr("app", "a", network_mode="user")
    user = replace(user, spec=replace(user.spec, networks={"user": EndpointConfig()}))
    svc = service(tmp_path, user)
    with pytest.raises(Forbidden, match="pre-defined"):
        await svc.remove("bridge")
    with pytest.raises(Conflict, match="active endpoints"):
        await svc.remove("user")
    with pytest.raises(Conflict, match="already exists"):
        await svc.create("user")
    with pytest.raises(InvalidArgument, match="bridge driver"):
        await svc.create("x", driver="overlay")


def test_link_environment_matches_docker(tmp_path: Path) -> None:
    from dataclasses import replace

    from skiff.types import Endpoint, NetworkState

    db = ctr("db", "d")
    db = replace(
        db,
        spec=replace(db.spec, exposed_ports=("5432/tcp",)),
        network=NetworkState(
            endpoints=(Endpoint("b" * 64, "bridge", "e", "eth0", "10.211.0.5", 16, "10.211.0.1", "m"),)
        ),
    )
    web = ctr("web", "w", links=("db:database",))
    svc = service(tmp_path, db, web)
    env = svc.link_env(web)
    assert "DATABASE_NAME=/web/database" in env
    assert "DATABASE_PORT=tcp://10.211.0.5:5432" in env
    assert "DATABASE_PORT_5432_TCP_ADDR=10.211.0.5" in env
    assert "DATABASE_PORT_5432_TCP_PROTO=tcp" in env
    assert svc.hosts_entries(web, NetworkState(endpoints=db.network.endpoints)) == [
        ("10.211.0.5", f"database {'d' * 12} db")
    ]


def test_bridge_conf_internal_and_ranges(tmp_path: Path) -> None:
    conf = bridge_conf(
        BridgeNetwork("skiff-x", "sk-x", "10.232.0.0/24", "10.232.0.1", ip_range="10.232.0.128/26"), tmp_path
    )
    assert conf["type"] == "bridge" and conf["ipMasq"] is False and conf["bridge"] == "sk-x"
    rng = conf["ipam"]["ranges"][0][0]
    assert (rng["rangeStart"], rng["rangeEnd"]) == ("10.232.0.129", "10.232.0.190")
    assert conf["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    internal = bridge_conf(
        BridgeNetwork("skiff-y", "sk-y", "10.232.1.0/24", "10.232.1.1", internal=True), tmp_path
    )
    assert "routes" not in internal["ipam"]


def test_parse_add_result_and_port_mappings() -> None:
    result = {
        "interfaces": [
            {"name": "sk-x", "mac": "aa"},
            {"name": "veth1", "mac": "bb"},
            {"name": "eth0", "mac": "cc", "sandbox": "/ns"},
        ],
        "ips": [{"interface": 2, "address": "10.232.0.2/24", "gateway": "10.232.0.1"}],
    }
    got = parse_add_result(result, "eth0")
    assert (got.ip_address, got.prefix_len, got.gateway, got.mac_address) == (
        "10.232.0.2",
        24,
        "10.232.0.1",
        "cc",
    )
    with pytest.raises(CniError, match="no IPv4 address for eth1"):
        parse_add_result(result, "eth1")
    maps = _mappings([PortBinding(80, "tcp", "0.0.0.0", 8080), PortBinding(53, "udp", "127.0.0.1", 5353)])
    assert maps == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]
    conf = portmap_conf("skiff-x", maps, result)
    assert conf["runtimeConfig"]["portMappings"] == maps and conf["prevResult"] == result
    assert (
        _valid_mac("02:42:ac:11:00:02")
        and not _valid_mac("02:42:ac:11:00")
        and not _valid_mac("zz:42:ac:11:00:02")
    )


def test_dual_stack_bridge_conf_and_add_result() -> None:
    conf = bridge_conf(
        BridgeNetwork(
            cni_name="n",
            bridge="sk-n",
            subnet="10.231.0.0/24",
            gateway="10.231.0.1",
            subnet6="fd00:5ee:2::/64",
            gateway6="fd00:5ee:2::1",
            ip_range6="fd00:5ee:2::/96",
        ),
        Path("/tmp/ipam"),
    )
    ranges = conf["ipam"]["ranges"]
    assert ranges[0] == [{"subnet": "10.231.0.0/24", "gateway": "10.231.0.1"}]
    assert ranges[1][0]["subnet"] == "fd00:5ee:2::/64" and ranges[1][0]["rangeEnd"] == "fd00:5ee:2::ffff:fffe"
    assert {"dst": "::/0"} in conf["ipam"]["routes"]
    result = {
        "interfaces": [{"name": "sk-n"}, {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/x"}],
        "ips": [
            {"interface": 1, "address": "fd00:5ee:2::5/64", "gateway": "fd00:5ee:2::1"},
            {"interface": 1, "address": "10.231.0.5/24", "gateway": "10.231.0.1"},
        ],
    }
    add = parse_add_result(result, "eth0")
    assert (add.ip_address, add.prefix_len, add.gateway) == ("10.231.0.5", 24, "10.231.0.1")
    assert (add.ipv6_address, add.ipv6_prefix_len, add.ipv6_gateway) == ("fd00:5ee:2::5", 64, "fd00:5ee:2::1")
    assert add.mac_address == "02:00:00:00:00:01"
