"""Where a project's files, directory, `.env` and name come from (docker compose v2's rules).

- Files: ``-f`` (several, in order; ``-`` is stdin), else ``COMPOSE_FILE`` split on
  ``COMPOSE_PATH_SEPARATOR`` (default ``os.pathsep``), else the first of ``compose.yaml``,
  ``compose.yml``, ``docker-compose.yml``, ``docker-compose.yaml`` found in the directory
  or the nearest parent that has one, plus its ``compose.override.*`` /
  ``docker-compose.override.*`` next to it.
- Project directory: ``--project-directory``, else the first file's directory.
- ``.env``: ``--env-file`` files, else ``<project directory>/.env`` if it exists; the
  process environment wins over them.
- Name: ``-p``, else ``COMPOSE_PROJECT_NAME``, else the top-level ``name:``, else the
  project directory's base name, normalized (lower case, only ``a-z0-9_-``, no leading
  ``_``/``-``). A name given explicitly must already be valid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from skiff.errors import InvalidArgument

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)
STDIN = Path("-")

_VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def normalize_project_name(name: str) -> str:
    """compose-go's NormalizeProjectName: lower case, keep ``a-z0-9_-``, trim leading ``_-``."""
    return "".join(re.findall(r"[a-z0-9_-]", name.lower())).lstrip("_-")


def check_project_name(name: str) -> str:
    """An explicit project name, refused as compose refuses it when invalid."""
    if not name:
        raise InvalidArgument("project name must not be empty")
    if not _VALID_NAME.match(name):
        raise InvalidArgument(
            f'invalid project name "{name}": must consist only of lowercase alphanumeric characters, '
            "hyphens, and underscores as well as start with a letter or number"
        )
    return name


def find_default_files(start: Path, warnings: list[str]) -> list[Path]:
    """The default compose file in ``start`` or its nearest parent, then its overrides."""
    directory = start.absolute()
    while True:
        found = [directory / n for n in DEFAULT_FILES if (directory / n).is_file()]
        if found:
            if len(found) > 1:
                warnings.append(
                    f"Found multiple config files with supported names: {', '.join(str(f) for f in found)}\n"
                    f"Using {found[0]}"
                )
            files = [found[0]]
            overrides = [directory / n for n in OVERRIDE_FILES if (directory / n).is_file()]
            if len(overrides) > 1:
                warnings.append(
                    f"Found multiple override files with supported names: "
                    f"{', '.join(str(f) for f in overrides)}\nUsing {overrides[0]}"
                )
            return files + overrides[:1]
        if directory.parent == directory:
            raise InvalidArgument("no configuration file provided: not found")
        directory = directory.parent


def files_from_env(env: Mapping[str, str], cwd: Path) -> list[Path]:
    """``COMPOSE_FILE``'s files (relative to ``cwd``), or none."""
    value = env.get("COMPOSE_FILE", "")
    if not value:
        return []
    sep = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    return [_absolute(Path(p), cwd) for p in value.split(sep) if p]


def _absolute(path: Path, cwd: Path) -> Path:
    if path == STDIN:
        return path
    return Path(os.path.normpath(cwd / path.expanduser()))


def config_files(
    files: list[Path] | None, project_dir: Path | None, env: Mapping[str, str], cwd: Path, warnings: list[str]
) -> list[Path]:
    """The files to load, absolute (stdin stays ``-``)."""
    if files:
        out = [_absolute(f, cwd) for f in files]
    else:
        out = files_from_env(env, cwd) or find_default_files(project_dir or cwd, warnings)
    for f in out:
        if f != STDIN and not f.exists():
            raise InvalidArgument(f"open {f}: no such file or directory")
        if f != STDIN and f.is_dir():
            raise InvalidArgument(f"read {f}: is a directory")
    return out


def working_dir(files: list[Path] | None, project_dir: Path | None, cwd: Path) -> Path:
    """The project directory: ``--project-directory``, else the first file's directory."""
    if project_dir is not None:
        return _absolute(project_dir, cwd)
    for f in files or []:
        if f != STDIN:
            return _absolute(f, cwd).parent
        break
    return cwd.absolute()


def env_file_paths(env_files: list[Path] | None, wd: Path, cwd: Path) -> list[Path]:
    """The `.env`-format files for interpolation: ``--env-file`` ones, else ``wd/.env`` if any."""
    if env_files:
        paths = [_absolute(p, cwd) for p in env_files]
        for p in paths:
            if not p.is_file():
                raise InvalidArgument(f"couldn't find env file: {p}")
        return paths
    default = wd / ".env"
    if default.is_file():
        return [default]
    if default.exists():
        raise InvalidArgument(f"{default} is a directory")
    return []


def project_name(explicit: str | None, env: Mapping[str, str], from_file: str | None, wd: Path) -> str:
    """The project's name by compose's precedence."""
    if explicit:
        return check_project_name(explicit)
    if env.get("COMPOSE_PROJECT_NAME"):
        return check_project_name(env["COMPOSE_PROJECT_NAME"])
    if from_file:
        return check_project_name(from_file)
    name = normalize_project_name(wd.name)
    if not name:
        raise InvalidArgument(
            f'project name must not be empty: "{wd.name}" has no usable characters; use -p to set one'
        )
    return name
