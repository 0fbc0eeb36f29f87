"""A project's networks and volumes as Engine API create bodies (Compose's labels on each)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skiff.client import Client
from skiff.compose import labels as L
from skiff.errors import Conflict

JSON = dict[str, Any]


def network_body(project: str, key: str, name: str, spec: Mapping[str, Any]) -> JSON:
    """``POST /networks/create`` for network ``key`` of ``project``."""
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    labels.update({L.NETWORK: key, L.PROJECT: project, L.VERSION: L.COMPOSE_VERSION})
    body: JSON = {"Name": name, "CheckDuplicate": True, "Labels": labels}
    if spec.get("driver"):
        body["Driver"] = str(spec["driver"])
    if spec.get("driver_opts"):
        body["Options"] = {str(k): str(v) for k, v in spec["driver_opts"].items()}
    for key_, api in (("internal", "Internal"), ("attachable", "Attachable"), ("enable_ipv6", "EnableIPv6")):
        if spec.get(key_):
            body[api] = True
    ipam = spec.get("ipam") or {}
    if ipam:
        configs = []
        for pool in ipam.get("config") or []:
            cfg: JSON = {}
            for k, api in (("subnet", "Subnet"), ("gateway", "Gateway"), ("ip_range", "IPRange")):
                if pool.get(k):
                    cfg[api] = str(pool[k])
            if pool.get("aux_addresses"):
                cfg["AuxiliaryAddresses"] = {str(a): str(b) for a, b in pool["aux_addresses"].items()}
            configs.append(cfg)
        body["IPAM"] = {
            "Driver": str(ipam.get("driver") or "default"),
            "Config": configs,
            "Options": dict(ipam.get("options") or {}),
        }
    return body


def volume_body(project: str, key: str, name: str, spec: Mapping[str, Any]) -> JSON:
    """``POST /volumes/create`` for volume ``key`` of ``project``."""
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    labels.update({L.VOLUME: key, L.PROJECT: project, L.VERSION: L.COMPOSE_VERSION})
    body: JSON = {"Name": name, "Driver": str(spec.get("driver") or "local"), "Labels": labels}
    if spec.get("driver_opts"):
        body["DriverOpts"] = {str(k): str(v) for k, v in spec["driver_opts"].items()}
    return body


def create_network(client: Client, project: str, key: str, name: str, spec: Mapping[str, Any]) -> None:
    """Create the network; one of that name made outside the project is reused, as Compose does."""
    try:
        client.create_network(network_body(project, key, name, spec))
    except Conflict:
        client.inspect_network(name)


def create_volume(client: Client, project: str, key: str, name: str, spec: Mapping[str, Any]) -> None:
    """Create the volume (creating an existing local volume is a no-op on the daemon)."""
    client.create_volume(volume_body(project, key, name, spec))
