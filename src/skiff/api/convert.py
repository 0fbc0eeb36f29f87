"""Docker JSON (create bodies) -> skiff types. Inspect/list JSON lives in ``render.py``."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from skiff.errors import InvalidArgument
from skiff.types import (
    ContainerSpec,
    DeviceMapping,
    EndpointConfig,
    HealthConfig,
    HostConfig,
    Mount,
    RestartPolicy,
    ThrottleDevice,
    Ulimit,
)
from skiff.units import parse_size

JSON = dict[str, Any]


def _strs(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidArgument(f"invalid value for {field}: expected a list of strings")


def _int(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"invalid value for {field}: expected a number")
    if abs(value) > 2**63 - 1:
        raise InvalidArgument(f"invalid value for {field}: out of range")
    return int(value)


def _bool(value: Any) -> bool:
    return bool(value)


def _str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid value for {field}: expected a string")
    return value


def _map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidArgument(f"invalid value for {field}: expected an object")
    return {k: "" if v is None else str(v) for k, v in value.items()}


def _obj(value: Any, field: str) -> JSON:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid value for {field}: expected an object")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"invalid value for {field}: expected a list")
    return value


def health_from_json(value: Any) -> HealthConfig | None:
    if value is None:
        return None
    hc = _obj(value, "Healthcheck")
    return HealthConfig(
        test=_strs(hc.get("Test"), "Healthcheck.Test"),
        interval=_int(hc.get("Interval"), "Healthcheck.Interval"),
        timeout=_int(hc.get("Timeout"), "Healthcheck.Timeout"),
        retries=_int(hc.get("Retries"), "Healthcheck.Retries"),
        start_period=_int(hc.get("StartPeriod"), "Healthcheck.StartPeriod"),
        start_interval=_int(hc.get("StartInterval"), "Healthcheck.StartInterval"),
    )


def _throttle(value: Any, field: str) -> tuple[ThrottleDevice, ...]:
    out = []
    for item in _list(value, field):
        entry = _obj(item, field)
        out.append(ThrottleDevice(_str(entry.get("Path"), field), _int(entry.get("Rate"), field)))
    return tuple(out)


def _port_bindings(value: Any) -> dict[str, tuple[tuple[str, str], ...]]:
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for port, bindings in _obj(value, "PortBindings").items():
        pairs = []
        for b in _list(bindings, "PortBindings"):
            entry = _obj(b, "PortBindings")
            pairs.append((_str(entry.get("HostIp"), "HostIp"), _str(entry.get("HostPort"), "HostPort")))
        out[port if "/" in port else f"{port}/tcp"] = tuple(pairs)
    return out


_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def _mac(value: Any, field: str) -> str:
    mac = _str(value, field)
    if mac and not _MAC_RE.match(mac):
        raise InvalidArgument(f"invalid MAC address {mac!r} in {field}")
    return mac.replace("-", ":").lower()


def _link(value: str) -> str:
    """A legacy link ``name[:alias]`` as ``name:alias`` (docker's ParseLink; ``/db:/web/x`` too)."""
    parts = value.split(":")
    if len(parts) > 2 or not parts[0].strip("/"):
        raise InvalidArgument(f"invalid link {value!r}: use name[:alias]")
    name = parts[0].strip("/")
    alias = parts[1].rsplit("/", 1)[-1] if len(parts) == 2 and parts[1] else name
    return f"{name}:{alias}"


def _ip(value: str, parse: Any, what: str) -> str:
    """``value`` checked by ``parse`` (an ipaddress constructor); "" passes."""
    if value:
        try:
            parse(value)
        except ValueError:
            raise InvalidArgument(f"invalid {what} address: {value}") from None
    return value


def endpoint_config_from_json(value: Any, field: str = "EndpointConfig") -> EndpointConfig:
    """Docker's EndpointSettings (create's EndpointsConfig entry, or connect's body) -> EndpointConfig."""
    ep = _obj(value, field)
    ipam = _obj(ep.get("IPAMConfig"), f"{field}.IPAMConfig")
    ipv4 = _ip(
        _str(ipam.get("IPv4Address"), f"{field}.IPAMConfig.IPv4Address"), ipaddress.IPv4Address, "IPv4"
    )
    ipv6 = _ip(
        _str(ipam.get("IPv6Address"), f"{field}.IPAMConfig.IPv6Address"), ipaddress.IPv6Address, "IPv6"
    )
    link_local = _strs(ipam.get("LinkLocalIPs"), f"{field}.IPAMConfig.LinkLocalIPs")
    for ip in link_local:
        _ip(ip, ipaddress.ip_address, "link-local IP")
    return EndpointConfig(
        aliases=_strs(ep.get("Aliases"), f"{field}.Aliases"),
        ipv4_address=ipv4,
        links=tuple(_link(v) for v in _strs(ep.get("Links"), f"{field}.Links")),
        mac_address=_mac(ep.get("MacAddress"), f"{field}.MacAddress"),
        driver_opts=_map(ep.get("DriverOpts"), f"{field}.DriverOpts"),
        link_local_ips=link_local,
        ipv6_address=ipv6,
    )


def _endpoints(body: JSON) -> dict[str, EndpointConfig]:
    """``NetworkingConfig.EndpointsConfig``: network name or id -> what the container asks of it."""
    config = _obj(body.get("NetworkingConfig"), "NetworkingConfig")
    endpoints = _obj(config.get("EndpointsConfig"), "NetworkingConfig.EndpointsConfig")
    # The docker CLI names the default network "default" (no --network): it is skiff's bridge.
    out = {
        ("bridge" if name == "default" else name): endpoint_config_from_json(ep, f"EndpointsConfig.{name}")
        for name, ep in endpoints.items()
        if name
    }
    for name, ep in out.items():
        if name in ("bridge", "host", "none"):
            # dockerd's ErrUnsupportedNetworkAndIP / ErrUnsupportedNetworkAndAlias
            if ep.ipv4_address or ep.ipv6_address:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if ep.aliases:
                raise InvalidArgument(
                    "network-scoped alias is supported only for containers in user defined networks"
                )
    return out


def _tmpfs_size(size: int) -> str:
    # dockerd's ConvertTmpfsOptions: the largest unit that divides the size evenly.
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % unit == 0:
            return f"size={size // unit}{suffix}"
    return f"size={size}"


def _mount_from_json(value: Any) -> Mount:
    """A ``HostConfig.Mounts`` entry; its Bind/Volume/TmpfsOptions become ``Mount`` fields."""
    entry = _obj(value, "Mounts")
    options: list[str] = []
    bind = _obj(entry.get("BindOptions"), "Mounts.BindOptions")
    if propagation := _str(bind.get("Propagation"), "Mounts.BindOptions.Propagation"):
        options.append(propagation)
    volume = _obj(entry.get("VolumeOptions"), "Mounts.VolumeOptions")
    if _bool(volume.get("NoCopy")):
        options.append("nocopy")
    driver = _obj(volume.get("DriverConfig"), "Mounts.VolumeOptions.DriverConfig")
    tmpfs = _obj(entry.get("TmpfsOptions"), "Mounts.TmpfsOptions")
    if size := _int(tmpfs.get("SizeBytes"), "Mounts.TmpfsOptions.SizeBytes"):
        if size < 0:
            raise InvalidArgument("invalid value for Mounts.TmpfsOptions.SizeBytes: negative")
        options.append(_tmpfs_size(size))
    if mode := _int(tmpfs.get("Mode"), "Mounts.TmpfsOptions.Mode"):
        options.append(f"mode={mode:o}")
    return Mount(
        type=_str(entry.get("Type"), "Mounts.Type") or "volume",
        source=_str(entry.get("Source"), "Mounts.Source"),
        target=_str(entry.get("Target"), "Mounts.Target"),
        read_only=_bool(entry.get("ReadOnly")),
        options=tuple(options),
        volume_driver=_str(driver.get("Name"), "Mounts.VolumeOptions.DriverConfig.Name"),
        volume_options=_map(driver.get("Options"), "Mounts.VolumeOptions.DriverConfig.Options"),
        volume_labels=_map(volume.get("Labels"), "Mounts.VolumeOptions.Labels"),
    )


def console_size(value: Any) -> tuple[int, int]:
    """``ConsoleSize``: [height, width] of the client's terminal (API 1.42), or (0, 0)."""
    if value is None:
        return (0, 0)
    if not isinstance(value, list) or len(value) != 2:
        raise InvalidArgument("invalid value for ConsoleSize: expected [height, width]")
    height, width = (_int(v, "ConsoleSize") for v in value)
    if not (0 <= height < 65536 and 0 <= width < 65536):
        raise InvalidArgument("invalid value for ConsoleSize: out of range")
    return (height, width)


_DEVICE_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
# Log drivers skiffd accepts: every one writes conmon's k8s-file log, which `logs` reads;
# "none" keeps nothing. Options follow Docker's json-file driver.
LOG_DRIVERS = ("json-file", "k8s-file", "local", "none")
_LOG_OPTS = {
    "max-size",
    "max-file",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
    "mode",
    "max-buffer-size",
}


def check_log_config(log_type: str, options: dict[str, str]) -> None:
    if log_type not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{log_type}' is registered")
    for key in options:
        if key not in _LOG_OPTS:
            raise InvalidArgument(f"unknown log opt '{key}' for {log_type} log driver")
    size = options.get("max-size")
    if size:
        parse_size(size)


def host_config_from_json(body: JSON) -> HostConfig:
    h = body
    policy = _obj(h.get("RestartPolicy"), "RestartPolicy")
    mounts = [_mount_from_json(m) for m in _list(h.get("Mounts"), "Mounts")]
    ulimits = tuple(
        Ulimit(
            _str(u.get("Name"), "Ulimits.Name"),
            _int(u.get("Soft"), "Ulimits.Soft"),
            _int(u.get("Hard"), "Ulimits.Hard"),
        )
        for u in (_obj(x, "Ulimits") for x in _list(h.get("Ulimits"), "Ulimits"))
    )
    devices = tuple(
        DeviceMapping(
            _str(d.get("PathOnHost"), "Devices.PathOnHost"),
            _str(d.get("PathInContainer"), "Devices.PathInContainer") or _str(d.get("PathOnHost"), "Devices"),
            _str(d.get("CgroupPermissions"), "Devices.CgroupPermissions") or "rwm",
        )
        for d in (_obj(x, "Devices") for x in _list(h.get("Devices"), "Devices"))
    )
    masked = h.get("MaskedPaths")
    readonly = h.get("ReadonlyPaths")
    log = _obj(h.get("LogConfig"), "LogConfig")
    log_type = _str(log.get("Type"), "LogConfig.Type") or "json-file"
    log_options = _map(log.get("Config"), "LogConfig.Config")
    check_log_config(log_type, log_options)
    cgroupns = _str(h.get("CgroupnsMode"), "CgroupnsMode")
    if cgroupns not in ("", "host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {cgroupns}")
    rules = _strs(h.get("DeviceCgroupRules"), "DeviceCgroupRules")
    for rule in rules:
        if not _DEVICE_RULE.match(rule):
            raise InvalidArgument(f"invalid device cgroup rule format: '{rule}'")
    return HostConfig(
        memory=_int(h.get("Memory"), "Memory"),
        memory_swap=_int(h.get("MemorySwap"), "MemorySwap"),
        memory_reservation=_int(h.get("MemoryReservation"), "MemoryReservation"),
        nano_cpus=_int(h.get("NanoCpus"), "NanoCpus"),
        cpu_shares=_int(h.get("CpuShares"), "CpuShares"),
        cpu_period=_int(h.get("CpuPeriod"), "CpuPeriod"),
        cpu_quota=_int(h.get("CpuQuota"), "CpuQuota"),
        cpuset_cpus=_str(h.get("CpusetCpus"), "CpusetCpus"),
        cpuset_mems=_str(h.get("CpusetMems"), "CpusetMems"),
        pids_limit=_int(h.get("PidsLimit"), "PidsLimit"),
        blkio_weight=_int(h.get("BlkioWeight"), "BlkioWeight"),
        blkio_device_read_bps=_throttle(h.get("BlkioDeviceReadBps"), "BlkioDeviceReadBps"),
        blkio_device_write_bps=_throttle(h.get("BlkioDeviceWriteBps"), "BlkioDeviceWriteBps"),
        blkio_device_read_iops=_throttle(h.get("BlkioDeviceReadIOps"), "BlkioDeviceReadIOps"),
        blkio_device_write_iops=_throttle(h.get("BlkioDeviceWriteIOps"), "BlkioDeviceWriteIOps"),
        devices=devices,
        cap_add=_strs(h.get("CapAdd"), "CapAdd"),
        cap_drop=_strs(h.get("CapDrop"), "CapDrop"),
        privileged=_bool(h.get("Privileged")),
        readonly_rootfs=_bool(h.get("ReadonlyRootfs")),
        security_opt=_strs(h.get("SecurityOpt"), "SecurityOpt"),
        ulimits=ulimits,
        init=_bool(h.get("Init")),
        network_mode=_str(h.get("NetworkMode"), "NetworkMode") or "default",
        restart_policy=RestartPolicy(
            name=_str(policy.get("Name"), "RestartPolicy.Name") or "no",
            maximum_retry_count=_int(policy.get("MaximumRetryCount"), "RestartPolicy.MaximumRetryCount"),
        ),
        auto_remove=_bool(h.get("AutoRemove")),
        binds=_strs(h.get("Binds"), "Binds"),
        mounts=tuple(mounts),
        tmpfs=_map(h.get("Tmpfs"), "Tmpfs"),
        port_bindings=_port_bindings(h.get("PortBindings")),
        publish_all_ports=_bool(h.get("PublishAllPorts")),
        links=tuple(_link(v) for v in _strs(h.get("Links"), "Links")),
        volumes_from=_strs(h.get("VolumesFrom"), "VolumesFrom"),
        dns=_strs(h.get("Dns"), "Dns"),
        dns_search=_strs(h.get("DnsSearch"), "DnsSearch"),
        dns_options=_strs(h.get("DnsOptions"), "DnsOptions"),
        extra_hosts=_strs(h.get("ExtraHosts"), "ExtraHosts"),
        oom_kill_disable=_bool(h.get("OomKillDisable")),
        oom_score_adj=_int(h.get("OomScoreAdj"), "OomScoreAdj"),
        shm_size=_int(h.get("ShmSize"), "ShmSize"),
        sysctls=_map(h.get("Sysctls"), "Sysctls"),
        group_add=_strs(h.get("GroupAdd"), "GroupAdd"),
        ipc_mode=_str(h.get("IpcMode"), "IpcMode"),
        pid_mode=_str(h.get("PidMode"), "PidMode"),
        uts_mode=_str(h.get("UTSMode"), "UTSMode"),
        console_size=console_size(h.get("ConsoleSize")),
        masked_paths=None if masked is None else _strs(masked, "MaskedPaths"),
        readonly_paths=None if readonly is None else _strs(readonly, "ReadonlyPaths"),
        log_type=log_type,
        log_options=log_options,
        cgroupns_mode=cgroupns,
        device_cgroup_rules=rules,
        isolation=_str(h.get("Isolation"), "Isolation"),
        volume_driver=_str(h.get("VolumeDriver"), "VolumeDriver"),
    )


def spec_from_create(body: Any) -> ContainerSpec:
    """``POST /containers/create`` body -> ContainerSpec (unknown fields are tolerated)."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the request body must be a JSON object")
    image = _str(body.get("Image"), "Image")
    if not image:
        raise InvalidArgument("Config cannot be empty in order to create a container")
    stop_timeout = body.get("StopTimeout")
    return ContainerSpec(
        image=image,
        cmd=_strs(body.get("Cmd"), "Cmd"),
        entrypoint=_strs(body.get("Entrypoint"), "Entrypoint"),
        env=_strs(body.get("Env"), "Env"),
        working_dir=_str(body.get("WorkingDir"), "WorkingDir"),
        user=_str(body.get("User"), "User"),
        hostname=_str(body.get("Hostname"), "Hostname"),
        domainname=_str(body.get("Domainname"), "Domainname"),
        labels=_map(body.get("Labels"), "Labels"),
        tty=_bool(body.get("Tty")),
        open_stdin=_bool(body.get("OpenStdin")),
        stdin_once=_bool(body.get("StdinOnce")),
        attach_stdin=_bool(body.get("AttachStdin")),
        attach_stdout=_bool(body.get("AttachStdout")),
        attach_stderr=_bool(body.get("AttachStderr")),
        exposed_ports=tuple(
            p if "/" in p else f"{p}/tcp" for p in _obj(body.get("ExposedPorts"), "ExposedPorts")
        ),
        volumes=tuple(_obj(body.get("Volumes"), "Volumes")),
        stop_signal=_str(body.get("StopSignal"), "StopSignal"),
        stop_timeout=None if stop_timeout is None else _int(stop_timeout, "StopTimeout"),
        healthcheck=health_from_json(body.get("Healthcheck")),
        network_disabled=_bool(body.get("NetworkDisabled")),
        mac_address=_mac(body.get("MacAddress"), "MacAddress"),
        networks=_endpoints(body),
        host=host_config_from_json(_obj(body.get("HostConfig"), "HostConfig")),
    )


def update_host_config(host: HostConfig, body: Any) -> HostConfig:
    """``POST /containers/{id}/update``: only the fields present change."""
    from dataclasses import fields, replace

    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: the request body must be a JSON object")
    parsed = host_config_from_json(body)
    json_names = {
        "memory": "Memory",
        "memory_swap": "MemorySwap",
        "memory_reservation": "MemoryReservation",
        "nano_cpus": "NanoCpus",
        "cpu_shares": "CpuShares",
        "cpu_period": "CpuPeriod",
        "cpu_quota": "CpuQuota",
        "cpuset_cpus": "CpusetCpus",
        "cpuset_mems": "CpusetMems",
        "pids_limit": "PidsLimit",
        "blkio_weight": "BlkioWeight",
        "restart_policy": "RestartPolicy",
    }
    changes = {f.name: getattr(parsed, f.name) for f in fields(HostConfig) if json_names.get(f.name) in body}
    return replace(host, **changes)
