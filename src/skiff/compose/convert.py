"""A service in canonical compose form -> an Engine API container create request.

Pure functions: what Compose's ``getCreateConfigs`` does, for the API version skiff
speaks (1.41: a container is created on one network and connected to the others
afterwards). The config hash is taken over the service as written, minus what may
change without a new container (build, pull_policy, scale/replicas, depends_on,
profiles), as Compose's ``ServiceHash``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skiff.compose import labels as L
from skiff.compose.graph import dependencies
from skiff.compose.mounts import InjectedFile, service_mounts
from skiff.compose.values import duration_ns, duration_seconds, nano_cpus, size_bytes
from skiff.errors import InvalidArgument

JSON = dict[str, Any]
DEFAULT_NETWORK = "default"


@dataclass(frozen=True)
class ProjectInfo:
    """What a service's conversion needs to know about its project."""

    name: str
    working_dir: str
    config_files: tuple[str, ...]
    networks: Mapping[str, Any]
    volumes: Mapping[str, Any]
    secrets: Mapping[str, Any]
    configs: Mapping[str, Any]
    environment: Mapping[str, str]
    env_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    """An existing container of another service, for links, network_mode and volumes_from."""

    name: str
    id: str


@dataclass
class ContainerRequest:
    """One container to create: its name, the create body, what to do before start."""

    name: str
    body: JSON
    connect: list[tuple[str, JSON]] = field(default_factory=list)  # (network, EndpointConfig)
    files: list[InjectedFile] = field(default_factory=list)


def config_hash(service: Mapping[str, Any]) -> str:
    """sha256 over the service's canonical JSON minus build, pull_policy, scale, replicas, deps."""
    data = {
        k: v
        for k, v in service.items()
        if k not in ("build", "pull_policy", "scale", "depends_on", "profiles")
    }
    deploy = data.get("deploy")
    if isinstance(deploy, Mapping) and "replicas" in deploy:
        data["deploy"] = {k: v for k, v in deploy.items() if k != "replicas"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def image_name(project: str, service_name: str, service: Mapping[str, Any]) -> str:
    """The service's image, or the name Compose gives a built one: ``<project>-<service>``."""
    return str(service.get("image") or f"{project}-{service_name}")


def container_name(project: str, service_name: str, service: Mapping[str, Any], number: int) -> str:
    """``container_name``, else ``<project>-<service>-<n>``."""
    if service.get("container_name"):
        return str(service["container_name"])
    return f"{project}-{service_name}-{number}"


def replicas(service: Mapping[str, Any]) -> int:
    """How many containers a service wants: ``deploy.replicas``, else ``scale``, else 1."""
    deploy = service.get("deploy") or {}
    value = deploy.get("replicas") if isinstance(deploy, Mapping) else None
    if value is None:
        value = service.get("scale")
    if value is None:
        return 1
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid replicas: {value!r}") from None
    if n < 0:
        raise InvalidArgument(f"invalid replicas: {value!r}")
    return n


def network_name(networks: Mapping[str, Any], key: str, project: str) -> str:
    """The daemon's name of a project network key."""
    spec = networks.get(key)
    if isinstance(spec, Mapping) and spec.get("name"):
        return str(spec["name"])
    if isinstance(spec, Mapping) and spec.get("external"):
        return key
    return f"{project}_{key}"


def service_networks(service: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(network key, endpoint options) in priority order; ``default`` when none is named."""
    if service.get("network_mode"):
        return []
    raw = service.get("networks")
    if raw is None:
        return [(DEFAULT_NETWORK, {})]
    items: list[tuple[str, Mapping[str, Any]]]
    if isinstance(raw, list):
        items = [(str(k), {}) for k in raw]
    else:
        items = [(str(k), v or {}) for k, v in raw.items()]
    # Higher priority first, then by name (Compose's NetworksByPriority).
    items.sort(key=lambda kv: (-int(kv[1].get("priority") or 0), kv[0]))
    return items


def compose_labels(
    project: ProjectInfo, service_name: str, service: Mapping[str, Any], number: int | None, oneoff: bool
) -> dict[str, str]:
    """The labels Compose puts on a container, besides the service's own."""
    deps = dependencies(service)
    out = {
        L.PROJECT: project.name,
        L.SERVICE: service_name,
        L.ONEOFF: "True" if oneoff else "False",
        L.CONFIG_HASH: config_hash(service),
        L.WORKING_DIR: project.working_dir,
        L.CONFIG_FILES: ",".join(project.config_files),
        L.DEPENDS_ON: ",".join(
            f"{d.service}:{d.condition}:{'true' if d.restart else 'false'}" for d in deps.values()
        ),
        L.VERSION: L.COMPOSE_VERSION,
    }
    if number is not None:
        out[L.CONTAINER_NUMBER] = str(number)
    if project.env_files:
        out[L.ENVIRONMENT_FILE] = ",".join(project.env_files)
    return out


def _env(environment: Any) -> list[str] | None:
    if not environment:
        return None
    if isinstance(environment, list):
        return [str(e) for e in environment]
    return [k if v is None else f"{k}={v}" for k, v in sorted(environment.items())]


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        import shlex

        return shlex.split(value)
    return [str(v) for v in value]


def _healthcheck(hc: Mapping[str, Any] | None) -> JSON | None:
    if not hc:
        return None
    if hc.get("disable"):
        return {"Test": ["NONE"]}
    out: JSON = {}
    test = hc.get("test")
    if isinstance(test, str):
        out["Test"] = ["CMD-SHELL", test]
    elif test:
        out["Test"] = [str(t) for t in test]
    for key, api in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start_period", "StartPeriod"),
        ("start_interval", "StartInterval"),
    ):
        if hc.get(key) is not None:
            out[api] = duration_ns(hc[key], f"healthcheck.{key}")
    if hc.get("retries") is not None:
        out["Retries"] = int(hc["retries"])
    return out


def _ports(service: Mapping[str, Any]) -> tuple[JSON, JSON]:
    exposed: JSON = {}
    bindings: JSON = {}
    for p in service.get("ports") or []:
        if not isinstance(p, Mapping):
            raise InvalidArgument(f"ports: expected the long syntax, got {p!r}")
        key = f"{p['target']}/{p.get('protocol') or 'tcp'}"
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": str(p.get("host_ip") or ""), "HostPort": str(p.get("published") or "")}
        )
    for e in service.get("expose") or []:
        text = str(e)
        port, _, proto = text.partition("/")
        start, _, end = port.partition("-")
        try:
            lo, hi = int(start), int(end or start)
        except ValueError:
            raise InvalidArgument(f"expose: invalid port {text!r}") from None
        for n in range(lo, hi + 1):
            exposed[f"{n}/{proto or 'tcp'}"] = {}
    return exposed, bindings


def _restart(service: Mapping[str, Any]) -> JSON:
    names = {
        "none": "no",
        "no": "no",
        "any": "always",
        "always": "always",
        "on-failure": "on-failure",
        "unless-stopped": "unless-stopped",
    }
    policy: JSON = {"Name": "", "MaximumRetryCount": 0}
    if service.get("restart"):
        name, _, count = str(service["restart"]).partition(":")
        policy = {"Name": names.get(name, name), "MaximumRetryCount": int(count or 0)}
    deploy = service.get("deploy") or {}
    rp = deploy.get("restart_policy") if isinstance(deploy, Mapping) else None
    if rp:
        condition = str(rp.get("condition") or "any")
        policy = {
            "Name": names.get(condition, condition),
            "MaximumRetryCount": int(rp.get("max_attempts") or 0),
        }
    if policy["Name"] == "no":
        policy["Name"] = ""
    return policy


def _ulimits(value: Any) -> list[JSON] | None:
    if not value:
        return None
    out = []
    for name, spec in sorted(value.items()):
        if isinstance(spec, Mapping):
            single = spec.get("single")
            soft = spec.get("soft", single)
            hard = spec.get("hard", single)
        else:
            soft = hard = spec
        out.append({"Name": name, "Soft": int(soft), "Hard": int(hard)})
    return out


def _extra_hosts(value: Any) -> list[str] | None:
    if not value:
        return None
    if isinstance(value, Mapping):
        items = [f"{h}:{ip}" for h, ips in value.items() for ip in (ips if isinstance(ips, list) else [ips])]
    else:
        items = []
        for entry in value:
            text = str(entry)
            host, sep, ip = text.partition("=")
            items.append(f"{host}:{ip}" if sep else text)
    return items


def _resources(service: Mapping[str, Any]) -> JSON:
    res: JSON = {}
    if service.get("mem_limit") is not None:
        res["Memory"] = size_bytes(service["mem_limit"], "mem_limit")
    if service.get("memswap_limit") is not None:
        res["MemorySwap"] = size_bytes(service["memswap_limit"], "memswap_limit")
    if service.get("mem_reservation") is not None:
        res["MemoryReservation"] = size_bytes(service["mem_reservation"], "mem_reservation")
    if service.get("cpus") is not None:
        res["NanoCpus"] = nano_cpus(service["cpus"])
    for key, api in (("cpu_shares", "CpuShares"), ("cpu_quota", "CpuQuota"), ("cpu_period", "CpuPeriod")):
        if service.get(key) is not None:
            res[api] = int(service[key])
    if service.get("cpuset") is not None:
        res["CpusetCpus"] = str(service["cpuset"])
    if service.get("pids_limit") is not None:
        res["PidsLimit"] = int(service["pids_limit"])
    if service.get("oom_kill_disable") is not None:
        res["OomKillDisable"] = bool(service["oom_kill_disable"])
    deploy = service.get("deploy") or {}
    resources = deploy.get("resources") or {} if isinstance(deploy, Mapping) else {}
    limits = resources.get("limits") or {}
    if limits.get("memory") is not None:
        res["Memory"] = size_bytes(limits["memory"], "deploy.resources.limits.memory")
    if limits.get("cpus") is not None:
        res["NanoCpus"] = nano_cpus(limits["cpus"])
    if limits.get("pids") is not None:
        res["PidsLimit"] = int(limits["pids"])
    reservations = resources.get("reservations") or {}
    if reservations.get("memory") is not None:
        res["MemoryReservation"] = size_bytes(reservations["memory"], "deploy.resources.reservations.memory")
    if ul := _ulimits(service.get("ulimits")):
        res["Ulimits"] = ul
    devices = []
    for d in service.get("devices") or []:
        if isinstance(d, Mapping):
            src, dst, perms = (
                str(d.get("source")),
                str(d.get("target") or d.get("source")),
                str(d.get("permissions") or "rwm"),
            )
        else:
            parts = str(d).split(":")
            src = parts[0]
            dst = parts[1] if len(parts) > 1 else src
            perms = parts[2] if len(parts) > 2 else "rwm"
        devices.append({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms})
    if devices:
        res["Devices"] = devices
    return res


def _endpoint(name: str, service_name: str | None, opts: Mapping[str, Any], links: list[str]) -> JSON:
    """Compose's aliases: the container's name, then (unless a one-off) the service's and its own."""
    aliases = [name]
    if service_name is not None:
        aliases += [service_name, *[str(a) for a in opts.get("aliases") or []]]
    ep: JSON = {"Aliases": list(dict.fromkeys(aliases))}
    ipam: JSON = {}
    if opts.get("ipv4_address"):
        ipam["IPv4Address"] = str(opts["ipv4_address"])
    if opts.get("ipv6_address"):
        ipam["IPv6Address"] = str(opts["ipv6_address"])
    if opts.get("link_local_ips"):
        ipam["LinkLocalIPs"] = [str(x) for x in opts["link_local_ips"]]
    if ipam:
        ep["IPAMConfig"] = ipam
    if links:
        ep["Links"] = links
    if opts.get("mac_address"):
        ep["MacAddress"] = str(opts["mac_address"])
    if opts.get("driver_opts"):
        ep["DriverOpts"] = {str(k): str(v) for k, v in opts["driver_opts"].items()}
    return ep


def _links(service: Mapping[str, Any], peers: Mapping[str, Sequence[Peer]]) -> list[str]:
    """Compose's getLinks: each linked service's containers as ``name:alias`` and ``name:name``."""
    out: list[str] = []
    for link in service.get("links") or []:
        target, _, alias = str(link).partition(":")
        alias = alias or target
        for peer in peers.get(target, ()):
            out.append(f"{peer.name}:{alias}")
            out.append(f"{peer.name}:{peer.name}")
    for ext in service.get("external_links") or []:
        target, _, alias = str(ext).partition(":")
        out.append(f"{target}:{alias or target}")
    return list(dict.fromkeys(out))


def _mode_ref(mode: Any, peers: Mapping[str, Sequence[Peer]], what: str) -> str | None:
    if not mode:
        return None
    text = str(mode)
    if text.startswith("service:"):
        target = text[len("service:") :]
        found = peers.get(target)
        if not found:
            raise InvalidArgument(f"{what}: service {target} has no container to join")
        return f"container:{found[0].id}"
    return text


def container_request(
    project: ProjectInfo,
    service_name: str,
    service: Mapping[str, Any],
    number: int | None,
    *,
    peers: Mapping[str, Sequence[Peer]],
    image_id: str | None = None,
    name: str | None = None,
    oneoff: bool = False,
    inherited: Mapping[str, str] | None = None,
    service_alias: bool = True,
) -> ContainerRequest:
    """The create request of container ``number`` of ``service`` (``number`` None: one-off)."""
    cname = name or container_name(project.name, service_name, service, number or 1)
    labels = {str(k): str(v) for k, v in (service.get("labels") or {}).items()}
    labels.update(compose_labels(project, service_name, service, number, oneoff))
    if image_id:
        labels[L.IMAGE] = image_id
    exposed, bindings = _ports(service)
    mounts = service_mounts(
        service_name,
        service,
        project.volumes,
        project.secrets,
        project.configs,
        project.environment,
        inherited,
    )
    links = _links(service, peers)
    host: JSON = {
        "Binds": mounts.binds or None,
        "Mounts": mounts.mounts or None,
        "Tmpfs": mounts.tmpfs or None,
        "PortBindings": bindings or None,
        "RestartPolicy": _restart(service),
        "CapAdd": list(service.get("cap_add") or []) or None,
        "CapDrop": list(service.get("cap_drop") or []) or None,
        "Privileged": bool(service.get("privileged")),
        "ReadonlyRootfs": bool(service.get("read_only")),
        "Init": service.get("init"),
        "Sysctls": {str(k): str(v) for k, v in (service.get("sysctls") or {}).items()} or None,
        "ExtraHosts": _extra_hosts(service.get("extra_hosts")),
        "Dns": list(service.get("dns") or []) or None,
        "DnsSearch": list(service.get("dns_search") or []) or None,
        "DnsOptions": list(service.get("dns_opt") or []) or None,
        "SecurityOpt": list(service.get("security_opt") or []) or None,
        "GroupAdd": [str(g) for g in service.get("group_add") or []] or None,
        "Links": links or None,
        "VolumesFrom": _volumes_from(service, peers) or None,
        **_resources(service),
    }
    if service.get("shm_size") is not None:
        host["ShmSize"] = size_bytes(service["shm_size"], "shm_size")
    if service.get("oom_score_adj") is not None:
        host["OomScoreAdj"] = int(service["oom_score_adj"])
    for key, api in (
        ("ipc", "IpcMode"),
        ("pid", "PidMode"),
        ("cgroup_parent", "CgroupParent"),
        ("runtime", "Runtime"),
        ("userns_mode", "UsernsMode"),
        ("uts", "UTSMode"),
    ):
        if value := _mode_ref(service.get(key), peers, key) if key in ("ipc", "pid") else service.get(key):
            host[api] = str(value)
    logging = service.get("logging")
    if isinstance(logging, Mapping) and logging.get("driver"):
        host["LogConfig"] = {"Type": str(logging["driver"]), "Config": dict(logging.get("options") or {})}
    connect: list[tuple[str, JSON]] = []
    networking: JSON | None = None
    mode = _mode_ref(service.get("network_mode"), peers, "network_mode")
    if mode:
        host["NetworkMode"] = mode
    else:
        nets = service_networks(service)
        if not nets:
            host["NetworkMode"] = "none"
        else:
            endpoints = []
            for key, opts in nets:
                if key not in project.networks and key != DEFAULT_NETWORK:
                    raise InvalidArgument(f"service {service_name!r} refers to undefined network {key}")
                net = network_name(project.networks, key, project.name)
                endpoints.append(
                    (net, _endpoint(cname, service_name if service_alias else None, opts, links))
                )
            host["NetworkMode"] = endpoints[0][0]
            networking = {"EndpointsConfig": {endpoints[0][0]: endpoints[0][1]}}
            connect = endpoints[1:]
    body: JSON = {
        "Image": image_name(project.name, service_name, service),
        "Cmd": _command(service.get("command")),
        "Entrypoint": _command(service.get("entrypoint")),
        "Env": _env(service.get("environment")),
        "Labels": labels,
        "ExposedPorts": exposed or None,
        "Hostname": str(service.get("hostname") or ""),
        "Domainname": str(service.get("domainname") or ""),
        "User": str(service.get("user") or ""),
        "WorkingDir": str(service.get("working_dir") or ""),
        "Tty": bool(service.get("tty")),
        "OpenStdin": bool(service.get("stdin_open")),
        "AttachStdout": True,
        "AttachStderr": True,
        "StopSignal": service.get("stop_signal") or None,
        "Healthcheck": _healthcheck(service.get("healthcheck")),
        "HostConfig": {k: v for k, v in host.items() if v is not None},
    }
    if service.get("stop_grace_period") is not None:
        body["StopTimeout"] = duration_seconds(service["stop_grace_period"], "stop_grace_period")
    if service.get("mac_address"):
        body["MacAddress"] = str(service["mac_address"])
    if networking:
        body["NetworkingConfig"] = networking
    body = {k: v for k, v in body.items() if v is not None}
    return ContainerRequest(cname, body, connect, mounts.files)


def _volumes_from(service: Mapping[str, Any], peers: Mapping[str, Sequence[Peer]]) -> list[str]:
    out = []
    for vf in service.get("volumes_from") or []:
        text = str(vf)
        if text.startswith("container:"):
            out.append(text[len("container:") :])
            continue
        target, sep, mode = text.partition(":")
        found = peers.get(target)
        if not found:
            raise InvalidArgument(f"volumes_from: service {target} has no container")
        out.append(found[0].id + (f":{mode}" if sep else ""))
    return out
