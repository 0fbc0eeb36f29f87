"""What the daemon holds for a project, found by Compose's labels (the only state there is)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skiff.client import Client
from skiff.compose import labels as L


@dataclass(frozen=True)
class ObservedContainer:
    """A container of the project, from ``GET /containers/json`` (a summary, not an inspect)."""

    id: str
    name: str
    service: str
    number: int
    oneoff: bool
    config_hash: str
    image_label: str
    state: str
    created: int
    labels: Mapping[str, str]
    networks: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str, str], ...] = ()  # (type, volume name or source, destination)
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_summary(cls, s: Mapping[str, Any]) -> ObservedContainer:
        labels = {str(k): str(v) for k, v in (s.get("Labels") or {}).items()}
        names = s.get("Names") or []
        try:
            number = int(labels.get(L.CONTAINER_NUMBER, "0"))
        except ValueError:
            number = 0
        nets = (s.get("NetworkSettings") or {}).get("Networks") or {}
        mounts = tuple(
            (
                str(m.get("Type") or ""),
                str(m.get("Name") or m.get("Source") or ""),
                str(m.get("Destination") or ""),
            )
            for m in s.get("Mounts") or []
        )
        return cls(
            id=str(s["Id"]),
            name=(str(names[0]) if names else str(s["Id"])[:12]).lstrip("/"),
            service=labels.get(L.SERVICE, ""),
            number=number,
            oneoff=labels.get(L.ONEOFF, "False") == "True",
            config_hash=labels.get(L.CONFIG_HASH, ""),
            image_label=labels.get(L.IMAGE, ""),
            state=str(s.get("State") or ""),
            created=int(s.get("Created") or 0),
            labels=labels,
            networks=tuple(sorted(nets)),
            mounts=mounts,
            summary=dict(s),
        )

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")

    @property
    def short_name(self) -> str:
        """``web-1`` for ``proj-web-1``: what Compose prints as a log prefix."""
        project = self.labels.get(L.PROJECT, "")
        if project and self.name.startswith(project + "-"):
            return self.name[len(project) + 1 :]
        return self.name


@dataclass
class ObservedState:
    """A project's containers by service, its one-offs and orphans, its networks and volumes."""

    project: str
    containers: dict[str, list[ObservedContainer]] = field(default_factory=dict)
    oneoffs: list[ObservedContainer] = field(default_factory=list)
    orphans: list[ObservedContainer] = field(default_factory=list)
    networks: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # by daemon name
    volumes: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # by daemon name

    def all_containers(self) -> list[ObservedContainer]:
        return [c for cs in self.containers.values() for c in cs]

    def of(self, service: str) -> list[ObservedContainer]:
        return self.containers.get(service, [])


def list_containers(
    client: Client, project: str, oneoff: bool | None = False, all_: bool = True
) -> list[ObservedContainer]:
    """The project's containers, sorted by service then number."""
    raw = client.containers(all=all_, filters=L.project_filter(project, oneoff))
    found = [ObservedContainer.from_summary(s) for s in raw]
    return sorted(found, key=lambda c: (c.service, c.number, c.created))


def observe(
    client: Client,
    project: str,
    services: Mapping[str, Any],
    known: Mapping[str, Any] | None = None,
    *,
    resources: bool = True,
) -> ObservedState:
    """One look at the daemon: the project's containers (one-offs too), networks and volumes.

    ``known`` are the services that are not orphans without being converged now
    (services disabled by a profile, as Compose does not call those orphans).
    """
    state = ObservedState(project)
    for c in list_containers(client, project, oneoff=None):
        if c.oneoff:
            state.oneoffs.append(c)
        elif c.service in services or (known is not None and c.service in known):
            state.containers.setdefault(c.service, []).append(c)
        else:
            state.orphans.append(c)
    if resources:
        flt = {"label": [f"{L.PROJECT}={project}"]}
        state.networks = {str(n["Name"]): n for n in client.networks(filters=flt)}
        state.volumes = {str(v["Name"]): v for v in client.volumes(filters=flt).get("Volumes") or []}
    return state
