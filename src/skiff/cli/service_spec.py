"""``service create``/``update`` flags -> a cluster ``ServiceSpec``: pure functions, no I/O but files.

Every parser raises ``InvalidArgument`` naming the flag and the bad value, so the CLI stops with
exit 125 before anything reaches the manager. Durations are Go's (``10s``, ``1m30s``) and become
seconds (the model's unit); sizes are docker's (``64m``, ``1g``); CPUs are decimal (``0.5``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from skiff.cli.options.values import parse_duration, parse_env, parse_key_value, read_kv_file
from skiff.cluster.model import (
    FailureAction,
    Placement,
    PortConfig,
    ResourceRequirements,
    RestartCondition,
    RestartPolicy,
    ServiceMode,
    ServiceSpec,
    TaskTemplate,
    UpdateOrder,
    UpdatePolicy,
)
from skiff.cluster.scheduler.constraints import parse_constraint, parse_preference
from skiff.engine.merge import random_name
from skiff.errors import InvalidArgument
from skiff.types.container import HealthConfig
from skiff.units import parse_size

STACK_LABEL = "com.docker.stack.namespace"


# --- values --------------------------------------------------------------------------------


def duration_seconds(value: str, flag: str) -> float:
    """A Go duration flag (``10s``, ``1m30s``, ``500ms``) in seconds."""
    try:
        return parse_duration(value) / 1e9
    except InvalidArgument:
        raise InvalidArgument(
            f"invalid argument {value!r} for {flag}: a duration like 10s, 1m30s or 500ms"
        ) from None


def size_bytes(value: str, flag: str) -> int:
    """A size flag (``64m``, ``1g``, ``512k``, a plain number of bytes)."""
    try:
        return parse_size(value)
    except InvalidArgument:
        raise InvalidArgument(f"invalid argument {value!r} for {flag}: a size like 64m, 1g or 512k") from None


def nano_cpus(value: str, flag: str) -> int:
    """A CPU flag (``0.5``, ``2``) in nano-CPUs."""
    try:
        cpus = float(value)
    except ValueError:
        cpus = -1.0
    if cpus < 0 or cpus != cpus:
        raise InvalidArgument(f"invalid argument {value!r} for {flag}: a number of CPUs like 0.5 or 2")
    return round(cpus * 1e9)


def check_constraint(value: str) -> str:
    """``node.labels.ssd==true`` (spaces around the operator dropped); refused when malformed."""
    return _normalized_constraint(parse_constraint(value).text)


def _normalized_constraint(text: str) -> str:
    return re.sub(r"\s*(==|!=)\s*", r"\1", text.strip(), count=1)


def check_preference(value: str) -> str:
    """``spread=node.labels.zone``; refused when it is anything else."""
    parse_preference(value)
    strategy, _, target = value.partition("=")
    return f"{strategy.strip()}={target.strip()}"


_PROTOCOLS = ("tcp", "udp", "sctp")


def _port(text: str, what: str, value: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise InvalidArgument(f"invalid {what} port {text!r} in --publish {value!r}")
    return int(text)


def parse_publish(value: str) -> PortConfig:
    """``--publish``: ``published=8080,target=80[,protocol=udp][,mode=host]`` or ``8080:80[/udp]``
    or ``80`` (any free node port). Ports are bound on the node running the task (host mode):
    the routing mesh (ingress) is not there yet, so the short form means host mode here."""
    text = value.strip()
    if "=" in text:
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, sep, val = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in ("published", "target", "protocol", "mode"):
                raise InvalidArgument(
                    f"invalid --publish {value!r}: expected published=N,target=N[,protocol=tcp|udp][,mode=host]"
                )
            fields[key] = val.strip()
        if "target" not in fields:
            raise InvalidArgument(f"invalid --publish {value!r}: target= is required")
        mode = fields.get("mode", "host").lower()
        if mode != "host":
            raise InvalidArgument(
                f"invalid --publish {value!r}: only mode=host is supported (no routing mesh yet)"
            )
        protocol = fields.get("protocol", "tcp").lower()
        published = _port(fields["published"], "published", value) if fields.get("published") else 0
        target = _port(fields["target"], "target", value)
    else:
        ports, _, protocol = text.partition("/")
        protocol = (protocol or "tcp").lower()
        published_text, sep, target_text = ports.rpartition(":")
        if ":" in published_text:
            raise InvalidArgument(
                f"invalid --publish {value!r}: a host IP cannot be given for a service (use PUBLISHED:TARGET)"
            )
        target = _port(target_text, "target", value)
        published = _port(published_text, "published", value) if sep and published_text else 0
    if protocol not in _PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {protocol!r} in --publish {value!r}: tcp, udp or sctp")
    if target == 0:
        raise InvalidArgument(f"invalid --publish {value!r}: the target port must not be 0")
    return PortConfig(target=target, published=published, protocol=protocol, mode="host")


def port_text(port: PortConfig | Mapping[str, Any]) -> str:
    """docker's service port column: ``*:8080->80/tcp`` (published 0: ``*:0->80/tcp``)."""
    if isinstance(port, PortConfig):
        published, target, protocol = port.published, port.target, port.protocol
    else:
        published, target = int(port.get("published") or 0), int(port.get("target") or 0)
        protocol = str(port.get("protocol") or "tcp")
    return f"*:{published}->{target}/{protocol}"


def _choice(value: str, flag: str, allowed: tuple[str, ...]) -> str:
    v = value.strip().lower()
    if v not in allowed:
        raise InvalidArgument(f"invalid argument {value!r} for {flag}: one of {', '.join(allowed)}")
    return v


def parse_labels(items: tuple[str, ...], what: str = "label") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, val = parse_key_value(item, what)
        out[key] = val
    return out


def env_list(env: tuple[str, ...], env_files: tuple[str, ...] = ()) -> list[str]:
    """``--env-file`` lines first, then ``-e`` (``-e KEY`` takes this environment's value)."""
    out: list[str] = []
    for path in env_files:
        out.extend(read_kv_file(path, env_lookup=True))
    out.extend(e for e in (parse_env(v) for v in env) if e)
    return out


def merge_env(current: tuple[str, ...], add: list[str], rm: tuple[str, ...]) -> tuple[str, ...]:
    """``--env-rm KEY`` drops KEY, ``--env-add K=V`` replaces or appends (order kept)."""
    drop = {r.partition("=")[0] for r in rm}
    out: dict[str, str] = {}
    for item in current:
        key = item.partition("=")[0]
        if key not in drop:
            out[key] = item
    for item in add:
        out[item.partition("=")[0]] = item
    return tuple(out.values())


# --- flags -> spec -------------------------------------------------------------------------


class Flags:
    """The click parameters of one invocation (``None``/empty: not given)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def text(self, name: str) -> str | None:
        v = self.params.get(name)
        return None if v is None else str(v)

    def number(self, name: str) -> int | None:
        v = self.params.get(name)
        return None if v is None else int(v)

    def flag(self, name: str) -> bool:
        return bool(self.params.get(name))

    def many(self, name: str) -> tuple[str, ...]:
        return tuple(self.params.get(name) or ())


def _resources(f: Flags, current: ResourceRequirements) -> ResourceRequirements:
    res, lim = current.reservations, current.limits
    if (v := f.text("reserve_memory")) is not None:
        res = dataclasses.replace(res, memory_bytes=size_bytes(v, "--reserve-memory"))
    if (v := f.text("reserve_cpu")) is not None:
        res = dataclasses.replace(res, nano_cpus=nano_cpus(v, "--reserve-cpu"))
    if (v := f.text("limit_memory")) is not None:
        lim = dataclasses.replace(lim, memory_bytes=size_bytes(v, "--limit-memory"))
    if (v := f.text("limit_cpu")) is not None:
        lim = dataclasses.replace(lim, nano_cpus=nano_cpus(v, "--limit-cpu"))
    return ResourceRequirements(reservations=res, limits=lim)


def _healthcheck(f: Flags, current: HealthConfig | None) -> HealthConfig | None:
    cmd = f.text("health_cmd")
    durations = {
        "health_interval": ("interval", "--health-interval"),
        "health_timeout": ("timeout", "--health-timeout"),
        "health_start_period": ("start_period", "--health-start-period"),
    }
    given: dict[str, int] = {}
    for name, (key, flag) in durations.items():
        if (v := f.text(name)) is not None:
            given[key] = round(duration_seconds(v, flag) * 1e9)
    retries = f.number("health_retries")
    if retries is not None:
        if retries < 0:
            raise InvalidArgument("--health-retries cannot be negative")
        given["retries"] = retries
    if f.flag("no_healthcheck"):
        if cmd or given:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return HealthConfig(test=("NONE",))
    if cmd is None and not given:
        return current
    base = current if current is not None and current.test != ("NONE",) else HealthConfig()
    test = ("CMD-SHELL", cmd) if cmd else base.test
    return dataclasses.replace(base, test=test, **given)


def _restart(f: Flags, current: RestartPolicy) -> RestartPolicy:
    changes: dict[str, Any] = {}
    if (v := f.text("restart_condition")) is not None:
        changes["condition"] = RestartCondition(
            _choice(v, "--restart-condition", tuple(c.value for c in RestartCondition))
        )
    if (n := f.number("restart_max_attempts")) is not None:
        if n < 0:
            raise InvalidArgument("--restart-max-attempts cannot be negative")
        changes["max_attempts"] = n
    if (v := f.text("restart_delay")) is not None:
        changes["delay"] = duration_seconds(v, "--restart-delay")
    if (v := f.text("restart_window")) is not None:
        changes["window"] = duration_seconds(v, "--restart-window")
    return dataclasses.replace(current, **changes)


def _policy(f: Flags, prefix: str, current: UpdatePolicy) -> UpdatePolicy:
    """``--update-*`` or ``--rollback-*`` flags over ``current``."""
    flag = f"--{prefix}-"
    changes: dict[str, Any] = {}
    if (n := f.number(f"{prefix}_parallelism")) is not None:
        if n < 0:
            raise InvalidArgument(f"{flag}parallelism cannot be negative")
        changes["parallelism"] = n
    if (v := f.text(f"{prefix}_delay")) is not None:
        changes["delay"] = duration_seconds(v, f"{flag}delay")
    if (v := f.text(f"{prefix}_monitor")) is not None:
        changes["monitor"] = duration_seconds(v, f"{flag}monitor")
    if (v := f.text(f"{prefix}_failure_action")) is not None:
        allowed = ("pause", "rollback", "continue") if prefix == "update" else ("pause", "continue")
        changes["failure_action"] = FailureAction(_choice(v, f"{flag}failure-action", allowed))
    if (v := f.text(f"{prefix}_order")) is not None:
        changes["order"] = UpdateOrder(_choice(v, f"{flag}order", ("stop-first", "start-first")))
    return dataclasses.replace(current, **changes)


def _replicas(f: Flags, mode: ServiceMode, current: int) -> int:
    n = f.number("replicas")
    if n is None:
        return current
    if n < 0:
        raise InvalidArgument("--replicas cannot be negative")
    if mode is ServiceMode.GLOBAL:
        raise InvalidArgument("--replicas can only be used with replicated mode")
    return n


def _template_common(f: Flags, tpl: TaskTemplate) -> TaskTemplate:
    changes: dict[str, Any] = {
        "resources": _resources(f, tpl.resources),
        "healthcheck": _healthcheck(f, tpl.healthcheck),
    }
    if (v := f.text("workdir")) is not None:
        changes["workdir"] = v
    if (v := f.text("user")) is not None:
        changes["user"] = v
    if (v := f.text("entrypoint")) is not None:
        import shlex

        changes["entrypoint"] = tuple(shlex.split(v))
    if (v := f.text("stop_grace_period")) is not None:
        changes["stop_grace_period"] = duration_seconds(v, "--stop-grace-period")
    return dataclasses.replace(tpl, **changes)


def _policies(f: Flags, spec: ServiceSpec) -> dict[str, Any]:
    return {
        "restart": _restart(f, spec.restart),
        "update": _policy(f, "update", spec.update),
        "rollback": _policy(f, "rollback", spec.rollback),
    }


def spec_from_flags(params: Mapping[str, Any], image: str, args: tuple[str, ...]) -> ServiceSpec:
    """``service create`` flags -> the spec to send."""
    f = Flags(params)
    # swarmkit names an unnamed service like docker names containers (adjective_noun)
    name = f.text("name") or random_name()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise InvalidArgument(f"invalid service name {name!r}: letters, digits, '_', '.' and '-' only")
    mode = ServiceMode(_choice(f.text("mode") or "replicated", "--mode", ("replicated", "global")))
    ports = tuple(parse_publish(p) for p in f.many("publish"))
    tpl = TaskTemplate(
        image=image,
        command=tuple(args),
        env=tuple(env_list(f.many("env"), f.many("env_file"))),
        labels=parse_labels(f.many("container_label")),
        placement=Placement(
            constraints=tuple(check_constraint(c) for c in f.many("constraint")),
            preferences=tuple(check_preference(p) for p in f.many("placement_pref")),
        ),
        ports=ports,
    )
    tpl = _template_common(f, tpl)
    base = ServiceSpec(name=name, template=tpl, mode=mode)
    return dataclasses.replace(
        base,
        labels=parse_labels(f.many("label")),
        replicas=_replicas(f, mode, 1),
        **_policies(f, base),
    )


def _without(items: tuple[str, ...], rm: tuple[str, ...], key: Any = None) -> tuple[str, ...]:
    drop = set(rm)
    return tuple(i for i in items if (key(i) if key else i) not in drop)


def update_spec(spec: ServiceSpec, params: Mapping[str, Any]) -> ServiceSpec:
    """``service update`` flags applied to the current spec (flags not given keep their value)."""
    f = Flags(params)
    tpl = spec.template
    changes: dict[str, Any] = {}
    if (v := f.text("image")) is not None:
        changes["image"] = v
    if (v := f.text("args")) is not None:
        import shlex

        changes["command"] = tuple(shlex.split(v))
    if f.many("env_add") or f.many("env_rm"):
        changes["env"] = merge_env(tpl.env, env_list(f.many("env_add")), f.many("env_rm"))
    if f.many("container_label_add") or f.many("container_label_rm"):
        labels = {k: v for k, v in tpl.labels.items() if k not in f.many("container_label_rm")}
        labels.update(parse_labels(f.many("container_label_add")))
        changes["labels"] = labels
    placement = tpl.placement
    if f.many("constraint_add") or f.many("constraint_rm"):
        rm = tuple(_normalized_constraint(c) for c in f.many("constraint_rm"))
        kept = _without(placement.constraints, rm, _normalized_constraint)
        added = tuple(check_constraint(c) for c in f.many("constraint_add"))
        placement = dataclasses.replace(
            placement, constraints=kept + tuple(a for a in added if a not in kept)
        )
    if f.many("placement_pref_add") or f.many("placement_pref_rm"):
        kept = _without(placement.preferences, f.many("placement_pref_rm"))
        added = tuple(check_preference(p) for p in f.many("placement_pref_add"))
        placement = dataclasses.replace(placement, preferences=kept + added)
    changes["placement"] = placement
    if f.many("publish_add") or f.many("publish_rm"):
        ports = list(tpl.ports)
        for gone in f.many("publish_rm"):
            ports = [p for p in ports if not _port_matches(p, gone)]
        for add in f.many("publish_add"):
            new = parse_publish(add)
            ports = [p for p in ports if (p.target, p.protocol) != (new.target, new.protocol)]
            ports.append(new)
        changes["ports"] = tuple(ports)
    tpl = _template_common(f, dataclasses.replace(tpl, **changes))
    labels = {k: v for k, v in spec.labels.items() if k not in f.many("label_rm")}
    labels.update(parse_labels(f.many("label_add")))
    return dataclasses.replace(
        spec,
        template=tpl,
        labels=labels,
        replicas=_replicas(f, spec.mode, spec.replicas),
        **_policies(f, spec),
    )


def _port_matches(port: PortConfig, rm: str) -> bool:
    """``--publish-rm 80`` (target), ``80/udp`` or a full spec removes the port it names."""
    text = rm.strip()
    if "=" in text or ":" in text:
        other = parse_publish(text)
        return (port.target, port.protocol) == (other.target, other.protocol)
    num, _, proto = text.partition("/")
    return str(port.target) == num and port.protocol == (proto or "tcp")


def parse_scale(arg: str) -> tuple[str, int]:
    """``web=5`` for ``service scale``."""
    name, sep, count = arg.partition("=")
    if not sep or not name or not count.isdigit():
        raise InvalidArgument(f"invalid scale specifier {arg!r}: expected SERVICE=REPLICAS")
    return name, int(count)


# --- durations for display -----------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` of ``seconds``: ``5s``, ``1m30s``, ``500ms``, ``0s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
        return f"{ns}ns"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _trim(rest / 1e9)
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{secs}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"
