"""Per-network iptables rules for skiff's bridges, installed once per network as dockerd does.

Why not the CNI ``firewall`` plugin: it costs ~30 ms per container on every ADD and again on every
DEL, yet what it does depends only on the network. So skiff keeps a few chains of its own, in step
with the set of bridge networks, and rewrites them whole when a network is created or removed and
at daemon start. ``portmap`` still does the per-container DNAT of published ports.

Layout, with ``P`` the prefix (``SKIFF``); every rule carries ``-m comment --comment skiff``::

    filter FORWARD      -I 1  -j P-FORWARD
    filter P-FORWARD          -j P-ISOLATION
                              internal BR:  -i BR ! -o BR -j DROP;  ! -i BR -o BR -j DROP
                              every BR:     -o BR ctstate RELATED,ESTABLISHED -j ACCEPT
                                            -i BR -o BR -j ACCEPT
                              non-internal: -i BR ! -o BR -j ACCEPT
                                            -o BR ctstate DNAT -j ACCEPT      (published ports)
    filter P-ISOLATION        ctstate DNAT -j RETURN;  every BR: -i BR ! -o BR -j P-ISOLATION-2
    filter P-ISOLATION-2      every BR: -o BR -j DROP
    nat POSTROUTING     -I 1  -j P-POSTROUTING
    nat P-POSTROUTING         non-internal: -s SUBNET ! -o BR -j MASQUERADE

Isolation is Docker's two-stage form: a packet leaving bridge A for anything else enters stage 2,
which drops it if it is headed for another skiff bridge (O(n) rules instead of O(n^2) pairs).
Unlike Docker, a connection that ``portmap`` DNATed (a published port, reached through a host
address) may cross from one network into another: published ports are meant to be reachable
from other containers. Direct traffic between networks is still dropped. The internal networks'
DROPs come before any ACCEPT so that exception never lets an internal network out.

Nothing here flushes or deletes a chain whose name is not one of ours, or changes a policy.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import InvalidArgument, Unavailable

COMMENT = "skiff"
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_CHAIN = 28  # XT_EXTENSION_MAXNAMELEN - 1


@dataclass(frozen=True)
class BridgeRules:
    """What the firewall needs to know about one bridge network."""

    bridge: str  # Linux bridge name, e.g. "skiff0"
    subnet: str  # IPv4 CIDR, e.g. "10.211.0.0/16"
    internal: bool  # nothing leaves the bridge for other interfaces, nothing enters from them


@dataclass(frozen=True)
class _Chains:
    forward: str
    isolation: str
    isolation2: str
    postrouting: str


def render_rules(prefix: str, networks: Sequence[BridgeRules]) -> dict[str, list[str]]:
    """The rules of skiff's chains per table, as ``iptables-restore`` lines (no chain headers).

    Pure, so the layout can be checked without root. Networks are validated here.
    """
    c = _chain_names(prefix)
    nets = [_validated(n) for n in networks]
    _no_duplicate_bridges(nets)
    cm = f"-m comment --comment {COMMENT}"

    fwd = [f"-A {c.forward} {cm} -j {c.isolation}"]
    for n in nets:
        if n.internal:
            fwd.append(f"-A {c.forward} -i {n.bridge} ! -o {n.bridge} {cm} -j DROP")
            fwd.append(f"-A {c.forward} ! -i {n.bridge} -o {n.bridge} {cm} -j DROP")
    for n in nets:
        br = n.bridge
        fwd.append(f"-A {c.forward} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED {cm} -j ACCEPT")
        fwd.append(f"-A {c.forward} -i {br} -o {br} {cm} -j ACCEPT")
        if not n.internal:
            fwd.append(f"-A {c.forward} -i {br} ! -o {br} {cm} -j ACCEPT")
            fwd.append(f"-A {c.forward} -o {br} -m conntrack --ctstate DNAT {cm} -j ACCEPT")

    iso = [f"-A {c.isolation} -m conntrack --ctstate DNAT {cm} -j RETURN"]
    iso += [f"-A {c.isolation} -i {n.bridge} ! -o {n.bridge} {cm} -j {c.isolation2}" for n in nets]
    iso2 = [f"-A {c.isolation2} -o {n.bridge} {cm} -j DROP" for n in nets]

    nat = [
        f"-A {c.postrouting} -s {n.subnet} ! -o {n.bridge} {cm} -j MASQUERADE" for n in nets if not n.internal
    ]
    return {"filter": fwd + iso + iso2, "nat": nat}


class Firewall:
    """skiff's per-network iptables chains (see the module docstring for the layout).

    Synchronous and serialized by a lock; the daemon calls it from a worker thread. Each table is
    changed by one ``iptables-restore --noflush`` transaction, so a reader never sees a half-made
    rule set.
    """

    def __init__(self, prefix: str = "SKIFF") -> None:
        self._chains = _chain_names(prefix)
        self.prefix = prefix
        self._lock = threading.Lock()
        self._iptables = shutil.which("iptables") or "iptables"
        self._restore = shutil.which("iptables-restore") or "iptables-restore"

    @property
    def chains(self) -> dict[str, tuple[str, ...]]:
        """The chains this firewall owns, per table."""
        c = self._chains
        return {"filter": (c.forward, c.isolation, c.isolation2), "nat": (c.postrouting,)}

    def apply(self, networks: Sequence[BridgeRules]) -> None:
        """Make the kernel's rules exactly match ``networks`` (idempotent, atomic per table)."""
        rules = render_rules(self.prefix, networks)
        with self._lock:
            if any(not n.internal for n in networks):
                _ensure_ip_forward()
            c = self._chains
            self._restore_table(
                "filter",
                self.chains["filter"],
                rules["filter"],
                self._jump_fixes("filter", "FORWARD", c.forward),
            )
            self._restore_table(
                "nat",
                self.chains["nat"],
                rules["nat"],
                self._jump_fixes("nat", "POSTROUTING", c.postrouting),
            )

    def teardown(self) -> None:
        """Remove the jumps and delete every chain of this firewall (tests, uninstall)."""
        with self._lock:
            for table, builtin in (("filter", "FORWARD"), ("nat", "POSTROUTING")):
                ours = self.chains[table]
                listing = self._run([self._iptables, "-w", "-t", table, "-S"])
                existing = [ch for ch in ours if f"-N {ch}" in listing.splitlines()]
                if not existing:
                    continue
                lines = [
                    "-D" + line[2:]
                    for line in listing.splitlines()
                    if _jumps_to(line, builtin, set(existing))
                ]
                lines += [f"-F {ch}" for ch in existing]
                lines += [f"-X {ch}" for ch in existing]
                self._feed(table, [f"*{table}", *lines, "COMMIT"])

    def _jump_fixes(self, table: str, builtin: str, chain: str) -> list[str]:
        """Lines that leave exactly one jump from ``builtin`` to ``chain`` (inserted first if missing)."""
        listing = self._run([self._iptables, "-w", "-t", table, "-S", builtin])
        jumps = [line for line in listing.splitlines() if _jumps_to(line, builtin, {chain})]
        if not jumps:
            return [f"-I {builtin} 1 -m comment --comment {COMMENT} -j {chain}"]
        return ["-D" + line[2:] for line in jumps[1:]]

    def _restore_table(self, table: str, chains: Sequence[str], rules: list[str], jumps: list[str]) -> None:
        # ":CHAIN - [0:0]" creates a missing chain and flushes an existing one (with --noflush
        # nothing else in the table is touched), so the rules below replace ours whole.
        lines = [f"*{table}", *(f":{ch} - [0:0]" for ch in chains), *rules, *jumps, "COMMIT"]
        self._feed(table, lines)

    def _feed(self, table: str, lines: list[str]) -> None:
        try:
            proc = subprocess.run(
                [self._restore, "--noflush", "-w"],
                input="\n".join(lines) + "\n",
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as e:
            raise Unavailable(f"cannot run iptables-restore: {e}") from e
        if proc.returncode != 0:
            raise Unavailable(f"iptables-restore ({table}) failed: {proc.stderr.strip() or proc.returncode}")

    def _run(self, argv: list[str]) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as e:
            raise Unavailable(f"cannot run {argv[0]}: {e}") from e
        if proc.returncode != 0:
            raise Unavailable(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")
        return proc.stdout


def _jumps_to(line: str, builtin: str, targets: set[str]) -> bool:
    """True if an ``iptables -S`` line is a rule of ``builtin`` jumping to one of ``targets``."""
    if not line.startswith(f"-A {builtin} "):
        return False
    try:
        words = shlex.split(line)
    except ValueError:
        return False
    return any(words[i] in ("-j", "--jump") and words[i + 1] in targets for i in range(len(words) - 1))


def _chain_names(prefix: str) -> _Chains:
    if not _PREFIX.match(prefix) or len(prefix) + len("-ISOLATION-2") > _MAX_CHAIN:
        raise InvalidArgument(f"invalid iptables chain prefix {prefix!r}")
    return _Chains(
        forward=f"{prefix}-FORWARD",
        isolation=f"{prefix}-ISOLATION",
        isolation2=f"{prefix}-ISOLATION-2",
        postrouting=f"{prefix}-POSTROUTING",
    )


def _validated(n: BridgeRules) -> BridgeRules:
    if not _IFNAME.match(n.bridge):
        raise InvalidArgument(f"invalid bridge name {n.bridge!r}")
    try:
        net = ipaddress.ip_network(n.subnet, strict=False)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {n.subnet!r} for bridge {n.bridge}: {e}") from e
    if net.version != 4:
        raise InvalidArgument(f"subnet {n.subnet} of bridge {n.bridge} is not IPv4")
    return BridgeRules(bridge=n.bridge, subnet=str(net), internal=n.internal)


def _no_duplicate_bridges(nets: Sequence[BridgeRules]) -> None:
    seen: set[str] = set()
    for n in nets:
        if n.bridge in seen:
            raise InvalidArgument(f"bridge {n.bridge} is listed twice")
        seen.add(n.bridge)


def _ensure_ip_forward() -> None:
    """Turn IPv4 forwarding on if it is off; never turn it off again."""
    try:
        if _IP_FORWARD.read_text().strip() != "1":
            _IP_FORWARD.write_text("1\n")
    except OSError as e:
        raise Unavailable(f"cannot enable net.ipv4.ip_forward: {e}") from e
