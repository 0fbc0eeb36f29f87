"""Load a Compose project: find, read, interpolate, validate, canonicalize, merge, normalize.

The pipeline, per file (compose-go's order)::

    YAML (loader_yaml) -> old formats upgraded (loader_legacy) -> interpolation
    (loader_interpolate) -> schema (loader_schema) -> long syntax, paths absolute
    (loader_canonical) -> extends applied (here) -> include (here)

then the files are merged in order (loader_merge) and the result gets profiles, defaults,
environment and reference checks (loader_normalize). Every error is an
``InvalidArgument`` whose message names the file and the path to the key.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiff.compose import loader_files as files_mod
from skiff.compose.loader_canonical import canonical_resource, canonical_service, resolve_path
from skiff.compose.loader_dotenv import read_dotenv
from skiff.compose.loader_interpolate import interpolate, substitute
from skiff.compose.loader_legacy import upgrade
from skiff.compose.loader_merge import merge_with_tags
from skiff.compose.loader_normalize import (
    check_consistency,
    name_resources,
    normalize_services,
    split_profiles,
)
from skiff.compose.loader_schema import validate
from skiff.compose.loader_yaml import ParsedFile, parse_yaml
from skiff.compose.model import Project
from skiff.errors import InvalidArgument

# Re-exported discovery and naming rules (see loader_files).
DEFAULT_FILES = files_mod.DEFAULT_FILES
OVERRIDE_FILES = files_mod.OVERRIDE_FILES
normalize_project_name = files_mod.normalize_project_name
check_project_name = files_mod.check_project_name

_RESOURCES = ("networks", "volumes", "secrets", "configs")


@dataclass
class _File:
    """One file after canonicalization (``extends`` not yet applied)."""

    path: Path
    source: str
    data: dict[str, Any]
    resets: list[tuple[str, ...]] = field(default_factory=list)
    overrides: list[tuple[str, ...]] = field(default_factory=list)


class _Loader:
    """Reads files with one interpolation environment, caching files named by ``extends``."""

    def __init__(
        self, env: Mapping[str, str], home: str | None, warnings: list[str], stdin: str | None
    ) -> None:
        self.env = env
        self.home = home
        self.warnings = warnings
        self.unset: list[str] = []
        self.stdin = stdin
        self.cache: dict[tuple[Path, Path], _File] = {}

    def read_text(self, path: Path) -> str:
        if path == files_mod.STDIN:
            if self.stdin is None:
                self.stdin = sys.stdin.read()
            return self.stdin
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidArgument(f"open {path}: no such file or directory") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"read {path}: {e}") from None

    def parse(self, path: Path) -> ParsedFile:
        source = str(path)
        return upgrade(parse_yaml(self.read_text(path), source), source, self.warnings)

    def load(self, path: Path, base_dir: Path, parsed: ParsedFile | None = None) -> _File:
        """Interpolate, validate and canonicalize one file; paths resolve against ``base_dir``."""
        key = (path, base_dir)
        if key in self.cache:
            return self.cache[key]
        source = str(path)
        if parsed is None:
            parsed = self.parse(path)
        try:
            data = interpolate(parsed.data, self.env, self.unset)
        except InvalidArgument as e:
            raise InvalidArgument(f"{source}: {e}") from None
        validate(data, source)
        out: dict[str, Any] = {k: v for k, v in data.items() if k.startswith("x-")}
        if "name" in data:
            out["name"] = data["name"]
        try:
            out["services"] = {
                name: canonical_service(name, svc, base_dir, self.home)
                for name, svc in (data.get("services") or {}).items()
            }
            for kind in _RESOURCES:
                if kind in data:
                    out[kind] = {
                        k: canonical_resource(kind, k, v, base_dir, self.home, self.warnings)
                        for k, v in (data[kind] or {}).items()
                    }
        except InvalidArgument as e:
            raise InvalidArgument(f"{source}: {e}") from None
        loaded = _File(path, source, out, parsed.resets, parsed.overrides)
        self.cache[key] = loaded
        self.apply_extends(loaded)
        self.apply_include(loaded, data.get("include") or [], base_dir)
        return loaded

    # --- extends ------------------------------------------------------------------

    def apply_extends(self, file: _File) -> None:
        resolved = {name: self.extended(file, name, []) for name in file.data["services"]}
        file.data["services"] = resolved

    def extended(self, file: _File, name: str, stack: list[tuple[str, str]]) -> dict[str, Any]:
        """Service ``name`` of ``file`` with its ``extends`` chain merged in."""
        svc = file.data["services"].get(name)
        if svc is None:
            raise InvalidArgument(
                f'cannot extend service "{stack[-1][1]}" in {stack[-1][0]}: service "{name}" not found'
            )
        ext = svc.get("extends")
        if not ext:
            return dict(svc)
        here = (file.source, name)
        if here in stack:
            chain = " -> ".join(f"{s} ({f})" for f, s in [*stack, here])
            raise InvalidArgument(f"circular reference in extends: {chain}")
        base_file = file
        if ext.get("file"):
            other = Path(resolve_path(ext["file"], file.path.parent, self.home))
            if not other.is_file():
                raise InvalidArgument(
                    f"{file.source}: services.{name}.extends.file: open {other}: no such file or directory"
                )
            base_file = self.load(other, other.parent)
        base = self.extended(base_file, ext["service"], [*stack, here])
        own = {k: v for k, v in svc.items() if k != "extends"}
        return merge_with_tags(base, own, file.resets, file.overrides, ("services", name))

    # --- include ------------------------------------------------------------------

    def apply_include(self, file: _File, includes: list[Any], base_dir: Path) -> None:
        for item in includes:
            spec = {"path": item} if isinstance(item, str) else dict(item)
            paths = spec["path"] if isinstance(spec["path"], list) else [spec["path"]]
            abs_paths = [Path(resolve_path(p, file.path.parent, self.home)) for p in paths]
            project_dir = (
                Path(resolve_path(spec["project_directory"], file.path.parent, self.home))
                if spec.get("project_directory")
                else abs_paths[0].parent
            )
            env = dict(self.env)
            env_files = spec.get("env_file")
            for env_path in [env_files] if isinstance(env_files, str) else env_files or []:
                env.update(read_dotenv(Path(resolve_path(env_path, project_dir, self.home)), env.get))
            sub = _Loader(env, self.home, self.warnings, self.stdin)
            merged: dict[str, Any] = {}
            for p in abs_paths:
                if not p.is_file():
                    raise InvalidArgument(f"{file.source}: include: open {p}: no such file or directory")
                f = sub.load(p, project_dir)
                merged = merge_with_tags(merged, f.data, f.resets, f.overrides)
            self.unset.extend(n for n in sub.unset if n not in self.unset)
            for kind in ("services", *_RESOURCES):
                for key, value in (merged.get(kind) or {}).items():
                    target = file.data.setdefault(kind, {})
                    if key in target and target[key] != value:
                        raise InvalidArgument(
                            f"{file.source}: imported compose file {abs_paths[0]} defines conflicting {kind[:-1]} {key}"
                        )
                    target[key] = value


def _read_env_files(paths: list[Path], os_env: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for p in paths:

        def lookup(k: str) -> str | None:
            return os_env.get(k, values.get(k))

        values.update(read_dotenv(p, lookup))
    return values


def load_project(
    files: list[Path] | None,
    project_dir: Path | None,
    project_name: str | None,
    env: Mapping[str, str],
    profiles: Sequence[str],
    *,
    env_files: list[Path] | None = None,
    services: Sequence[str] = (),
    cwd: Path | None = None,
    stdin: str | None = None,
) -> Project:
    """Load the project the files (or the discovered default files) describe.

    ``env`` is the process environment; ``profiles`` the ``--profile`` flags (else
    ``COMPOSE_PROFILES``); ``env_files`` are ``--env-file`` (else ``.env``); ``services``
    are services a command names, enabled whatever their profiles; ``stdin`` is the text
    for ``-f -`` (read from ``sys.stdin`` when not given). Warnings compose would log go to
    ``Project.warnings``.
    """
    cwd = (cwd or Path.cwd()).absolute()
    warnings: list[str] = []
    os_env = dict(env)
    # .env may set COMPOSE_FILE, so it is read once from where the project seems to be,
    # and again from the project directory once the files are known.
    first_wd = files_mod.working_dir(files, project_dir, cwd)
    early_env = {**_read_env_files(files_mod.env_file_paths(env_files, first_wd, cwd), os_env), **os_env}
    paths = files_mod.config_files(files, project_dir, early_env, cwd, warnings)
    wd = files_mod.working_dir(paths, project_dir, cwd)
    env_paths = files_mod.env_file_paths(env_files, wd, cwd)
    project_env = {**_read_env_files(env_paths, os_env), **os_env}

    loader = _Loader(project_env, project_env.get("HOME"), warnings, stdin)
    parsed = [loader.parse(p) for p in paths]
    file_name = None
    for p, pf in zip(paths, parsed, strict=True):
        if "name" in pf.data:
            try:
                file_name = substitute(str(pf.data["name"]), project_env.get)
            except InvalidArgument as e:
                raise InvalidArgument(f"{p}: error while interpolating name: {e}") from None
    name = files_mod.project_name(project_name, project_env, file_name, wd)
    loader.env = {**project_env, "COMPOSE_PROJECT_NAME": project_env.get("COMPOSE_PROJECT_NAME") or name}

    merged: dict[str, Any] = {}
    for p, pf in zip(paths, parsed, strict=True):
        f = loader.load(p, wd, pf)
        merged = merge_with_tags(merged, f.data, f.resets, f.overrides)
    for var in loader.unset:
        warnings.append(f'The "{var}" variable is not set. Defaulting to a blank string.')

    all_services: dict[str, Any] = merged.get("services") or {}
    resources = {kind: merged.get(kind) or {} for kind in _RESOURCES}
    active = list(profiles) or [p for p in project_env.get("COMPOSE_PROFILES", "").split(",") if p]
    uses_default = normalize_services(all_services, project_env)
    if uses_default and "default" not in resources["networks"]:
        resources["networks"]["default"] = {}
    for kind in _RESOURCES:
        name_resources(name, kind, resources[kind])
    enabled, disabled = split_profiles(all_services, active, services)
    check_consistency(enabled, disabled, **resources)
    return Project(
        name=name,
        working_dir=wd,
        services=enabled,
        networks=resources["networks"],
        volumes=resources["volumes"],
        secrets=resources["secrets"],
        configs=resources["configs"],
        environment=project_env,
        config_files=paths,
        env_files=env_paths,
        profiles=active,
        disabled=disabled,
        extensions={k: v for k, v in merged.items() if k.startswith("x-")},
        warnings=warnings,
    )
