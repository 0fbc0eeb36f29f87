"""Engine API behaviour docker-py's own suite relies on, checked through docker-py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import docker
import pytest

from tests.daemon_fixture import Daemon


@pytest.fixture
def api(daemon: Daemon) -> Iterator[docker.APIClient]:
    client = daemon.client()
    made: list[str] = []
    nets: list[str] = []
    client._skiff_made = made  # type: ignore[attr-defined]
    client._skiff_nets = nets  # type: ignore[attr-defined]
    yield client
    for cid in made:
        try:
            client.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
    for net in nets:
        try:
            client.remove_network(net)
        except docker.errors.NotFound:
            pass
    client.close()


def create(api: docker.APIClient, *cmd: str, **kwargs: object) -> str:
    cid: str = api.create_container("busybox", list(cmd) or None, **kwargs)["Id"]
    api._skiff_made.append(cid)  # type: ignore[attr-defined]
    return cid


def test_swarm_endpoints_answer_503_outside_a_swarm(api: docker.APIClient) -> None:
    assert api.leave_swarm(force=True) is True  # docker-py treats 503 as "nothing to leave"
    with pytest.raises(docker.errors.APIError) as exc:
        api.nodes()
    assert exc.value.response.status_code == 503 and "not a swarm manager" in str(exc.value)


def test_kill_returns_once_the_exit_is_recorded(api: docker.APIClient) -> None:
    cid = create(api, "sleep", "9999")
    api.start(cid)
    api.kill(cid)
    state = api.inspect_container(cid)["State"]
    assert state["Running"] is False and state["ExitCode"] == 137


def test_restarting_container_cannot_be_removed_without_force(api: docker.APIClient) -> None:
    cid = create(
        api, "sh", "-c", "sleep 1", host_config=api.create_host_config(restart_policy={"Name": "always"})
    )
    api.start(cid)
    api.wait(cid)
    with pytest.raises(docker.errors.APIError) as exc:
        api.remove_container(cid)
    assert exc.value.response.status_code == 409
    assert "stop the container before" in exc.value.explanation.lower()
    api.remove_container(cid, force=True)
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)


def test_exec_of_a_missing_command_exits_127(api: docker.APIClient) -> None:
    cid = create(api, "sleep", "9999")
    api.start(cid)
    exec_id = api.exec_create(cid, "no-such-command")["Id"]
    api.exec_start(exec_id)
    assert api.exec_inspect(exec_id)["ExitCode"] == 127


def test_exec_created_with_a_tty_is_framed_when_started_without_one(api: docker.APIClient) -> None:
    cid = create(api, "sleep", "9999")
    api.start(cid)
    exec_id = api.exec_create(cid, ["printf", "framed"], tty=True)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = sock._sock
    header = b""
    while len(header) < 8:
        chunk = raw.recv(8 - len(header))
        assert chunk, "stream ended before a frame header"
        header += chunk
    assert header[0] == 1 and int.from_bytes(header[4:], "big") == len("framed")
    sock.close()


def _recv_until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    sock.settimeout(limit)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_detach_keys_end_a_tty_exec_and_the_process_runs_on(api: docker.APIClient) -> None:
    cid = create(api, "sleep", "9999")
    api.start(cid)
    exec_id = api.exec_create(cid, "cat", stdin=True, tty=True, detach_keys="ctrl-x")["Id"]
    sock = api.exec_start(exec_id, tty=True, socket=True)._sock
    sock.sendall(b"hi\n")
    sock.settimeout(10)
    echoed = b""
    while b"hi" not in echoed:  # the tty echoes the line, cat prints it
        chunk = sock.recv(4096)
        assert chunk, f"stream ended early: {echoed!r}"
        echoed += chunk
    sock.sendall(b"\x18")  # ctrl-x
    assert b"\x18" not in _recv_until_closed(sock)  # the stream ends; the key never reached the tty
    sock.close()
    assert api.exec_inspect(exec_id)["Running"] is True


def test_detach_keys_on_container_attach_leave_it_running(api: docker.APIClient) -> None:
    cid = create(api, "cat", stdin_open=True, tty=True)
    api.start(cid)
    sock = api.attach_socket(cid, {"stdin": 1, "stdout": 1, "stream": 1})._sock
    sock.sendall(b"\x10\x11")  # ctrl-p ctrl-q
    _recv_until_closed(sock)
    sock.close()
    assert api.inspect_container(cid)["State"]["Running"] is True
    with pytest.raises(docker.errors.APIError, match="Invalid detach keys"):
        api.attach_socket(cid, {"stdin": 1, "stream": 1, "detachKeys": "ctrl-1"})


def test_link_env_carries_the_targets_environment_and_links_can_be_removed(api: docker.APIClient) -> None:
    target = create(api, "sleep", "9999", environment={"FOO": "1"})
    api.start(target)
    name = api.inspect_container(target)["Name"][1:]
    parent = create(api, "env", host_config=api.create_host_config(links={name: "db"}))
    api.start(parent)
    api.wait(parent)
    env = api.logs(parent).decode()
    assert "DB_ENV_FOO=1" in env and "DB_ENV_PATH=" not in env
    parent_name = api.inspect_container(parent)["Name"][1:]
    assert f"/{parent_name}/db" in api.containers(all=True, filters={"id": target})[0]["Names"]
    api.remove_container(f"{parent_name}/db", link=True)
    assert api.containers(all=True, filters={"id": target})[0]["Names"] == [f"/{name}"]
    assert api.inspect_container(parent)["HostConfig"]["Links"] is None
    assert api.inspect_container(target)["State"]["Running"] is True
    with pytest.raises(docker.errors.NotFound):
        api.remove_container(f"{parent_name}/db", link=True)


def test_log_config_and_cgroup_fields(api: docker.APIClient) -> None:
    with pytest.raises(docker.errors.APIError, match="no log driver named 'asdf'"):
        create(api, "true", host_config=api.create_host_config(log_config={"Type": "asdf", "Config": {}}))
    cid = create(
        api,
        "sh",
        "-c",
        "cat /proc/self/cgroup | head -1; echo ok",
        host_config=api.create_host_config(
            log_config={"Type": "json-file", "Config": {"max-size": "1m"}},
            cgroupns="private",
            device_cgroup_rules=["c 7:128 rwm"],
        ),
    )
    api.start(cid)
    assert api.wait(cid)["StatusCode"] == 0
    host = api.inspect_container(cid)["HostConfig"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert host["CgroupnsMode"] == "private" and host["DeviceCgroupRules"] == ["c 7:128 rwm"]
    first = api.logs(cid).decode().splitlines()[0]
    assert first.endswith(":/")  # inside a private cgroup namespace the container's cgroup is its root


def test_aux_addresses_are_never_handed_out(api: docker.APIClient) -> None:
    subnet = "10.238.77.0/29"  # .1 gateway; .2 and .3 auxiliary; containers get .4 and up
    ipam = docker.types.IPAMConfig(
        pool_configs=[
            docker.types.IPAMPool(subnet=subnet, aux_addresses={"a": "10.238.77.2", "b": "10.238.77.3"})
        ]
    )
    net = api.create_network("skiff-test-aux", ipam=ipam)["Id"]
    api._skiff_nets.append(net)  # type: ignore[attr-defined]
    info = api.inspect_network(net)
    assert info["IPAM"]["Config"][0]["AuxiliaryAddresses"] == {"a": "10.238.77.2", "b": "10.238.77.3"}
    assert info["IPAM"]["Options"] is None
    ips = []
    for _ in range(2):
        cid = create(api, "sleep", "9999", host_config=api.create_host_config(network_mode="skiff-test-aux"))
        api.start(cid)
        ips.append(api.inspect_container(cid)["NetworkSettings"]["Networks"]["skiff-test-aux"]["IPAddress"])
    assert sorted(ips) == ["10.238.77.4", "10.238.77.5"]


def test_link_local_ips_and_endpoint_driver_opts(api: docker.APIClient) -> None:
    config = api.create_networking_config(
        {"bridge": api.create_endpoint_config(link_local_ips=["169.254.8.8"], driver_opt={"k": "v"})}
    )
    cid = create(api, "ip", "-4", "addr", "show", "eth0", networking_config=config)
    api.start(cid)
    api.wait(cid)
    ep = api.inspect_container(cid)["NetworkSettings"]["Networks"]["bridge"]
    assert ep["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.8"] and ep["DriverOpts"] == {"k": "v"}
    assert "169.254.8.8" in api.logs(cid).decode()


def test_version_names_min_api_version_in_the_engine_component(api: docker.APIClient) -> None:
    engine = next(c for c in api.version()["Components"] if c["Name"] == "Engine")
    assert engine["Details"]["MinAPIVersion"] == "1.24" and engine["Details"]["Os"] == "linux"


def test_ipv6_networks_are_dual_stack(api: docker.APIClient) -> None:
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="fd00:5ee:1::/64")])
    net = api.create_network("skiff-test-v6", enable_ipv6=True, ipam=ipam)["Id"]
    api._skiff_nets.append(net)  # type: ignore[attr-defined]
    info = api.inspect_network(net)
    assert info["EnableIPv6"] is True
    subnets = [c["Subnet"] for c in info["IPAM"]["Config"]]
    assert "fd00:5ee:1::/64" in subnets and any("." in s for s in subnets)  # an IPv4 subnet too, as dockerd
    server = create(
        api,
        "sleep",
        "9999",
        host_config=api.create_host_config(network_mode="skiff-test-v6"),
        networking_config=api.create_networking_config(
            {"skiff-test-v6": api.create_endpoint_config(ipv6_address="fd00:5ee:1::f00d")}
        ),
    )
    api.start(server)
    ep = api.inspect_container(server)["NetworkSettings"]["Networks"]["skiff-test-v6"]
    assert ep["GlobalIPv6Address"] == "fd00:5ee:1::f00d" and ep["GlobalIPv6PrefixLen"] == 64
    assert ep["IPv6Gateway"] == "fd00:5ee:1::1" and ep["IPAddress"]
    client = create(
        api,
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "5",
        "fd00:5ee:1::f00d",
        host_config=api.create_host_config(network_mode="skiff-test-v6"),
    )
    api.start(client)
    assert api.wait(client, timeout=30)["StatusCode"] == 0, api.logs(client).decode()
    members = api.inspect_network(net)["Containers"]
    assert members[server]["IPv6Address"] == "fd00:5ee:1::f00d/64"
    with pytest.raises(docker.errors.APIError, match="needs IPv6 enabled"):
        api.create_network("skiff-test-v6b", ipam=ipam)
    with pytest.raises(docker.errors.APIError, match="user defined networks only"):
        bad = api.create_networking_config({"bridge": api.create_endpoint_config(ipv6_address="fd00::1")})
        create(api, "true", networking_config=bad)
