"""Load a Compose project: find files, read, interpolate, validate, merge, normalize.

(Work in progress: the signature below is the contract with the runtime.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from skiff.compose.model import Project


def load_project(
    files: list[Path] | None,
    project_dir: Path | None,
    project_name: str | None,
    env: Mapping[str, str],
    profiles: Sequence[str],
) -> Project:
    """Load the project the files (or the discovered default files) describe."""
    raise NotImplementedError("compose loader: in progress")
