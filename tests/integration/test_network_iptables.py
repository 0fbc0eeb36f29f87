"""skiff's per-network iptables chains on the real kernel (root only).

Every test uses its own chain prefix (SKIFF-T<hex>) and its own dummy bridges (skt<hex><n>);
both are removed afterwards, even on failure. The traffic test builds namespaces on those bridges
and an "outside" namespace behind a plain veth, all on 10.236.x.y addresses it owns, and sends
TCP between them from inside the namespaces.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument
from skiff.network import netns
from skiff.network.iptables import BridgeRules, Firewall, render_rules

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def table_lines(table: str) -> list[str]:
    return sh("iptables", "-w", "-t", table, "-S").splitlines()


def mentioning(prefix: str) -> list[str]:
    """Every line of both tables that names a chain of ``prefix`` (chains, rules, jumps)."""
    out = []
    for table in ("filter", "nat"):
        out += [f"{table}: {line}" for line in table_lines(table) if f"{prefix}-" in line]
    return out


def jumps(table: str, builtin: str, chain: str) -> list[str]:
    return [
        line
        for line in table_lines(table)
        if line.startswith(f"-A {builtin} ") and line.endswith(f"-j {chain}")
    ]


@pytest.fixture
def tag() -> str:
    return secrets.token_hex(2)


@pytest.fixture
def fw(tag: str) -> Iterator[Firewall]:
    f = Firewall(f"SKIFF-T{tag}")
    try:
        yield f
    finally:
        f.teardown()


@pytest.fixture
def bridges(tag: str) -> Iterator[list[str]]:
    names = [f"skt{tag}{i}" for i in range(3)]
    made = []
    try:
        for n in names:
            sh("ip", "link", "add", n, "type", "bridge")
            made.append(n)
        yield names
    finally:
        for n in made:
            subprocess.run(["ip", "link", "del", n], capture_output=True, check=False)


def nets(brs: list[str]) -> list[BridgeRules]:
    return [
        BridgeRules(brs[0], "10.236.0.0/24", internal=False),
        BridgeRules(brs[1], "10.236.1.0/24", internal=False),
        BridgeRules(brs[2], "10.236.2.0/24", internal=True),
    ]


def test_apply_installs_the_documented_rules(fw: Firewall, bridges: list[str]) -> None:
    a, b, i = bridges
    p = fw.prefix
    fw.apply(nets(bridges))
    filt = table_lines("filter")
    cm = "-m comment --comment skiff"
    expected = [
        f"-A FORWARD {cm} -j {p}-FORWARD",
        f"-A {p}-FORWARD {cm} -j {p}-ISOLATION",
        f"-A {p}-FORWARD -i {i} ! -o {i} {cm} -j DROP",
        f"-A {p}-FORWARD ! -i {i} -o {i} {cm} -j DROP",
        f"-A {p}-FORWARD -o {a} -m conntrack --ctstate RELATED,ESTABLISHED {cm} -j ACCEPT",
        f"-A {p}-FORWARD -i {a} -o {a} {cm} -j ACCEPT",
        f"-A {p}-FORWARD -i {a} ! -o {a} {cm} -j ACCEPT",
        f"-A {p}-FORWARD -o {a} -m conntrack --ctstate DNAT {cm} -j ACCEPT",
        f"-A {p}-FORWARD -i {i} -o {i} {cm} -j ACCEPT",
        f"-A {p}-ISOLATION -m conntrack --ctstate DNAT {cm} -j RETURN",
        *(f"-A {p}-ISOLATION -i {br} ! -o {br} {cm} -j {p}-ISOLATION-2" for br in bridges),
        *(f"-A {p}-ISOLATION-2 -o {br} {cm} -j DROP" for br in bridges),
    ]
    for rule in expected:
        assert rule in filt, rule
    # an internal network never gets an outbound ACCEPT
    assert f"-A {p}-FORWARD -i {i} ! -o {i} {cm} -j ACCEPT" not in filt
    # internal DROPs come before every ACCEPT in the chain
    fwd = [line for line in filt if line.startswith(f"-A {p}-FORWARD ")]
    last_drop = max(n for n, line in enumerate(fwd) if line.endswith("-j DROP"))
    first_accept = min(n for n, line in enumerate(fwd) if line.endswith("-j ACCEPT"))
    assert last_drop < first_accept
    # the jump from FORWARD is the first rule
    forward = [line for line in filt if line.startswith("-A FORWARD ")]
    assert forward[0] == f"-A FORWARD {cm} -j {p}-FORWARD"

    nat = [line for line in table_lines("nat") if f"{p}-" in line]
    assert f"-A POSTROUTING {cm} -j {p}-POSTROUTING" in nat
    assert f"-A {p}-POSTROUTING -s 10.236.0.0/24 ! -o {a} {cm} -j MASQUERADE" in nat
    assert f"-A {p}-POSTROUTING -s 10.236.1.0/24 ! -o {b} {cm} -j MASQUERADE" in nat
    assert not any("10.236.2.0/24" in line for line in nat)  # internal: no masquerade
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


def test_kernel_rules_equal_the_rendered_rules(fw: Firewall, bridges: list[str]) -> None:
    fw.apply(nets(bridges))
    rendered = render_rules(fw.prefix, nets(bridges))
    for table, chains in fw.chains.items():
        mine = [line for line in table_lines(table) if any(line.startswith(f"-A {c} ") for c in chains)]
        assert mine == rendered[table]


def test_apply_twice_changes_nothing(fw: Firewall, bridges: list[str]) -> None:
    fw.apply(nets(bridges))
    first = mentioning(fw.prefix)
    fw.apply(nets(bridges))
    assert mentioning(fw.prefix) == first
    assert len(jumps("filter", "FORWARD", f"{fw.prefix}-FORWARD")) == 1
    assert len(jumps("nat", "POSTROUTING", f"{fw.prefix}-POSTROUTING")) == 1


def test_apply_with_fewer_networks_removes_their_rules(fw: Firewall, bridges: list[str]) -> None:
    fw.apply(nets(bridges))
    assert any(bridges[1] in line for line in mentioning(fw.prefix))
    fw.apply([nets(bridges)[0]])
    left = mentioning(fw.prefix)
    assert not any(bridges[1] in line or bridges[2] in line for line in left), left
    assert any(bridges[0] in line for line in left)
    fw.apply([])
    assert not any(br in line for line in mentioning(fw.prefix) for br in bridges)


def test_duplicate_or_missing_jumps_are_repaired(fw: Firewall, bridges: list[str]) -> None:
    fw.apply(nets(bridges))
    chain = f"{fw.prefix}-FORWARD"
    sh("iptables", "-w", "-A", "FORWARD", "-j", chain)  # a stray second jump, e.g. from a crash
    assert len(jumps("filter", "FORWARD", chain)) == 2
    sh(
        "iptables",
        "-w",
        "-t",
        "nat",
        "-D",
        "POSTROUTING",
        *_spec("nat", "POSTROUTING", f"{fw.prefix}-POSTROUTING"),
    )
    assert jumps("nat", "POSTROUTING", f"{fw.prefix}-POSTROUTING") == []
    fw.apply(nets(bridges))
    assert len(jumps("filter", "FORWARD", chain)) == 1
    assert len(jumps("nat", "POSTROUTING", f"{fw.prefix}-POSTROUTING")) == 1


def _spec(table: str, builtin: str, chain: str) -> list[str]:
    [line] = jumps(table, builtin, chain)
    return shlex.split(line)[2:]


def test_teardown_removes_chains_and_jumps_and_nothing_else(
    fw: Firewall, bridges: list[str], tag: str
) -> None:
    policies = [line for t in ("filter", "nat") for line in table_lines(t) if line.startswith("-P ")]
    other = Firewall(f"SKIFF-T{tag}X")  # a neighbour whose names start like ours
    try:
        other.apply([nets(bridges)[0]])
        fw.apply(nets(bridges))
        before_other = mentioning(other.prefix)
        fw.teardown()
        assert mentioning(fw.prefix) == []
        assert mentioning(other.prefix) == before_other
        fw.teardown()  # nothing left: no error
    finally:
        other.teardown()
    assert mentioning(other.prefix) == []
    assert [line for t in ("filter", "nat") for line in table_lines(t) if line.startswith("-P ")] == policies


def test_invalid_input_is_rejected_before_touching_the_kernel(fw: Firewall, bridges: list[str]) -> None:
    for bad in (
        [BridgeRules("bad name", "10.236.0.0/24", False)],
        [BridgeRules("waytoolongbridgename", "10.236.0.0/24", False)],
        [BridgeRules(bridges[0], "10.236.0.0/33", False)],
        [BridgeRules(bridges[0], "fd00:236::/64", False)],
        [BridgeRules(bridges[0], "10.236.0.0/24", False), BridgeRules(bridges[0], "10.236.1.0/24", False)],
    ):
        with pytest.raises(InvalidArgument):
            fw.apply(bad)
    assert mentioning(fw.prefix) == []
    with pytest.raises(InvalidArgument):
        Firewall("SKIFF-A-PREFIX-FAR-TOO-LONG")
    with pytest.raises(InvalidArgument):
        Firewall("SKIFF T")


# --------------------------------------------------------------------------- traffic


@dataclass
class Lab:
    """Namespaces on skiff test bridges plus one 'outside' namespace behind a plain veth."""

    tag: str
    base: Path
    octet: int
    ns: dict[str, Path] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)
    bridges: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)

    def subnet(self, k: int) -> str:
        return f"10.236.{self.octet + k}"

    def bridge(self, name: str, k: int) -> str:
        br = f"skt{self.tag}{name}"
        sh("ip", "link", "add", br, "type", "bridge")
        self.links.append(br)
        sh("ip", "addr", "add", f"{self.subnet(k)}.1/24", "dev", br)
        sh("ip", "link", "set", br, "up")
        self.bridges[name] = br
        return br

    def namespace(self, name: str, k: int, host: int, bridge: str | None) -> None:
        path = self.base / name
        netns.create(path)
        self.ns[name] = path
        outer, inner = f"skt{self.tag}v{name}", f"skt{self.tag}p{name}"
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        self.links.append(outer)
        sh("ip", "link", "set", inner, "netns", str(path))
        if bridge:
            sh("ip", "link", "set", outer, "master", bridge)
        else:  # the outside: a routed veth with the host's address on it
            sh("ip", "addr", "add", f"{self.subnet(k)}.1/24", "dev", outer)
        sh("ip", "link", "set", outer, "up")
        ip = f"{self.subnet(k)}.{host}"
        self.ips[name] = ip
        inside = ["nsenter", f"--net={path}", "ip"]
        sh(*inside, "addr", "add", f"{ip}/24", "dev", inner)
        sh(*inside, "link", "set", inner, "up")
        sh(*inside, "route", "add", "default", "via", f"{self.subnet(k)}.1")

    def close(self) -> None:
        for path in self.ns.values():
            netns.remove(path)
        for link in reversed(self.links):
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            self.base.rmdir()


class EchoPeer:
    """A TCP server inside a namespace that answers every connection with the peer's address."""

    def __init__(self, path: Path, port: int = 8080) -> None:
        def make() -> socket.socket:
            s = socket.socket()
            s.bind(("0.0.0.0", port))
            s.listen(16)
            return s

        self.sock = netns.run_in_netns(path, make)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.sendall(f"{peer[0]}\n".encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def connect(path: Path, ip: str, port: int = 8080) -> str | None:
    """From inside ``path``: the address the server saw us as, or None if nothing got through."""

    def attempt() -> str | None:
        try:
            with socket.create_connection((ip, port), timeout=1.0) as s:
                return s.makefile().readline().strip() or None
        except OSError:
            return None

    return netns.run_in_netns(path, attempt)


@pytest.fixture
def lab(tag: str) -> Iterator[Lab]:
    lab = Lab(tag=tag, base=Path(f"/run/skiff-test-fw-{tag}"), octet=4 * secrets.randbelow(60) + 8)
    try:
        a, b, i = lab.bridge("a", 0), lab.bridge("b", 1), lab.bridge("i", 2)
        lab.namespace("a1", 0, 2, a)
        lab.namespace("a2", 0, 3, a)
        lab.namespace("b1", 1, 2, b)
        lab.namespace("i1", 2, 2, i)
        lab.namespace("i2", 2, 3, i)
        lab.namespace("out", 3, 2, None)
        yield lab
    finally:
        lab.close()


@contextlib.contextmanager
def servers(lab: Lab, names: list[str]) -> Iterator[None]:
    made = []
    try:
        for n in names:
            made.append(EchoPeer(lab.ns[n]))
        yield
    finally:
        for s in made:
            s.close()


@contextlib.contextmanager
def published(prefix: str, host_ip: str, port: int, target: str) -> Iterator[None]:
    """A DNAT like portmap's, in a test chain of our own: host_ip:port -> target:8080."""
    chain = f"{prefix}-TDNAT"
    sh("iptables", "-w", "-t", "nat", "-N", chain)
    rule = [
        "-p",
        "tcp",
        "-d",
        host_ip,
        "--dport",
        str(port),
        "-j",
        "DNAT",
        "--to-destination",
        f"{target}:8080",
    ]
    try:
        sh("iptables", "-w", "-t", "nat", "-A", chain, *rule)
        sh("iptables", "-w", "-t", "nat", "-I", "PREROUTING", "1", "-j", chain)
        yield
    finally:
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", "PREROUTING", "-j", chain], capture_output=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-F", chain], capture_output=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-X", chain], capture_output=True)


def test_traffic_isolation_internal_and_masquerade(fw: Firewall, lab: Lab) -> None:
    ns, ip = lab.ns, lab.ips

    def reach(src: str, dst: str) -> str | None:
        return connect(ns[src], ip[dst])

    forward_accepts = "-P FORWARD ACCEPT" in table_lines("filter")
    with servers(lab, ["a1", "a2", "b1", "i1", "i2", "out"]):
        if forward_accepts:  # without skiff's rules the host forwards between the bridges
            assert reach("a1", "b1") == ip["a1"]
            assert reach("i1", "out") == ip["i1"]

        fw.apply(
            [
                BridgeRules(lab.bridges["a"], f"{lab.subnet(0)}.0/24", internal=False),
                BridgeRules(lab.bridges["b"], f"{lab.subnet(1)}.0/24", internal=False),
                BridgeRules(lab.bridges["i"], f"{lab.subnet(2)}.0/24", internal=True),
            ]
        )
        assert reach("a1", "a2") == ip["a1"]  # same network: direct, not masqueraded
        assert reach("i1", "i2") == ip["i1"]  # same internal network
        assert reach("a1", "b1") is None  # isolation, both ways
        assert reach("b1", "a1") is None
        assert reach("a1", "i1") is None
        assert reach("i1", "a1") is None
        assert reach("i1", "out") is None  # internal: nothing leaves
        assert reach("out", "i1") is None  # and nothing enters
        assert reach("a1", "out") == f"{lab.subnet(3)}.1"  # outbound, masqueraded to the host's address

        # a published port (DNAT) of b1 on the host's outside address is reachable from network a,
        # but not from the internal network
        host_ip = f"{lab.subnet(3)}.1"
        with published(fw.prefix, host_ip, 9090, ip["b1"]):
            assert connect(ns["a1"], host_ip, 9090) == f"{lab.subnet(1)}.1"
            assert connect(ns["i1"], host_ip, 9090) is None

        # b is no longer a skiff network: its rules are gone, so a reaches it again
        fw.apply([BridgeRules(lab.bridges["a"], f"{lab.subnet(0)}.0/24", internal=False)])
        if forward_accepts:
            assert reach("a1", "b1") is not None
