"""Formatter contexts and text views for ``node``, ``service`` and ``stack`` output.

The manager's JSON is ``to_plain`` of the cluster model (``Node``, ``Service``, ``Task``: keys
are the dataclass field names) plus computed keys (``Status``, ``Leader``, ``ManagerStatus``,
``Running``, ``Desired``, ``NodeHostname``, ``ServiceName``). Each row exposes docker's
formatter field names, so ``--format`` templates written for ``docker node ls`` etc. work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from skiff.cli.format.rows import ellipsis
from skiff.cli.service_spec import go_duration, port_text
from skiff.errors import InvalidArgument
from skiff.units import bytes_size, human_duration

NODE_TABLE = (
    "table {{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t"
    "{{.EngineVersion}}\t{{.CPU}}\t{{.Memory}}"
)
NODE_TITLES = {
    "ID": "ID",
    "ManagerStatus": "MANAGER STATUS",
    "EngineVersion": "ENGINE VERSION",
    "CPU": "CPU",
    "TLSStatus": "TLS STATUS",
}
SERVICE_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}"
SERVICE_TITLES = {"ID": "ID"}
TASK_TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t"
    "{{.Error}}\t{{.Ports}}"
)
TASK_TITLES = {"ID": "ID", "DesiredState": "DESIRED STATE", "CurrentState": "CURRENT STATE"}
STACK_TABLE = "table {{.Name}}\t{{.Services}}"
STACK_TITLES = {"Name": "NAME", "Services": "SERVICES"}
MAX_ERROR = 80  # docker cuts errors at 30; the scheduler's reasons need more to be useful


def title(text: str) -> str:
    """``ready`` -> ``Ready``, ``on-failure`` unchanged but capitalised."""
    return text[:1].upper() + text[1:] if text else ""


def short(ident: str) -> str:
    return ident[:12]


class NodeRow:
    """One ``nodes()`` item: ``.ID`` (``*`` marks the node the CLI talks to), ``.Hostname`` ..."""

    def __init__(self, raw: Mapping[str, Any], self_id: str = "") -> None:
        self.raw = raw
        self.self_id = self_id

    def to_json(self) -> dict[str, str]:
        return {
            k: str(getattr(self, k))
            for k in ("ID", "Hostname", "Status", "Availability", "ManagerStatus", "EngineVersion", "Self")
        }

    @property
    def ID(self) -> str:
        ident = str(self.raw.get("id", ""))
        return f"{ident} *" if ident and ident == self.self_id else ident

    @property
    def Self(self) -> bool:
        return bool(self.self_id) and self.raw.get("id") == self.self_id

    @property
    def Hostname(self) -> str:
        return str(self.raw.get("hostname", ""))

    @property
    def Status(self) -> str:
        return title(str(self.raw.get("Status") or self.raw.get("status") or ""))

    @property
    def Availability(self) -> str:
        return title(str(self.raw.get("availability", "")))

    @property
    def ManagerStatus(self) -> str:
        if "ManagerStatus" in self.raw:
            status = self.raw["ManagerStatus"]
            if isinstance(status, Mapping):  # docker's shape: {"Leader": true, "Reachability": ...}
                if status.get("Leader"):
                    return "Leader"
                return title(str(status.get("Reachability") or ""))
            return title(str(status or ""))
        if self.raw.get("Leader") or self.raw.get("leader"):
            return "Leader"
        return "Reachable" if self.raw.get("role") == "manager" else ""

    @property
    def EngineVersion(self) -> str:
        return str(self.raw.get("EngineVersion") or "")

    @property
    def TLSStatus(self) -> str:
        return "Unknown"

    @property
    def CPU(self) -> str:
        nano = int((self.raw.get("resources") or {}).get("nano_cpus") or 0)
        return f"{nano / 1e9:g}" if nano else ""

    @property
    def Memory(self) -> str:
        mem = int((self.raw.get("resources") or {}).get("memory_bytes") or 0)
        return bytes_size(mem) if mem else ""

    @property
    def Role(self) -> str:
        return str(self.raw.get("role", ""))

    def Label(self, name: str) -> str:
        return str((self.raw.get("labels") or {}).get(name, ""))


def _spec(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = raw.get("spec") or {}
    return spec if isinstance(spec, Mapping) else {}


def _template(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    tpl = raw.get("template") or _spec(raw).get("template") or {}
    return tpl if isinstance(tpl, Mapping) else {}


def ports_text(ports: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(port_text(p) for p in ports)


class ServiceRow:
    """One ``services()`` item: ``.ID``, ``.Name``, ``.Mode``, ``.Replicas`` (``2/3``) ..."""

    def __init__(self, raw: Mapping[str, Any], trunc: bool = True) -> None:
        self.raw = raw
        self.trunc = trunc

    def to_json(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in ("ID", "Name", "Mode", "Replicas", "Image", "Ports")}

    @property
    def ID(self) -> str:
        ident = str(self.raw.get("id", ""))
        return short(ident) if self.trunc else ident

    @property
    def Name(self) -> str:
        return str(_spec(self.raw).get("name", ""))

    @property
    def Mode(self) -> str:
        return str(_spec(self.raw).get("mode") or "replicated")

    @property
    def Replicas(self) -> str:
        running = int(self.raw.get("Running") or 0)
        if "Desired" in self.raw:
            desired = int(self.raw.get("Desired") or 0)
        else:
            desired = int(_spec(self.raw).get("replicas", 1))
        return f"{running}/{desired}"

    @property
    def Image(self) -> str:
        return str(_template(self.raw).get("image", ""))

    @property
    def Ports(self) -> str:
        return ports_text(_template(self.raw).get("ports") or [])

    def Label(self, name: str) -> str:
        return str((_spec(self.raw).get("labels") or {}).get(name, ""))


class TaskRow:
    """One ``tasks()`` item as ``service ps`` shows it; ``history`` rows get docker's `` \\_ ``."""

    def __init__(
        self, raw: Mapping[str, Any], trunc: bool = True, history: bool = False, now: float | None = None
    ) -> None:
        self.raw = raw
        self.trunc = trunc
        self.history = history
        self.now = time.time() if now is None else now

    def to_json(self) -> dict[str, str]:
        fields = ("ID", "Name", "Image", "Node", "DesiredState", "CurrentState", "Error", "Ports")
        return {k: str(getattr(self, k)) for k in fields}

    @property
    def ID(self) -> str:
        ident = str(self.raw.get("id", ""))
        return short(ident) if self.trunc else ident

    @property
    def Name(self) -> str:
        name = slot_name(self.raw)
        if not self.trunc:
            name = f"{name}.{self.raw.get('id', '')}"
        return f" \\_ {name}" if self.history else name

    @property
    def Image(self) -> str:
        return str(_template(self.raw).get("image", ""))

    @property
    def Node(self) -> str:
        return str(self.raw.get("NodeHostname") or self.raw.get("node_id") or "")

    @property
    def DesiredState(self) -> str:
        return title(str(self.raw.get("desired_state") or "running"))

    @property
    def CurrentState(self) -> str:
        state = str(self.raw.get("state") or "new")
        since = float(self.raw.get("state_since") or self.raw.get("updated_at") or 0)
        if not since:
            return title(state)
        return f"{title(state)} {human_duration(max(0.0, self.now - since))} ago"

    @property
    def Error(self) -> str:
        text = task_error(self.raw)
        if self.trunc:
            text = ellipsis(text, MAX_ERROR)
        return f'"{text}"' if text else ""

    @property
    def Ports(self) -> str:
        return ports_text(_template(self.raw).get("ports") or [])


def slot_name(task: Mapping[str, Any]) -> str:
    """``web.1`` (replicated) or ``web.<node id>`` (global), as docker's NAME column."""
    service = str(task.get("ServiceName") or task.get("service_name") or "")
    slot = int(task.get("slot") or 0)
    return f"{service}.{slot if slot else task.get('node_id', '')}"


def task_error(task: Mapping[str, Any]) -> str:
    """The task's error, or for a task waiting for a node the scheduler's reason."""
    err = str(task.get("error") or task.get("err") or "")
    if err:
        return err
    if str(task.get("state")) == "pending":
        return str(task.get("message") or "")
    return ""


def order_tasks(tasks: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], bool]]:
    """Tasks grouped by slot, the newest first and its predecessors after it (``history`` True)."""
    ordered = sorted(
        tasks,
        key=lambda t: (
            str(t.get("ServiceName") or t.get("service_name") or ""),
            int(t.get("slot") or 0),
            str(t.get("node_id") or "") if not t.get("slot") else "",
            -float(t.get("created_at") or 0),
        ),
    )
    out: list[tuple[Mapping[str, Any], bool]] = []
    previous = None
    for t in ordered:
        name = slot_name(t)
        out.append((t, name == previous))
        previous = name
    return out


_DESIRED = {"running": {"running"}, "shutdown": {"shutdown", "complete", "failed", "rejected", "orphaned"}}
_DESIRED["accepted"] = {"running", "ready", "accepted"}


def filter_tasks(
    tasks: Sequence[Mapping[str, Any]], filters: Mapping[str, list[str]]
) -> list[Mapping[str, Any]]:
    """``service ps -f``: ``desired-state=running|shutdown|accepted``, ``id=``, ``name=``, ``node=``."""
    for key in filters:
        if key not in ("desired-state", "id", "name", "node"):
            raise InvalidArgument(f"invalid filter {key!r}: use desired-state, id, name or node")
    out = []
    for t in tasks:
        if (wanted := filters.get("desired-state")) is not None:
            states: set[str] = set()
            for w in wanted:
                if w.lower() not in _DESIRED:
                    raise InvalidArgument(f"invalid desired-state {w!r}: running, shutdown or accepted")
                states |= _DESIRED[w.lower()]
            if str(t.get("desired_state") or "running") not in states:
                continue
        if (ids := filters.get("id")) and not any(str(t.get("id", "")).startswith(i) for i in ids):
            continue
        if (names := filters.get("name")) and not any(slot_name(t).startswith(n) for n in names):
            continue
        if (nodes := filters.get("node")) and not any(
            n in (t.get("NodeHostname"), t.get("node_id")) for n in nodes
        ):
            continue
        out.append(t)
    return out


def filter_nodes(
    nodes: Sequence[Mapping[str, Any]], filters: Mapping[str, list[str]]
) -> list[Mapping[str, Any]]:
    """``node ls -f``: ``id=``, ``name=``/``hostname=``, ``role=``, ``availability=``, ``label=k[=v]``."""
    known = ("id", "name", "hostname", "role", "availability", "label", "node.label", "membership")
    for key in filters:
        if key not in known:
            raise InvalidArgument(f"invalid filter {key!r}: use {', '.join(known)}")
    return [n for n in nodes if all(any(_node_match(n, key, v) for v in vs) for key, vs in filters.items())]


def _node_match(node: Mapping[str, Any], key: str, value: str) -> bool:
    labels = node.get("labels") or {}
    if key == "id":
        return str(node.get("id", "")).startswith(value)
    if key in ("name", "hostname"):
        return value in str(node.get("hostname", ""))
    if key in ("role", "availability"):
        return str(node.get(key)) == value
    if key == "membership":
        return value == "accepted"
    return _label_match(labels, value)


def _label_match(labels: Mapping[str, Any], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or str(labels[key]) == value)


# --- --pretty -------------------------------------------------------------------------------


def _when(ts: float) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S +0000 utc")


def _lines(pairs: list[tuple[str, Any]], width: int = 20) -> list[str]:
    return [f"{k + ':':<{width}}{'' if v is None else v}" for k, v in pairs]


def pretty_node(node: Mapping[str, Any], self_id: str = "") -> str:
    row = NodeRow(node, self_id)
    res = node.get("resources") or {}
    out = _lines(
        [
            ("ID", node.get("id", "")),
            ("Hostname", row.Hostname),
            ("Joined at", _when(float(node.get("created_at") or 0))),
        ],
        24,
    )
    out.append("Status:")
    out += _lines(
        [
            (" State", row.Status),
            (" Availability", row.Availability),
            (" Address", node.get("address", "")),
        ],
        24,
    )
    if node.get("status_message"):
        out += _lines([(" Message", node["status_message"])], 24)
    if node.get("role") == "manager":
        out.append("Manager Status:")
        out += _lines(
            [
                (" Address", node.get("address", "")),
                (" Raft Status", "Reachable"),
                (" Leader", "Yes" if row.ManagerStatus == "Leader" else "No"),
            ],
            24,
        )
    out.append("Resources:")
    out += _lines(
        [
            (" CPUs", f"{int(res.get('nano_cpus') or 0) / 1e9:g}"),
            (" Memory", bytes_size(int(res.get("memory_bytes") or 0))),
        ],
        24,
    )
    labels = node.get("labels") or {}
    if labels:
        out.append("Labels:")
        out += [f" - {k}={v}" for k, v in sorted(labels.items())]
    if row.EngineVersion:
        out += _lines([("Engine Version", row.EngineVersion)], 24)
    return "\n".join(out)


def _policy_lines(policy: Mapping[str, Any], order_name: str) -> list[str]:
    return _lines(
        [
            (" Parallelism", policy.get("parallelism", 1)),
            *([(" Delay", go_duration(float(policy["delay"])))] if policy.get("delay") else []),
            (" On failure", policy.get("failure_action", "pause")),
            (" Monitoring Period", go_duration(float(policy.get("monitor", 5.0)))),
            (f" {order_name} order", policy.get("order", "stop-first")),
        ]
    )


def pretty_service(service: Mapping[str, Any]) -> str:
    spec = _spec(service)
    tpl = _template(service)
    out = [""]
    out += _lines([("ID", service.get("id", "")), ("Name", spec.get("name", ""))])
    labels = spec.get("labels") or {}
    if labels:
        out.append("Labels:")
        out += [f" {k}={v}" for k, v in sorted(labels.items())]
    mode = str(spec.get("mode") or "replicated")
    out += _lines([("Service Mode", title(mode))])
    if mode == "replicated":
        out += _lines([(" Replicas", spec.get("replicas", 1))])
    status = service.get("update_status")
    if isinstance(status, Mapping):
        out.append("UpdateStatus:")
        out += _lines(
            [
                (" State", status.get("state", "")),
                (" Started", _when(float(status.get("started_at") or 0))),
                *(
                    [(" Completed", _when(float(status["completed_at"])))]
                    if status.get("completed_at")
                    else []
                ),
                (" Message", status.get("message", "")),
            ]
        )
    placement = tpl.get("placement") or {}
    out.append("Placement:")
    if placement.get("constraints"):
        out += _lines([(" Constraints", "[" + " ".join(placement["constraints"]) + "]")])
    if placement.get("preferences"):
        out.append(" Preferences:")
        out += [f"   {p}" for p in placement["preferences"]]
    restart = spec.get("restart") or {}
    if restart:
        out.append("RestartPolicy:")
        out += _lines(
            [
                (" Condition", restart.get("condition", "any")),
                (" Delay", go_duration(float(restart.get("delay", 5.0)))),
                (" Max attempts", restart.get("max_attempts", 0)),
                *([(" Window", go_duration(float(restart["window"])))] if restart.get("window") else []),
            ]
        )
    out.append("UpdateConfig:")
    out += _policy_lines(spec.get("update") or {}, "Update")
    out.append("RollbackConfig:")
    out += _policy_lines(spec.get("rollback") or {}, "Rollback")
    out.append("ContainerSpec:")
    out += _lines([(" Image", tpl.get("image", ""))])
    if tpl.get("entrypoint"):
        out += _lines([(" Command", " ".join(tpl["entrypoint"]))])
    if tpl.get("command"):
        out += _lines([(" Args", " ".join(tpl["command"]) + " ")])
    if tpl.get("env"):
        out.append(" Env:")
        out += [f"  {e}" for e in tpl["env"]]
    if tpl.get("workdir"):
        out += _lines([(" Dir", tpl["workdir"])])
    if tpl.get("user"):
        out += _lines([(" User", tpl["user"])])
    if tpl.get("healthcheck"):
        out += _lines([(" Healthcheck", " ".join(tpl["healthcheck"].get("test") or ()))])
    resources = tpl.get("resources") or {}
    out.append("Resources:")
    for kind, key in (("Reservations", "reservations"), ("Limits", "limits")):
        r = resources.get(key) or {}
        if r.get("nano_cpus") or r.get("memory_bytes"):
            out.append(f" {kind}:")
            if r.get("nano_cpus"):
                out += _lines([("  CPU", f"{int(r['nano_cpus']) / 1e9:g}")])
            if r.get("memory_bytes"):
                out += _lines([("  Memory", bytes_size(int(r["memory_bytes"])))])
    ports = tpl.get("ports") or []
    if ports:
        out.append("Ports:")
        for p in ports:
            out.append(
                f" PublishedPort = {p.get('published', 0)}\n  Protocol = {p.get('protocol', 'tcp')}\n"
                f"  TargetPort = {p.get('target')}\n  PublishMode = {p.get('mode', 'host')}"
            )
    return "\n".join(out) + "\n"
