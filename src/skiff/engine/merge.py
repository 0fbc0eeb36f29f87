"""Create-time rules: merge the image's config into a container spec, validate, name.

These follow dockerd's ``mergeAndVerifyConfig``: the stored spec is complete, so
``inspect`` shows the effective command, environment and user.
"""

from __future__ import annotations

import re
import secrets
import signal
from dataclasses import replace

from skiff.errors import InvalidArgument
from skiff.types import ContainerSpec, ImageConfig

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RESTART_POLICIES = ("no", "", "on-failure", "always", "unless-stopped")

_ADJECTIVES = [
    "admiring",
    "agile",
    "bold",
    "brave",
    "calm",
    "clever",
    "cool",
    "dreamy",
    "eager",
    "elegant",
    "fervent",
    "festive",
    "focused",
    "gallant",
    "gifted",
    "happy",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
]
_NOUNS = [
    "albattani",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "fermat",
    "feynman",
    "galileo",
    "goldberg",
    "hopper",
    "hypatia",
    "kepler",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "mccarthy",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "perlman",
    "ritchie",
    "shannon",
    "stallman",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
    "yonath",
]


def new_container_id() -> str:
    return secrets.token_hex(32)


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"


def validate_name(name: str) -> str:
    """Return the name without a leading slash, or raise Docker's message."""
    if not NAME_RE.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def parse_signal(value: str) -> int:
    """'SIGTERM', 'TERM', 'term', '15' -> 15; InvalidArgument otherwise."""
    text = value.strip()
    if text.isdigit():
        num = int(text)
        if 0 < num < 65:
            return num
        raise InvalidArgument(f"Invalid signal: {value}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        pass
    match = re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name)
    if match:
        base = signal.SIGRTMIN if match.group(1) == "IN" else signal.SIGRTMAX
        return int(base) + int(match.group(2) or 0)
    raise InvalidArgument(f"Invalid signal: {value}")


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_env(image_env: tuple[str, ...], env: tuple[str, ...]) -> tuple[str, ...]:
    merged: dict[str, str] = {}
    for entry in (*image_env, *env):
        merged[_env_key(entry)] = entry
    return tuple(merged.values())


def validate_spec(spec: ContainerSpec) -> None:
    """Reject bad values before anything is created."""
    host = spec.host
    if host.memory < 0:
        raise InvalidArgument("invalid memory limit: must be a positive number of bytes")
    if 0 < host.memory < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if host.memory_swap not in (0, -1) and host.memory and host.memory_swap < host.memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if host.nano_cpus < 0 or host.cpu_shares < 0 or host.cpu_quota < -1 or host.cpu_period < 0:
        raise InvalidArgument("invalid CPU setting: values must not be negative")
    if host.nano_cpus and (host.cpu_quota > 0 or host.cpu_period > 0):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    if host.blkio_weight and not 10 <= host.blkio_weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if host.pids_limit < -1:
        raise InvalidArgument("invalid pids limit: must be -1 (unlimited) or positive")
    if host.shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    policy = host.restart_policy
    if policy.name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy '{policy.name}'")
    if policy.maximum_retry_count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if policy.maximum_retry_count and policy.name != "on-failure":
        raise InvalidArgument(
            f"invalid restart policy: maximum retry count cannot be used with restart policy '{policy.name}'"
        )
    if host.auto_remove and policy.name not in ("no", ""):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    if host.network_mode.startswith("container:") and not host.network_mode[len("container:") :]:
        raise InvalidArgument("invalid network mode: container: needs a container name or id")
    if spec.stop_signal:
        parse_signal(spec.stop_signal)
    if spec.stop_timeout is not None and spec.stop_timeout < -1:
        raise InvalidArgument("invalid stop timeout")
    hc = spec.healthcheck
    if hc is not None:
        for label, value in (
            ("Interval", hc.interval),
            ("Timeout", hc.timeout),
            ("StartPeriod", hc.start_period),
        ):
            if value and value < 1_000_000:
                raise InvalidArgument(f"{label} in Healthcheck cannot be less than 1ms")
        if hc.retries < 0:
            raise InvalidArgument("Retries in Healthcheck cannot be negative")


def merge_image_config(spec: ContainerSpec, image: ImageConfig) -> ContainerSpec:
    """Fill unset fields of ``spec`` from the image, as dockerd does at create time."""
    entrypoint, cmd = spec.entrypoint, spec.cmd
    if not entrypoint:
        if not cmd:
            cmd = image.cmd or ()
        entrypoint = image.entrypoint or ()
    elif entrypoint == ("",):
        entrypoint = ()
    if not entrypoint and not cmd:
        raise InvalidArgument("No command specified")
    labels = {**image.labels, **spec.labels}
    healthcheck = spec.healthcheck
    if healthcheck is None:
        healthcheck = image.healthcheck
    elif image.healthcheck is not None:
        # Unset timing fields inherit from the image's check, as in dockerd.
        base = image.healthcheck
        healthcheck = replace(
            healthcheck,
            test=healthcheck.test or base.test,
            interval=healthcheck.interval or base.interval,
            timeout=healthcheck.timeout or base.timeout,
            retries=healthcheck.retries or base.retries,
            start_period=healthcheck.start_period or base.start_period,
        )
    return replace(
        spec,
        entrypoint=entrypoint,
        cmd=cmd,
        env=merge_env(image.env, spec.env),
        user=spec.user or image.user,
        working_dir=spec.working_dir or image.working_dir,
        exposed_ports=tuple(dict.fromkeys((*image.exposed_ports, *spec.exposed_ports))),
        volumes=tuple(dict.fromkeys((*image.volumes, *spec.volumes))),
        labels=labels,
        stop_signal=spec.stop_signal or image.stop_signal,
        healthcheck=healthcheck,
    )
