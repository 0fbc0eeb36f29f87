"""``--network``, ``--network-alias``, ``--ip``, ``--link``, ``--mac-address``: the create body's
networking part, built as the docker CLI builds it (``NetworkingConfig.EndpointsConfig``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from skiff.errors import InvalidArgument

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def is_user_defined(mode: str) -> bool:
    """docker's NetworkMode.IsUserDefined: not default/bridge/host/none and not ``container:``."""
    return mode not in ("", "default", "bridge", "host", "none") and not mode.startswith("container:")


def parse_link(value: str) -> str:
    """``--link name[:alias]``, checked as docker's ValidateLink; sent as given."""
    parts = value.split(":")
    if len(parts) > 2 or not parts[0] or (len(parts) == 2 and not parts[1]):
        raise InvalidArgument(f"invalid argument {value!r} for --link: bad format for links: {value}")
    return value


def parse_mac(value: str) -> str:
    """``--mac-address`` (docker's ValidateMACAddress)."""
    if not _MAC.match(value):
        raise InvalidArgument(f"{value} is not a valid mac address")
    return value


def parse_ipv4(value: str, flag: str = "--ip") -> str:
    """An IPv4 address for ``--ip``/``network connect --ip``."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise InvalidArgument(f"invalid argument {value!r} for {flag}: not an IPv4 address") from None
    return value


def parse_ipv6(value: str, flag: str = "--ip6") -> str:
    """An IPv6 address for ``--ip6``/``network connect --ip6``."""
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        raise InvalidArgument(f"invalid argument {value!r} for {flag}: not an IPv6 address") from None
    return value


def endpoint_settings(
    mode: str, aliases: tuple[str, ...], links: tuple[str, ...], ip: str | None, ip6: str | None = None
) -> dict[str, Any]:
    """One EndpointSettings for ``mode``: aliases, links (user-defined networks only), IPAMConfig."""
    ep: dict[str, Any] = {}
    if aliases:
        if not is_user_defined(mode):
            raise InvalidArgument("network-scoped aliases are only supported for user-defined networks")
        ep["Aliases"] = list(aliases)
    if links and is_user_defined(mode):
        # On a user-defined network a link is an endpoint alias; on the default bridge it is a
        # legacy link, which travels in HostConfig.Links only.
        ep["Links"] = list(links)
    if ip or ip6:  # the docker CLI omits empty addresses (omitempty)
        ipam: dict[str, str] = {}
        if ip:
            ipam["IPv4Address"] = parse_ipv4(ip)
        if ip6:
            ipam["IPv6Address"] = parse_ipv6(ip6)
        ep["IPAMConfig"] = ipam
    return ep


def networking_config(
    network: str | None,
    aliases: tuple[str, ...],
    links: tuple[str, ...],
    ip: str | None,
    ip6: str | None = None,
) -> dict[str, Any]:
    """``NetworkingConfig`` for run/create: an entry for the chosen network when it has settings."""
    mode = network or "default"
    if not mode.strip():
        raise InvalidArgument("no name set for network")
    ep = endpoint_settings(mode, aliases, tuple(parse_link(v) for v in links), ip, ip6)
    return {"EndpointsConfig": {mode: ep} if ep else {}}
