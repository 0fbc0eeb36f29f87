"""The mount list of a container: Docker's defaults, then user mounts by depth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skiff.errors import InvalidArgument
from skiff.types import HostConfig, Mount

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


@dataclass(frozen=True)
class BindFile:
    """A single host file bind-mounted into the container (/etc/hosts, /etc/resolv.conf, ...)."""

    source: str
    target: str
    read_only: bool = False


def default_mounts(host: HostConfig) -> list[dict[str, Any]]:
    """moby ``oci.DefaultLinuxSpec`` mounts; /sys and cgroups are writable when privileged."""
    ro = [] if host.privileged else ["ro"]
    shm_size = host.shm_size or DEFAULT_SHM_SIZE
    if shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", *ro],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*ro, "nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"],
        },
    ]


def _bind(source: str, target: str, read_only: bool, extra: Sequence[str] = ()) -> dict[str, Any]:
    propagation = next((o for o in extra if o in _PROPAGATIONS), "rprivate")
    options = ["rbind", propagation]
    if read_only:
        options.append("ro")
    return {"destination": target, "type": "bind", "source": source, "options": options}


def _tmpfs(target: str, options: Sequence[str]) -> dict[str, Any]:
    # Docker's --tmpfs defaults (noexec,nosuid,nodev) unless the user says exec/suid/dev.
    opts = [o for o in options if o]
    defaults = {"noexec": "exec", "nosuid": "suid", "nodev": "dev"}
    merged = [d for d, opposite in defaults.items() if opposite not in opts and d not in opts] + opts
    return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": merged}


def parse_bind(bind: str) -> tuple[str, str, bool, list[str]]:
    """``src:dst[:opts]`` -> (source, target, read_only, other options)."""
    parts = bind.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: '{bind}'")
    opts = parts[2].split(",") if len(parts) == 3 else []
    for opt in opts:
        if opt not in ("ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated", *_PROPAGATIONS):
            raise InvalidArgument(f"invalid mode: {opt} in volume specification '{bind}'")
    return parts[0], parts[1], "ro" in opts, [o for o in opts if o not in ("ro", "rw")]


def user_mounts(host: HostConfig, extra: Sequence[Mount | BindFile]) -> list[dict[str, Any]]:
    """Binds, --mount and --tmpfs from the spec plus the engine's extra mounts.

    Named volumes (a bind or mount whose source is not an absolute path) are the
    engine's to resolve: it passes them as ``extra`` and those win by target.
    """
    by_target: dict[str, dict[str, Any]] = {}
    for bind in host.binds:
        if ":" not in bind:
            continue  # "/path" alone is an anonymous volume: the engine's to resolve
        source, target, read_only, opts = parse_bind(bind)
        if source.startswith("/"):
            by_target[target] = _bind(source, target, read_only, opts)
    for mount in host.mounts:
        entry = _from_mount(mount, allow_named=False)
        if entry is not None:
            by_target[entry["destination"]] = entry
    for target, options in host.tmpfs.items():
        by_target[target] = _tmpfs(target, options.split(",") if options else [])
    for item in extra:
        if isinstance(item, BindFile):
            by_target[item.target] = _bind(item.source, item.target, item.read_only)
        else:
            entry = _from_mount(item, allow_named=True)
            if entry is not None:
                by_target[entry["destination"]] = entry
    for target in by_target:
        if not target.startswith("/"):
            raise InvalidArgument(f"invalid mount config: mount path must be absolute: {target}")
    # Parents before children, as moby sorts mounts by path depth.
    return sorted(by_target.values(), key=lambda m: len([p for p in m["destination"].split("/") if p]))


def _from_mount(mount: Mount, *, allow_named: bool) -> dict[str, Any] | None:
    if mount.type == "tmpfs":
        return _tmpfs(mount.target, [*mount.options, *(["ro"] if mount.read_only else [])])
    if mount.type in ("bind", "volume"):
        if not mount.source.startswith("/"):
            if allow_named:
                raise InvalidArgument(f"mount source for {mount.target} must be an absolute host path")
            return None
        return _bind(mount.source, mount.target, mount.read_only, mount.options)
    raise InvalidArgument(f"invalid mount type {mount.type!r} for {mount.target}: use bind, volume or tmpfs")
