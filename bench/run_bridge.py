"""`run --rm busybox true` on the default bridge network: skiff vs docker vs podman vs bare runc + CNI.

All peers are measured interleaved in one invocation (each round runs every peer once, in a
rotated order). Client: the docker CLI with ``DOCKER_HOST`` for both skiffd and dockerd; podman
uses its own CLI. Every peer gets its own skbench-named bridge and a 10.21x subnet:

- skiffd: private root/run dir/socket/cgroup parent; its default ``bridge`` network configured
  through a private config file to bridge ``skbench-s0``, 10.218.0.1/24, iptables chains
  ``SKBENCH-*`` (masquerading and isolation rules, installed once at daemon start).
- dockerd: private dirs, ``--bridge=skbench-d0`` (a bridge the bench creates, 10.216.0.1/24),
  ``--iptables=false --ip-masq=false --ip-forward=false``: no firewall or NAT work, which
  favours Docker (skiff and podman set up masquerading).
- podman: private dirs, network ``skbench`` (10.217.0.0/24, bridge ``skbench-p0``, no DNS
  server), ``--network skbench``; its default network backend (netavark here) unless
  ``--podman-backend`` says otherwise.
- runc+CNI: the naive composition a daemon's work would be measured against, sequential: a
  network namespace (unshare + bind mount, lo up, in-process), CNI ADD of the bridge plugin with
  the configuration skiffd writes for its default network (``skiff.network.cni.bridge_conf``:
  isGateway, hairpin, no ipMasq, host-local IPAM) on bridge ``skbench-c0``, 10.219.0.0/24, a
  private dataDir; ``runc create``/``start``, wait for the exit (pidfd), ``runc delete``, CNI
  DEL, namespace removal. No client process. Its parts are reported as extra lines.

An extra line, ``skiff --network none`` (same skiffd, same rounds), gives what the network costs
skiff by difference, next to what it costs the baseline (its netns and CNI parts).

Before the measured rounds each peer runs ``ip -4 -o addr show eth0`` once, and the address
must be inside that peer's subnet: a peer that silently fell back to no network is refused.

    .venv/bin/python -m bench.run_bridge --runs 50
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from bench.common import (
    RUN_ID,
    Summary,
    brief,
    figure,
    interleaved_rounds,
    print_series,
    ratio,
    remove_cgroups,
    rounds_parser,
    summarize,
    timed_run,
    unmount_all_under,
    write_result,
)
from bench.peers import (
    Peer,
    claim_link_name,
    delete_link,
    delete_rule,
    docker_peer,
    guarded,
    iptables_rules,
    podman_network,
    podman_peer,
    rootfs_tar,
    skiff_peer,
)
from bench.rootfs import make_runc_bundle
from skiff.network.cni import BridgeNetwork, bridge_conf

RUN_ARGS = ("--rm", "busybox", "true")
SKIFF_NONE = "skiff --network none"  # an extra line: the same skiffd without a network
CHECK_ARGS = ("--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0")

DOCKER_CIDR = "10.216.0.1/24"  # address of skbench-d0, which makes docker's default subnet
PODMAN_NETWORK, PODMAN_SUBNET, PODMAN_BRIDGE = "skbench", "10.217.0.0/24", "skbench-p0"
SKIFF_SUBNET, SKIFF_BRIDGE = "10.218.0.0/24", "skbench-s0"
CNI_SUBNET, CNI_BRIDGE = "10.219.0.0/24", "skbench-c0"
SUBNETS = {
    "skiff": SKIFF_SUBNET,
    "docker": str(ipaddress.ip_interface(DOCKER_CIDR).network),
    "podman": PODMAN_SUBNET,
    "runc+CNI": CNI_SUBNET,
}
BRIDGES = ("skbench-d0", PODMAN_BRIDGE, SKIFF_BRIDGE, CNI_BRIDGE)
CNI_PLUGINS = Path("/usr/lib/cni")

SKIFF_CHAINS = "SKBENCH"  # the bench skiffd's iptables chains: SKBENCH-FORWARD, ...
# skiffd's config (daemon.json's names): default bridge, its address, the user-network pool
# (unused here, but kept off the demo skiffd's) and the iptables chain prefix.
SKIFF_SETTINGS: dict[str, object] = {
    "bridge": SKIFF_BRIDGE,
    "bip": "10.218.0.1/24",
    "default-address-pool": "10.218.128.0/17",
    "iptables-chain-prefix": SKIFF_CHAINS,
}


def skiff_settings() -> dict[str, object]:
    """Config for the bench's skiffd; raises when this skiffd has no bridge networking settings.

    Measuring it on its built-in defaults could collide with a demo skiffd's bridge and chains.
    """
    from skiff.daemon.config import DaemonConfig

    known = {f.name for f in fields(DaemonConfig)}
    missing = [k for k in SKIFF_SETTINGS if k.replace("-", "_") not in known]
    if missing:
        raise RuntimeError(f"skiffd's config has no {', '.join(missing)} setting: no bridge networking yet")
    return dict(SKIFF_SETTINGS)


def check_address(name: str, output: str) -> str:
    """The container's eth0 address from ``ip -4 -o addr``; it must be in the peer's subnet."""
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/\d+", output)
    if not found:
        raise RuntimeError(f"{name}: the container has no IPv4 address on eth0: {output.strip()!r}")
    address = found.group(1)
    if ipaddress.ip_address(address) not in ipaddress.ip_network(SUBNETS[name]):
        raise RuntimeError(f"{name}: container address {address} is not in {SUBNETS[name]}")
    return address


def check_peer(name: str, peer: Peer, flags: tuple[str, ...] = ()) -> str:
    """Run the address check once through the peer's CLI."""
    proc = subprocess.run(
        peer.run_argv(*flags, *CHECK_ARGS), env=peer.env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: address check failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return check_address(name, proc.stdout)


# ---- bare runc + CNI ADD/DEL ------------------------------------------------------------------


class RuncCni:
    """The baseline: namespace, CNI ADD, runc create/start/wait/delete, CNI DEL, namespace removal."""

    PARTS = ("netns create", "CNI ADD", "runc", "CNI DEL", "netns remove")

    def __init__(self, base: Path) -> None:
        self.base = base
        self.bundle = base / "bundle"
        self.state = base / "state"
        self.netns = base / "netns" / f"skbench-{RUN_ID}"
        self.cgroup = f"skiff-bench-cni-{RUN_ID}"
        # The very configuration skiffd gives the bridge plugin for its default network.
        self.config = bridge_conf(
            BridgeNetwork(
                cni_name=f"skbench-cni-{RUN_ID}",
                bridge=CNI_BRIDGE,
                subnet=CNI_SUBNET,
                gateway=str(ipaddress.ip_network(CNI_SUBNET)[1]),
            ),
            base / "ipam",
        )
        self.attached: str | None = None  # container id with a CNI ADD not yet undone
        self.parts: dict[str, list[float]] = {p: [] for p in self.PARTS}

    def prepare(self, args: list[str]) -> None:
        make_runc_bundle(self.bundle, rootfs_tar(), self.cgroup, args)
        path = self.bundle / "config.json"
        spec = json.loads(path.read_text())
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = str(self.netns)
        path.write_text(json.dumps(spec, indent=2))

    def cni(self, command: str, cid: str, prev: dict[str, Any] | None = None) -> dict[str, Any]:
        config = dict(self.config)
        if prev is not None:
            config["prevResult"] = prev
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": str(self.netns),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(CNI_PLUGINS),
        }
        proc = subprocess.run(
            [str(CNI_PLUGINS / "bridge")],
            input=json.dumps(config).encode(),
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"CNI {command} failed: {proc.stdout.decode()} {proc.stderr.decode()}".strip())
        out = proc.stdout.strip()
        return json.loads(out) if out else {}

    def runc(self, *args: str, **kw: Any) -> None:
        log = self.base / "runc.log"
        with log.open("ab") as err:
            proc = subprocess.run(
                ["runc", f"--root={self.state}", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,  # a file, not a pipe: the container inherits it and outlives `create`
                timeout=60,
                check=False,
                **kw,
            )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"runc {args[0]} failed ({proc.returncode}): {' '.join(tail)}")

    def container(self, cid: str) -> None:
        pidfile = self.base / "pid"
        pidfile.unlink(missing_ok=True)
        self.runc("create", f"--bundle={self.bundle}", f"--pid-file={pidfile}", cid)
        try:
            pidfd = os.pidfd_open(int(pidfile.read_text()))
            try:
                self.runc("start", cid)
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if not poller.poll(60_000):
                    raise RuntimeError(f"runc container {cid} did not exit within 60 s")
            finally:
                os.close(pidfd)
        finally:
            self.runc("delete", "--force", cid)

    def run(self, i: int) -> float:
        """One sequential iteration; returns its total wall time in ms and records the parts."""
        from skiff.network import netns

        cid = f"skbench-{RUN_ID}-{i}"
        marks = [time.perf_counter()]
        netns.create(self.netns)
        try:
            marks.append(time.perf_counter())
            self.attached = cid
            result = self.cni("ADD", cid)
            marks.append(time.perf_counter())
            self.container(cid)
            marks.append(time.perf_counter())
            self.cni("DEL", cid, result)
            self.attached = None
            marks.append(time.perf_counter())
        finally:
            netns.remove(self.netns)
        marks.append(time.perf_counter())
        for part, (start, end) in zip(self.PARTS, itertools.pairwise(marks), strict=True):
            self.parts[part].append((end - start) * 1000.0)
        return (marks[-1] - marks[0]) * 1000.0

    def check(self) -> str:
        """One ADD/DEL with a look at eth0 inside the namespace: the baseline does attach."""
        from skiff.network import netns

        cid = f"skbench-{RUN_ID}-check"
        netns.create(self.netns)
        try:
            self.attached = cid
            result = self.cni("ADD", cid)
            out = subprocess.run(
                ["nsenter", f"--net={self.netns}", "ip", "-4", "-o", "addr", "show", "eth0"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            self.cni("DEL", cid, result)
            self.attached = None
        finally:
            netns.remove(self.netns)
        return check_address("runc+CNI", out)

    def cleanup(self) -> None:
        from skiff.network import netns

        if self.state.exists():
            ids = subprocess.run(
                ["runc", f"--root={self.state}", "list", "-q"], capture_output=True, text=True, check=False
            ).stdout.split()
            for cid in ids:
                subprocess.run(["runc", f"--root={self.state}", "delete", "-f", cid], capture_output=True)
        if self.attached is not None and self.netns.exists():
            with contextlib.suppress(Exception):
                self.cni("DEL", self.attached)
        with contextlib.suppress(Exception):
            netns.remove(self.netns)
        delete_link(CNI_BRIDGE)
        unmount_all_under(self.base)
        remove_cgroups(self.cgroup)
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def runc_cni() -> Iterator[RuncCni]:
    """The baseline's bundle, state and IPAM dirs under /tmp/skiff-bench-cni-<run>, removed afterwards."""
    if not (CNI_PLUGINS / "bridge").exists():
        raise RuntimeError(f"{CNI_PLUGINS}/bridge is missing: apt-get install containernetworking-plugins")
    claim_link_name(CNI_BRIDGE)
    base = Path(f"/tmp/skiff-bench-cni-{RUN_ID}")
    base.mkdir(parents=True)
    baseline = RuncCni(base)
    with guarded(baseline.cleanup):
        baseline.prepare(["/bin/true"])
        yield baseline


# ---- leak check -------------------------------------------------------------------------------


def stray_rules() -> list[tuple[str, str]]:
    """iptables rules that name one of the bench's bridges or subnets."""
    pattern = re.compile(r"skbench-|10\.21[6-9]\.0\.")
    return [(t, r) for t in ("filter", "nat") for r in iptables_rules(t) if pattern.search(r)]


def remove_stray_rules(before: list[tuple[str, str]]) -> list[str]:
    """Delete rules naming our bridges/subnets that were not there before the run; report them."""
    left = [(t, r) for t, r in stray_rules() if (t, r) not in before]
    for table, rule in left:
        delete_rule(table, rule)
    return [f"{t}: {r}" for t, r in left]


def network_cost(series: dict[str, Summary]) -> float | None:
    """What joining the bridge adds to a skiff run: p50 on the bridge minus p50 with none."""
    if "skiff" not in series or SKIFF_NONE not in series:
        return None
    return round(series["skiff"].p50 - series[SKIFF_NONE].p50, 2)


def baseline_network_cost(series: dict[str, Summary]) -> float | None:
    """The same in the baseline: the p50s of its network parts, added up."""
    parts = [f"runc+CNI: {p}" for p in RuncCni.PARTS if p != "runc"]
    if not all(p in series for p in parts):
        return None
    return round(sum(series[p].p50 for p in parts), 2)


# ---- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = rounds_parser(__doc__, runs=50, warmup=3, max_seconds=1200)
    parser.add_argument(
        "--network",
        help="give skiff and docker an explicit --network (e.g. bridge, the default network's name); "
        "by default neither gets one, as in the issue's `run --rm busybox true`",
    )
    parser.add_argument(
        "--no-none-line",
        action="store_true",
        help=f"leave out the {SKIFF_NONE!r} line (what the network costs skiff, by difference)",
    )
    parser.add_argument(
        "--podman-backend", choices=["netavark", "cni"], help="podman network backend (default: podman's)"
    )
    args = parser.parse_args()

    run_args = RUN_ARGS if args.network is None else ("--network", args.network, *RUN_ARGS)
    check_flags = () if args.network is None else ("--network", args.network)
    rules_before = stray_rules()
    commands: dict[str, Callable[[int], float]] = {}
    addresses: dict[str, str] = {}
    notes: list[str] = []
    baseline: RuncCni | None = None
    podman_backend = ""
    with ExitStack() as stack:

        def skiff() -> None:
            peer = stack.enter_context(
                skiff_peer(settings=skiff_settings(), bridge=SKIFF_BRIDGE, chain_prefix=SKIFF_CHAINS)
            )
            addresses["skiff"] = check_peer("skiff", peer, check_flags)
            commands["skiff"] = lambda i: timed_run(peer.run_argv(*run_args), env=peer.env)
            if not args.no_none_line:
                none_args = ("--network", "none", *RUN_ARGS)
                commands[SKIFF_NONE] = lambda i: timed_run(peer.run_argv(*none_args), env=peer.env)

        def docker() -> None:
            peer = stack.enter_context(docker_peer(bridge_cidr=DOCKER_CIDR))
            addresses["docker"] = check_peer("docker", peer, check_flags)
            commands["docker"] = lambda i: timed_run(peer.run_argv(*run_args), env=peer.env)

        def podman() -> None:
            nonlocal podman_backend
            peer = stack.enter_context(podman_peer(args.podman_backend))
            podman_backend = stack.enter_context(
                podman_network(peer, PODMAN_NETWORK, PODMAN_SUBNET, PODMAN_BRIDGE)
            )
            flags = ("--network", PODMAN_NETWORK)
            addresses["podman"] = check_peer("podman", peer, flags)
            commands["podman"] = lambda i: timed_run(peer.run_argv(*flags, *RUN_ARGS), env=peer.env)

        def runc() -> None:
            nonlocal baseline
            baseline = stack.enter_context(runc_cni())
            addresses["runc+CNI"] = baseline.check()
            commands["runc+CNI"] = baseline.run

        for name, setup in (("skiff", skiff), ("docker", docker), ("podman", podman), ("runc+CNI", runc)):
            if name in args.skip:
                continue
            try:
                setup()
                print(f"{name}: container address {addresses[name]}")
            except Exception as exc:  # a missing peer is reported, the others still run
                notes.append(f"{name}: not measured ({brief(exc)})")
                print(f"! {notes[-1]}")

        for run in commands.values():
            for i in range(args.warmup):
                run(-1 - i)
        if baseline is not None:
            baseline.parts = {p: [] for p in baseline.PARTS}  # warm-up parts are not measured
        samples = interleaved_rounds(commands, args.runs, args.max_seconds, notes)
    # Every peer is down and its own cleanup has run; anything still naming our bridges is a leak.
    leaks = [f"iptables rule left behind and removed: {r}" for r in remove_stray_rules(rules_before)]
    leaks += [
        f"interface left behind and removed: {b}" for b in BRIDGES if Path("/sys/class/net", b).exists()
    ]
    for b in BRIDGES:
        delete_link(b)
    for leak in leaks:
        print(f"! {leak}")
    notes += leaks

    series = {name: summarize(s) for name, s in samples.items() if s}
    if baseline is not None:
        series |= {f"runc+CNI: {p}": summarize(s) for p, s in baseline.parts.items() if s}
    print_series("run --rm busybox true, default bridge network (ms)", series)
    figures = [
        figure(
            "run --rm true, bridge, skiff/docker p50 (docker CLI)",
            ratio(series, "skiff", "docker"),
            "<= 0.25",
            0.25,
        ),
        figure(
            "same, skiff/(bare runc + CNI ADD/DEL) p50",
            ratio(series, "skiff", "runc+CNI"),
            "<= 1.5",
            1.5,
        ),
        figure("same, skiff/docker p95", ratio(series, "skiff", "docker", "p95"), "", None),
        figure("same, skiff/(runc + CNI) p95", ratio(series, "skiff", "runc+CNI", "p95"), "", None),
        figure("same, skiff/podman p50", ratio(series, "skiff", "podman"), "", None),
        figure("network cost in skiff: p50 bridge - p50 none, ms", network_cost(series), "", None),
        figure(
            "network cost in the baseline: p50 of netns + CNI ADD + CNI DEL, ms",
            baseline_network_cost(series),
            "",
            None,
        ),
    ]
    write_result(
        "run_bridge",
        {
            "title": "run --rm busybox true on the default bridge network",
            "params": {
                "runs": args.runs,
                "warmup": args.warmup,
                "client": "docker CLI for skiffd and dockerd",
                "command": " ".join(("run", *run_args)),
                "podman network backend": podman_backend or "-",
            },
            "series": series,
            "figures": figures,
            "notes": notes,
        },
    )


if __name__ == "__main__":
    main()
