"""skiff lab: a real multi-host cluster on one machine.

Each host of a lab is a network namespace ``skiff-lab-<name>-nK`` with one veth whose peer
(``sklv<name>n<K>``) is a port of the host bridge ``skflab-<name>``; the lab's subnet is
``10.220.<lab index>.0/24`` (the host side is ``.1``, node K is ``.K+1``). There is no
default route in a node: its traffic reaches the other nodes and the host, nothing else.

Every node runs its own skiffd, entered into the namespace with ``nsenter --net`` (not ``ip
netns exec``: that remounts /sys and hides the cgroup tree) and into a UTS namespace of its
own whose hostname is ``nK`` (the cluster takes node names from the OS). Its state is
private: root ``/var/lib/skiff-lab/<name>/nK``, run dir and socket ``/run/skiff-lab/<name>/nK``,
default bridge ``skl<K>`` with ``10.221.K.1/24``, user networks from a /20 of 10.222.0.0/15,
iptables chains ``SKL<K>-*`` (inside the node's namespace) and cgroup parent
``skiff-lab-<name>-nK``. Then n1 runs ``cluster init`` and the others join (managers with
the manager token). With ``etcd``, the managers run one etcd member each on their lab
addresses and n1 initialises the cluster on that store.

``kill`` is a power cut: SIGKILL for every process of the node (its skiffd, conmon, runc and
containers: whatever is in its network namespace, its cgroup parent or names its state
directories) and its link goes down. ``restart`` is the reboot after it: mounts and the run
dir are gone, the network namespace is made afresh, and skiffd starts on the old root (and
resumes its cluster role). ``partition`` takes the node's link down and leaves it running.

The lab's state is ``/run/skiff-lab/<name>/lab.json``; ``down`` also finds what a half-built
lab left by its names, so it works without that file and twice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import Conflict, InvalidArgument, NotFound, RuntimeFailure, SkiffError

if TYPE_CHECKING:
    from skiff.client import Client

RUN_BASE = Path("/run/skiff-lab")
ROOT_BASE = Path("/var/lib/skiff-lab")
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
LAB_NET = ipaddress.ip_network("10.220.0.0/16")
POOL_NET = ipaddress.ip_network("10.222.0.0/15")
POOL_PREFIX = 20
MAX_NODES = 2 ** (POOL_PREFIX - POOL_NET.prefixlen)  # one /20 address pool per node: 32
CLUSTER_PORT = 2377
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
DEFAULT_NAME = "lab"
DEFAULT_IMAGES = ("busybox",)
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
BIN = Path(sys.executable).parent

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def validate_name(name: str) -> str:
    """1-8 of ``[a-z0-9]``, starting with a letter: the bridge ``skflab-<name>`` fits IFNAMSIZ."""
    if not _NAME.match(name):
        raise InvalidArgument(
            f"invalid lab name {name!r}: 1 to 8 lower-case letters or digits, starting with a letter"
        )
    return name


def bridge_name(name: str) -> str:
    return f"skflab-{name}"


def netns_name(name: str, k: int) -> str:
    return f"skiff-lab-{name}-n{k}"


def veth_name(name: str, k: int) -> str:
    """Host side of node K's link (the digits after the last ``n`` are K, so names never clash)."""
    return f"sklv{name}n{k}"


def cgroup_parent(name: str, k: int) -> str:
    return f"skiff-lab-{name}-n{k}"


def context_name(name: str) -> str:
    return f"lab-{name}"


def lab_subnet(index: int) -> ipaddress.IPv4Network:
    if not 1 <= index <= 254:
        raise InvalidArgument(f"lab index {index} out of range 1..254")
    return ipaddress.IPv4Network(f"10.220.{index}.0/24")


def node_pool(k: int) -> str:
    """Node K's default address pool: the K-th /20 of 10.222.0.0/15."""
    if not 1 <= k <= MAX_NODES:
        raise InvalidArgument(f"node index {k} out of range 1..{MAX_NODES}")
    return str(list(POOL_NET.subnets(new_prefix=POOL_PREFIX))[k - 1])


def node_mac(index: int, k: int) -> str:
    """A locally administered MAC for node K of lab subnet ``index`` (``02:73:6b`` is "sk")."""
    return f"02:73:6b:{index:02x}:{k:02x}:01"


@dataclass
class LabNode:
    """One host of a lab: its names, addresses, state directories and processes."""

    name: str  # nK
    index: int  # K
    manager: bool
    netns: str
    veth: str
    address: str  # 10.220.X.(K+1)
    root: str
    run_dir: str
    socket: str
    log: str
    bip: str
    pool: str
    chain_prefix: str
    cgroup_parent: str
    bridge: str  # skiffd's default bridge inside the node's namespace
    pid: int | None = None
    etcd_pid: int | None = None
    state: str = "new"  # new | running | killed | partitioned
    node_id: str = ""

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def cluster_addr(self) -> str:
        return f"{self.address}:{CLUSTER_PORT}"

    @property
    def etcd_dir(self) -> str:
        return f"{self.root}/etcd"

    @property
    def etcd_log(self) -> str:
        return f"{self.run_dir}.etcd.log"


@dataclass
class Lab:
    name: str
    index: int
    managers: int
    etcd: bool
    nodes: list[LabNode]
    images: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGES))
    previous_context: str | None = None
    cluster_id: str = ""
    created: float = 0.0

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return lab_subnet(self.index)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def bridge(self) -> str:
        return bridge_name(self.name)

    @property
    def run_dir(self) -> Path:
        return RUN_BASE / self.name

    @property
    def root(self) -> Path:
        return ROOT_BASE / self.name

    @property
    def state_file(self) -> Path:
        return self.run_dir / "lab.json"

    @property
    def store_url(self) -> str | None:
        if not self.etcd:
            return None
        return "etcd://" + ",".join(f"{n.address}:{ETCD_CLIENT_PORT}" for n in self.nodes if n.manager)

    def node(self, ref: str) -> LabNode:
        """``n3`` or ``3``."""
        want = ref[1:] if ref.startswith("n") else ref
        for node in self.nodes:
            if str(node.index) == want:
                return node
        raise NotFound(
            f"lab {self.name} has no node {ref!r} (nodes: {', '.join(n.name for n in self.nodes)})"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lab:
        nodes = [LabNode(**n) for n in data.pop("nodes", [])]
        return cls(nodes=nodes, **data)

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lab-", dir=self.run_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, self.state_file)


def plan_node(name: str, index: int, k: int, manager: bool) -> LabNode:
    """Names, addresses and directories of node K of lab ``name`` (lab subnet ``index``)."""
    subnet = lab_subnet(index)
    if not 1 <= k <= MAX_NODES:
        raise InvalidArgument(f"a lab has 1 to {MAX_NODES} nodes")
    run_dir = RUN_BASE / name / f"n{k}"
    return LabNode(
        name=f"n{k}",
        index=k,
        manager=manager,
        netns=netns_name(name, k),
        veth=veth_name(name, k),
        address=str(subnet.network_address + k + 1),
        root=str(ROOT_BASE / name / f"n{k}"),
        run_dir=str(run_dir),
        socket=str(run_dir / "skiff.sock"),
        log=f"{run_dir}.log",
        bip=f"10.221.{k}.1/24",
        pool=node_pool(k),
        chain_prefix=f"SKL{k}",
        cgroup_parent=cgroup_parent(name, k),
        bridge=f"skl{k}",
    )


def plan(name: str, nodes: int, managers: int = 1, etcd: bool = False, *, index: int = 1) -> Lab:
    """The whole address and naming plan of a lab (no side effects)."""
    validate_name(name)
    if not 1 <= nodes <= MAX_NODES:
        raise InvalidArgument(f"--nodes must be 1 to {MAX_NODES}")
    if not 1 <= managers <= nodes:
        raise InvalidArgument("--managers must be 1 to --nodes")
    if managers > 1 and not etcd:
        raise InvalidArgument("several managers need a shared store: add --etcd")
    return Lab(
        name=name,
        index=index,
        managers=managers,
        etcd=etcd,
        nodes=[plan_node(name, index, k, k <= managers) for k in range(1, nodes + 1)],
    )


def load(name: str) -> Lab:
    path = RUN_BASE / validate_name(name) / "lab.json"
    try:
        return Lab.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise NotFound(f"no lab named {name!r} (see skiff lab ls)") from None


def labs() -> list[Lab]:
    out = []
    if RUN_BASE.is_dir():
        for entry in sorted(RUN_BASE.iterdir()):
            with contextlib.suppress(SkiffError, OSError, ValueError, TypeError):
                out.append(load(entry.name))
    return out


@contextlib.contextmanager
def _labs_lock() -> Iterator[None]:
    import fcntl

    RUN_BASE.mkdir(parents=True, exist_ok=True)
    with open(RUN_BASE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def free_index(used: Sequence[int]) -> int:
    """The lowest lab subnet index not used by another lab nor routed on the host already."""
    taken = set(used)
    routed = _host_networks()
    for index in range(1, 255):
        if index not in taken and not any(lab_subnet(index).overlaps(net) for net in routed):
            return index
    raise Conflict("no free lab subnet in 10.220.0.0/16")


def _host_networks() -> list[ipaddress.IPv4Network]:
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr(family=2):
            with contextlib.suppress(ValueError, TypeError):
                out.append(ipaddress.IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}").network)
    return out


def resolve_lab(name: str | None, current_context: str | None = None) -> Lab:
    """The lab a command means: ``name``, else the current context's lab, else the only one."""
    if name:
        return load(name)
    if current_context and current_context.startswith("lab-"):
        with contextlib.suppress(NotFound, InvalidArgument):
            return load(current_context[len("lab-") :])
    existing = labs()
    if len(existing) == 1:
        return existing[0]
    if not existing:
        raise NotFound("no lab is up (skiff lab up --nodes 3)")
    raise InvalidArgument(f"several labs are up ({', '.join(lab.name for lab in existing)}): use --name")


# --- kernel objects -------------------------------------------------------------------------


def _ipr(netns: str | None = None) -> Any:
    from pyroute2 import IPRoute

    return IPRoute(netns=netns) if netns else IPRoute()


def _link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _make_bridge(lab: Lab) -> None:
    with _ipr() as ipr:
        if _link_index(ipr, lab.bridge) is None:
            ipr.link("add", ifname=lab.bridge, kind="bridge")
        idx = _link_index(ipr, lab.bridge)
        with contextlib.suppress(Exception):  # already there on a retry
            ipr.addr("add", index=idx, address=lab.gateway, prefixlen=lab.subnet.prefixlen)
        ipr.link("set", index=idx, state="up")
    # With br_netfilter, bridged frames cross the host's FORWARD chain (docker sets it to DROP).
    rule = _forward_rule(lab.name)
    if subprocess.run(["iptables", "-w", "-C", *rule], capture_output=True).returncode != 0:
        subprocess.run(["iptables", "-w", "-I", *rule], capture_output=True, check=False)


def _forward_rule(name: str) -> list[str]:
    bridge = bridge_name(name)
    return [
        "FORWARD",
        "-i",
        bridge,
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        f"skiff-lab-{name}",
        "-j",
        "ACCEPT",
    ]


def _make_node_net(lab: Lab, node: LabNode) -> None:
    """The node's namespace (lo up) and its link to the lab bridge, address on eth0."""
    from pyroute2 import netns

    if node.netns not in netns.listnetns():
        netns.create(node.netns)
    peer = f"sklp{lab.name}n{node.index}"
    with _ipr() as ipr:
        if _link_index(ipr, node.veth) is None:
            ipr.link("add", ifname=node.veth, kind="veth", peer={"ifname": peer})
        veth = _link_index(ipr, node.veth)
        ipr.link("set", index=veth, master=_link_index(ipr, lab.bridge))
        ipr.link("set", index=veth, state="up")
        peer_idx = _link_index(ipr, peer)
        if peer_idx is not None:
            ipr.link("set", index=peer_idx, net_ns_fd=node.netns)
    with _ipr(node.netns) as ns:
        idx = _link_index(ns, peer)
        if idx is not None:
            # The node's MAC is fixed, as a real host's: after a restart its neighbours' ARP
            # entries still hold.
            ns.link("set", index=idx, ifname="eth0", address=node_mac(lab.index, node.index))
        idx = _link_index(ns, "eth0")
        with contextlib.suppress(Exception):
            ns.addr("add", index=idx, address=node.address, prefixlen=lab.subnet.prefixlen)
        ns.link("set", index=idx, state="up")
        ns.link("set", index=_link_index(ns, "lo"), state="up")


def _set_link(node: LabNode, up: bool) -> None:
    with _ipr() as ipr:
        idx = _link_index(ipr, node.veth)
        if idx is not None:
            ipr.link("set", index=idx, state="up" if up else "down")


def _remove_node_net(node: LabNode) -> None:
    from pyroute2 import netns

    with _ipr() as ipr:
        idx = _link_index(ipr, node.veth)
        if idx is not None:
            with contextlib.suppress(Exception):
                ipr.link("del", index=idx)
    if node.netns in netns.listnetns():
        with contextlib.suppress(Exception):
            netns.remove(node.netns)


def _remove_bridge(name: str) -> None:
    rule = _forward_rule(name)
    while subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
        pass
    with _ipr() as ipr:
        idx = _link_index(ipr, bridge_name(name))
        if idx is not None:
            with contextlib.suppress(Exception):
                ipr.link("del", index=idx)


# --- processes ------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _netns_inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def node_pids(node: LabNode) -> set[int]:
    """Every process of the node: in its network namespace, in its cgroup parent, or naming its dirs."""
    me = os.getpid()
    pids: set[int] = set()
    inode = _netns_inode(NETNS_DIR / node.netns)
    markers = (node.run_dir + "/", node.root + "/", f"--root {node.root} ")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError):
            if inode is not None and os.stat(entry / "ns" / "net").st_ino == inode:
                pids.add(pid)
                continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") + " "
            if any(m in cmdline for m in markers):
                pids.add(pid)
    for procs in CGROUP_ROOT.glob(f"**/{node.cgroup_parent}/**/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in procs.read_text().split())
    for procs in CGROUP_ROOT.glob(f"**/{node.cgroup_parent}/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in procs.read_text().split())
    pids.discard(me)
    return {p for p in pids if _alive(p)}


def _kill_node_processes(node: LabNode, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        # skiffd and etcd are found by their namespace and command line: a pid in lab.json
        # alone could be another process's by now.
        pids = node_pids(node)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"{node.name}: processes {sorted(pids)} survived SIGKILL")
        time.sleep(0.05)


def _unmount_under(*dirs: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    prefixes = tuple(d.rstrip("/") + "/" for d in dirs)
    for point in sorted((p for p in points if p.startswith(prefixes) or p in dirs), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_cgroup(parent: str) -> None:
    for top in [p for p in CGROUP_ROOT.glob(f"**/{parent}") if p.is_dir()]:
        for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _reboot_cleanup(node: LabNode) -> None:
    """What a reboot clears: mounts, the run dir (a tmpfs on a real host), cgroups, the netns."""
    _unmount_under(node.run_dir, node.root)
    shutil.rmtree(node.run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(node.log).unlink()
    _remove_cgroup(node.cgroup_parent)
    _remove_node_net(node)


def _in_node(node: LabNode, argv: list[str]) -> list[str]:
    """``argv`` run in the node's network namespace and in a UTS namespace named after it."""
    return [
        "nsenter",
        f"--net={NETNS_DIR / node.netns}",
        "--",
        "unshare",
        "--uts",
        "--",
        "sh",
        "-c",
        'hostname "$0" && exec "$@"',
        node.name,
        *argv,
    ]


def skiffd_argv(node: LabNode) -> list[str]:
    return [
        str(BIN / "skiffd"),
        "--root",
        node.root,
        "--run-dir",
        node.run_dir,
        "-H",
        node.host,
        "--bip",
        node.bip,
        "--default-address-pool",
        node.pool,
        "--iptables-chain-prefix",
        node.chain_prefix,
        "--cgroup-parent",
        node.cgroup_parent,
        "--bridge",
        node.bridge,
    ]


def etcd_argv(lab: Lab, node: LabNode, *, new: bool) -> list[str]:
    members = ",".join(f"{n.name}=http://{n.address}:{ETCD_PEER_PORT}" for n in lab.nodes if n.manager)
    return [
        shutil.which("etcd") or "/usr/bin/etcd",
        f"--name={node.name}",
        f"--data-dir={node.etcd_dir}",
        f"--listen-client-urls=http://{node.address}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--advertise-client-urls=http://{node.address}:{ETCD_CLIENT_PORT}",
        f"--listen-peer-urls=http://{node.address}:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://{node.address}:{ETCD_PEER_PORT}",
        f"--initial-cluster={members}",
        f"--initial-cluster-token=skiff-lab-{lab.name}",
        f"--initial-cluster-state={'new' if new else 'existing'}",
        "--heartbeat-interval=50",
        "--election-timeout=500",
        "--log-outputs=stderr",
    ]


def _spawn(argv: list[str], log: str) -> subprocess.Popen[bytes]:
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _log_tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start_etcd(lab: Lab, node: LabNode, *, new: bool) -> subprocess.Popen[bytes]:
    Path(node.root).mkdir(parents=True, exist_ok=True)
    proc = _spawn(_in_node(node, etcd_argv(lab, node, new=new)), node.etcd_log)
    node.etcd_pid = proc.pid
    return proc


def _await_etcd(node: LabNode, proc: subprocess.Popen[bytes] | None, timeout: float = 60) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeFailure(
                f"{node.name}: etcd exited with {proc.returncode}:\n{_log_tail(node.etcd_log)}"
            )
        url = f"http://{node.address}:{ETCD_CLIENT_PORT}/health"
        with contextlib.suppress(OSError, ValueError), opener.open(url, timeout=2) as resp:
            if json.loads(resp.read()).get("health") in ("true", True):
                return
        time.sleep(0.2)
    raise RuntimeFailure(f"{node.name}: etcd not healthy within {timeout:.0f} s:\n{_log_tail(node.etcd_log)}")


def _start_skiffd(node: LabNode) -> subprocess.Popen[bytes]:
    Path(node.run_dir).mkdir(parents=True, exist_ok=True)
    Path(node.root).mkdir(parents=True, exist_ok=True)
    proc = _spawn(_in_node(node, skiffd_argv(node)), node.log)
    node.pid = proc.pid
    return proc


def _api(node: LabNode, timeout: int = 60) -> Any:
    import docker

    return docker.APIClient(base_url=node.host, version="1.41", timeout=timeout)


def _await_skiffd(node: LabNode, proc: subprocess.Popen[bytes] | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeFailure(f"{node.name}: skiffd exited with {proc.returncode}:\n{_log_tail(node.log)}")
        with contextlib.suppress(Exception):
            if _api(node, 5).ping():
                return
        time.sleep(0.1)
    raise RuntimeFailure(f"{node.name}: skiffd did not answer within {timeout:.0f} s:\n{_log_tail(node.log)}")


# --- cluster --------------------------------------------------------------------------------


def _cluster_client(node: LabNode) -> Client:
    from skiff.client import connect

    return connect(node.host)


def _form_cluster(lab: Lab, progress: Progress) -> None:
    first = lab.nodes[0]
    listen = f"0.0.0.0:{CLUSTER_PORT}"
    progress(f"{first.name}: cluster init" + (f" on {lab.store_url}" if lab.store_url else ""))
    answer = _cluster_client(first).cluster_init(
        advertise_addr=first.cluster_addr, listen_addr=listen, store=lab.store_url
    )
    lab.cluster_id = str(answer.get("ClusterID", ""))
    first.node_id = str(answer.get("NodeID", ""))
    tokens = answer.get("JoinTokens") or {}
    lab.save()
    for node in lab.nodes[1:]:
        role = "manager" if node.manager else "worker"
        progress(f"{node.name}: cluster join as {role}")
        joined = _cluster_client(node).cluster_join(
            [first.cluster_addr],
            str(tokens.get("Manager" if node.manager else "Worker", "")),
            advertise_addr=node.cluster_addr,
            listen_addr=listen,
        )
        node.node_id = str(joined.get("NodeID", ""))
        lab.save()


def await_ready(lab: Lab, count: int | None = None, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until the manager lists ``count`` (default: all) nodes as ready."""
    want = len(lab.nodes) if count is None else count
    deadline = time.monotonic() + timeout
    nodes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(SkiffError):
            nodes = _cluster_client(lab.nodes[0]).nodes()
            if sum(1 for n in nodes if str(n.get("Status", "")).lower() == "ready") >= want:
                return nodes
        time.sleep(0.2)
    raise RuntimeFailure(f"lab {lab.name}: {want} ready nodes expected within {timeout:.0f} s, have {nodes}")


# --- images ---------------------------------------------------------------------------------


def _export_image(source: str, image: str, dest: Path) -> bool:
    """Save ``image`` from the daemon at ``source`` into ``dest``; False when it has no such image."""
    import docker

    try:
        api = docker.APIClient(base_url=source, version="1.41", timeout=120)
        api.inspect_image(image)
        with dest.open("wb") as f:
            for chunk in api.get_image(image):
                f.write(chunk)
        return True
    except Exception:
        return False


def _load_image(node: LabNode, tar: Path) -> None:
    api = _api(node, 300)
    with tar.open("rb") as f:
        for msg in api.load_image(f):
            if isinstance(msg, dict) and msg.get("error"):
                raise RuntimeFailure(f"{node.name}: loading {tar.name}: {msg['error']}")


def _bootstrap_busybox(node: LabNode) -> None:
    api = _api(node, 300)
    resp = api._post(api._url("/skiff/images/bootstrap"), params={"name": "busybox"}, stream=True)
    resp.raise_for_status()
    for line in resp.iter_lines():
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeFailure(f"{node.name}: busybox bootstrap: {msg['error']}")


def _copy_images(lab: Lab, nodes: Sequence[LabNode], source: str | None, progress: Progress) -> None:
    work = lab.run_dir / "images"
    work.mkdir(parents=True, exist_ok=True)
    try:
        for i, image in enumerate(lab.images):
            tar = work / f"{i}.tar"
            if source and _export_image(source, image, tar):
                for node in nodes:
                    progress(f"{node.name}: loading {image}")
                    _load_image(node, tar)
            elif image in ("busybox", "busybox:latest"):
                for node in nodes:
                    progress(f"{node.name}: busybox from the host's busybox-static")
                    _bootstrap_busybox(node)
            else:
                raise NotFound(
                    f"image {image!r} not found on {source or 'the current daemon'}: pull it there first"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- operations -----------------------------------------------------------------------------


def up(
    name: str = DEFAULT_NAME,
    nodes: int = 3,
    managers: int = 1,
    etcd: bool = False,
    images: Sequence[str] = DEFAULT_IMAGES,
    *,
    source_host: str | None = None,
    cluster: bool = True,
    use_context: bool = True,
    progress: Progress = _quiet,
) -> Lab:
    """Build lab ``name``; on any failure everything made so far is removed again.

    ``cluster=False`` leaves the hosts without a cluster; ``use_context`` creates context
    ``lab-<name>`` (n1's socket) and makes it current, remembering the one it replaces.
    """
    validate_name(name)
    plan(name, nodes, managers, etcd)  # the counts, before anything is made
    if etcd and not shutil.which("etcd"):
        raise NotFound("--etcd needs etcd (Debian package etcd-server)")
    with _labs_lock():  # two `lab up` at once: distinct subnets, one lab per name
        # A root without a run dir is a lab from before a reboot: its nodes would resume
        # their old cluster, so it is removed first (skiff lab down), not reused.
        if (
            (RUN_BASE / name).exists()
            or (ROOT_BASE / name).exists()
            or any(NETNS_DIR.glob(f"skiff-lab-{name}-n*"))
        ):
            raise Conflict(f"lab {name!r} exists already (skiff lab down {name})")
        lab = plan(name, nodes, managers, etcd, index=free_index([lab.index for lab in labs()]))
        lab.images = list(images) or list(DEFAULT_IMAGES)
        lab.created = time.time()
        lab.save()
    try:
        progress(f"bridge {lab.bridge} {lab.gateway}/{lab.subnet.prefixlen}")
        _make_bridge(lab)
        for node in lab.nodes:
            progress(f"{node.name}: netns {node.netns}, {node.address} on {node.veth}")
            _make_node_net(lab, node)
        _boot(lab, lab.nodes, new_etcd=True, progress=progress)
        _copy_images(lab, lab.nodes, source_host, progress)
        if cluster:
            _form_cluster(lab, progress)
            progress("waiting for every node to be ready")
            await_ready(lab)
        if use_context:
            _switch_context(lab)
            progress(f"context {context_name(name)} is current")
        return lab
    except BaseException:
        progress("failed: removing what was made")
        with contextlib.suppress(Exception):
            _teardown(name, lab)
        raise


def _boot(lab: Lab, nodes: Sequence[LabNode], *, new_etcd: bool, progress: Progress) -> None:
    """Start etcd members (managers, with --etcd) and skiffd on ``nodes``; wait for them."""
    etcds = []
    if lab.etcd:
        for node in nodes:
            if node.manager:
                progress(f"{node.name}: etcd member on {node.address}:{ETCD_CLIENT_PORT}")
                etcds.append((node, _start_etcd(lab, node, new=new_etcd)))
                lab.save()
    procs = []
    for node in nodes:
        progress(f"{node.name}: skiffd (hostname {node.name}, socket {node.socket})")
        procs.append((node, _start_skiffd(node)))
        node.state = "running"
        lab.save()
    for node, etcd_proc in etcds:
        _await_etcd(node, etcd_proc)
    for node, proc in procs:
        _await_skiffd(node, proc)
        progress(f"{node.name}: skiffd answers")


def _teardown(name: str, lab: Lab | None) -> None:
    """Remove everything of lab ``name`` (from ``lab`` and by name, for what it does not know)."""
    nodes = {n.index: n for n in lab.nodes} if lab else {}
    index = lab.index if lab else 1
    pattern = re.compile(rf"^skiff-lab-{re.escape(name)}-n(\d+)$")
    if NETNS_DIR.is_dir():
        for entry in NETNS_DIR.iterdir():
            m = pattern.match(entry.name)
            if m and int(m.group(1)) not in nodes and 1 <= int(m.group(1)) <= MAX_NODES:
                nodes[int(m.group(1))] = plan_node(name, index, int(m.group(1)), False)
    for top in CGROUP_ROOT.glob(f"**/skiff-lab-{name}-n*"):
        m = re.match(rf"^skiff-lab-{re.escape(name)}-n(\d+)$", top.name)
        if m and int(m.group(1)) not in nodes and 1 <= int(m.group(1)) <= MAX_NODES:
            nodes[int(m.group(1))] = plan_node(name, index, int(m.group(1)), False)
    for node in nodes.values():
        _kill_node_processes(node)
    for node in nodes.values():
        _unmount_under(node.run_dir, node.root)
        _remove_cgroup(node.cgroup_parent)
        _remove_node_net(node)
    _remove_bridge(name)
    _unmount_under(str(RUN_BASE / name), str(ROOT_BASE / name))
    shutil.rmtree(RUN_BASE / name, ignore_errors=True)
    shutil.rmtree(ROOT_BASE / name, ignore_errors=True)
    with contextlib.suppress(OSError):  # the last lab: no trace of skiff lab is left
        if [p.name for p in RUN_BASE.iterdir()] == [".lock"]:
            (RUN_BASE / ".lock").unlink()
        RUN_BASE.rmdir()
    with contextlib.suppress(OSError):
        ROOT_BASE.rmdir()


def down(name: str, progress: Progress = _quiet) -> Lab | None:
    """Remove lab ``name`` entirely (idempotent); returns what lab.json said, if anything."""
    validate_name(name)
    lab = None
    with contextlib.suppress(NotFound, OSError, ValueError, TypeError):
        lab = load(name)
    progress(f"removing lab {name}")
    _teardown(name, lab)
    restored = _restore_context(name, lab.previous_context if lab else None)
    if restored:
        progress(f"context {restored} is current again")
    return lab


def _switch_context(lab: Lab) -> None:
    from skiff.client.contexts import ContextStore

    store = ContextStore()
    first = lab.nodes[0]
    store.create(
        context_name(lab.name),
        first.host,
        f"skiff lab {lab.name}: {len(lab.nodes)} nodes, manager {first.name}",
        replace=True,
    )
    previous = store.use(context_name(lab.name))
    lab.previous_context = previous if previous != context_name(lab.name) else None
    lab.save()


def _restore_context(name: str, previous: str | None) -> str | None:
    """Switch back from ``lab-<name>`` (when current) and remove it; the context now current."""
    from skiff.client.contexts import DEFAULT, ContextStore

    store = ContextStore()
    ours = context_name(name)
    restored = None
    with contextlib.suppress(SkiffError):
        if store.current() == ours:
            names = {c.name for c in store.list()}
            restored = previous if previous and previous in names and previous != ours else DEFAULT
            store.use(restored)
        store.remove(ours)
    return restored


def kill(name: str, ref: str) -> LabNode:
    """Power cut: SIGKILL everything of the node, its link down."""
    lab = load(name)
    node = lab.node(ref)
    _set_link(node, up=False)
    _kill_node_processes(node)
    node.pid = None
    node.etcd_pid = None
    node.state = "killed"
    lab.save()
    retarget_context(lab)
    return node


def partition(name: str, ref: str, heal: bool = False) -> LabNode:
    """Cut (or with ``heal`` restore) the node's link; its processes keep running."""
    lab = load(name)
    node = lab.node(ref)
    if node.state == "killed":
        raise Conflict(f"{node.name} is killed: use skiff lab restart {node.name}")
    _set_link(node, up=heal)
    node.state = "running" if heal else "partitioned"
    lab.save()
    return node


def restart(name: str, ref: str, progress: Progress = _quiet) -> LabNode:
    """Boot a killed node again: a fresh run dir and namespace, the old root (and cluster role)."""
    lab = load(name)
    node = lab.node(ref)
    if node.state not in ("killed", "new"):
        raise Conflict(f"{node.name} is {node.state}: kill it first (skiff lab kill {node.name})")
    _kill_node_processes(node)
    _reboot_cleanup(node)
    _make_node_net(lab, node)
    _boot(lab, [node], new_etcd=False, progress=progress)
    retarget_context(lab)
    return node


def retarget_context(lab: Lab) -> str | None:
    """Point context ``lab-<name>`` at a running manager (n1 first); the host it now names.

    After ``lab kill n1`` the CLI keeps working through another manager, as a docker context
    listing several managers would. Nothing changes when no manager is running or the context
    is gone (``down``).
    """
    from skiff.client.contexts import ContextStore

    live = [n for n in lab.nodes if n.manager and n.state == "running"]
    if not live:
        return None
    store = ContextStore()
    try:
        ctx = store.get(context_name(lab.name))
    except SkiffError:
        return None
    if ctx.host != live[0].host:
        store.create(ctx.name, live[0].host, ctx.description, replace=True)
    return live[0].host


def add_node(name: str, *, source_host: str | None = None, progress: Progress = _quiet) -> LabNode:
    """One more worker: a new host joins the lab's cluster."""
    lab = load(name)
    k = max(n.index for n in lab.nodes) + 1
    node = plan_node(name, lab.index, k, False)
    lab.nodes.append(node)
    lab.save()
    _make_node_net(lab, node)
    _boot(lab, [node], new_etcd=False, progress=progress)
    _copy_images(lab, [node], source_host, progress)
    first = next(n for n in lab.nodes if n.state == "running" and n.manager)
    token = _cluster_client(first).cluster_join_token("worker")
    progress(f"{node.name}: cluster join as worker")
    joined = _cluster_client(node).cluster_join([first.cluster_addr], token, advertise_addr=node.cluster_addr)
    node.node_id = str(joined.get("NodeID", ""))
    lab.save()
    return node


def node_status(node: LabNode) -> str:
    """What the machine says now (a killed node's skiffd may also have died on its own)."""
    if node.state in ("killed", "new"):
        return node.state
    if node.pid is None or not _alive(node.pid):
        return "dead"
    return node.state


@contextlib.contextmanager
def running(
    name: str, nodes: int = 3, *, source_host: str | None = None, progress: Progress = _quiet, **kwargs: Any
) -> Iterator[Lab]:
    """A lab for the duration of a block (tests, the demo)."""
    lab = up(name, nodes, source_host=source_host, progress=progress, **kwargs)
    try:
        yield lab
    finally:
        down(name, progress)
