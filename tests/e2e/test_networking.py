"""Container networking on the real kernel through a running skiffd (issue 3's network tests).

Traffic stays on loopback or inside namespaces the tests (or skiffd) made: the "outside world"
is a network namespace behind a veth pair the test creates and removes.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from skiff.network import netns
from tests.daemon_fixture import Daemon, bootstrap_busybox, running_daemon

WEB = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def _name(prefix: str = "sknet") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def network(api: Any, **kwargs: Any) -> Iterator[str]:
    name = _name()
    api.create_network(name, driver="bridge", **kwargs)
    try:
        yield name
    finally:
        for c in api.containers(all=True, filters={"network": name}):
            with contextlib.suppress(Exception):
                api.remove_container(c["Id"], force=True)
        with contextlib.suppress(Exception):
            api.remove_network(name)


def start(
    api: Any,
    cmd: str,
    *,
    network_name: str = "",
    aliases: list[str] | None = None,
    name: str = "",
    **host: Any,
) -> str:
    """Create and start a busybox container running ``sh -c cmd``.

    Unless told otherwise its resolver (or, on user networks, the embedded DNS server's
    upstream) is the loopback, so a name that does not resolve never leaves the machine.
    """
    if host.get("network_mode", "").startswith("container:") or host.get("network_mode") == "host":
        pass
    else:
        host.setdefault("dns", ["127.0.0.1"])
    networking = None
    if network_name:
        networking = api.create_networking_config({network_name: api.create_endpoint_config(aliases=aliases)})
    cid: str = api.create_container(
        "busybox",
        ["sh", "-c", cmd],
        name=name or None,
        host_config=api.create_host_config(**{"network_mode": network_name or None, **host}),
        networking_config=networking,
        ports=[_port_spec(p) for p in host.get("port_bindings", {})] or None,
    )["Id"]
    api.start(cid)
    return cid


def _port_spec(port: int | str) -> int | tuple[int, str]:
    if isinstance(port, int):
        return port
    num, _, proto = port.partition("/")
    return (int(num), proto) if proto else int(num)


def run_out(api: Any, cmd: str, **kwargs: Any) -> tuple[int, str]:
    """Run ``sh -c cmd`` to completion; (exit code, output).

    The trailing ``exit`` keeps sh as PID 1: busybox ``timeout`` execs its program in its own
    place, and as PID 1 that program would ignore timeout's SIGTERM.
    """
    cid = start(api, f"{cmd}; exit $?", **kwargs)
    try:
        code = api.wait(cid, timeout=60)["StatusCode"]
        return code, api.logs(cid).decode()
    finally:
        api.remove_container(cid, force=True)


def wait_http(api: Any, cid: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = api.exec_start(
            api.exec_create(cid, ["sh", "-c", "timeout 1 wget -qO- http://127.0.0.1:80/"])["Id"]
        )
        if b"hello" in r:
            return
        time.sleep(0.1)
    raise AssertionError("web server in the container did not come up")


def test_default_bridge_gives_address_and_inspect_shows_it(daemon: Daemon) -> None:
    api = daemon.client()
    cid = start(api, "sleep 30")
    try:
        info = api.inspect_container(cid)
        ns = info["NetworkSettings"]
        bridge = ns["Networks"]["bridge"]
        assert bridge["IPAddress"].startswith(daemon.bip.rsplit(".", 2)[0])
        assert bridge["Gateway"] == daemon.bip.split("/")[0]
        assert ns["SandboxKey"].startswith(str(daemon.run_dir))
        out = api.exec_start(api.exec_create(cid, ["ip", "-4", "-o", "addr", "show", "eth0"])["Id"]).decode()
        assert bridge["IPAddress"] in out
        hosts = api.exec_start(api.exec_create(cid, ["cat", "/etc/hosts"])["Id"]).decode()
        assert f"{bridge['IPAddress']}\t{cid[:12]}" in hosts
    finally:
        api.remove_container(cid, force=True)


def test_user_network_resolves_names_aliases_and_short_ids_live(daemon: Daemon) -> None:
    api = daemon.client()
    with network(api) as net:
        server_name = _name("web")
        server = start(api, WEB, network_name=net, aliases=["webalias"], name=server_name)
        wait_http(api, server)
        ip = api.inspect_container(server)["NetworkSettings"]["Networks"][net]["IPAddress"]
        for target in (server_name, "webalias", server[:12]):
            code, out = run_out(
                api, f"nslookup {target} 127.0.0.11; timeout 3 wget -qO- http://{target}/", network_name=net
            )
            assert code == 0, out
            assert ip in out and "hello-from" in out, out
        # Rename: the new name resolves at once, the old one no longer does.
        new_name = _name("renamed")
        api.rename(server, new_name)
        code, out = run_out(api, f"timeout 3 wget -qO- http://{new_name}/", network_name=net)
        assert code == 0 and "hello-from" in out, out
        code, out = run_out(api, f"nslookup {server_name} 127.0.0.11", network_name=net)
        assert code != 0, out
        # A container that joins later is resolvable from one already running.
        late = _name("late")
        code, out = run_out(
            api,
            f"sleep 0.2; timeout 3 wget -qO- http://{new_name}/ >/dev/null && echo ok",
            network_name=net,
            name=late,
        )
        assert code == 0 and "ok" in out
        api.remove_container(server, force=True)
        code, out = run_out(api, f"nslookup {new_name} 127.0.0.11", network_name=net)
        assert code != 0, "a removed container still resolves"


def test_default_bridge_resolves_only_links(daemon: Daemon) -> None:
    api = daemon.client()
    server_name = _name("db")
    server = start(api, WEB, name=server_name, port_bindings={})
    try:
        wait_http(api, server)
        code, out = run_out(api, f"timeout 2 wget -qO- http://{server_name}/")
        assert code != 0, "the default bridge must not resolve container names without links"
        code, out = run_out(
            api, "cat /etc/hosts; env | sort; timeout 3 wget -qO- http://db/", links={server_name: "db"}
        )
        assert code == 0, out
        assert "hello-from" in out
        ip = api.inspect_container(server)["NetworkSettings"]["IPAddress"]
        assert "DB_NAME=/" in out and ip in out
    finally:
        api.remove_container(server, force=True)


def test_networks_are_isolated_from_each_other(daemon: Daemon) -> None:
    api = daemon.client()
    with network(api) as net_a, network(api) as net_b:
        server = start(api, WEB, network_name=net_a)
        wait_http(api, server)
        ip = api.inspect_container(server)["NetworkSettings"]["Networks"][net_a]["IPAddress"]
        code, out = run_out(api, f"timeout 3 wget -qO- http://{ip}/", network_name=net_a)
        assert code == 0 and "hello-from" in out, out
        code, out = run_out(api, f"timeout 2 wget -qO- http://{ip}/", network_name=net_b)
        assert code != 0 and "hello-from" not in out, "traffic crossed between two networks"
        # connect brings the container onto the second network (eth1), disconnect takes it off.
        probe = start(api, "sleep 60", network_name=net_b)
        try:
            api.connect_container_to_network(probe, net_a, aliases=["probe"])
            out = api.exec_start(
                api.exec_create(probe, ["sh", "-c", f"ip -o addr; timeout 3 wget -qO- http://{ip}/"])["Id"]
            ).decode()
            assert "eth1" in out and "hello-from" in out, out
            nets = api.inspect_container(probe)["NetworkSettings"]["Networks"]
            assert set(nets) == {net_a, net_b} and nets[net_a]["IPAddress"]
            api.disconnect_container_from_network(probe, net_a)
            out = api.exec_start(api.exec_create(probe, ["ip", "-o", "addr"])["Id"]).decode()
            assert "eth1" not in out
            assert set(api.inspect_container(probe)["NetworkSettings"]["Networks"]) == {net_b}
        finally:
            api.remove_container(probe, force=True)


@contextlib.contextmanager
def outside_world() -> Iterator[tuple[str, str, Path]]:
    """A namespace behind a veth pair: (server address, host-side address, log of client addresses)."""
    tag = secrets.token_hex(3)
    r = int(tag[:2], 16)
    base = Path(f"/run/skiff-test-out-{tag}")
    ns_path = base / "ns"
    host_if, peer_if = f"skto{tag}a", f"skto{tag}b"
    host_ip, peer_ip = f"10.238.{r}.1", f"10.238.{r}.2"
    proc: subprocess.Popen[bytes] | None = None
    log = base / "clients.log"
    try:
        netns.create(ns_path)
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if], check=True)
        subprocess.run(["ip", "link", "set", peer_if, "netns", str(ns_path)], check=True)
        subprocess.run(["ip", "addr", "add", f"{host_ip}/30", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        inside = ["nsenter", f"--net={ns_path}"]
        subprocess.run([*inside, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if], check=True)
        subprocess.run([*inside, "ip", "link", "set", peer_if, "up"], check=True)
        server = (
            "import http.server,sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            f"        open({str(log)!r},'a').write(self.client_address[0]+'\\n')\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(b'outside-ok')\n"
            "    def log_message(self,*a): pass\n"
            f"http.server.HTTPServer(({peer_ip!r},8080),H).serve_forever()\n"
        )
        proc = subprocess.Popen([*inside, "python3", "-c", server])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((peer_ip, 8080), timeout=0.5):
                break
            time.sleep(0.05)
        yield peer_ip, host_ip, log
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "delete", host_if], capture_output=True)
        netns.remove(ns_path)
        with contextlib.suppress(OSError):
            log.unlink()
        with contextlib.suppress(OSError):
            base.rmdir()


def test_outbound_is_nated_and_internal_networks_have_no_route(daemon: Daemon) -> None:
    api = daemon.client()
    with outside_world() as (server_ip, host_ip, log), network(api, internal=True) as internal:
        code, out = run_out(api, f"timeout 3 wget -qO- http://{server_ip}:8080/")
        assert code == 0 and "outside-ok" in out, out
        # The far side saw the host's address, not the container's: masqueraded.
        assert log.read_text().split() == [host_ip]
        code, out = run_out(
            api, f"ip route; timeout 2 wget -qO- http://{server_ip}:8080/", network_name=internal
        )
        assert code != 0 and "outside-ok" not in out
        assert "default" not in out
        assert log.read_text().split() == [host_ip]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_published_ports_answer_on_loopback_and_from_other_containers(daemon: Daemon) -> None:
    api = daemon.client()
    port = _free_port()
    cid = start(api, WEB, port_bindings={80: port, "81/udp": None})
    try:
        wait_http(api, cid)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        assert body.startswith(b"hello-from")
        ports = api.inspect_container(cid)["NetworkSettings"]["Ports"]
        assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
        random_port = int(ports["81/udp"][0]["HostPort"])
        assert random_port > 0
        summary = next(c for c in api.containers() if c["Id"] == cid)
        assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"} in summary["Ports"]
        gateway = daemon.bip.split("/")[0]
        code, out = run_out(api, f"timeout 3 wget -qO- http://{gateway}:{port}/")
        assert code == 0 and "hello-from" in out, out
        # The port is owned: another container cannot take it. As with dockerd, the clash
        # with another container is found at start (Compose creates a service's new container
        # while the old one still holds the port): the new container stays created.
        before = {c["Id"] for c in api.containers(all=True)}
        name = _name("second")
        r = daemon.skiff("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sleep", "5")
        assert r.returncode == 125
        assert b"port is already allocated" in r.stderr
        second = api.inspect_container(name)
        assert second["State"]["Status"] == "created" and second["Id"] not in before
        api.remove_container(cid, force=True)
        api.start(name)  # the port is free once its holder is gone
        assert api.inspect_container(name)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == str(port)
        api.remove_container(name, force=True)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(cid, force=True)
    # Released with the container: a host process can bind it again.
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))


def test_port_taken_by_a_host_process_is_a_clear_error(daemon: Daemon) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        name = _name("taken")
        r = daemon.skiff("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "5")
        assert r.returncode == 125
        assert b"address already in use" in r.stderr, r.stderr
        assert daemon.skiff("inspect", name).returncode != 0  # nothing half-made


def test_container_mode_shares_localhost(daemon: Daemon) -> None:
    api = daemon.client()
    server = start(api, "mkdir /www; echo pod-ok > /www/index.html; exec httpd -f -p 127.0.0.1:8080 -h /www")
    try:
        time.sleep(0.3)
        code, out = run_out(
            api, "timeout 3 wget -qO- http://127.0.0.1:8080/", network_mode=f"container:{server}"
        )
        assert code == 0 and "pod-ok" in out, out
        code, out = run_out(api, "timeout 2 wget -qO- http://127.0.0.1:8080/")
        assert code != 0 and "pod-ok" not in out
    finally:
        api.remove_container(server, force=True)


def test_host_and_none_modes(daemon: Daemon) -> None:
    api = daemon.client()
    code, out = run_out(api, "ip -o link", network_mode="none")
    assert code == 0 and "eth0" not in out and "lo" in out
    code, out = run_out(api, "ip -o link", network_mode="host")
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert code == 0 and len(out.splitlines()) == len(host_links.splitlines())


# ------------------------------------------------------------------ leaks and restarts


def kernel_objects(d: Daemon) -> dict[str, set[str]]:
    """Everything networking leaves on the host that belongs to daemon ``d``."""
    veths: set[str] = set()
    for bridge in d.bridges():
        out = subprocess.run(
            ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True
        ).stdout
        veths |= {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}
    leases = set()
    ipam = d.root / "network" / "ipam"
    if ipam.exists():
        leases = {
            str(p.relative_to(ipam))
            for p in ipam.rglob("*")
            if p.is_file() and p.name != "lock" and not p.name.startswith("last_reserved_ip")
        }
    ns_dir = d.run_dir / "netns"
    namespaces = {p.name for p in ns_dir.iterdir()} if ns_dir.exists() else set()
    with open("/proc/self/mountinfo") as f:
        ns_mounts = {line.split()[4] for line in f if "nsfs" in line and str(d.base) in line}
    rules: set[str] = set()
    containers = {c["Id"] for c in d.client().containers(all=True)} if d.proc else set()
    for table in ("filter", "nat"):
        text = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True).stdout
        for line in text.splitlines():
            # Per-container rules (portmap) carry the container id in a comment.
            if 'id: "' in line:
                cid = line.split('id: "')[1].split('"')[0]
                if len(cid) == 64 and (cid not in containers):
                    rules.add(line)
    return {"veth": veths, "lease": leases, "netns": namespaces | ns_mounts, "rule": rules}


def assert_nothing_leaked(d: Daemon, baseline: dict[str, set[str]]) -> None:
    now = kernel_objects(d)
    for kind in now:
        assert now[kind] - baseline[kind] == set(), f"leaked {kind}: {sorted(now[kind] - baseline[kind])}"


def test_no_leaks_after_rm_and_50_cycles() -> None:
    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        baseline = kernel_objects(d)
        with network(api) as net:
            for i in range(50):
                kwargs: dict[str, Any] = {}
                if i % 2:
                    kwargs["network_name"] = net
                if i % 5 == 0:
                    kwargs["port_bindings"] = {80: None}
                cid = start(api, "true", **kwargs)
                api.wait(cid, timeout=30)
                api.remove_container(cid, force=True)
            # A running one force-removed, with a published port and two networks.
            cid = start(api, "sleep 60", network_name=net, port_bindings={80: None})
            api.connect_container_to_network(cid, "bridge")
            api.remove_container(cid, force=True)
            assert_nothing_leaked(d, baseline)
        assert_nothing_leaked(d, baseline)


def test_networks_survive_kill9_and_restart_reconciles() -> None:
    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        baseline = kernel_objects(d)
        net = _name()
        api.create_network(net, driver="bridge", labels={"keep": "yes"})
        port = _free_port()
        server_name = _name("web")
        server = start(api, WEB, network_name=net, name=server_name, port_bindings={80: port})
        wait_http(api, server)
        doomed = start(api, "sleep 600", network_name=net, port_bindings={80: None})
        doomed_pid = api.inspect_container(doomed)["State"]["Pid"]
        ip_before = api.inspect_container(server)["NetworkSettings"]["Networks"][net]["IPAddress"]

        d.stop(signal.SIGKILL)
        subprocess.run(["kill", "-9", str(doomed_pid)], check=True)  # exits while skiffd is down
        time.sleep(0.5)
        d.start()
        api = d.client()

        assert api.inspect_network(net)["Labels"] == {"keep": "yes"}
        info = api.inspect_container(server)
        assert info["State"]["Running"]
        assert info["NetworkSettings"]["Networks"][net]["IPAddress"] == ip_before
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().startswith(b"hello-from")
        code, out = run_out(api, f"timeout 3 wget -qO- http://{server_name}/", network_name=net)
        assert code == 0 and "hello-from" in out, out  # DNS was restored
        r = d.skiff("run", "-d", "-p", f"{port}:80", "busybox", "true")
        assert r.returncode == 125 and b"already allocated" in r.stderr  # the port is still owned
        # The container that died while skiffd was down holds nothing any more.
        assert api.inspect_container(doomed)["State"]["Status"] == "exited"
        assert not (d.run_dir / "netns" / doomed).exists()
        objects = kernel_objects(d)
        assert not any(
            doomed in lease or doomed in json.dumps(sorted(objects["rule"])) for lease in objects["lease"]
        )
        api.remove_container(doomed, force=True)
        api.remove_container(server, force=True)
        api.remove_network(net)
        assert_nothing_leaked(d, baseline)


def test_crash_between_runc_create_and_start_leaves_no_network_state() -> None:
    with running_daemon() as d:
        bootstrap_busybox(d)
        api = d.client()
        baseline = kernel_objects(d)
        cid = api.create_container(
            "busybox", ["sleep", "30"], host_config=api.create_host_config(port_bindings={80: None})
        )["Id"]
        d.stop()
        d.start(env={"SKIFF_FAILPOINTS": "start-after-runtime-create"})
        with pytest.raises(requests.exceptions.ConnectionError):
            d.client().start(cid)
        assert d.proc is not None
        d.proc.wait(10)
        d.proc = None
        assert (d.run_dir / "netns" / cid).exists(), "the failpoint should leave a namespace behind"
        d.start()
        api = d.client()
        assert api.inspect_container(cid)["State"]["Status"] == "created"
        assert_nothing_leaked(d, baseline)
        api.start(cid)  # and it can still start
        assert api.inspect_container(cid)["NetworkSettings"]["Ports"]["80/tcp"]
        api.remove_container(cid, force=True)
        assert_nothing_leaked(d, baseline)


def test_stats_report_network_counters(daemon: Daemon) -> None:
    api = daemon.client()
    cid = start(api, WEB)
    try:
        wait_http(api, cid)
        gateway_reachable = api.exec_start(
            api.exec_create(cid, ["ping", "-c", "3", "-W", "1", daemon.bip.split("/")[0]])["Id"]
        )
        assert b"3 packets transmitted" in gateway_reachable
        stats = api.stats(cid, stream=False)
        eth0 = stats["networks"]["eth0"]
        assert eth0["tx_packets"] >= 3 and eth0["rx_bytes"] > 0
    finally:
        api.remove_container(cid, force=True)
