"""skiff types -> Docker JSON (inspect, list, history), shaped as dockerd answers at API 1.41."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from skiff.engine.model import Container
from skiff.types import (
    ContainerSpec,
    Endpoint,
    EndpointConfig,
    HealthConfig,
    HistoryItem,
    HostConfig,
    ImageConfig,
    ImageRecord,
    Mount,
    NetworkRecord,
)

JSON = dict[str, Any]
# Network name -> record, for the network ids and kinds shown in a container's NetworkSettings.
Networks = Mapping[str, NetworkRecord]


def parse_time(value: str) -> float:
    """RFC 3339 (nanosecond fraction allowed) -> Unix seconds."""
    if not value or value.startswith("0001-"):
        return 0.0
    head, _, frac = value.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return base + (float("0." + frac[:9]) if frac else 0.0)


def health_json(hc: HealthConfig | None) -> JSON | None:
    if hc is None:
        return None
    out: JSON = {"Test": list(hc.test)}
    for key, value in (
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
        ("Retries", hc.retries),
    ):
        if value:
            out[key] = value
    return out


def _ports_map(ports: tuple[str, ...]) -> JSON | None:
    return {p: {} for p in ports} or None


def config_json(spec: ContainerSpec, hostname: str) -> JSON:
    return {
        "Hostname": hostname,
        "Domainname": spec.domainname,
        "User": spec.user,
        "AttachStdin": spec.attach_stdin,
        "AttachStdout": spec.attach_stdout,
        "AttachStderr": spec.attach_stderr,
        "ExposedPorts": _ports_map(spec.exposed_ports),
        "Tty": spec.tty,
        "OpenStdin": spec.open_stdin,
        "StdinOnce": spec.stdin_once,
        "Env": list(spec.env),
        "Cmd": list(spec.cmd) or None,
        "Healthcheck": health_json(spec.healthcheck),
        "Image": spec.image,
        "Volumes": {v: {} for v in spec.volumes} or None,
        "WorkingDir": spec.working_dir,
        "Entrypoint": list(spec.entrypoint) or None,
        "OnBuild": None,
        "Labels": dict(spec.labels),
        **({"MacAddress": spec.mac_address} if spec.mac_address else {}),
        **({"StopSignal": spec.stop_signal} if spec.stop_signal else {}),
        **({"StopTimeout": spec.stop_timeout} if spec.stop_timeout is not None else {}),
    }


def host_config_json(h: HostConfig, name: str = "") -> JSON:
    def throttle(items: tuple[Any, ...]) -> list[JSON]:
        return [{"Path": t.path, "Rate": t.rate} for t in items]

    return {
        "Binds": list(h.binds) or None,
        "ContainerIDFile": "",
        "LogConfig": {"Type": h.log_type, "Config": dict(h.log_options)},
        "NetworkMode": h.network_mode,
        "PortBindings": {
            p: [{"HostIp": ip, "HostPort": port} for ip, port in b] for p, b in h.port_bindings.items()
        },
        "RestartPolicy": {
            "Name": h.restart_policy.name,
            "MaximumRetryCount": h.restart_policy.maximum_retry_count,
        },
        "AutoRemove": h.auto_remove,
        "VolumeDriver": h.volume_driver,
        "VolumesFrom": list(h.volumes_from) or None,
        "CapAdd": list(h.cap_add) or None,
        "CapDrop": list(h.cap_drop) or None,
        "CgroupnsMode": h.cgroupns_mode or "host",
        "Dns": list(h.dns),
        "DnsOptions": list(h.dns_options),
        "DnsSearch": list(h.dns_search),
        "ExtraHosts": list(h.extra_hosts) or None,
        "GroupAdd": list(h.group_add) or None,
        "IpcMode": h.ipc_mode or "private",
        "Cgroup": "",
        # docker shows legacy links as "/target:/container/alias"
        "Links": [f"/{t}:/{name}/{a}" for t, _, a in (link.partition(":") for link in h.links)] or None,
        "OomScoreAdj": h.oom_score_adj,
        "PidMode": h.pid_mode,
        "Privileged": h.privileged,
        "PublishAllPorts": h.publish_all_ports,
        "ReadonlyRootfs": h.readonly_rootfs,
        "SecurityOpt": list(h.security_opt) or None,
        "Tmpfs": dict(h.tmpfs) or None,
        "UTSMode": h.uts_mode,
        "UsernsMode": "",
        "ShmSize": h.shm_size or 67108864,
        "Sysctls": dict(h.sysctls) or None,
        "Runtime": "runc",
        "Isolation": h.isolation,
        "CpuShares": h.cpu_shares,
        "Memory": h.memory,
        "NanoCpus": h.nano_cpus,
        "CgroupParent": "",
        "BlkioWeight": h.blkio_weight,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": throttle(h.blkio_device_read_bps),
        "BlkioDeviceWriteBps": throttle(h.blkio_device_write_bps),
        "BlkioDeviceReadIOps": throttle(h.blkio_device_read_iops),
        "BlkioDeviceWriteIOps": throttle(h.blkio_device_write_iops),
        "CpuPeriod": h.cpu_period,
        "CpuQuota": h.cpu_quota,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": h.cpuset_cpus,
        "CpusetMems": h.cpuset_mems,
        "Devices": [
            {
                "PathOnHost": d.path_on_host,
                "PathInContainer": d.path_in_container,
                "CgroupPermissions": d.cgroup_permissions,
            }
            for d in h.devices
        ],
        "DeviceCgroupRules": list(h.device_cgroup_rules) or None,
        "DeviceRequests": None,
        "MemoryReservation": h.memory_reservation,
        "MemorySwap": h.memory_swap,
        "MemorySwappiness": None,
        "OomKillDisable": h.oom_kill_disable,
        "PidsLimit": h.pids_limit or None,
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in h.ulimits] or None,
        "Init": h.init or None,
        "Mounts": [_host_mount_json(m) for m in h.mounts] or None,
        "ConsoleSize": list(h.console_size),
        "MaskedPaths": list(h.masked_paths) if h.masked_paths is not None else None,
        "ReadonlyPaths": list(h.readonly_paths) if h.readonly_paths is not None else None,
    }


def _host_mount_json(m: Mount) -> JSON:
    """One ``HostConfig.Mounts`` entry as it was given (``--mount``)."""
    out: JSON = {"Type": m.type, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
    propagation = next((o for o in m.options if o in _PROPAGATIONS), "")
    if m.type == "bind" and propagation:
        out["BindOptions"] = {"Propagation": propagation}
    if m.type == "volume" and (
        "nocopy" in m.options or m.volume_options or m.volume_labels or m.volume_driver
    ):
        volume: JSON = {"NoCopy": "nocopy" in m.options}
        if m.volume_labels:
            volume["Labels"] = dict(m.volume_labels)
        if m.volume_driver or m.volume_options:
            volume["DriverConfig"] = {"Name": m.volume_driver, "Options": dict(m.volume_options) or None}
        out["VolumeOptions"] = volume
    if m.type == "tmpfs":
        tmpfs: JSON = {}
        for opt in m.options:
            key, _, value = opt.partition("=")
            if key == "size" and value:
                scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(value[-1], 1)
                tmpfs["SizeBytes"] = int(value.rstrip("kmg")) * scale
            elif key == "mode" and value:
                tmpfs["Mode"] = int(value, 8)
        if tmpfs:
            out["TmpfsOptions"] = tmpfs
    return out


def mount_points_json(c: Container) -> list[JSON]:
    """A container's ``Mounts`` (volumes, binds, ``--mount`` tmpfs), as dockerd's MountPoint."""
    out = []
    for m in c.mount_points:
        entry: JSON = {"Type": m.type}
        if m.name:
            entry["Name"] = m.name
        entry["Source"] = m.source
        entry["Destination"] = m.destination
        if m.driver:
            entry["Driver"] = m.driver
        entry.update({"Mode": m.mode, "RW": m.rw, "Propagation": m.propagation})
        out.append(entry)
    return out


_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_BUILTIN_MODES = ("bridge", "host", "none")


def _configured_networks(c: Container) -> dict[str, EndpointConfig]:
    """The networks a container is configured on, by name (records made before networks existed
    have none: their network mode stands in)."""
    if c.spec.networks:
        return dict(c.spec.networks)
    mode = c.spec.host.network_mode
    mode = "bridge" if mode == "default" else mode
    return {mode: EndpointConfig()} if mode in _BUILTIN_MODES else {}


def _user_defined(name: str, networks: Networks) -> bool:
    rec = networks.get(name)
    return not rec.builtin if rec is not None else name not in _BUILTIN_MODES


def _endpoint_json(
    c: Container, name: str, cfg: EndpointConfig, ep: Endpoint | None, networks: Networks
) -> JSON:
    rec = networks.get(name)
    aliases = list(ep.aliases if ep is not None and ep.aliases else cfg.aliases)
    dns_names: list[str] | None = None
    if _user_defined(name, networks):
        # dockerd adds the short id to the aliases on user-defined networks, where names resolve.
        if c.short_id not in aliases:
            aliases.append(c.short_id)
        dns_names = list(dict.fromkeys([c.name, *aliases]))
    return {
        "IPAMConfig": _endpoint_ipam(cfg),
        "Links": list(cfg.links) or None,
        "Aliases": aliases or None,
        "NetworkID": ep.network_id if ep is not None else (rec.id if rec is not None else ""),
        "EndpointID": ep.endpoint_id if ep is not None else "",
        "Gateway": ep.gateway if ep is not None else "",
        "IPAddress": ep.ip_address if ep is not None else "",
        "IPPrefixLen": ep.prefix_len if ep is not None else 0,
        "IPv6Gateway": ep.ipv6_gateway if ep is not None else "",
        "GlobalIPv6Address": ep.ipv6_address if ep is not None else "",
        "GlobalIPv6PrefixLen": ep.ipv6_prefix_len if ep is not None else 0,
        # a configured MAC shows before the container runs (docker-py's connect test reads it)
        "MacAddress": ep.mac_address if ep is not None else cfg.mac_address,
        "DriverOpts": dict(cfg.driver_opts) or None,
        "DNSNames": dns_names,
    }


def _endpoint_ipam(cfg: EndpointConfig) -> JSON | None:
    ipam: JSON = {}
    if cfg.ipv4_address:
        ipam["IPv4Address"] = cfg.ipv4_address
    if cfg.ipv6_address:
        ipam["IPv6Address"] = cfg.ipv6_address
    if cfg.link_local_ips:
        ipam["LinkLocalIPs"] = list(cfg.link_local_ips)
    return ipam or None


def _find_endpoint(c: Container, name: str, networks: Networks) -> Endpoint | None:
    rec = networks.get(name)
    for ep in c.network.endpoints:
        if ep.network_name == name or (rec is not None and ep.network_id == rec.id):
            return ep
    return None


def _publishes_ports(c: Container) -> bool:
    """Ports exist only while a container runs in a network namespace of its own (not host/none)."""
    mode = c.spec.host.network_mode
    return c.running and mode not in ("host", "none") and not mode.startswith("container:")


def ports_json(c: Container) -> JSON:
    """``NetworkSettings.Ports``: every exposed port, with its actual bindings or null."""
    if not _publishes_ports(c):
        return {}
    out: JSON = {p: None for p in c.spec.exposed_ports}
    for b in c.network.ports:
        key = f"{b.container_port}/{b.protocol}"
        out.setdefault(key, None)
        out[key] = [*(out[key] or []), {"HostIp": b.host_ip, "HostPort": str(b.host_port)}]
    return dict(sorted(out.items(), key=lambda kv: _port_key(kv[0])))


def _port_key(port: str) -> tuple[int, str]:
    number, _, proto = port.partition("/")
    return (int(number) if number.isdigit() else 0, proto)


def ports_summary(c: Container) -> list[JSON]:
    """The ps list's ``Ports``: one entry per binding; exposed-only ports without IP/PublicPort."""
    out: list[JSON] = []
    for key, bindings in ports_json(c).items():
        number, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(number), "Type": proto})
        for b in bindings or []:
            out.append(
                {
                    "IP": b["HostIp"],
                    "PrivatePort": int(number),
                    "PublicPort": int(b["HostPort"]),
                    "Type": proto,
                }
            )
    return out


def network_settings_json(c: Container, networks: Networks | None = None) -> JSON:
    """``NetworkSettings`` as dockerd 20.10 shows it; the top-level addresses are the default bridge's."""
    networks = networks or {}
    endpoints = {
        name: _endpoint_json(c, name, cfg, _find_endpoint(c, name, networks), networks)
        for name, cfg in _configured_networks(c).items()
    }
    bridge = endpoints.get("bridge") or {}
    return {
        "Bridge": "",
        "SandboxID": c.id if c.running and c.network.netns else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports_json(c),
        "SandboxKey": c.network.netns if c.running else "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": bridge.get("EndpointID", ""),
        "Gateway": bridge.get("Gateway", ""),
        "GlobalIPv6Address": bridge.get("GlobalIPv6Address", ""),
        "GlobalIPv6PrefixLen": bridge.get("GlobalIPv6PrefixLen", 0),
        "IPAddress": bridge.get("IPAddress", ""),
        "IPPrefixLen": bridge.get("IPPrefixLen", 0),
        "IPv6Gateway": bridge.get("IPv6Gateway", ""),
        "MacAddress": bridge.get("MacAddress", ""),
        "Networks": endpoints,
    }


def container_inspect(
    c: Container, root: str, size: tuple[int, int] | None = None, networks: Networks | None = None
) -> JSON:
    st = c.state
    state: JSON = {
        "Status": st.status,
        "Running": st.status in ("running", "paused"),
        "Paused": st.status == "paused",
        "Restarting": st.status == "restarting",
        "OOMKilled": st.oom_killed,
        "Dead": st.status == "dead",
        "Pid": st.pid,
        "ExitCode": st.exit_code,
        "Error": st.error,
        "StartedAt": st.started_at,
        "FinishedAt": st.finished_at,
    }
    if st.health_status:
        state["Health"] = {
            "Status": st.health_status,
            "FailingStreak": st.health_failing_streak,
            "Log": list(st.health_log),
        }
    bundle = f"{root}/containers/{c.id}"
    out: JSON = {
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": list(c.args),
        "State": state,
        "Image": c.image_id,
        "ResolvConfPath": f"{bundle}/files/resolv.conf",
        "HostnamePath": f"{bundle}/files/hostname",
        "HostsPath": f"{bundle}/files/hosts",
        "LogPath": f"{bundle}/container.log",
        "Name": "/" + c.name,
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": host_config_json(c.spec.host, c.name),
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": f"{bundle}/rootfs"}},
        "Mounts": mount_points_json(c),
        "Config": config_json(c.spec, c.hostname),
        "NetworkSettings": network_settings_json(c, networks),
    }
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


def _format_command(c: Container) -> str:
    """dockerd's list ``Command``: the path, then the args, each with a space in single quotes."""
    args = [f"'{a}'" if " " in a else a for a in c.args]
    return " ".join((c.path, *args)).strip()


def container_status(c: Container, now: float) -> str:
    """Docker's human status: "Up 3 seconds", "Exited (0) 2 minutes ago", ..."""
    from skiff.units import human_duration as duration

    st = c.state
    if st.status in ("running", "paused"):
        text = "Up " + duration(now - parse_time(st.started_at))
        if st.status == "paused":
            return text + " (Paused)"
        if st.health_status == "starting":
            return text + " (health: starting)"
        if st.health_status:
            return text + f" ({st.health_status})"
        return text
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) " + duration(now - parse_time(st.finished_at)) + " ago"
    if st.status == "exited" and c.has_been_started:
        return f"Exited ({st.exit_code}) " + duration(now - parse_time(st.finished_at)) + " ago"
    if st.status == "removing":
        return "Removal In Progress"
    return "Created"


def container_summary(
    c: Container, now: float, size: tuple[int, int] | None = None, networks: Networks | None = None
) -> JSON:
    out: JSON = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.spec.image,
        "ImageID": c.image_id,
        "Command": _format_command(c),
        "Created": int(parse_time(c.created)),
        "Ports": ports_summary(c),
        "Labels": dict(c.spec.labels),
        "State": c.state.status,
        "Status": container_status(c, now),
        "HostConfig": {"NetworkMode": c.spec.host.network_mode},
        "NetworkSettings": {"Networks": network_settings_json(c, networks)["Networks"]},
        "Mounts": mount_points_json(c),
    }
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


def image_config_json(cfg: ImageConfig) -> JSON:
    return {
        "Hostname": "",
        "Domainname": "",
        "User": cfg.user,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": _ports_map(cfg.exposed_ports),
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": list(cfg.env) or None,
        "Cmd": list(cfg.cmd) if cfg.cmd is not None else None,
        "Healthcheck": health_json(cfg.healthcheck),
        "Image": "",
        "Volumes": {v: {} for v in cfg.volumes} or None,
        "WorkingDir": cfg.working_dir,
        "Entrypoint": list(cfg.entrypoint) if cfg.entrypoint is not None else None,
        "OnBuild": list(cfg.on_build) or None,
        "Labels": dict(cfg.labels) or None,
        **({"StopSignal": cfg.stop_signal} if cfg.stop_signal else {}),
        **({"Shell": list(cfg.shell)} if cfg.shell else {}),
    }


def image_inspect(img: ImageRecord) -> JSON:
    cfg = image_config_json(img.config)
    return {
        "Id": img.id,
        "RepoTags": list(img.repo_tags),
        "RepoDigests": list(img.repo_digests),
        "Parent": img.parent,
        "Comment": img.comment,
        "Created": img.created,
        "Container": "",
        "ContainerConfig": cfg,
        "DockerVersion": "",
        "Author": img.author,
        "Config": cfg,
        "Architecture": img.architecture,
        "Os": img.os,
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list(img.diff_ids)},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def image_summary(img: ImageRecord, containers: int = -1) -> JSON:
    return {
        "Id": img.id,
        "ParentId": img.parent,
        "RepoTags": list(img.repo_tags),
        "RepoDigests": list(img.repo_digests),
        "Created": int(parse_time(img.created)),
        "Size": img.size,
        "SharedSize": -1,
        "VirtualSize": img.size,
        "Labels": dict(img.config.labels) or None,
        "Containers": containers,
    }


def image_history(items: list[HistoryItem]) -> list[JSON]:
    """``GET /images/{name}/history``: newest first; a step whose image is gone is ``<missing>``."""
    return [
        {
            "Id": item.image_id or "<missing>",
            "Created": int(parse_time(item.created)),
            "CreatedBy": item.created_by,
            "Tags": list(item.tags) or None,
            "Size": item.size,
            "Comment": item.comment,
        }
        for item in items
    ]
