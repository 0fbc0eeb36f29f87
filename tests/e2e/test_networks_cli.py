"""Networks and published ports through the skiff CLI and the real docker CLI against skiffd.

Subnets given explicitly come from the end of the test daemon's private address pool
(10.24x.x.x), so they never meet another daemon's networks; every network and container a
test makes is removed at its end, even when it fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_fixture import Daemon
from tests.e2e._skiff import ok

DOCKER = "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the docker CLI")


def docker(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DOCKER, *args], env=daemon.env(), capture_output=True, timeout=120)


def docker_ok(daemon: Daemon, *args: str) -> str:
    r = docker(daemon, *args)
    assert r.returncode == 0, f"docker {' '.join(args)} -> {r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    return r.stdout.decode()


def subnet(daemon: Daemon, index: int) -> ipaddress.IPv4Network:
    """The index-th /24 from the end of the daemon's pool (auto-allocation starts at the front)."""
    pool = ipaddress.IPv4Network(daemon.pool)
    nets = list(pool.subnets(new_prefix=24))
    return nets[-1 - index]


@contextlib.contextmanager
def cleanup(daemon: Daemon) -> Iterator[tuple[list[str], list[str]]]:
    """Yields (containers, networks) lists; whatever is named there is removed at the end."""
    containers: list[str] = []
    networks: list[str] = []
    try:
        yield containers, networks
    finally:
        for c in containers:
            daemon.skiff("rm", "-f", c)
        for n in networks:
            daemon.skiff("network", "rm", n)


def name(prefix: str = "sk-e2e") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def network_names(daemon: Daemon, *args: str) -> list[str]:
    return ok(daemon, "network", "ls", "--format", "{{.Name}}", *args).split()


def test_network_create_ls_inspect_rm_round_trip(daemon: Daemon) -> None:
    net, bridge = name(), f"sk-e2e{secrets.token_hex(3)}"
    sn = subnet(daemon, 0)
    gateway, ip_range = str(sn.network_address + 254), str(list(sn.subnets(new_prefix=25))[1])
    with cleanup(daemon) as (containers, networks):
        networks.append(net)
        nid = ok(
            daemon,
            "network",
            "create",
            "--subnet",
            str(sn),
            "--gateway",
            gateway,
            "--ip-range",
            ip_range,
            "--label",
            "suite=netapi",
            "-o",
            f"com.docker.network.bridge.name={bridge}",
            net,
        ).strip()
        assert len(nid) == 64
        table = ok(daemon, "network", "ls").splitlines()
        assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
        assert f"{nid[:12]}   {net}" in "\n".join(table)
        assert {"bridge", "host", "none", net} <= set(network_names(daemon))
        assert network_names(daemon, "-f", "label=suite=netapi") == [net]
        assert ok(daemon, "network", "ls", "-q", "--no-trunc", "-f", f"name={net}").split() == [nid]
        assert network_names(daemon, "-f", "type=builtin") == ["bridge", "host", "none"]
        fmt = '{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{index .Labels "suite"}}'
        line = ok(daemon, "network", "inspect", "-f", fmt, net).strip()
        assert line == f"{net} bridge local false netapi"

        skiff_json = json.loads(ok(daemon, "network", "inspect", net))[0]
        docker_json = json.loads(docker_ok(daemon, "network", "inspect", net))[0]
        assert skiff_json == docker_json
        assert skiff_json["IPAM"]["Config"] == [{"Subnet": str(sn), "IPRange": ip_range, "Gateway": gateway}]
        assert skiff_json["Options"] == {"com.docker.network.bridge.name": bridge}

        # The bridge exists once a container uses the network, and goes with the network.
        c = name()
        containers.append(c)
        ok(daemon, "run", "--rm", "--name", c, "--network", net, "busybox", "true")
        assert Path(f"/sys/class/net/{bridge}").exists()
        assert ok(daemon, "network", "rm", net).strip() == net
        networks.remove(net)
        assert net not in network_names(daemon)
        assert not Path(f"/sys/class/net/{bridge}").exists()
        r = daemon.skiff("network", "inspect", net)
        assert r.returncode == 1 and f"network {net} not found" in r.stderr.decode()


def test_connect_and_disconnect_a_running_container(daemon: Daemon) -> None:
    a, b, c = name(), name(), name()
    sa, sb = subnet(daemon, 1), subnet(daemon, 2)
    ip_a, ip_b = str(sa.network_address + 10), str(sb.network_address + 20)
    with cleanup(daemon) as (containers, networks):
        networks += [a, b]
        ok(daemon, "network", "create", "--subnet", str(sa), a)
        ok(daemon, "network", "create", "--subnet", str(sb), b)
        containers.append(c)
        cid = ok(
            daemon,
            "run",
            "-d",
            "--name",
            c,
            "--network",
            a,
            "--ip",
            ip_a,
            "--network-alias",
            "web",
            "busybox",
            "sleep",
            "300",
        ).strip()
        ok(daemon, "network", "connect", "--alias", "second", "--ip", ip_b, b, c)
        nets = json.loads(ok(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}", c))
        assert set(nets) == {a, b}
        assert nets[a]["IPAddress"] == ip_a and nets[a]["IPPrefixLen"] == 24
        assert nets[a]["Aliases"] == ["web", cid[:12]]
        assert nets[b]["IPAddress"] == ip_b and nets[b]["IPAMConfig"] == {"IPv4Address": ip_b}
        assert nets[b]["Aliases"] == ["second", cid[:12]]
        addrs = ok(daemon, "exec", c, "ip", "-4", "-o", "addr")
        assert f"{ip_a}/24" in addrs
        assert f"{ip_b}/24" in addrs
        attached = json.loads(docker_ok(daemon, "network", "inspect", "-f", "{{json .Containers}}", b))
        assert attached[cid]["Name"] == c and attached[cid]["IPv4Address"] == f"{ip_b}/24"
        assert ok(daemon, "ps", "-q", "--no-trunc", "-f", f"network={b}").split() == [cid]

        # A network in use cannot go; connecting twice is refused.
        r = daemon.skiff("network", "rm", b)
        assert r.returncode == 1 and "has active endpoints" in r.stderr.decode()
        r = daemon.skiff("network", "connect", b, c)
        assert r.returncode == 1 and "already exists in network" in r.stderr.decode()

        docker_ok(daemon, "network", "disconnect", b, c)
        assert f"{ip_b}/" not in ok(daemon, "exec", c, "ip", "-4", "-o", "addr")
        assert set(json.loads(ok(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}", c))) == {a}
        assert json.loads(docker_ok(daemon, "network", "inspect", "-f", "{{json .Containers}}", b)) == {}
        assert ok(daemon, "ps", "-q", "-f", f"network={b}").split() == []
        ok(daemon, "network", "rm", b)
        networks.remove(b)


def test_published_ports_in_ps_port_and_inspect_match_docker(daemon: Daemon) -> None:
    port = free_port()
    c = name()
    with cleanup(daemon) as (containers, _networks):
        containers.append(c)
        ok(daemon, "run", "-d", "--name", c, "-p", f"{port}:80", "--expose", "443", "busybox", "sleep", "300")
        expected = f"443/tcp, 0.0.0.0:{port}->80/tcp"
        assert ok(daemon, "ps", "-f", f"name={c}", "--format", "{{.Ports}}").strip() == expected
        assert docker_ok(daemon, "ps", "-f", f"name={c}", "--format", "{{.Ports}}").strip() == expected
        table = ok(daemon, "ps", "-f", f"name={c}").splitlines()
        assert "PORTS" in table[0] and expected in table[1]

        assert ok(daemon, "port", c) == f"80/tcp -> 0.0.0.0:{port}\n"
        assert docker_ok(daemon, "port", c) == ok(daemon, "port", c)
        assert ok(daemon, "port", c, "80/tcp") == f"0.0.0.0:{port}\n" == docker_ok(daemon, "port", c, "80")
        for cli in (daemon.skiff, lambda *a: docker(daemon, *a)):
            r = cli("port", c, "443")
            assert r.returncode == 1 and f"No public port '443' published for {c}" in r.stderr.decode()

        ns = json.loads(ok(daemon, "inspect", "-f", "{{json .NetworkSettings}}", c))
        assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}], "443/tcp": None}
        assert ns["IPAddress"] and ns["Networks"]["bridge"]["IPAddress"] == ns["IPAddress"]
        assert ns["SandboxKey"] and os.path.exists(ns["SandboxKey"])
        host = json.loads(ok(daemon, "inspect", "-f", "{{json .HostConfig.PortBindings}}", c))
        assert host == {"80/tcp": [{"HostIp": "", "HostPort": str(port)}]}

        assert ok(daemon, "ps", "-q", "-f", f"name={c}", "-f", "publish=80").strip()
        assert not ok(daemon, "ps", "-q", "-f", f"name={c}", "-f", "publish=443").strip()
        assert ok(daemon, "ps", "-q", "-f", f"name={c}", "-f", "expose=443/tcp").strip()

        # Stopped: no ports, no addresses, the network stays configured.
        ok(daemon, "stop", "-t", "0", c)
        ns = json.loads(ok(daemon, "inspect", "-f", "{{json .NetworkSettings}}", c))
        assert ns["Ports"] == {} and ns["IPAddress"] == "" and list(ns["Networks"]) == ["bridge"]
        assert ok(daemon, "port", c) == ""


def test_publish_all_uses_random_ports(daemon: Daemon) -> None:
    c = name()
    with cleanup(daemon) as (containers, _networks):
        containers.append(c)
        ok(
            daemon,
            "run",
            "-d",
            "--name",
            c,
            "-P",
            "--expose",
            "7000",
            "--expose",
            "7001/udp",
            "busybox",
            "sleep",
            "300",
        )
        ports = json.loads(ok(daemon, "inspect", "-f", "{{json .NetworkSettings.Ports}}", c))
        assert set(ports) == {"7000/tcp", "7001/udp"}
        tcp, udp = int(ports["7000/tcp"][0]["HostPort"]), int(ports["7001/udp"][0]["HostPort"])
        assert tcp > 0 and udp > 0
        assert json.loads(ok(daemon, "inspect", "-f", "{{json .HostConfig.PublishAllPorts}}", c)) is True
        shown = docker_ok(daemon, "ps", "-f", f"name={c}", "--format", "{{.Ports}}").strip()
        assert shown == f"0.0.0.0:{tcp}->7000/tcp, 0.0.0.0:{udp}->7001/udp"
        assert ok(daemon, "ps", "-f", f"name={c}", "--format", "{{.Ports}}").strip() == shown


def test_prune_and_dangling_filter(daemon: Daemon) -> None:
    keep, old, other = name(), name(), name()
    with cleanup(daemon) as (containers, networks):
        networks += [keep, old, other]
        ok(daemon, "network", "create", "--label", "netapi=prune", old)
        ok(daemon, "network", "create", "--label", "netapi=prune", keep)
        ok(daemon, "network", "create", other)
        c = name()
        containers.append(c)
        ok(daemon, "create", "--name", c, "--network", keep, "busybox", "true")
        dangling = network_names(daemon, "-f", "dangling=true")
        assert old in dangling and other in dangling and keep not in dangling
        assert "bridge" not in dangling
        assert keep in network_names(daemon, "-f", "dangling=false")

        out = ok(daemon, "network", "prune", "-f", "--filter", "label=netapi=prune")
        assert out == f"Deleted Networks:\n{old}\n"
        names = network_names(daemon)
        assert old not in names and keep in names and other in names
        # the docker CLI's prune, with a label filter that matches nothing, removes nothing
        docker_ok(daemon, "network", "prune", "-f", "--filter", "label=netapi=nothing")
        assert other in network_names(daemon)
        out = docker_ok(daemon, "network", "prune", "-f", "--filter", "until=1h")
        assert other not in out  # created seconds ago, so not "until 1h ago"


def test_docker_cli_network_commands(daemon: Daemon) -> None:
    net = name()
    sn = subnet(daemon, 3)
    with cleanup(daemon) as (containers, networks):
        networks.append(net)
        nid = docker_ok(
            daemon, "network", "create", "--subnet", str(sn), "--internal", "--label", "k=v", net
        ).strip()
        assert len(nid) == 64
        listed = docker_ok(
            daemon, "network", "ls", "--filter", "label=k=v", "--format", "{{.ID}} {{.Name}} {{.Internal}}"
        )
        assert listed.strip() == f"{nid[:12]} {net} true"
        assert docker_ok(daemon, "network", "ls", "--format", "{{.Name}}").split() == network_names(daemon)
        table = docker_ok(daemon, "network", "ls").splitlines()
        assert table == ok(daemon, "network", "ls").splitlines()

        c = name()
        containers.append(c)
        ok(daemon, "run", "-d", "--name", c, "busybox", "sleep", "300")
        docker_ok(daemon, "network", "connect", "--alias", "db", net, c)
        nets = json.loads(docker_ok(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}", c))
        assert set(nets) == {"bridge", net}
        assert ipaddress.IPv4Address(nets[net]["IPAddress"]) in sn
        assert nets[net]["Gateway"] == ""  # internal: no route out
        docker_ok(daemon, "network", "disconnect", net, c)

        for args, words in (
            (["network", "rm", "bridge"], "bridge is a pre-defined network and cannot be removed"),
            (["network", "create", "-d", "overlay", name()], 'plugin "overlay" not found'),
            (["network", "create", "--ipv6", name()], "could not find an available, non-overlapping IPv6"),
            (["network", "create", net], f"network with name {net} already exists"),
            (["network", "inspect", "sk-e2e-nothing"], "network sk-e2e-nothing not found"),
        ):
            r = docker(daemon, *args)
            err = r.stderr.decode()
            assert r.returncode != 0, args
            # the daemon's message, decoded (not raw JSON)
            assert f"Error response from daemon: {words}" in err, (args, err)
        docker_ok(daemon, "network", "rm", net)
        networks.remove(net)
        assert net not in network_names(daemon)


def test_run_mac_address_links_and_aliases(daemon: Daemon) -> None:
    net, target, c, legacy = name(), name(), name(), name()
    mac = "92:d0:c6:0a:29:33"
    with cleanup(daemon) as (containers, networks):
        networks.append(net)
        ok(daemon, "network", "create", net)
        containers += [target, c, legacy]
        ok(daemon, "run", "-d", "--name", target, "--network", net, "busybox", "sleep", "300")
        ok(
            daemon,
            "run",
            "-d",
            "--name",
            c,
            "--network",
            net,
            "--mac-address",
            mac,
            "--network-alias",
            "app",
            "--link",
            f"{target}:db",
            "busybox",
            "sleep",
            "300",
        )
        assert ok(daemon, "exec", c, "cat", "/sys/class/net/eth0/address").strip() == mac
        info = json.loads(ok(daemon, "inspect", c))[0]
        assert info["Config"]["MacAddress"] == mac
        assert info["NetworkSettings"]["Networks"][net]["MacAddress"] == mac
        assert info["NetworkSettings"]["Networks"][net]["Links"] == [f"{target}:db"]
        assert info["HostConfig"]["Links"] == [f"/{target}:/{c}/db"]
        # --link on the default bridge is a legacy link: HostConfig.Links only, no endpoint links
        ok(daemon, "create", "--name", legacy, "--link", f"{target}:db", "busybox", "true")
        info = json.loads(ok(daemon, "inspect", legacy))[0]
        assert info["HostConfig"]["Links"] == [f"/{target}:/{legacy}/db"]
        assert info["NetworkSettings"]["Networks"]["bridge"]["Links"] is None
        r = daemon.skiff("run", "--rm", "--network-alias", "x", "busybox", "true")
        assert r.returncode == 125 and "user-defined networks" in r.stderr.decode()
        r = daemon.skiff("run", "--rm", "--mac-address", "zz", "busybox", "true")
        assert r.returncode == 125 and "not a valid mac address" in r.stderr.decode()
