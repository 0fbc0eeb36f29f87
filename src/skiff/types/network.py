"""Network types: networks, what a container asks of one, and what it got.

Names follow Docker's ``NetworkResource`` / ``EndpointSettings`` / ``PortBinding``; the API
layer converts. ``NetworkState`` is the part of a container record that the network service
owns (persisted with the container so a restarted skiffd can tear down or restore it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NetworkRecord:
    """A network. ``builtin`` marks the predefined ``bridge``, ``host`` and ``none``."""

    id: str
    name: str
    created: str
    driver: str = "bridge"  # bridge | host | null
    subnet: str = ""  # CIDR, e.g. 10.212.0.0/24
    gateway: str = ""  # the bridge's address
    ip_range: str = ""  # CIDR inside subnet that IPAM allocates from ("" = whole subnet)
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    bridge: str = ""  # Linux bridge name (skiff-prefixed unless the user chose one)
    builtin: bool = False
    aux_addresses: dict[str, str] = field(default_factory=dict)  # name -> IP kept out of IPAM
    enable_ipv6: bool = False  # dual stack: an IPv6 subnet besides the IPv4 one
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""
    ipam_options: dict[str, str] | None = None  # as given (dockerd echoes null or {})


@dataclass(frozen=True)
class EndpointConfig:
    """What a container asks of one network (Docker's EndpointSettings on create/connect)."""

    aliases: tuple[str, ...] = ()
    ipv4_address: str = ""
    links: tuple[str, ...] = ()  # "name:alias" (only for the default bridge via --link)
    mac_address: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)  # kept and shown; the bridge driver reads none
    link_local_ips: tuple[str, ...] = ()  # kept and shown, as dockerd's bridge driver does
    ipv6_address: str = ""  # requested on an IPv6-enabled network


@dataclass(frozen=True)
class Endpoint:
    """What a running container got on one network."""

    network_id: str
    network_name: str
    endpoint_id: str
    ifname: str  # eth0, eth1, ...
    ip_address: str  # without prefix
    prefix_len: int
    gateway: str
    mac_address: str
    aliases: tuple[str, ...] = ()
    ipv6_address: str = ""  # global IPv6 address (IPv6-enabled networks), without prefix
    ipv6_prefix_len: int = 0
    ipv6_gateway: str = ""


@dataclass(frozen=True)
class PortBinding:
    """One published port as it was actually bound (a random host port already chosen)."""

    container_port: int
    protocol: str  # tcp | udp
    host_ip: str  # "0.0.0.0" for all addresses
    host_port: int


@dataclass(frozen=True)
class NetworkState:
    """A container's live networking; empty when it is not running (or uses host/none)."""

    netns: str = ""  # path of the network namespace (Docker's SandboxKey)
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[PortBinding, ...] = ()
