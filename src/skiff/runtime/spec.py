"""OCI runtime spec (``config.json``) generation: what dockerd's ``oci_linux.go`` produces.

``generate_spec`` is a pure function of its inputs (apart from ``stat`` calls on host
device paths), so it is unit-tested without root.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from skiff.errors import InvalidArgument
from skiff.runtime._caps import effective_capabilities
from skiff.runtime._devices import (
    DEFAULT_DEVICE_RULES,
    PRIVILEGED_DEVICE_RULES,
    host_devices,
    mapped_devices,
)
from skiff.runtime._mounts import BindFile, default_mounts, user_mounts
from skiff.runtime._resources import linux_resources
from skiff.runtime.user import resolve_groups, resolve_user
from skiff.types import ContainerSpec, HostConfig, Mount

__all__ = [
    "DEFAULT_PATH",
    "BindFile",
    "effective_capabilities",
    "find_init",
    "generate_spec",
    "linux_resources",
    "resolve_groups",
    "resolve_user",
]

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_TARGET = "/sbin/docker-init"
DEFAULT_NOFILE = 1048576

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
# Static builds only: the binary runs inside the container's rootfs.
_INIT_CANDIDATES = ("docker-init", "tini-static")
_RLIMITS = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
]


def find_init() -> str | None:
    """Host path of the init used for ``--init`` (Debian's ``tini`` package ships tini-static)."""
    for name in _INIT_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def generate_spec(
    spec: ContainerSpec,
    *,
    container_id: str,
    rootfs: str,
    hostname: str,
    netns_path: str | None,
    cgroups_path: str,
    extra_mounts: Sequence[Mount | BindFile] = (),
    uid: int = 0,
    gid: int = 0,
    additional_gids: Sequence[int] = (),
    namespace_paths: Mapping[str, str] | None = None,
    swap_supported: bool | None = None,
    init_path: str | None = None,
) -> dict[str, Any]:
    """The OCI ``config.json`` for ``spec`` (already merged with its image config).

    ``namespace_paths`` joins existing namespaces by type (``{"ipc": "/proc/9/ns/ipc"}``)
    for ``--ipc container:x`` style modes the engine resolves. ``swap_supported`` None
    means: look at the host's memory cgroup, as dockerd does before sending a swap limit.
    """
    host = spec.host
    args = [*spec.entrypoint, *spec.cmd]
    if not args:
        raise InvalidArgument("no command specified")
    extra = user_mounts(host, extra_mounts)
    # A user mount on a default destination (e.g. --tmpfs /dev/shm) replaces the default.
    user_targets = {m["destination"] for m in extra}
    mounts = [m for m in default_mounts(host) if m["destination"] not in user_targets] + extra
    if host.init:
        init = init_path or find_init()
        if init is None:
            raise InvalidArgument("--init needs tini on the host: install the Debian package 'tini'")
        mounts.append({"destination": INIT_TARGET, "type": "bind", "source": init, "options": ["bind", "ro"]})
        args = [INIT_TARGET, "--", *args]
    caps = effective_capabilities(host.cap_add, host.cap_drop, host.privileged)
    process: dict[str, Any] = {
        "terminal": spec.tty,
        "user": {
            "uid": uid,
            "gid": gid,
            **({"additionalGids": list(additional_gids)} if additional_gids else {}),
        },
        "args": args,
        "env": _environment(spec, hostname),
        "cwd": spec.working_dir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": _rlimits(host),
        "noNewPrivileges": _no_new_privileges(host.security_opt),
    }
    if spec.tty and host.console_size != (0, 0):
        # runc sizes the pty before the process starts: no window of 0x0 before the first resize.
        process["consoleSize"] = {"height": host.console_size[0], "width": host.console_size[1]}
    if host.oom_score_adj:
        if not -1000 <= host.oom_score_adj <= 1000:
            raise InvalidArgument("Invalid value for oom_score_adj: must be between -1000 and 1000")
        process["oomScoreAdj"] = host.oom_score_adj
    result: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": host.readonly_rootfs},
        "mounts": mounts,
        "linux": _linux(host, container_id, netns_path, cgroups_path, namespace_paths or {}, swap_supported),
    }
    if host.uts_mode != "host":
        # As moby: in the host's UTS namespace runc refuses to set a hostname at all.
        result["hostname"] = hostname
    if spec.domainname:
        result["domainname"] = spec.domainname
        if host.uts_mode != "host":
            # runc before 1.2 ignores the spec's domainname: as moby, set it through the
            # UTS-namespaced sysctl, which has the effect of setdomainname(2). An explicit
            # --sysctl kernel.domainname wins.
            result["linux"].setdefault("sysctl", {}).setdefault("kernel.domainname", spec.domainname)
    return result


def _environment(spec: ContainerSpec, hostname: str) -> list[str]:
    # moby CreateDaemonEnvironment: PATH, HOSTNAME, TERM first; the container's env replaces/appends.
    env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if spec.tty:
        env.append("TERM=xterm")
    for item in spec.env:
        key = item.split("=", 1)[0]
        idx = next((i for i, e in enumerate(env) if e.split("=", 1)[0] == key), None)
        if "=" not in item:
            continue  # "KEY" without value means "unset" in Docker's merge
        if idx is None:
            env.append(item)
        else:
            env[idx] = item
    return env


def _rlimits(host: HostConfig) -> list[dict[str, Any]]:
    limits: dict[str, dict[str, Any]] = {}
    for ulimit in host.ulimits:
        name = ulimit.name.lower().removeprefix("rlimit_")
        if name not in _RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {ulimit.name}")
        if ulimit.soft > ulimit.hard and ulimit.hard >= 0:
            raise InvalidArgument(
                f"ulimit soft limit must be less than or equal to hard limit: {ulimit.soft} > {ulimit.hard}"
            )
        limits[name] = {"type": f"RLIMIT_{name.upper()}", "hard": ulimit.hard, "soft": ulimit.soft}
    nofile = default_nofile()
    limits.setdefault("nofile", {"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile})
    return list(limits.values())


def default_nofile() -> int:
    """Docker's containers get nofile 1048576 (containerd's limit); never more than skiffd's own hard
    limit, because raising it needs CAP_SYS_RESOURCE, which a sandboxed daemon may lack."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return DEFAULT_NOFILE if hard == resource.RLIM_INFINITY else min(DEFAULT_NOFILE, hard)


def _no_new_privileges(security_opt: Sequence[str]) -> bool:
    value = False
    for opt in security_opt:
        key, sep, val = opt.partition("=" if "=" in opt else ":")
        if key != "no-new-privileges":
            continue
        if not sep:
            value = True
        elif val in ("true", "false"):
            value = val == "true"
        else:
            raise InvalidArgument(f"invalid --security-opt 2: {opt!r} (use no-new-privileges[:true|false])")
    return value


def device_cgroup_rule(rule: str) -> dict[str, Any]:
    """``--device-cgroup-rule "c 7:128 rwm"`` as an OCI allow rule (validated by the API)."""
    kind, numbers, access = rule.split()
    major, _, minor = numbers.partition(":")
    out: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major != "*":
        out["major"] = int(major)
    if minor != "*":
        out["minor"] = int(minor)
    return out


def _namespaces(host: HostConfig, netns_path: str | None, paths: Mapping[str, str]) -> list[dict[str, str]]:
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if host.pid_mode != "host":
        namespaces.append({"type": "pid"})
    if host.ipc_mode != "host":
        namespaces.append({"type": "ipc"})
    if host.uts_mode != "host":
        namespaces.append({"type": "uts"})
    if host.network_mode != "host":
        net = {"type": "network"}
        # "none" and bridge modes alike: the engine may hand us a prepared netns (lo only for none).
        if netns_path:
            net["path"] = netns_path
        namespaces.append(net)
    if host.cgroupns_mode == "private" or (not host.cgroupns_mode and _cgroup_v2_only()):
        namespaces.append({"type": "cgroup"})
    for ns in namespaces:
        if ns["type"] in paths:
            ns["path"] = paths[ns["type"]]
    return namespaces


def _cgroup_v2_only() -> bool:
    # Docker uses a private cgroup namespace by default on cgroup v2 hosts only.
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _swap_supported() -> bool:
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or _cgroup_v2_only()


def _linux(
    host: HostConfig,
    container_id: str,
    netns_path: str | None,
    cgroups_path: str,
    namespace_paths: Mapping[str, str],
    swap_supported: bool | None,
) -> dict[str, Any]:
    del container_id  # reserved: seccomp/apparmor profiles are keyed by container later
    resources = linux_resources(
        host, swap_supported=_swap_supported() if swap_supported is None else swap_supported
    )
    devices: list[dict[str, Any]]
    if host.privileged:
        devices = host_devices()
        rules = list(PRIVILEGED_DEVICE_RULES)
    else:
        devices = []
        rules = list(DEFAULT_DEVICE_RULES)
    mapped_nodes, mapped_rules = mapped_devices(host.devices)
    devices += mapped_nodes
    rules += mapped_rules
    rules += [device_cgroup_rule(r) for r in host.device_cgroup_rules]
    resources["devices"] = rules
    linux: dict[str, Any] = {
        "resources": resources,
        "cgroupsPath": cgroups_path,
        "namespaces": _namespaces(host, netns_path, namespace_paths),
        "devices": devices,
    }
    if host.sysctls:
        if host.network_mode == "host" and any(k.startswith("net.") for k in host.sysctls):
            raise InvalidArgument("sysctls starting with net. are not allowed with --network=host")
        linux["sysctl"] = dict(host.sysctls)
    if host.privileged:
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
    else:
        masked = DEFAULT_MASKED_PATHS if host.masked_paths is None else host.masked_paths
        readonly = DEFAULT_READONLY_PATHS if host.readonly_paths is None else host.readonly_paths
        linux["maskedPaths"] = list(masked)
        linux["readonlyPaths"] = list(readonly)
    return linux
