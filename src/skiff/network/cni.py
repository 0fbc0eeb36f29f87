"""Driving CNI plugins (the Container Network Interface, spec 1.0.0).

A plugin is an executable that reads its network configuration on stdin and takes the
operation from environment variables (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
CNI_ARGS, CNI_PATH); ADD prints a result document, failures print ``{"code", "msg"}``. No
maintained Python library implements the caller side (libcni is Go), and the protocol is one
exec per call, so this module is the whole of it.

skiff uses Debian's containernetworking-plugins: ``bridge`` with ``host-local`` IPAM for every
bridge network, ``portmap`` for published ports. ``lo`` is brought up in-process when the
namespace is made (:mod:`skiff.network.netns`), and per-network iptables rules are installed
once per network by :mod:`skiff.network.iptables` instead of the per-container ``firewall``
plugin (see docs/architecture.md for the measured reasons).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.errors import RuntimeFailure

CNI_VERSION = "1.0.0"
DEFAULT_CNI_PATH = ("/usr/lib/cni", "/opt/cni/bin")


class CniError(RuntimeFailure):
    """A plugin failed; the message is the plugin's own ``msg`` (and ``details``)."""


@dataclass(frozen=True)
class BridgeNetwork:
    """Everything needed to write the ``bridge`` plugin's configuration for one network."""

    cni_name: str  # unique per network; host-local keeps leases under dataDir/<cni_name>/
    bridge: str
    subnet: str
    gateway: str
    ip_range: str = ""
    internal: bool = False
    mtu: int = 0
    subnet6: str = ""  # dual stack when set
    gateway6: str = ""
    ip_range6: str = ""


@dataclass(frozen=True)
class AddResult:
    """The parts of a bridge ADD result skiff keeps."""

    ip_address: str
    prefix_len: int
    gateway: str
    mac_address: str
    raw: dict[str, Any]
    ipv6_address: str = ""
    ipv6_prefix_len: int = 0
    ipv6_gateway: str = ""


def find_plugin_dir(candidates: Sequence[str] = DEFAULT_CNI_PATH) -> str:
    for d in candidates:
        if os.access(os.path.join(d, "bridge"), os.X_OK):
            return d
    raise RuntimeFailure(
        "CNI plugins not found in " + ", ".join(candidates) + ": install containernetworking-plugins"
    )


def bridge_conf(net: BridgeNetwork, ipam_dir: Path) -> dict[str, Any]:
    """The ``bridge`` + ``host-local`` configuration for ``net``."""
    ranges = [[_range(net.subnet, net.gateway, net.ip_range)]]
    if net.subnet6:
        ranges.append([_range(net.subnet6, net.gateway6, net.ip_range6)])
    ipam: dict[str, Any] = {"type": "host-local", "dataDir": str(ipam_dir), "ranges": ranges}
    if not net.internal:
        ipam["routes"] = [{"dst": "0.0.0.0/0"}, *([{"dst": "::/0"}] if net.subnet6 else [])]
    conf: dict[str, Any] = {
        "cniVersion": CNI_VERSION,
        "name": net.cni_name,
        "type": "bridge",
        "bridge": net.bridge,
        # An internal network's bridge still carries the gateway address (containers can
        # reach each other and nothing else: no default route, and the firewall drops
        # anything crossing the bridge's edge).
        "isGateway": True,
        "isDefaultGateway": False,
        "forceAddress": False,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": ipam,
    }
    if net.mtu:
        conf["mtu"] = net.mtu
    return conf


def _range(subnet: str, gateway: str, ip_range: str) -> dict[str, str]:
    rng: dict[str, str] = {"subnet": subnet}
    if gateway:
        rng["gateway"] = gateway
    if ip_range:
        r = ipaddress.ip_network(ip_range, strict=False)
        hosts = list(_first_last(r))
        rng["rangeStart"], rng["rangeEnd"] = str(hosts[0]), str(hosts[1])
    return rng


def _first_last(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[Any, Any]:
    if net.num_addresses <= 2:
        return net.network_address, net.broadcast_address
    return net.network_address + 1, net.broadcast_address - 1


def portmap_conf(
    cni_name: str, mappings: Sequence[Mapping[str, Any]], prev_result: Mapping[str, Any] | None
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": CNI_VERSION,
        "name": cni_name,
        "type": "portmap",
        "snat": True,
        "capabilities": {"portMappings": True},
        "runtimeConfig": {"portMappings": list(mappings)},
    }
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    return conf


class Cni:
    """Invokes plugins from one plugin directory."""

    def __init__(self, plugin_dir: str | None = None) -> None:
        self.plugin_dir = plugin_dir or find_plugin_dir()

    async def invoke(
        self,
        command: str,
        conf: Mapping[str, Any],
        *,
        container_id: str,
        netns: str,
        ifname: str,
        args: Mapping[str, str] | None = None,
        plugin: str | None = None,
    ) -> dict[str, Any] | None:
        """Run one plugin operation; returns the parsed result for ADD, None otherwise.

        ``plugin`` overrides the configuration's ``type``: the IPAM plugin is called with its
        network's configuration, as the main plugin would call it.
        """
        plugin = os.path.join(self.plugin_dir, plugin or str(conf["type"]))
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": self.plugin_dir,
        }
        if args:
            env["CNI_ARGS"] = ";".join(["IgnoreUnknown=1", *(f"{k}={v}" for k, v in args.items())])
        try:
            proc = await asyncio.create_subprocess_exec(
                plugin,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as e:
            raise CniError(f"running CNI plugin {plugin}: {e}") from None
        out, err = await proc.communicate(json.dumps(conf).encode())
        if proc.returncode != 0:
            raise CniError(_failure(str(conf["type"]), command, out, err))
        if command != "ADD":
            return None
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            raise CniError(f"CNI plugin {conf['type']} printed an invalid result: {out[:200]!r}") from None
        return result


def _failure(plugin: str, command: str, out: bytes, err: bytes) -> str:
    try:
        doc = json.loads(out)
        msg = str(doc.get("msg", "")).strip()
        details = str(doc.get("details", "")).strip()
        if details and details != msg:
            msg = f"{msg}: {details}"
    except ValueError:
        msg = (out or err).decode(errors="replace").strip()
    return f"CNI {plugin} {command} failed: {msg or 'no message'}"


def parse_add_result(result: Mapping[str, Any], ifname: str) -> AddResult:
    """The sandbox interface's first IPv4 address (and IPv6 one, if any), gateways and MAC."""
    interfaces = result.get("interfaces") or []
    found: dict[int, tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, str, str]] = {}
    for ip in result.get("ips") or []:
        idx = ip.get("interface")
        iface = interfaces[idx] if isinstance(idx, int) and 0 <= idx < len(interfaces) else {}
        if iface and iface.get("name") != ifname:
            continue
        iface_net = ipaddress.ip_interface(ip["address"])
        found.setdefault(
            iface_net.version, (iface_net, str(ip.get("gateway", "")), str(iface.get("mac", "")))
        )
    if 4 not in found:
        raise CniError(f"CNI result has no IPv4 address for {ifname}: {json.dumps(result)[:300]}")
    v4, gateway, mac = found[4]
    v6 = found.get(6)
    return AddResult(
        ip_address=str(v4.ip),
        prefix_len=v4.network.prefixlen,
        gateway=gateway,
        mac_address=mac or (v6[2] if v6 else ""),
        raw=dict(result),
        ipv6_address=str(v6[0].ip) if v6 else "",
        ipv6_prefix_len=v6[0].network.prefixlen if v6 else 0,
        ipv6_gateway=v6[1] if v6 else "",
    )
