"""Build the ``POST /containers/create`` body from run/create flags, the way the docker CLI does.

Every value is parsed here, before any request: a bad flag stops the command with
exit 125 and nothing is sent to the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skiff.cli.options.network import networking_config, parse_link, parse_mac
from skiff.cli.options.ports import parse_expose, parse_publish
from skiff.cli.options.values import (
    parse_add_host,
    parse_cpus,
    parse_device,
    parse_duration,
    parse_env,
    parse_key_value,
    parse_memory_swap,
    parse_mount,
    parse_restart,
    parse_size,
    parse_throttle_bps,
    parse_throttle_iops,
    parse_tmpfs,
    parse_ulimit,
    parse_volume,
    read_kv_file,
)
from skiff.errors import InvalidArgument

JSON = dict[str, Any]


class Flags:
    """Typed read access to click's parameter dict."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._p = params

    def text(self, name: str) -> str | None:
        value = self._p.get(name)
        return None if value is None else str(value)

    def number(self, name: str) -> int | None:
        value = self._p.get(name)
        return None if value is None else int(value)

    def flag(self, name: str) -> bool:
        return bool(self._p.get(name))

    def many(self, name: str) -> tuple[str, ...]:
        return tuple(self._p.get(name) or ())


@dataclass(frozen=True)
class CreateRequest:
    """What ``run``/``create`` sends: the body and the optional name."""

    body: JSON
    name: str | None


def resources(f: Flags) -> JSON:
    """The Resources part of HostConfig (shared with ``update``); only flags that were given."""
    res: JSON = {}
    sizes = {"memory": "Memory", "memory_reservation": "MemoryReservation"}
    for flag, key in sizes.items():
        if (v := f.text(flag)) is not None:
            res[key] = parse_size(v)
    if (v := f.text("memory_swap")) is not None:
        res["MemorySwap"] = parse_memory_swap(v)
    if (v := f.text("cpus")) is not None:
        res["NanoCpus"] = parse_cpus(v)
    ints = {
        "cpu_shares": "CpuShares",
        "cpu_period": "CpuPeriod",
        "cpu_quota": "CpuQuota",
        "pids_limit": "PidsLimit",
        "blkio_weight": "BlkioWeight",
    }
    for flag, key in ints.items():
        if (n := f.number(flag)) is not None:
            res[key] = n
    if (n := f.number("blkio_weight")) is not None and n and not 10 <= n <= 1000:
        raise InvalidArgument(f"invalid --blkio-weight {n}: use a value between 10 and 1000, or 0")
    for flag, key in (("cpuset_cpus", "CpusetCpus"), ("cpuset_mems", "CpusetMems")):
        if (v := f.text(flag)) is not None:
            res[key] = v
    if res.get("NanoCpus") and (res.get("CpuPeriod") or res.get("CpuQuota")):
        raise InvalidArgument(
            "conflicting options: --cpus and --cpu-period/--cpu-quota cannot be used together"
        )
    return res


def build_create_request(params: Mapping[str, Any], image: str, command: tuple[str, ...]) -> CreateRequest:
    """The docker CLI's create body for ``run``/``create`` flags, ``IMAGE`` and ``COMMAND``."""
    f = Flags(params)
    detach = f.flag("detach")
    attach = {s.lower() for s in f.many("attach")}
    if detach and attach:
        raise InvalidArgument("conflicting options: -a and -d")
    if attach - {"stdin", "stdout", "stderr"}:
        raise InvalidArgument(f"invalid --attach {sorted(attach)}: use stdin, stdout or stderr")
    interactive = f.flag("interactive")
    attach_stdin = ("stdin" in attach or interactive) and not detach
    attach_out = not detach and (not attach or "stdout" in attach)
    attach_err = not detach and (not attach or "stderr" in attach)
    config: JSON = {
        "Hostname": f.text("hostname") or "",
        "Domainname": f.text("domainname") or "",
        "User": f.text("user") or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": attach_out,
        "AttachStderr": attach_err,
        "Tty": f.flag("tty"),
        "OpenStdin": interactive,
        "StdinOnce": interactive and attach_stdin,
        "Env": _env(f),
        "Cmd": list(command) if command else None,
        "Image": image,
        "WorkingDir": f.text("workdir") or "",
        "Entrypoint": _entrypoint(f),
        "Labels": _labels(f),
    }
    host, volumes = _host_config(f)
    exposed: dict[str, Any] = {}
    for spec in f.many("expose"):
        exposed.update({p: {} for p in parse_expose(spec)})
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in f.many("publish"):
        for port, binds in parse_publish(spec).items():
            bindings.setdefault(port, []).extend(binds)
            exposed[port] = {}
    host["PortBindings"] = bindings
    if exposed:
        config["ExposedPorts"] = exposed
    if volumes:
        config["Volumes"] = volumes
    if (sig := f.text("stop_signal")) is not None:
        config["StopSignal"] = sig
    if (timeout := f.number("stop_timeout")) is not None:
        config["StopTimeout"] = timeout
    if (health := _healthcheck(f)) is not None:
        config["Healthcheck"] = health
    config["HostConfig"] = host
    if (mac := f.text("mac_address")) is not None:
        config["MacAddress"] = parse_mac(mac)
    config["NetworkingConfig"] = networking_config(
        f.text("network"), f.many("network_alias"), f.many("link"), f.text("ip"), f.text("ip6")
    )
    return CreateRequest(config, f.text("name"))


def _env(f: Flags) -> list[str]:
    env: list[str] = []
    for path in f.many("env_file"):
        env.extend(read_kv_file(path, env_lookup=True))
    env.extend(e for e in (parse_env(v) for v in f.many("env")) if e)
    return env


def _labels(f: Flags) -> dict[str, str]:
    labels: dict[str, str] = {}
    raw = [line for path in f.many("label_file") for line in read_kv_file(path, env_lookup=False)]
    for item in [*raw, *f.many("label")]:
        key, val = parse_key_value(item, "label")
        labels[key] = val
    return labels


def _entrypoint(f: Flags) -> list[str] | None:
    entrypoint = f.text("entrypoint")
    if entrypoint is None:
        return None
    # docker: --entrypoint "" resets the image's entrypoint; a value is one argv element.
    return [entrypoint]


def _healthcheck(f: Flags) -> JSON | None:
    cmd = f.text("health_cmd")
    durations = {
        "health_interval": "Interval",
        "health_timeout": "Timeout",
        "health_start_period": "StartPeriod",
    }
    given = {key: parse_duration(v) for flag, key in durations.items() if (v := f.text(flag)) is not None}
    retries = f.number("health_retries")
    if f.flag("no_healthcheck"):
        if cmd or given or retries is not None:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if cmd is None and not given and retries is None:
        return None
    if retries is not None and retries < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    health: JSON = {"Test": ["CMD-SHELL", cmd] if cmd else None}
    for key in ("Interval", "Timeout", "StartPeriod"):
        health[key] = given.get(key, 0)
    health["Retries"] = retries or 0
    return health


def _host_config(f: Flags) -> tuple[JSON, dict[str, Any]]:
    binds: list[str] = []
    volumes: dict[str, Any] = {}
    for spec in f.many("volume"):
        bind, anonymous = parse_volume(spec)
        if bind:
            binds.append(bind)
        if anonymous:
            volumes[anonymous] = {}
    restart = parse_restart(f.text("restart") or "no")
    if f.flag("rm") and restart["Name"] != "no":
        raise InvalidArgument("conflicting options: --restart and --rm")
    host: JSON = {
        "Binds": binds or None,
        "NetworkMode": f.text("network") or "default",
        "RestartPolicy": restart,
        "AutoRemove": f.flag("rm"),
        "CapAdd": list(f.many("cap_add")) or None,
        "CapDrop": list(f.many("cap_drop")) or None,
        "Dns": list(f.many("dns")),
        "DnsOptions": list(f.many("dns_option")),
        "DnsSearch": list(f.many("dns_search")),
        "ExtraHosts": [parse_add_host(h) for h in f.many("add_host")] or None,
        "GroupAdd": list(f.many("group_add")) or None,
        "IpcMode": f.text("ipc") or "",
        "PidMode": f.text("pid") or "",
        "UTSMode": f.text("uts") or "",
        "OomScoreAdj": f.number("oom_score_adj") or 0,
        "Privileged": f.flag("privileged"),
        "PublishAllPorts": f.flag("publish_all"),
        "Links": [parse_link(v) for v in f.many("link")] or None,
        "ReadonlyRootfs": f.flag("read_only"),
        "SecurityOpt": list(f.many("security_opt")) or None,
        "Devices": [parse_device(d) for d in f.many("device")],
        "BlkioDeviceReadBps": [parse_throttle_bps(v) for v in f.many("device_read_bps")],
        "BlkioDeviceWriteBps": [parse_throttle_bps(v) for v in f.many("device_write_bps")],
        "BlkioDeviceReadIOps": [parse_throttle_iops(v) for v in f.many("device_read_iops")],
        "BlkioDeviceWriteIOps": [parse_throttle_iops(v) for v in f.many("device_write_iops")],
        "Ulimits": [parse_ulimit(u) for u in f.many("ulimit")] or None,
        "OomKillDisable": f.flag("oom_kill_disable"),
        "Mounts": [parse_mount(m) for m in f.many("mount")] or None,
        "VolumesFrom": list(f.many("volumes_from")) or None,
    }
    host.update(resources(f))
    if f.flag("init"):
        host["Init"] = True
    if (shm := f.text("shm_size")) is not None:
        host["ShmSize"] = parse_size(shm)
    if tmpfs := f.many("tmpfs"):
        host["Tmpfs"] = dict(parse_tmpfs(t) for t in tmpfs)
    if sysctls := f.many("sysctl"):
        host["Sysctls"] = dict(parse_key_value(s, "sysctl") for s in sysctls)
    return host, volumes
