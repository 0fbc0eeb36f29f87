"""Flag value parsers with docker's syntax and rules.

Each raises ``InvalidArgument`` with a message naming the bad value, so the CLI
can stop with exit 125 before anything reaches the daemon.
"""

from __future__ import annotations

import csv
import os
import re
from typing import Any

from skiff.errors import InvalidArgument
from skiff.units import parse_size

__all__ = ["parse_size"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_DURATION_NS["h"] = 3600 * 10**9
ULIMIT_NAMES = frozenset(
    [
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
)
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def parse_memory_swap(value: str) -> int:
    """``--memory-swap``: a size, or -1 for unlimited."""
    return -1 if value.strip() == "-1" else parse_size(value)


def parse_duration(value: str) -> int:
    """Go's time.ParseDuration (``30s``, ``1m30s``, ``500ms``) in nanoseconds; negatives refused."""
    text = value.strip()
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidArgument(f"invalid duration: {value!r} (examples: 30s, 1m30s, 500ms)")
    return int(total)


def parse_cpus(value: str) -> int:
    """``--cpus 1.5`` -> NanoCpus 1500000000."""
    try:
        cpus = float(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for --cpus: {value!r} (a number of CPUs, e.g. 1.5)") from None
    if cpus < 0:
        raise InvalidArgument(f"invalid value for --cpus: {value!r}: must not be negative")
    return round(cpus * 1e9)


def parse_ulimit(value: str) -> dict[str, Any]:
    """``nofile=1024:2048`` (soft:hard) or ``nofile=1024`` (both)."""
    name, sep, limits = value.partition("=")
    if not sep or not limits:
        raise InvalidArgument(
            f"invalid ulimit argument: {value!r} (use name=soft[:hard], e.g. nofile=1024:2048)"
        )
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name!r} (one of {', '.join(sorted(ULIMIT_NAMES))})")
    soft_s, _, hard_s = limits.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if hard_s else soft
    except ValueError:
        raise InvalidArgument(f"invalid ulimit value in {value!r}: limits must be integers") from None
    if soft > hard:
        raise InvalidArgument(
            f"invalid ulimit {value!r}: soft limit {soft} is greater than hard limit {hard}"
        )
    return {"Name": name, "Soft": soft, "Hard": hard}


def parse_device(value: str) -> dict[str, str]:
    """``/dev/sda[:/dev/xvda[:rwm]]``."""
    parts = value.split(":")
    if not parts[0].startswith("/") or len(parts) > 3:
        raise InvalidArgument(
            f"invalid device specification: {value!r} (use /dev/host[:/dev/container[:rwm]])"
        )
    host = parts[0]
    container, perms = host, "rwm"
    if len(parts) == 2:
        if _is_perms(parts[1]):
            perms = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, perms = parts[1], parts[2]
    if not container.startswith("/") or not _is_perms(perms):
        raise InvalidArgument(
            f"invalid device specification: {value!r} (use /dev/host[:/dev/container[:rwm]])"
        )
    return {"PathOnHost": host, "PathInContainer": container, "CgroupPermissions": perms}


def _is_perms(text: str) -> bool:
    return bool(text) and set(text) <= set("rwm") and len(set(text)) == len(text)


def parse_throttle_bps(value: str) -> dict[str, Any]:
    """``/dev/sda:1mb`` -> ``{"Path": "/dev/sda", "Rate": 1048576}``."""
    path, sep, rate = value.rpartition(":")
    if not sep or not path.startswith("/dev/"):
        raise InvalidArgument(f"bad format: {value!r} (use <device-path>:<rate>, e.g. /dev/sda:1mb)")
    return {"Path": path, "Rate": parse_size(rate)}


def parse_throttle_iops(value: str) -> dict[str, Any]:
    """``/dev/sda:1000`` -> ``{"Path": "/dev/sda", "Rate": 1000}``."""
    path, sep, rate = value.rpartition(":")
    if not sep or not path.startswith("/dev/") or not rate.isdigit():
        raise InvalidArgument(f"bad format: {value!r} (use <device-path>:<number>, e.g. /dev/sda:1000)")
    return {"Path": path, "Rate": int(rate)}


def parse_restart(value: str) -> dict[str, Any]:
    """``no``, ``always``, ``unless-stopped``, ``on-failure[:N]``."""
    name, sep, count = value.partition(":")
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy {value!r}: use one of {', '.join(RESTART_POLICIES)}")
    retries = 0
    if sep:
        if name != "on-failure":
            raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
        if not count.isdigit():
            raise InvalidArgument(f"invalid restart policy {value!r}: maximum retry count must be an integer")
        retries = int(count)
    return {"Name": name, "MaximumRetryCount": retries}


def read_kv_file(path: str, *, env_lookup: bool) -> list[str]:
    """docker's --env-file/--label-file format: KEY=VALUE lines, # comments, bare KEY from the environment."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    result: list[str] = []
    for num, raw in enumerate(lines, 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, val = line.partition("=")
        if not key or key != key.strip() or any(c.isspace() for c in key):
            raise InvalidArgument(f"{path}:{num}: variable {key!r} contains whitespaces or is empty")
        if sep:
            result.append(f"{key}={val}")
        elif not env_lookup:
            result.append(key)
        elif key in os.environ:
            result.append(f"{key}={os.environ[key]}")
    return result


def parse_env(value: str) -> str:
    """``-e KEY=VALUE`` as is; ``-e KEY`` takes the value from this environment (dropped if unset)."""
    if "=" in value:
        if value.startswith("="):
            raise InvalidArgument(f"invalid environment variable: {value!r}")
        return value
    return f"{value}={os.environ[value]}" if value in os.environ else ""


def parse_key_value(value: str, what: str) -> tuple[str, str]:
    """``k=v`` pairs for --sysctl, --label, --log-opt."""
    key, sep, val = value.partition("=")
    if not key:
        raise InvalidArgument(f"invalid {what}: {value!r} (use key=value)")
    if not sep and what == "sysctl":
        raise InvalidArgument(f"invalid sysctl: {value!r} (use name=value)")
    return key, val


def parse_add_host(value: str) -> str:
    """``host:ip`` (docker also accepts ``host=ip``); the daemon wants ``host:ip``."""
    if "=" in value:
        host, _, ip = value.partition("=")
    else:
        host, _, ip = value.partition(":")
    if not host or not ip:
        raise InvalidArgument(f"invalid argument {value!r} for --add-host: use host:ip")
    return f"{host}:{ip}"


def parse_tmpfs(value: str) -> tuple[str, str]:
    """``/run[:options]`` -> (path, options)."""
    path, _, opts = value.partition(":")
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid tmpfs mount {value!r}: the path must be absolute")
    return path, opts


def _csv_fields(value: str) -> list[str]:
    """docker reads --mount as one CSV record: a field in double quotes may hold commas."""
    try:
        return next(csv.reader([value]))
    except (csv.Error, StopIteration):
        raise InvalidArgument(f"invalid --mount {value!r}") from None


def parse_mount(value: str) -> dict[str, Any]:
    """``--mount type=bind,source=/a,target=/b,readonly`` -> a HostConfig.Mounts entry."""
    mount: dict[str, Any] = {"Type": "volume"}
    for part in _csv_fields(value):
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if key in ("type",):
            mount["Type"] = val
        elif key in ("source", "src"):
            mount["Source"] = val
        elif key in ("target", "destination", "dst"):
            mount["Target"] = val
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = not sep or val.lower() in ("1", "true")
        elif key == "bind-propagation":
            mount.setdefault("BindOptions", {})["Propagation"] = val
        elif key == "tmpfs-size":
            mount.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_size(val)
        elif key == "tmpfs-mode":
            mount.setdefault("TmpfsOptions", {})["Mode"] = int(val, 8)
        elif key == "volume-nocopy":
            mount.setdefault("VolumeOptions", {})["NoCopy"] = not sep or val.lower() in ("1", "true")
        elif key == "volume-driver":
            mount.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = val
        elif key in ("volume-opt", "volume-label"):
            name, has_value, opt_value = val.partition("=")
            if not name or not has_value:
                raise InvalidArgument(f"invalid {key} {val!r} in --mount {value!r}: use {key}=key=value")
            volume_opts = mount.setdefault("VolumeOptions", {})
            if key == "volume-label":
                volume_opts.setdefault("Labels", {})[name] = opt_value
            else:
                volume_opts.setdefault("DriverConfig", {}).setdefault("Options", {})[name] = opt_value
        elif key == "consistency":
            pass  # Docker Desktop's; no meaning on Linux
        else:
            raise InvalidArgument(f"unexpected key {key!r} in --mount {value!r}")
    if mount["Type"] not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"invalid mount type {mount['Type']!r}: use bind, volume or tmpfs")
    if "Target" not in mount:
        raise InvalidArgument(f"invalid --mount {value!r}: target is required")
    if mount["Type"] == "bind" and not mount.get("Source"):
        raise InvalidArgument(f"invalid --mount {value!r}: source is required for a bind mount")
    return mount


def parse_volume(value: str) -> tuple[str | None, str | None]:
    """``-v``: (bind, None) for ``src:dst[:opts]``, (None, path) for an anonymous volume ``/data``."""
    parts = value.split(":")
    if len(parts) == 1:
        if not value.startswith("/"):
            raise InvalidArgument(f"invalid volume {value!r}: the container path must be absolute")
        return None, value
    if len(parts) > 3 or not parts[0] or not parts[1].startswith("/"):
        raise InvalidArgument(f"invalid volume specification: {value!r} (use [src:]/container/path[:ro])")
    if parts[0].startswith("."):
        # As the docker CLI (>= 23): ./dir and ../dir are host paths relative to here.
        return ":".join([os.path.abspath(parts[0]), *parts[1:]]), None
    return value, None
