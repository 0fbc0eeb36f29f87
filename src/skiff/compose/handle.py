"""``ProjectHandle``: a loaded project, the client to its daemon and where progress goes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from skiff.client import Client
from skiff.compose.convert import ProjectInfo
from skiff.compose.graph import with_dependencies
from skiff.compose.model import Project
from skiff.compose.progress import NoProgress, Progress
from skiff.errors import InvalidArgument


@dataclass
class ProjectHandle:
    """Everything a compose operation needs; services in canonical form."""

    client: Client
    info: ProjectInfo
    services: dict[str, dict[str, Any]]
    disabled: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: Progress = field(default_factory=NoProgress)

    @property
    def name(self) -> str:
        return self.info.name

    @classmethod
    def from_project(
        cls, client: Client, project: Project, progress: Progress | None = None
    ) -> ProjectHandle:
        info = ProjectInfo(
            name=project.name,
            working_dir=str(project.working_dir),
            config_files=tuple(str(p) for p in project.config_files),
            networks=project.networks,
            volumes=project.volumes,
            secrets=project.secrets,
            configs=project.configs,
            environment=project.environment,
            env_files=tuple(str(p) for p in project.env_files),
        )
        return cls(client, info, project.services, dict(project.disabled), progress or NoProgress())

    @classmethod
    def bare(cls, client: Client, name: str, progress: Progress | None = None) -> ProjectHandle:
        """A project known only by name (``down -p x``, ``ps -p x`` without a file)."""
        info = ProjectInfo(name, "", (), {}, {}, {}, {}, {})
        return cls(client, info, {}, {}, progress or NoProgress())

    def select(self, names: Iterable[str], deps: bool = True) -> dict[str, dict[str, Any]]:
        """The named services (all when none), with their dependencies unless ``deps`` is False."""
        wanted = list(names)
        for name in wanted:
            if name not in self.services:
                raise InvalidArgument(f"no such service: {name}")
        if not wanted:
            return dict(self.services)
        chosen = with_dependencies(self.services, wanted) if deps else set(wanted)
        return {n: self.services[n] for n in sorted(chosen)}
