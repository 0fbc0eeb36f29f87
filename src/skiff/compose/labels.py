"""Docker Compose's labels: the only state compose keeps, on the daemon's own objects.

A project's containers, networks and volumes are found again by these labels, so a
project made by ``docker compose`` and one made by ``skiff compose`` are the same thing
to both tools (as long as the config hash is not compared across them).
"""

from __future__ import annotations

from skiff import __version__

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
CONFIG_HASH = "com.docker.compose.config-hash"
CONTAINER_NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
SLUG = "com.docker.compose.slug"
IMAGE = "com.docker.compose.image"
DEPENDS_ON = "com.docker.compose.depends_on"
VERSION = "com.docker.compose.version"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
ENVIRONMENT_FILE = "com.docker.compose.project.environment_file"
REPLACE = "com.docker.compose.replace"
NETWORK = "com.docker.compose.network"
VOLUME = "com.docker.compose.volume"

# The tool's version as compose records it; skiff writes its own.
COMPOSE_VERSION = f"skiff-{__version__}"


def project_filter(project: str, oneoff: bool | None = False) -> dict[str, list[str]]:
    """An Engine API ``filters`` value selecting a project's containers (one-offs or not)."""
    labels = [f"{PROJECT}={project}"]
    if oneoff is not None:
        labels.append(f"{ONEOFF}={'True' if oneoff else 'False'}")
    return {"label": labels}
