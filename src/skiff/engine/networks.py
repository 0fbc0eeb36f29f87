"""NetworkService: bridge networks, container endpoints, published ports, name resolution.

A network is a record in SQLite plus a Linux bridge made by the CNI ``bridge`` plugin on first
use. A running container on bridge networks owns a network namespace pinned at
``<run_dir>/netns/<id>``, one CNI endpoint per network (eth0, eth1, ...), host-port
reservations for its published ports (``portmap`` DNAT rules), and, on user-defined networks,
an embedded DNS server at 127.0.0.11 inside its namespace. All of it is recorded in the
container's ``network`` field, and all of it is released when the container stops.

Crash rules: every operation here is idempotent, and CNI DEL is called for every network a
container is configured on (not only the recorded endpoints), so a crash between CNI ADD and
the record's write is undone at the next start by :meth:`NetworkService.recover`, which also
removes leases, namespaces and port rules of containers that no longer exist.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ipaddress
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.engine.events import EventBus
from skiff.engine.model import Container, now_rfc3339
from skiff.errors import Conflict, Forbidden, InvalidArgument, NotFound, SkiffError
from skiff.network import netns
from skiff.network.cni import BridgeNetwork, Cni, bridge_conf, parse_add_result, portmap_conf
from skiff.network.dns import EmbeddedDNS
from skiff.network.iptables import BridgeRules, Firewall
from skiff.network.ports import PortReservations, parse_port_bindings
from skiff.store.metadata import MetadataDB
from skiff.types import ContainerSpec, Endpoint, EndpointConfig, NetworkRecord, NetworkState, PortBinding
from skiff.types.codec import decode, to_plain

if TYPE_CHECKING:
    from skiff.engine.containers import ContainerService

log = logging.getLogger("skiff.network")

BUILTIN = ("bridge", "host", "none")
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
_MAX_IFNAME = 15


@dataclass(frozen=True)
class NetworkConfig:
    """The daemon's networking settings (see skiff.daemon.config)."""

    bridge: str = "skiff0"
    bip: str = "10.211.0.1/16"
    pool: str = "10.212.0.0/14"
    pool_size: int = 24
    chain_prefix: str = "SKIFF"
    bridge_prefix: str = "sk-"


def _new_id() -> str:
    return secrets.token_hex(32)


class NetworkService:
    """Networks and the network side of container lifecycles."""

    def __init__(
        self,
        *,
        root: Path,
        run_dir: Path,
        db: MetadataDB,
        events: EventBus,
        config: NetworkConfig = NetworkConfig(),
    ) -> None:
        self.root = root
        self.db = db
        self.events = events
        self.config = config
        self.ipam_dir = root / "network" / "ipam"
        self.netns_dir = run_dir / "netns"
        self.cni = Cni()
        self.firewall = Firewall(config.chain_prefix)
        self.ports = PortReservations()
        self.dns = EmbeddedDNS(self._resolve_name)
        self._networks: dict[str, NetworkRecord] = {}
        self._lock = asyncio.Lock()  # network create/remove and firewall updates
        # Last CNI ADD result per (container, network): portmap's prevResult. In memory only:
        # DEL does not need it.
        self._results: dict[tuple[str, str], dict[str, Any]] = {}
        self.containers: ContainerService | None = None  # wired by the Engine

    # ------------------------------------------------------------------ records
    def _svc(self) -> ContainerService:
        assert self.containers is not None
        return self.containers

    def load(self) -> None:
        self._networks = {}
        for nid, data in self.db.list_networks():
            try:
                self._networks[nid] = decode(NetworkRecord, json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("skipping unreadable network record %s: %s", nid, exc)

    def _put(self, rec: NetworkRecord) -> NetworkRecord:
        self.db.put_network(rec.id, rec.name, json.dumps(to_plain(rec)))
        self._networks[rec.id] = rec
        return rec

    def list(self) -> builtins.list[NetworkRecord]:
        return sorted(self._networks.values(), key=lambda n: n.name)

    def get(self, ref: str) -> NetworkRecord:
        """By full id, name, or unique id prefix (Docker's lookup order)."""
        if ref in self._networks:
            return self._networks[ref]
        for rec in self._networks.values():
            if rec.name == ref:
                return rec
        if ref:
            matches = [rec for nid, rec in self._networks.items() if nid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(
                    f"network {ref} is ambiguous ({len(matches)} matches found based on ID prefix)"
                )
        raise NotFound(f"network {ref} not found")

    def _find(self, ref: str) -> NetworkRecord | None:
        try:
            return self.get(ref)
        except (NotFound, InvalidArgument):
            return None

    # ------------------------------------------------------------ daemon start
    async def start(self) -> None:
        """Load records, make sure the predefined networks exist, install the firewall rules."""
        self.load()
        self.ipam_dir.mkdir(parents=True, exist_ok=True)
        self.netns_dir.mkdir(parents=True, exist_ok=True)
        iface = ipaddress.ip_interface(self.config.bip)
        existing = {rec.name: rec for rec in self._networks.values()}
        bridge = existing.get("bridge")
        wanted: dict[str, Any] = {
            "subnet": str(iface.network),
            "gateway": str(iface.ip),
            "bridge": self.config.bridge,
        }
        if bridge is None:
            self._put(
                NetworkRecord(
                    id=_new_id(),
                    name="bridge",
                    created=now_rfc3339(),
                    driver="bridge",
                    builtin=True,
                    options={
                        BRIDGE_NAME_OPTION: self.config.bridge,
                        "com.docker.network.bridge.default_bridge": "true",
                        "com.docker.network.bridge.enable_icc": "true",
                        "com.docker.network.bridge.enable_ip_masquerade": "true",
                    },
                    **wanted,
                )
            )
        elif any(getattr(bridge, k) != v for k, v in wanted.items()):
            # The daemon's configuration changed; it applies to containers started from now on.
            self._put(
                replace(bridge, **wanted, options={**bridge.options, BRIDGE_NAME_OPTION: self.config.bridge})
            )
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in existing:
                self._put(
                    NetworkRecord(id=_new_id(), name=name, created=now_rfc3339(), driver=driver, builtin=True)
                )
        await self._apply_firewall()

    async def _apply_firewall(self) -> None:
        rules = [
            BridgeRules(bridge=rec.bridge, subnet=rec.subnet, internal=rec.internal)
            for rec in self._networks.values()
            if rec.driver == "bridge" and rec.bridge
        ]
        await asyncio.to_thread(self.firewall.apply, rules)

    # ----------------------------------------------------------- create/remove
    async def create(
        self,
        name: str,
        *,
        driver: str = "bridge",
        subnet: str = "",
        gateway: str = "",
        ip_range: str = "",
        internal: bool = False,
        attachable: bool = False,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        aux_addresses: Mapping[str, str] | None = None,
        ipam_options: Mapping[str, str] | None = None,
        enable_ipv6: bool = False,
        subnet6: str = "",
        gateway6: str = "",
        ip_range6: str = "",
    ) -> NetworkRecord:
        if not name:
            raise InvalidArgument("network name is required")
        if driver not in ("bridge", ""):
            raise InvalidArgument(f'plugin "{driver}" not found: skiff networks use the bridge driver')
        if name in BUILTIN:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        options = dict(options or {})
        async with self._lock:
            if any(rec.name == name for rec in self._networks.values()):
                raise Conflict(f"network with name {name} already exists")
            nid = _new_id()
            net = self._choose_subnet(subnet)
            gw = self._gateway(net, gateway)
            rng = self._ip_range(net, ip_range)
            net6 = self._choose_subnet6(subnet6) if enable_ipv6 else None
            gw6 = self._gateway(net6, gateway6) if net6 is not None else ""
            rng6 = self._ip_range(net6, ip_range6) if net6 is not None else ""
            aux = dict(aux_addresses or {})
            for aux_name, ip in aux.items():
                if ipaddress.ip_address(ip) not in net or ip == gw:
                    raise InvalidArgument(
                        f"auxiliary address {aux_name}={ip} must be inside subnet {net}, not the gateway"
                    )
            bridge = options.get(BRIDGE_NAME_OPTION) or f"{self.config.bridge_prefix}{nid[:12]}"[:_MAX_IFNAME]
            if len(bridge) > _MAX_IFNAME or not bridge.replace("-", "").replace("_", "").isalnum():
                raise InvalidArgument(
                    f"invalid bridge name {bridge!r}: at most 15 letters, digits, '-' or '_'"
                )
            if any(rec.bridge == bridge for rec in self._networks.values()):
                raise Conflict(f"bridge name {bridge} is already used by another network")
            rec = self._put(
                NetworkRecord(
                    id=nid,
                    name=name,
                    created=now_rfc3339(),
                    driver="bridge",
                    subnet=str(net),
                    gateway=gw,
                    ip_range=rng,
                    internal=internal,
                    attachable=attachable,
                    labels=dict(labels or {}),
                    options=options,
                    bridge=bridge,
                    aux_addresses=aux,
                    ipam_options=None if ipam_options is None else dict(ipam_options),
                    enable_ipv6=net6 is not None,
                    subnet6=str(net6) if net6 is not None else "",
                    gateway6=gw6,
                    ip_range6=rng6,
                )
            )
            try:
                self._reserve_aux(rec)
                await self._apply_firewall()
            except BaseException:
                self.db.delete_network(nid)
                self._networks.pop(nid, None)
                raise
        self.events.publish("network", "create", rec.id, name=rec.name, type=rec.driver)
        return rec

    def _choose_subnet(self, subnet: str) -> ipaddress.IPv4Network:
        used = [ipaddress.ip_network(r.subnet) for r in self._networks.values() if r.subnet]
        if subnet:
            try:
                net = ipaddress.ip_network(subnet, strict=False)
            except ValueError:
                raise InvalidArgument(
                    f"invalid subnet {subnet!r}: expected CIDR notation like 10.213.0.0/24"
                ) from None
            if not isinstance(net, ipaddress.IPv4Network):
                raise InvalidArgument("the IPv4 subnet is an IPv6 one: give IPv6 subnets with --ipv6")
            if net.prefixlen > 30:
                raise InvalidArgument(f"subnet {subnet} is too small: use a prefix of /30 or shorter")
            for other in used:
                if net.overlaps(other):
                    raise Conflict(
                        f"invalid pool request: Pool overlaps with other one on this address space ({other})"
                    )
            return net
        pool = ipaddress.ip_network(self.config.pool)
        host_routes = _host_routes()
        for candidate in pool.subnets(new_prefix=self.config.pool_size):
            if any(candidate.overlaps(o) for o in used) or any(candidate.overlaps(r) for r in host_routes):
                continue
            assert isinstance(candidate, ipaddress.IPv4Network)
            return candidate
        raise Conflict(
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
        )

    def _choose_subnet6(self, subnet: str) -> ipaddress.IPv6Network:
        if not subnet:
            raise InvalidArgument("an IPv6 network needs an IPv6 subnet: skiff has no default IPv6 pool")
        try:
            net = ipaddress.IPv6Network(subnet, strict=False)
        except ValueError:
            raise InvalidArgument(
                f"invalid IPv6 subnet {subnet!r}: expected CIDR notation like fd00:1::/64"
            ) from None
        if net.prefixlen > 124:
            raise InvalidArgument(f"subnet {subnet} is too small: use a prefix of /124 or shorter")
        for r in self._networks.values():
            if r.subnet6 and net.overlaps(ipaddress.IPv6Network(r.subnet6)):
                raise Conflict(
                    f"invalid pool request: Pool overlaps with other one on this address space ({r.subnet6})"
                )
        return net

    @staticmethod
    def _gateway(net: ipaddress.IPv4Network | ipaddress.IPv6Network, gateway: str) -> str:
        if not gateway:
            return str(net.network_address + 1)
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway {gateway!r}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"gateway {gateway} is not a usable address of subnet {net}")
        return str(gw)

    @staticmethod
    def _ip_range(net: ipaddress.IPv4Network | ipaddress.IPv6Network, ip_range: str) -> str:
        if not ip_range:
            return ""
        try:
            rng = ipaddress.ip_network(ip_range, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid ip-range {ip_range!r}") from None
        if not rng.subnet_of(net):  # type: ignore[arg-type]
            raise InvalidArgument(f"ip-range {ip_range} is not inside subnet {net}")
        return str(rng)

    def _users(self, rec: NetworkRecord) -> builtins.list[Container]:
        return [c for c in self._svc().list() if rec.name in c.spec.networks]

    def in_use(self, rec: NetworkRecord) -> bool:
        return bool(self._users(rec))

    async def remove(self, ref: str) -> None:
        async with self._lock:
            rec = self.get(ref)
            if rec.builtin:
                raise Forbidden(f"{rec.name} is a pre-defined network and cannot be removed")
            users = self._users(rec)
            if users:
                raise Conflict(
                    f"error while removing network: network {rec.name} id {rec.id} has active endpoints"
                    f" ({', '.join(c.name for c in users)})"
                )
            self.db.delete_network(rec.id)
            self._networks.pop(rec.id, None)
            await self._apply_firewall()
            await asyncio.to_thread(_delete_bridge, rec.bridge)
            with contextlib.suppress(OSError):
                _rmtree(self.ipam_dir / _cni_name(rec))
        self.events.publish("network", "destroy", rec.id, name=rec.name, type=rec.driver)

    async def prune(self, match: Callable[[NetworkRecord], bool]) -> builtins.list[str]:
        removed: builtins.list[str] = []
        for rec in self.list():
            if rec.builtin or not match(rec) or self.in_use(rec):
                continue
            with contextlib.suppress(NotFound, Conflict):
                await self.remove(rec.id)
                removed.append(rec.name)
        return removed

    def attached(self, rec: NetworkRecord) -> builtins.list[tuple[Container, Endpoint | None]]:
        out: builtins.list[tuple[Container, Endpoint | None]] = []
        for c in self._users(rec):
            ep = next((e for e in c.network.endpoints if e.network_id == rec.id), None)
            out.append((c, ep))
        return out

    # ------------------------------------------------------- container: create
    def normalize(self, spec: ContainerSpec, container_id: str) -> ContainerSpec:
        """Validate the network side of a create and key ``spec.networks`` by network name.

        The network of the network mode is included (``default`` becomes ``bridge``), so
        ``spec.networks`` lists every network the container joins when it starts.
        """
        host = spec.host
        mode = host.network_mode or "default"
        if spec.network_disabled:
            mode = "none"
        if mode == "default":
            mode = "bridge"
        if mode.startswith("container:"):
            target = mode.split(":", 1)[1]
            other = self._svc().get(target)
            if other.id == container_id:
                raise InvalidArgument("cannot join own network namespace")
            if host.port_bindings or host.publish_all_ports:
                raise InvalidArgument(
                    "conflicting options: port publishing and the container type network mode"
                )
            if spec.networks:
                raise InvalidArgument(
                    "conflicting options: container type network can't be used with other networks"
                )
            if host.dns or host.extra_hosts or spec.mac_address:
                raise InvalidArgument(
                    "conflicting options: dns, add-host and mac-address cannot be used with --network container:"
                )
            return replace(spec, host=replace(host, network_mode=f"container:{other.id}"), networks={})
        if mode in ("host", "none"):
            if spec.networks and any(k not in (mode,) for k in spec.networks):
                raise InvalidArgument(
                    f"container cannot be connected to other networks with --network={mode}"
                )
            if mode == "host":
                return replace(
                    spec,
                    host=replace(host, network_mode="host", port_bindings={}, publish_all_ports=False),
                    networks={},
                )
            return replace(spec, host=replace(host, network_mode="none"), networks={})
        primary = self.get(mode)
        if primary.driver != "bridge":
            raise InvalidArgument(f"network {mode} cannot be used as a network mode")
        networks: dict[str, EndpointConfig] = {}
        requested = dict(spec.networks)
        first = (
            requested.pop(mode, None) or requested.pop(primary.id, None) or requested.pop(primary.name, None)
        )
        networks[primary.name] = first or EndpointConfig()
        for ref, cfg in requested.items():
            rec = self.get(ref)
            if rec.driver != "bridge":
                raise InvalidArgument(
                    f"container cannot be connected to network {rec.name} and {primary.name}"
                )
            networks[rec.name] = cfg
        if spec.mac_address:
            cfg = networks[primary.name]
            if not cfg.mac_address:
                networks[primary.name] = replace(cfg, mac_address=spec.mac_address)
        for name, cfg in networks.items():
            self._validate_endpoint(self.get(name), cfg)
        for link in host.links:
            target = link.split(":", 1)[0].lstrip("/")
            try:
                self._svc().get(target)
            except NotFound:
                raise InvalidArgument(f"could not get container for {target}") from None
        requests = parse_port_bindings(host.port_bindings, spec.exposed_ports, host.publish_all_ports)
        if requests:
            # Fail the create early when a fixed port is taken by something that is not skiff's
            # (the start checks everything again). A port another container holds is only
            # checked at start, as dockerd does: Compose creates a service's new container
            # while the old one still holds its ports, then stops the old one.
            probe = f"probe-{container_id}"
            try:
                self.ports.reserve(
                    probe, [r for r in requests if r.host_port and not self.ports.held_by_skiff(r)]
                )
            finally:
                self.ports.release(probe)
        return replace(spec, host=replace(host, network_mode=primary.name), networks=networks)

    @staticmethod
    def _validate_endpoint(rec: NetworkRecord, cfg: EndpointConfig) -> None:
        if cfg.ipv4_address:
            try:
                ip = ipaddress.ip_address(cfg.ipv4_address)
            except ValueError:
                raise InvalidArgument(f"invalid IPv4 address: {cfg.ipv4_address}") from None
            if rec.builtin:
                raise InvalidArgument(
                    "user specified IP address is supported only when connecting to networks with user configured subnets"
                )
            net = ipaddress.ip_network(rec.subnet)
            if ip not in net or ip in (net.network_address, net.broadcast_address) or str(ip) == rec.gateway:
                raise InvalidArgument(
                    f"no configured subnet contains IP address {ip} (network {rec.name}: {rec.subnet})"
                )
        if cfg.ipv6_address:
            if not rec.subnet6:
                raise InvalidArgument(
                    f"invalid IPv6 address {cfg.ipv6_address}: network {rec.name} has no IPv6 subnet (create it with --ipv6)"
                )
            ip6 = ipaddress.IPv6Address(cfg.ipv6_address)
            net6 = ipaddress.IPv6Network(rec.subnet6)
            if ip6 not in net6 or ip6 == net6.network_address or str(ip6) == rec.gateway6:
                raise InvalidArgument(
                    f"no configured subnet contains IP address {ip6} (network {rec.name}: {rec.subnet6})"
                )
        if cfg.aliases and rec.builtin:
            raise InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
            )
        if cfg.mac_address and not _valid_mac(cfg.mac_address):
            raise InvalidArgument(f"invalid MAC address: {cfg.mac_address}")

    # -------------------------------------------------------- container: start
    def namespace_for(self, c: Container) -> str | None:
        """The netns runc should join: None lets runc make a private one (none) or use the host's."""
        mode = c.spec.host.network_mode
        if mode in ("host", "none"):
            return None
        if mode.startswith("container:"):
            other = self._svc().get(mode.split(":", 1)[1])
            if other.state.status not in ("running", "paused") or not other.state.pid:
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            return other.network.netns or f"/proc/{other.state.pid}/ns/net"
        path = self.netns_dir / c.id
        if netns.exists(path):
            netns.remove(path)
        netns.create(path)
        return str(path)

    async def attach(self, c: Container, netns_path: str) -> NetworkState:
        """CNI ADD on every configured network, ports, DNS. Undone completely on failure."""
        state = NetworkState(netns=netns_path)
        try:
            endpoints: builtins.list[Endpoint] = []
            for index, (name, cfg) in enumerate(c.spec.networks.items()):
                endpoints.append(await self._add_endpoint(c, self.get(name), cfg, f"eth{index}", netns_path))
            state = replace(state, endpoints=tuple(endpoints))
            state = replace(state, ports=tuple(await self._publish(c, state)))
            if self._wants_dns(c):
                await self.dns.attach(c.id, netns_path, upstreams=c.spec.host.dns)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.release(c, state)
            raise
        return state

    async def _add_endpoint(
        self, c: Container, rec: NetworkRecord, cfg: EndpointConfig, ifname: str, netns_path: str
    ) -> Endpoint:
        args: dict[str, str] = {}
        conf = self._bridge_conf(rec)
        if cfg.ipv6_address:  # several requested IPs: host-local reads them from the conf's args
            conf["args"] = {"cni": {"ips": [ip for ip in (cfg.ipv4_address, cfg.ipv6_address) if ip]}}
        elif cfg.ipv4_address:
            args["IP"] = cfg.ipv4_address
        if cfg.mac_address:
            args["MAC"] = cfg.mac_address
        result = await self.cni.invoke(
            "ADD", conf, container_id=c.id, netns=netns_path, ifname=ifname, args=args
        )
        assert result is not None
        add = parse_add_result(result, ifname)
        self._results[(c.id, rec.id)] = add.raw
        if cfg.link_local_ips:  # dockerd's --link-local-ip: extra addresses on the interface
            await asyncio.to_thread(netns.add_addresses, netns_path, ifname, cfg.link_local_ips)
        aliases = tuple(dict.fromkeys([*cfg.aliases, *(() if rec.builtin else (c.id[:12],))]))
        return Endpoint(
            network_id=rec.id,
            network_name=rec.name,
            endpoint_id=secrets.token_hex(32),
            ifname=ifname,
            ip_address=add.ip_address,
            prefix_len=add.prefix_len,
            gateway=add.gateway if not rec.internal else "",
            mac_address=add.mac_address,
            aliases=aliases,
            ipv6_address=add.ipv6_address,
            ipv6_prefix_len=add.ipv6_prefix_len,
            ipv6_gateway=add.ipv6_gateway if not rec.internal else "",
        )

    def _bridge_conf(self, rec: NetworkRecord) -> dict[str, Any]:
        return bridge_conf(
            BridgeNetwork(
                cni_name=_cni_name(rec),
                bridge=rec.bridge,
                subnet=rec.subnet,
                gateway=rec.gateway,
                ip_range=rec.ip_range,
                internal=rec.internal,
                subnet6=rec.subnet6,
                gateway6=rec.gateway6,
                ip_range6=rec.ip_range6,
            ),
            self.ipam_dir,
        )

    def _port_network(self, c: Container, state: NetworkState) -> tuple[NetworkRecord, Endpoint] | None:
        for ep in state.endpoints:
            rec = self._find(ep.network_id)
            if rec is not None and not rec.internal:
                return rec, ep
        return None

    async def _publish(self, c: Container, state: NetworkState) -> builtins.list[PortBinding]:
        host = c.spec.host
        requests = parse_port_bindings(host.port_bindings, c.spec.exposed_ports, host.publish_all_ports)
        if not requests:
            return []
        target = self._port_network(c, state)
        if target is None:
            return []  # only internal networks: nothing to publish on (as Docker)
        rec, ep = target
        bindings = self.ports.reserve(c.id, requests)
        try:
            await self.cni.invoke(
                "ADD",
                portmap_conf(_cni_name(rec), _mappings(bindings), self._results.get((c.id, rec.id))),
                container_id=c.id,
                netns=state.netns,
                ifname=ep.ifname,
            )
        except BaseException:
            self.ports.release(c.id)
            raise
        return bindings

    def _wants_dns(self, c: Container) -> bool:
        return any(not self.get(n).builtin for n in c.spec.networks if self._find(n) is not None)

    def uses_embedded_dns(self, c: Container) -> bool:
        return self._wants_dns(c)

    # ---------------------------------------------------------- container: stop
    async def release(self, c: Container, state: NetworkState | None = None) -> None:
        """Tear down everything :meth:`attach` may have made. Idempotent; never raises."""
        state = state if state is not None else c.network
        with contextlib.suppress(Exception):
            await self.dns.detach(c.id)
        own_ns = self.netns_dir / c.id
        if not state.endpoints and not state.ports and not state.netns and not own_ns.exists():
            return  # nothing was made (stale leases are recover()'s business)
        netns_path = state.netns or str(own_ns)
        names = list(dict.fromkeys([*c.spec.networks, *(e.network_name for e in state.endpoints)]))
        # The namespace goes away with the container, taking its veths with it (the kernel
        # destroys both ends in the background). So only the IPAM lease is released, by the
        # IPAM plugin itself, which is the part of the bridge plugin's DEL that matters and
        # a fifth of its cost; deleting each veth synchronously would cost ~20 ms per rm.
        dropping_ns = netns_path == str(own_ns)
        dels = []
        target = self._port_network(c, state)
        if target is not None:
            dels.append(
                self._del_quietly(
                    portmap_conf(_cni_name(target[0]), _mappings(state.ports), None),
                    c.id,
                    netns_path,
                    target[1].ifname,
                )
            )
        for index, name in enumerate(names):
            rec = self._find(name)
            if rec is None or rec.driver != "bridge":
                continue
            ep = next((e for e in state.endpoints if e.network_id == rec.id), None)
            ifname = ep.ifname if ep else f"eth{index}"
            self._results.pop((c.id, rec.id), None)
            plugin = "host-local" if dropping_ns else None
            dels.append(self._del_quietly(self._bridge_conf(rec), c.id, netns_path, ifname, plugin=plugin))
        await asyncio.gather(*dels)
        self.ports.release(c.id)
        if dropping_ns:
            with contextlib.suppress(OSError, SkiffError):
                netns.remove(own_ns)

    async def _del_quietly(
        self, conf: dict[str, Any], cid: str, netns_path: str, ifname: str, *, plugin: str | None = None
    ) -> None:
        try:
            await self.cni.invoke(
                "DEL", conf, container_id=cid, netns=netns_path, ifname=ifname, plugin=plugin
            )
        except SkiffError as exc:
            log.warning("CNI DEL for %s (%s) failed: %s", cid[:12], ifname, exc)

    # ------------------------------------------------- connect / disconnect
    async def connect(self, network_ref: str, container_ref: str, config: EndpointConfig) -> None:
        svc = self._svc()
        rec = self.get(network_ref)
        c = svc.get(container_ref)
        mode = c.spec.host.network_mode
        if mode in ("host", "none") or mode.startswith("container:"):
            raise Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network"
                if mode != "none"
                else "container cannot be connected to multiple networks with one of the networks in private (none) mode"
            )
        if rec.driver != "bridge":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        if rec.name in c.spec.networks:
            raise Forbidden(f"endpoint with name {c.name} already exists in network {rec.name}")
        self._validate_endpoint(rec, config)
        async with svc._lock(c.id):
            c = svc.get(c.id)
            spec = replace(c.spec, networks={**c.spec.networks, rec.name: config})
            if c.state.status in ("running", "paused") and c.network.netns:
                used = {e.ifname for e in c.network.endpoints}
                ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
                c = replace(c, spec=spec)
                ep = await self._add_endpoint(c, rec, config, ifname, c.network.netns)
                c = replace(c, network=replace(c.network, endpoints=(*c.network.endpoints, ep)))
                if not rec.builtin:
                    await self.dns.attach(c.id, c.network.netns, upstreams=c.spec.host.dns)
            else:
                c = replace(c, spec=spec)
            svc._save(c)
        self.events.publish("network", "connect", rec.id, container=c.id, name=rec.name, type=rec.driver)

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        svc = self._svc()
        rec = self.get(network_ref)
        c = svc.get(container_ref)
        if rec.name not in c.spec.networks:
            raise Forbidden(f"container {c.id} is not connected to network {rec.name}")
        async with svc._lock(c.id):
            c = svc.get(c.id)
            networks = {k: v for k, v in c.spec.networks.items() if k != rec.name}
            # As dockerd: the network mode stays as it was (a container disconnected from every
            # network starts with loopback only, and can be connected again).
            mode = c.spec.host.network_mode
            ep = next((e for e in c.network.endpoints if e.network_id == rec.id), None)
            if ep is not None:
                if self._port_network(c, c.network) == (rec, ep) and c.network.ports:
                    with contextlib.suppress(Exception):
                        await self.cni.invoke(
                            "DEL",
                            portmap_conf(_cni_name(rec), _mappings(c.network.ports), None),
                            container_id=c.id,
                            netns=c.network.netns,
                            ifname=ep.ifname,
                        )
                await self._del_quietly(self._bridge_conf(rec), c.id, c.network.netns, ep.ifname)
                self._results.pop((c.id, rec.id), None)
                c = replace(
                    c,
                    network=replace(
                        c.network, endpoints=tuple(e for e in c.network.endpoints if e is not ep)
                    ),
                )
            c = replace(
                c, spec=replace(c.spec, networks=networks, host=replace(c.spec.host, network_mode=mode))
            )
            if not self._wants_dns(c):
                await self.dns.detach(c.id)
            svc._save(c)
        self.events.publish("network", "disconnect", rec.id, container=c.id, name=rec.name, type=rec.driver)

    # ---------------------------------------------------------------- DNS
    def _resolve_name(self, asking: str, qname: str) -> builtins.list[str] | None:
        """Docker's embedded DNS: names, aliases and short ids on networks shared with ``asking``."""
        svc = self._svc()
        me = svc._containers.get(asking)
        if me is None:
            return None
        mine = {
            e.network_id
            for e in me.network.endpoints
            if not self._networks.get(e.network_id, _BUILTIN_NET).builtin
        }
        links = {}
        endpoint_links = [link for cfg in me.spec.networks.values() for link in cfg.links]
        for link in (*me.spec.host.links, *endpoint_links):
            target, _, alias = link.lstrip("/").partition(":")
            links[(alias or target).lower()] = target
        found: builtins.list[str] = []
        for other in svc._containers.values():
            if other.state.status not in ("running", "paused"):
                continue
            names = {other.name.lower(), other.id[:12]}
            for ep in other.network.endpoints:
                if ep.network_id not in mine:
                    continue
                if (
                    qname in names
                    or qname in (a.lower() for a in ep.aliases)
                    or links.get(qname) in (other.name, other.id)
                ):
                    found.append(ep.ip_address)
        return found or None

    # ------------------------------------------------------------- hosts file
    def _linked(self, c: Container) -> builtins.list[tuple[str, Container]]:
        """(alias or "", target container) for each ``--link`` whose target still exists."""
        out: builtins.list[tuple[str, Container]] = []
        for link in c.spec.host.links:
            target, _, alias = link.lstrip("/").partition(":")
            with contextlib.suppress(NotFound):
                out.append((alias, self._svc().get(target)))
        return out

    def hosts_entries(self, c: Container, state: NetworkState) -> builtins.list[tuple[str, str]]:
        """Extra /etc/hosts lines (ip, names) for legacy links."""
        out: builtins.list[tuple[str, str]] = []
        for alias, other in self._linked(c):
            shared = {e.network_id for e in state.endpoints}
            ep = next((e for e in other.network.endpoints if e.network_id in shared), None)
            if ep is None:
                continue
            names = " ".join(dict.fromkeys([alias or other.name, other.id[:12], other.name]))
            out.append((ep.ip_address, names))
        return out

    def link_env(self, c: Container) -> builtins.list[str]:
        """Docker's legacy link environment (DB_PORT_5432_TCP_ADDR=...) for running link targets."""
        env: builtins.list[str] = []
        for alias, other in self._linked(c):
            ep = other.network.endpoints[0] if other.network.endpoints else None
            if ep is None:
                continue
            prefix = (alias or other.name).upper().replace("-", "_")
            env.append(f"{prefix}_NAME=/{c.name}/{alias or other.name}")
            ports = sorted(other.spec.exposed_ports, key=lambda p: (int(p.split("/")[0]), p))
            for i, port in enumerate(ports):
                num, _, proto = port.partition("/")
                proto = proto or "tcp"
                key = f"{prefix}_PORT_{num}_{proto.upper()}"
                if i == 0:
                    env.append(f"{prefix}_PORT={proto}://{ep.ip_address}:{num}")
                env += [
                    f"{key}={proto}://{ep.ip_address}:{num}",
                    f"{key}_ADDR={ep.ip_address}",
                    f"{key}_PORT={num}",
                    f"{key}_PROTO={proto}",
                ]
            for item in other.spec.env:  # the target's environment, as ALIAS_ENV_NAME
                name, sep, value = item.partition("=")
                if sep and name not in ("HOME", "PATH"):
                    env.append(f"{prefix}_ENV_{name}={value}")
        return env

    # --------------------------------------------------------------- recovery
    async def recover(self) -> None:
        """After a (possibly crashed) restart, with container records loaded.

        Running containers get their port reservations and DNS servers back; everything
        else that CNI, the IPAM or the namespace directory holds is released.
        """
        svc = self._svc()
        live: dict[str, Container] = {
            c.id: c for c in svc.list() if c.state.status in ("running", "paused") and c.network.netns
        }
        for c in live.values():
            failed = self.ports.restore(c.id, c.network.ports)
            for b in failed:
                log.error("container %s: could not take back port %s:%s", c.id[:12], b.host_ip, b.host_port)
            if self._wants_dns(c):
                try:
                    await self.dns.attach(c.id, c.network.netns, upstreams=c.spec.host.dns)
                except SkiffError as exc:
                    log.error("container %s: embedded DNS not restored: %s", c.id[:12], exc)
        # Containers that are not running hold nothing: their records, leases (e.g. after a
        # reboot emptied /run), port rules and namespaces go; so do those of containers that
        # no longer exist at all.
        for c in svc.list():
            if c.id not in live and c.network != NetworkState():
                await self.release(c)
                svc._save(replace(c, network=NetworkState()))
        for rec in self.list():
            if rec.driver != "bridge":
                continue
            for cid, ifname in self._leases(rec):
                if cid in live:
                    continue
                log.info("releasing lease of stopped or removed container %s on %s", cid[:12], rec.name)
                with contextlib.suppress(Exception):
                    await self.cni.invoke(
                        "DEL",
                        portmap_conf(_cni_name(rec), [], None),
                        container_id=cid,
                        netns="",
                        ifname=ifname,
                    )
                await self._del_quietly(self._bridge_conf(rec), cid, "", ifname)
        if self.netns_dir.exists():
            for entry in self.netns_dir.iterdir():
                if entry.name not in live:
                    with contextlib.suppress(OSError, SkiffError):
                        netns.remove(entry)

    def _reserve_aux(self, rec: NetworkRecord) -> None:
        """Keep auxiliary addresses out of host-local's hands: a lease file per address, as
        host-local itself writes them (its disk store treats any file named by an IP as taken)."""
        if not rec.aux_addresses:
            return
        d = self.ipam_dir / _cni_name(rec)
        d.mkdir(parents=True, exist_ok=True)
        for ip in rec.aux_addresses.values():
            (d / ip).write_text(f"{_AUX_LEASE}\r\naux")

    def _leases(self, rec: NetworkRecord) -> builtins.list[tuple[str, str]]:
        d = self.ipam_dir / _cni_name(rec)
        out: builtins.list[tuple[str, str]] = []
        if not d.is_dir():
            return out
        for f in d.iterdir():
            if f.name in ("lock",) or f.name.startswith("last_reserved_ip"):
                continue
            try:
                lines = f.read_text().split()
            except OSError:
                continue
            if lines and lines[0] != _AUX_LEASE:
                out.append((lines[0], lines[1] if len(lines) > 1 else "eth0"))
        return out

    async def close(self) -> None:
        await self.dns.close()
        for c in self._svc().list():
            self.ports.release(c.id)


_AUX_LEASE = "skiff-auxiliary-address"
_BUILTIN_NET = NetworkRecord(id="", name="", created="", builtin=True)


def _cni_name(rec: NetworkRecord) -> str:
    return f"skiff-{rec.id[:12]}"


def _mappings(bindings: Sequence[PortBinding]) -> builtins.list[dict[str, Any]]:
    out: builtins.list[dict[str, Any]] = []
    for b in bindings:
        m: dict[str, Any] = {
            "hostPort": b.host_port,
            "containerPort": b.container_port,
            "protocol": b.protocol,
        }
        if b.host_ip and b.host_ip != "0.0.0.0":
            m["hostIP"] = b.host_ip
        out.append(m)
    return out


def _valid_mac(mac: str) -> bool:
    parts = mac.split(":")
    return len(parts) == 6 and all(
        len(p) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in p) for p in parts
    )


def _host_routes() -> builtins.list[ipaddress.IPv4Network]:
    """Destinations routed on the host (not the default route): auto-allocated subnets avoid them."""
    out: builtins.list[ipaddress.IPv4Network] = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) < 8:
            continue
        dest = int(f[1], 16).to_bytes(4, "little")
        mask = int(f[7], 16).to_bytes(4, "little")
        if mask == b"\0\0\0\0":
            continue
        with contextlib.suppress(ValueError):
            out.append(
                ipaddress.IPv4Network(
                    (ipaddress.IPv4Address(dest), bin(int.from_bytes(mask, "big")).count("1"))
                )
            )
    return out


def _delete_bridge(name: str) -> None:
    if not name:
        return
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            with contextlib.suppress(Exception):
                ipr.link("del", index=idx[0])


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
