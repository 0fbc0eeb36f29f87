"""skiffd configuration: defaults < config file (YAML or JSON) < command-line flags."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from skiff.errors import InvalidArgument

DEFAULT_HOST = "unix:///run/skiff/skiff.sock"


@dataclass(frozen=True)
class DaemonConfig:
    """Everything skiffd can be told. Config-file keys use dashes, as in daemon.json."""

    root: Path = Path("/var/lib/skiff")
    run_dir: Path = Path("/run/skiff")
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    runtime: str = "runc"
    cgroup_parent: str = "skiff"
    log_level: str = "info"
    socket_group: str = "root"
    # Networking (daemon.json's names): the default network's Linux bridge and its address
    # with prefix; user networks get subnets of pool-size bits carved from the pool.
    bridge: str = "skiff0"
    bip: str = "10.211.0.1/16"
    default_address_pool: str = "10.212.0.0/14"
    default_address_pool_size: int = 24
    iptables_chain_prefix: str = "SKIFF"
    # TCP listeners (dockerd's flags and daemon.json keys). tlsverify: mutual TLS, clients need a
    # certificate signed by tlscacert; tls alone: server TLS only. tls False (said explicitly) is
    # the opt-in to plain TCP; None means "not said", and then a tcp:// host without TLS is refused.
    tls: bool | None = None
    tlsverify: bool | None = None
    tlscacert: Path | None = None
    tlscert: Path | None = None
    tlskey: Path | None = None
    # Registries (daemon.json's names): docker.io pulls try the mirrors first; insecure
    # registries (host[:port] or CIDR; localhost and 127.0.0.0/8 always) may be plain HTTP.
    registry_mirrors: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    # Cluster: the name this node has in a cluster (default: the host name).
    node_name: str = ""


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"config file {path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"config file {path} must hold a mapping of settings")
    return data


def _registry_list(key: str, value: Any) -> tuple[str, ...]:
    from skiff.registry.client_endpoints import validate_insecure, validate_mirror

    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise InvalidArgument(f"setting {key!r} must be a list of strings")
    check = validate_mirror if key.replace("_", "-") == "registry-mirrors" else validate_insecure
    return tuple(check(v) for v in items)


def merge(config: DaemonConfig, settings: dict[str, Any]) -> DaemonConfig:
    known = {f.name for f in fields(DaemonConfig)}
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        name = key.replace("-", "_")
        if name == "host":
            name = "hosts"
        if name not in known:
            raise InvalidArgument(f"unknown setting {key!r} in config (known: {', '.join(sorted(known))})")
        if value is None:
            continue
        if name in ("root", "run_dir", "tlscacert", "tlscert", "tlskey"):
            value = Path(value)
        elif name in ("tls", "tlsverify") and not isinstance(value, bool):
            raise InvalidArgument(f"setting {key!r} must be true or false, not {value!r}")
        elif name == "hosts":
            value = (value,) if isinstance(value, str) else tuple(value)
        elif name in ("registry_mirrors", "insecure_registries"):
            value = _registry_list(key, value)
        changes[name] = value
    result = replace(config, **changes)
    if result.runtime not in ("runc", "crun"):
        raise InvalidArgument(f"unknown runtime {result.runtime!r}: choose runc or crun")
    return result
