"""Device nodes and device-cgroup rules as Docker sets them up."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

from skiff.errors import InvalidArgument
from skiff.types import DeviceMapping

# moby oci/defaults.go: deny everything, then allow mknod of any device and the basic nodes.
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # /dev/random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # /dev/tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # /dev/urandom
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},  # /dev/console
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # /dev/ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
)

PRIVILEGED_DEVICE_RULES: tuple[dict[str, Any], ...] = ({"allow": True, "access": "rwm"},)

# Host device paths a privileged container does not get (they are set up by runc itself).
_SKIP_HOST_DEVICES = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/dev/ptmx", "/dev/fd")


def device_node(path_on_host: str, path_in_container: str) -> dict[str, Any]:
    """An OCI ``linux.devices`` entry for a host device node (stat follows symlinks like Docker)."""
    try:
        st = os.stat(path_on_host)
    except OSError as exc:
        raise InvalidArgument(
            f'error gathering device information while adding custom device "{path_on_host}": '
            f"{exc.strerror.lower() if exc.strerror else exc}"
        ) from exc
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(
            f'error gathering device information while adding custom device "{path_on_host}": '
            "not a device node"
        )
    return {
        "path": path_in_container,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def mapped_devices(mappings: tuple[DeviceMapping, ...]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``--device`` flags -> (linux.devices entries, device cgroup allow rules)."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for mapping in mappings:
        perms = mapping.cgroup_permissions or "rwm"
        if not perms or any(ch not in "rwm" for ch in perms):
            raise InvalidArgument(f"invalid device mode: {perms} (use a combination of r, w and m)")
        target = mapping.path_in_container or mapping.path_on_host
        if not target.startswith("/"):
            raise InvalidArgument(f"{target} is not an absolute path")
        node = device_node(mapping.path_on_host, target)
        nodes.append(node)
        rules.append(
            {
                "allow": True,
                "type": node["type"],
                "major": node["major"],
                "minor": node["minor"],
                "access": perms,
            }
        )
    return nodes, rules


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every device node on the host, for privileged containers (moby ``HostDevices``)."""
    return [device_node(path, path) for path in _walk_devices(root)]


def _walk_devices(root: str) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in _SKIP_HOST_DEVICES]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path in _SKIP_HOST_DEVICES:
                continue
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                yield path


def block_device_numbers(path: str) -> tuple[int, int]:
    """major:minor of a block device, for blkio throttling."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(f"invalid block device {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{path} is not a block device: give a path such as /dev/sda")
    return os.major(st.st_rdev), os.minor(st.st_rdev)
