"""Linux capabilities as Docker computes them (moby ``oci/caps``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from skiff.errors import InvalidArgument

# Kernel order (capability number); CAP_CHECKPOINT_RESTORE (40) is the last in 5.9+ kernels.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# Docker's default set (moby oci/caps/defaults.go), in Docker's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


def normalize_capability(name: str) -> str:
    """``net_admin`` / ``NET_ADMIN`` / ``cap_net_admin`` -> ``CAP_NET_ADMIN``; ``all`` -> ``ALL``."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in ALL_CAPABILITIES:
        raise InvalidArgument(f'unknown capability: "{upper}"')
    return upper


def bounding_set(status: Path = Path("/proc/self/status")) -> int | None:
    """The daemon's capability bounding set as a bit mask (None when it cannot be read)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def effective_capabilities(
    cap_add: Sequence[str], cap_drop: Sequence[str], privileged: bool, bounding: int | None = -1
) -> list[str]:
    """The container's capability set, following moby's ``TweakCapabilities``.

    Privileged containers get every capability regardless of add/drop, limited (as podman
    does) to the daemon's own ``bounding`` set: runc cannot grant a capability the daemon
    lacks and would refuse to start the container at all. ``-1`` reads the daemon's set;
    ``None`` means no limit. ``--cap-add ALL`` wins over drops except the ones listed;
    ``--cap-drop ALL`` keeps only what is added.
    """
    adds = [normalize_capability(c) for c in cap_add]
    drops = [normalize_capability(c) for c in cap_drop]
    if privileged:
        mask = bounding_set() if bounding == -1 else bounding
        return [c for i, c in enumerate(ALL_CAPABILITIES) if mask is None or mask >> i & 1]
    if "ALL" in adds:
        keep = {c for c in ALL_CAPABILITIES if c not in drops}
        return [c for c in ALL_CAPABILITIES if c in keep]
    if "ALL" in drops:
        return _ordered_unique(c for c in adds if c != "ALL")
    caps = [c for c in DEFAULT_CAPABILITIES if c not in drops]
    return _ordered_unique([*caps, *adds])


def _ordered_unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
