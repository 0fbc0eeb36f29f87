"""skiff lab's plan (names, addresses, pools), lab.json and which lab a command means (no root)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from skiff.cluster import lab
from skiff.errors import InvalidArgument, NotFound


def test_names_fit_ifnamsiz_and_carry_the_lab_name() -> None:
    plan = lab.plan("abcdefgh", 32, 3, True, index=7)
    assert plan.bridge == "skflab-abcdefgh"
    for node in plan.nodes:
        assert len(node.veth) <= 15 and node.veth.startswith("sklvabcdefgh")
        assert node.netns == f"skiff-lab-abcdefgh-n{node.index}"
        assert node.cgroup_parent == f"skiff-lab-abcdefgh-n{node.index}"
        assert node.chain_prefix == f"SKL{node.index}"
        assert node.bridge == f"skl{node.index}" and len(node.bridge) <= 15
    assert len(plan.bridge) <= 15
    # Veth names never clash between labs: K is the digits after the last "n".
    a = {n.veth for n in lab.plan("ab", 12, index=1).nodes}
    b = {n.veth for n in lab.plan("abn1", 12, index=2).nodes}
    assert not a & b


@pytest.mark.parametrize("name", ["", "Lab", "1lab", "abcdefghi", "a-b", "a_b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        lab.validate_name(name)


def test_addresses_and_directories() -> None:
    plan = lab.plan("demo", 3, index=5)
    assert str(plan.subnet) == "10.220.5.0/24" and plan.gateway == "10.220.5.1"
    assert [n.address for n in plan.nodes] == ["10.220.5.2", "10.220.5.3", "10.220.5.4"]
    n2 = plan.node("n2")
    assert plan.node("2") is n2
    assert n2.root == "/var/lib/skiff-lab/demo/n2"
    assert n2.run_dir == "/run/skiff-lab/demo/n2"
    assert n2.host == "unix:///run/skiff-lab/demo/n2/skiff.sock"
    assert n2.bip == "10.221.2.1/24"
    assert n2.cluster_addr == "10.220.5.3:2377"
    assert plan.state_file == Path("/run/skiff-lab/demo/lab.json")
    with pytest.raises(NotFound):
        plan.node("n4")


def test_pools_are_distinct_inside_the_lab_range_and_avoid_reserved_ones() -> None:
    plan = lab.plan("x", lab.MAX_NODES, index=1)
    pools = [ipaddress.ip_network(n.pool) for n in plan.nodes]
    reserved = [
        ipaddress.ip_network(c) for c in ("172.17.0.0/16", "10.88.0.0/16", "10.211.0.0/16", "10.212.0.0/14")
    ]
    for i, pool in enumerate(pools):
        assert pool.subnet_of(ipaddress.ip_network("10.222.0.0/15"))  # type: ignore[arg-type]
        assert not any(pool.overlaps(r) for r in reserved)
        assert not any(pool.overlaps(other) for other in pools[i + 1 :])
        bip = ipaddress.ip_interface(plan.nodes[i].bip).network
        assert not bip.overlaps(pool) and not any(bip.overlaps(r) for r in reserved)
    with pytest.raises(InvalidArgument):
        lab.node_pool(lab.MAX_NODES + 1)


def test_plan_checks_counts() -> None:
    with pytest.raises(InvalidArgument):
        lab.plan("x", 0)
    with pytest.raises(InvalidArgument):
        lab.plan("x", 3, managers=4, etcd=True)
    with pytest.raises(InvalidArgument, match="--etcd"):
        lab.plan("x", 3, managers=3)
    plan = lab.plan("x", 5, managers=3, etcd=True)
    assert [n.manager for n in plan.nodes] == [True, True, True, False, False]
    assert plan.store_url == "etcd://10.220.1.2:2379,10.220.1.3:2379,10.220.1.4:2379"
    assert lab.plan("x", 2).store_url is None


def test_etcd_members_are_the_managers() -> None:
    plan = lab.plan("x", 4, managers=3, etcd=True, index=9)
    argv = lab.etcd_argv(plan, plan.nodes[1], new=True)
    assert "--name=n2" in argv
    assert (
        "--initial-cluster=n1=http://10.220.9.2:2380,n2=http://10.220.9.3:2380,n3=http://10.220.9.4:2380"
        in argv
    )
    assert "--initial-cluster-state=new" in argv
    assert "--initial-cluster-state=existing" in lab.etcd_argv(plan, plan.nodes[1], new=False)


def test_skiffd_runs_in_the_nodes_namespaces_with_private_state() -> None:
    node = lab.plan("demo", 2, index=3).nodes[1]
    argv = lab._in_node(node, lab.skiffd_argv(node))
    assert argv[:2] == ["nsenter", "--net=/run/netns/skiff-lab-demo-n2"]
    assert "--uts" in argv and "n2" in argv
    flags = dict(zip(argv[argv.index("--root") :: 2], argv[argv.index("--root") + 1 :: 2], strict=False))
    assert flags["--root"] == node.root
    assert flags["--run-dir"] == node.run_dir
    assert flags["-H"] == node.host
    assert flags["--bip"] == "10.221.2.1/24"
    assert flags["--default-address-pool"] == node.pool
    assert flags["--iptables-chain-prefix"] == "SKL2"
    assert flags["--cgroup-parent"] == "skiff-lab-demo-n2"
    assert flags["--bridge"] == "skl2"


@pytest.fixture
def lab_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(lab, "RUN_BASE", tmp_path / "run")
    monkeypatch.setattr(lab, "ROOT_BASE", tmp_path / "lib")
    monkeypatch.setattr(lab, "_host_networks", lambda: [ipaddress.ip_network("10.220.2.0/24")])
    return tmp_path


def test_lab_json_round_trip(lab_dirs: Path) -> None:
    plan = lab.plan("demo", 3, index=4)
    plan.nodes[0].pid = 1234
    plan.nodes[2].state = "killed"
    plan.previous_context = "default"
    plan.save()
    assert (lab_dirs / "run" / "demo" / "lab.json").is_file()
    again = lab.load("demo")
    assert again == plan
    assert [x.name for x in lab.labs()] == ["demo"]
    with pytest.raises(NotFound):
        lab.load("other")


def test_free_index_skips_labs_and_host_routes(lab_dirs: Path) -> None:
    assert lab.free_index([]) == 1
    assert lab.free_index([1]) == 3  # 10.220.2.0/24 is routed on the host
    assert lab.free_index([1, 3, 4]) == 5


def test_which_lab_a_command_means(lab_dirs: Path) -> None:
    with pytest.raises(NotFound):
        lab.resolve_lab(None)
    lab.plan("one", 1, index=1).save()
    assert lab.resolve_lab(None).name == "one"
    lab.plan("two", 1, index=2).save()
    with pytest.raises(InvalidArgument, match="--name"):
        lab.resolve_lab(None)
    assert lab.resolve_lab(None, "lab-two").name == "two"
    assert lab.resolve_lab("one", "lab-two").name == "one"
    with pytest.raises(NotFound):
        lab.resolve_lab("three")


def test_status_of_a_node_whose_process_is_gone(lab_dirs: Path) -> None:
    node = lab.plan("x", 1).nodes[0]
    node.state = "running"
    node.pid = 2**22 + 1  # above pid_max's default: never a live process
    assert lab.node_status(node) == "dead"
    node.state = "killed"
    assert lab.node_status(node) == "killed"


def test_node_macs_are_fixed_and_distinct() -> None:
    macs = {lab.node_mac(i, k) for i in (1, 2, 254) for k in range(1, lab.MAX_NODES + 1)}
    assert len(macs) == 3 * lab.MAX_NODES
    assert lab.node_mac(5, 3) == "02:73:6b:05:03:01"
    assert all(int(m.split(":")[0], 16) & 0x02 and not int(m.split(":")[0], 16) & 0x01 for m in macs)


def test_lab_context_follows_a_running_manager(lab_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skiff.client.contexts import ContextStore

    monkeypatch.setenv("SKIFF_CONFIG", str(lab_dirs / "config"))
    plan = lab.plan("ha", 4, managers=3, etcd=True)
    for node in plan.nodes:
        node.state = "running"
    assert lab.retarget_context(plan) is None  # no context: nothing to change
    store = ContextStore()
    store.create("lab-ha", plan.nodes[0].host, "lab ha")
    plan.nodes[0].state = "killed"
    assert lab.retarget_context(plan) == plan.nodes[1].host
    assert store.get("lab-ha").host == plan.nodes[1].host
    assert store.get("lab-ha").description == "lab ha"
    plan.nodes[0].state = "running"
    assert lab.retarget_context(plan) == plan.nodes[0].host  # back to n1 once it runs again
    for node in plan.nodes[:3]:
        node.state = "killed"
    assert lab.retarget_context(plan) is None  # the worker n4 is no manager
    assert store.get("lab-ha").host == plan.nodes[0].host


def test_lab_ls_and_root_check(
    lab_dirs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from skiff.cli import lab_cmd
    from skiff.cli.main import run

    monkeypatch.setenv("COLUMNS", "200")
    assert run(["lab", "ls"]) == 0
    assert "no lab is up" in capsys.readouterr().out
    plan = lab.plan("demo", 3, index=6)
    for node in plan.nodes:
        node.state = "running"
        node.node_id = f"node{node.index}" * 4
    plan.nodes[2].state = "killed"
    plan.save()
    assert run(["lab", "ls"]) == 0
    out = capsys.readouterr().out
    assert "lab demo: 10.220.6.0/24" in out
    assert "10.220.6.4" in out and "killed" in out and "node1node1no" in out
    assert out.count("dead") == 2  # "running" in lab.json, but no such process
    monkeypatch.setattr(lab_cmd.os, "geteuid", lambda: 1000)
    assert run(["lab", "kill", "n3"]) == 1
    assert "as root" in capsys.readouterr().err
