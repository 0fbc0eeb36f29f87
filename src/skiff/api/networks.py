"""Network routes: /networks/* (list, inspect, create, remove, connect, disconnect, prune).

The JSON is shaped as dockerd 20.10 answers at API 1.41; the work is the engine's
``NetworkService`` (``engine.networks``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from skiff.api.app import Routes, engine_of, qfilters, read_json
from skiff.api.convert import endpoint_config_from_json
from skiff.api.filters import check_network_filters, network_matches, network_prune_matcher
from skiff.engine.model import Container
from skiff.errors import Forbidden, InvalidArgument, NotFound
from skiff.types import Endpoint, NetworkRecord

JSON = dict[str, Any]


# -- Docker JSON -> request --------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkCreate:
    """A ``POST /networks/create`` body, checked: what ``NetworkService.create`` takes."""

    name: str
    driver: str = "bridge"
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    aux_addresses: dict[str, str] = field(default_factory=dict)
    ipam_options: dict[str, str] | None = None
    enable_ipv6: bool = False
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""


def _str(body: JSON, key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid value for {key}: expected a string")
    return value


def _map(body: JSON, key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid value for {key}: expected an object")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _obj(value: Any, key: str) -> JSON:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid value for {key}: expected an object")
    return value


def _check_ipv4(value: str, what: str, *, network: bool = False) -> None:
    try:
        if network:
            ipaddress.IPv4Network(value, strict=False)
        else:
            ipaddress.IPv4Address(value)
    except ValueError:
        if ":" in value:
            raise InvalidArgument(f"IPv6 is not supported: {what} {value}") from None
        raise InvalidArgument(f"invalid {what}: {value}") from None


def _check_ipv6(value: str, what: str, *, network: bool = False) -> None:
    try:
        if network:
            ipaddress.IPv6Network(value, strict=False)
        else:
            ipaddress.IPv6Address(value)
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 {what}: {value}") from None


def network_create_from_json(body: Any) -> NetworkCreate:
    """Docker's NetworkCreateRequest -> NetworkCreate; what skiff cannot do is refused with a 400."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the request body must be a JSON object")
    name = _str(body, "Name").strip()
    if not name:
        raise InvalidArgument("network name cannot be empty")
    driver = _str(body, "Driver") or "bridge"
    if driver in ("host", "null"):
        raise Forbidden(f'only one instance of "{driver}" network is allowed')
    if driver != "bridge":
        raise NotFound(f'plugin "{driver}" not found')
    if body.get("Ingress"):
        raise InvalidArgument("ingress networks are swarm-mode networks, which skiff does not have")
    if body.get("ConfigOnly") or _obj(body.get("ConfigFrom"), "ConfigFrom").get("Network"):
        raise InvalidArgument("config-only networks are not supported")
    if _str(body, "Scope") not in ("", "local"):
        raise InvalidArgument(f"invalid scope {body['Scope']!r}: skiff networks are local")
    ipam = _obj(body.get("IPAM"), "IPAM")
    if (ipam_driver := _str(ipam, "Driver")) not in ("", "default"):
        raise NotFound(f'IPAM driver "{ipam_driver}" not found: skiff has only the default IPAM driver')
    configs = ipam.get("Config") or []
    if not isinstance(configs, list):
        raise InvalidArgument("invalid value for IPAM.Config: expected a list")
    v4: list[JSON] = []
    v6: list[JSON] = []
    for item in configs:
        config = _obj(item, "IPAM.Config")
        (v6 if ":" in _str(config, "Subnet") else v4).append(config)
    if len(v4) > 1 or len(v6) > 1:
        raise InvalidArgument("at most one IPv4 and one IPv6 subnet per network are supported")
    enable_ipv6 = body.get("EnableIPv6")
    if enable_ipv6 is not None and not isinstance(enable_ipv6, bool):
        raise InvalidArgument("invalid value for EnableIPv6: expected a boolean")
    subnet6 = gateway6 = ip_range6 = ""
    if v6:
        if not enable_ipv6:
            raise InvalidArgument("an IPv6 subnet needs IPv6 enabled on the network (--ipv6)")
        subnet6, gateway6, ip_range6 = _str(v6[0], "Subnet"), _str(v6[0], "Gateway"), _str(v6[0], "IPRange")
        _check_ipv6(subnet6, "subnet", network=True)
        if ip_range6:
            _check_ipv6(ip_range6, "ip-range", network=True)
        if gateway6:
            _check_ipv6(gateway6, "gateway")
    elif enable_ipv6:
        raise InvalidArgument(
            "could not find an available, non-overlapping IPv6 address pool among the defaults to assign "
            "to the network: give an IPv6 subnet (--subnet)"
        )
    subnet = gateway = ip_range = ""
    aux: dict[str, str] = {}
    if v4:
        config = v4[0]
        subnet, gateway, ip_range = _str(config, "Subnet"), _str(config, "Gateway"), _str(config, "IPRange")
        if (gateway or ip_range) and not subnet:
            raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
        if subnet:
            _check_ipv4(subnet, "subnet", network=True)
        if ip_range:
            _check_ipv4(ip_range, "ip-range", network=True)
        if gateway:
            _check_ipv4(gateway, "gateway")
        aux = _map(config, "AuxiliaryAddresses")
        if aux and not subnet:
            raise InvalidArgument("every auxiliary address must have a corresponding subnet")
        for value in aux.values():
            _check_ipv4(value, "auxiliary address")
    ipam_options = ipam.get("Options")
    return NetworkCreate(
        name=name,
        driver=driver,
        subnet=subnet,
        gateway=gateway,
        ip_range=ip_range,
        internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")),
        labels=_map(body, "Labels"),
        options=_map(body, "Options"),
        aux_addresses=aux,
        ipam_options=None if ipam_options is None else _map(ipam, "Options"),
        enable_ipv6=bool(enable_ipv6),
        subnet6=subnet6,
        gateway6=gateway6,
        ip_range6=ip_range6,
    )


# -- record -> Docker JSON ---------------------------------------------------------------------
def endpoint_resource(c: Container, ep: Endpoint) -> JSON:
    """One entry of a network's ``Containers`` map."""
    return {
        "Name": c.name,
        "EndpointID": ep.endpoint_id,
        "MacAddress": ep.mac_address,
        "IPv4Address": f"{ep.ip_address}/{ep.prefix_len}" if ep.ip_address else "",
        "IPv6Address": f"{ep.ipv6_address}/{ep.ipv6_prefix_len}" if ep.ipv6_address else "",
    }


def network_json(rec: NetworkRecord, attached: list[tuple[Container, Endpoint | None]] | None = None) -> JSON:
    """A NetworkResource. ``attached`` fills ``Containers`` (inspect); lists leave it empty, as dockerd."""
    config: list[JSON] = []
    if rec.subnet:
        entry: JSON = {"Subnet": rec.subnet}
        if rec.ip_range:
            entry["IPRange"] = rec.ip_range
        if rec.gateway:
            entry["Gateway"] = rec.gateway
        if rec.aux_addresses:
            entry["AuxiliaryAddresses"] = dict(rec.aux_addresses)
        config.append(entry)
    if rec.subnet6:
        entry6: JSON = {"Subnet": rec.subnet6}
        if rec.ip_range6:
            entry6["IPRange"] = rec.ip_range6
        if rec.gateway6:
            entry6["Gateway"] = rec.gateway6
        config.append(entry6)
    containers = {c.id: endpoint_resource(c, ep) for c, ep in attached or [] if ep is not None}
    return {
        "Name": rec.name,
        "Id": rec.id,
        "Created": rec.created,
        "Scope": "local",
        "Driver": rec.driver,
        "EnableIPv6": rec.enable_ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": None if rec.builtin or rec.ipam_options is None else dict(rec.ipam_options),
            "Config": config,
        },
        "Internal": rec.internal,
        "Attachable": rec.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": dict(rec.options),
        "Labels": dict(rec.labels),
    }


# -- routes ------------------------------------------------------------------------------------
async def list_networks(request: web.Request) -> web.Response:
    networks = engine_of(request).networks
    filters = qfilters(request)
    check_network_filters(filters)
    # "dangling" follows skiff's rule for rm and prune: a network some container (running or
    # not) is configured on is in use.
    out = [
        network_json(rec)
        for rec in networks.list()
        if network_matches(rec, filters, bool(networks.attached(rec)) if "dangling" in filters else False)
    ]
    return web.json_response(out)


async def inspect(request: web.Request) -> web.Response:
    networks = engine_of(request).networks
    ref = request.match_info["id"]
    rec = networks.get(ref)
    if request.query.get("scope", "local") not in ("", "local"):
        raise NotFound(f"network {ref} not found")
    return web.json_response(network_json(rec, networks.attached(rec)))


async def create(request: web.Request) -> web.Response:
    req = network_create_from_json(await read_json(request, default={}))
    rec = await engine_of(request).networks.create(
        req.name,
        driver=req.driver,
        subnet=req.subnet,
        gateway=req.gateway,
        ip_range=req.ip_range,
        internal=req.internal,
        attachable=req.attachable,
        labels=req.labels,
        options=req.options,
        aux_addresses=req.aux_addresses,
        ipam_options=req.ipam_options,
        enable_ipv6=req.enable_ipv6,
        subnet6=req.subnet6,
        gateway6=req.gateway6,
        ip_range6=req.ip_range6,
    )
    return web.json_response({"Id": rec.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.Response:
    await engine_of(request).networks.remove(request.match_info["id"])
    return web.Response(status=204)


def _container_ref(body: Any) -> str:
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the request body must be a JSON object")
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("invalid value for Container: a container name or id is required")
    return ref


async def connect(request: web.Request) -> web.Response:
    body = await read_json(request, default={})
    ref = _container_ref(body)
    config = endpoint_config_from_json(body.get("EndpointConfig"))
    await engine_of(request).networks.connect(request.match_info["id"], ref, config)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await read_json(request, default={})
    ref = _container_ref(body)
    await engine_of(request).networks.disconnect(request.match_info["id"], ref, force=bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    match = network_prune_matcher(qfilters(request))
    deleted = await engine_of(request).networks.prune(match)
    return web.json_response({"NetworksDeleted": deleted or None})


def register(routes: Routes) -> None:
    routes.add("GET", "/networks", list_networks)
    routes.add("GET", "/networks/", list_networks)
    routes.add("POST", "/networks/create", create)
    routes.add("POST", "/networks/prune", prune)
    routes.add("GET", "/networks/{id}", inspect)
    routes.add("DELETE", "/networks/{id}", remove)
    routes.add("POST", "/networks/{id}/connect", connect)
    routes.add("POST", "/networks/{id}/disconnect", disconnect)
