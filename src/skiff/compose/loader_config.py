"""What ``compose config`` prints for a loaded project (the CLI only writes it out).

``config`` is the normalized model as YAML (or ``--format json``); ``--services``,
``--volumes``, ``--profiles`` and ``--images`` print one name per line, sorted as
docker compose v2 prints them; ``-q`` prints nothing (loading is the validation).
"""

from __future__ import annotations

from skiff.compose.model import Project
from skiff.errors import InvalidArgument

FORMATS = ("yaml", "json")


def default_image(project: Project, service: str) -> str:
    """The image name compose gives a service that builds without ``image``."""
    return f"{project.name}-{service}"


def config_output(
    project: Project,
    *,
    services: bool = False,
    volumes: bool = False,
    profiles: bool = False,
    images: bool = False,
    fmt: str = "yaml",
    quiet: bool = False,
) -> str:
    """The text ``compose config`` writes to stdout for these flags ("" when quiet)."""
    if fmt not in FORMATS:
        raise InvalidArgument(f'unsupported format "{fmt}"')
    if quiet:
        return ""
    lines: list[str] = []
    if services:
        lines += project.service_names()
    if volumes:
        lines += project.volume_names()
    if profiles:
        everyone = [*project.services.values(), *project.disabled.values()]
        lines += sorted({p for svc in everyone for p in svc.get("profiles") or []})
    if images:
        lines += [
            project.services[name].get("image") or default_image(project, name)
            for name in project.service_names()
        ]
    if services or volumes or profiles or images:
        return "".join(line + "\n" for line in lines)
    if fmt == "json":
        return project.to_json() + "\n"
    return project.to_yaml()
