"""The last loading steps on the merged model: profiles, defaults, environment, consistency.

- profiles: a service with ``profiles`` is enabled only when one is active (``*`` = all)
  or when a command names it; an enabled service may not *require* a disabled one.
- defaults: the ``default`` network for services that name none (unless
  ``network_mode``), each resource's ``name`` (``<project>_<key>``, or the key when
  external), ``depends_on`` entries implied by ``links``, ``volumes_from`` and
  ``service:x`` modes, as compose-go's ``Normalize``.
- environment: ``env_file`` files read (relative to the project), ``environment`` laid
  over them, names without a value taken from the project environment; ``env_file`` is
  then dropped, as ``docker compose config`` does. Unresolved build args likewise.
- consistency: every service, network, volume, secret and config a service refers to
  exists, with compose's messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skiff.compose.loader_dotenv import read_dotenv
from skiff.compose.loader_merge import _UNIQUE, unique
from skiff.errors import InvalidArgument

_STARTED = "service_started"


def split_profiles(
    services: dict[str, Any], active: Sequence[str], named: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(enabled, disabled) services."""
    enabled: dict[str, Any] = {}
    disabled: dict[str, Any] = {}
    for name, svc in services.items():
        profiles = svc.get("profiles") or []
        if not profiles or "*" in active or any(p in active for p in profiles) or name in named:
            enabled[name] = svc
        else:
            disabled[name] = svc
    return enabled, disabled


def _implied_dependencies(svc: dict[str, Any]) -> None:
    deps: dict[str, Any] = svc.get("depends_on") or {}
    for link in svc.get("links") or []:
        target = link.split(":", 1)[0]
        deps.setdefault(target, {"condition": _STARTED, "restart": True, "required": True})
    for key in ("network_mode", "ipc", "pid", "uts", "cgroup"):
        mode = svc.get(key)
        if isinstance(mode, str) and mode.startswith("service:"):
            deps.setdefault(
                mode[len("service:") :], {"condition": _STARTED, "restart": True, "required": True}
            )
    for ref in svc.get("volumes_from") or []:
        if not ref.startswith("container:"):
            deps.setdefault(ref.split(":", 1)[0], {"condition": _STARTED, "required": True})
    if deps:
        svc["depends_on"] = deps


def _environment(svc: dict[str, Any], env: Mapping[str, str]) -> None:
    merged: dict[str, Any] = {}

    def lookup(key: str) -> str | None:
        value = merged.get(key)
        return value if value is not None else env.get(key)

    for item in svc.pop("env_file", None) or []:
        path = Path(item["path"])
        if not item.get("required", True) and not path.exists():
            continue
        merged.update(read_dotenv(path, lookup))
    for key, value in (svc.get("environment") or {}).items():
        merged[key] = env.get(key) if value is None else value
    if merged:
        svc["environment"] = merged
    else:
        svc.pop("environment", None)


def _build_args(svc: dict[str, Any], env: Mapping[str, str]) -> None:
    build = svc.get("build")
    if not build or "args" not in build:
        return
    args = {}
    for key, value in build["args"].items():
        if value is None:
            if key not in env:
                continue
            value = env[key]
        args[key] = value
    build["args"] = args


def _unique_lists(svc: dict[str, Any]) -> None:
    for (key, *rest), indexer in _UNIQUE.items():
        if rest:
            parent = svc.get(key)
            if isinstance(parent, dict) and isinstance(parent.get(rest[0]), list):
                parent[rest[0]] = unique(parent[rest[0]], indexer)
        elif isinstance(svc.get(key), list):
            svc[key] = unique(svc[key], indexer)
    if "extra_hosts" in svc:
        svc["extra_hosts"] = sorted(svc["extra_hosts"])


def normalize_services(services: dict[str, Any], env: Mapping[str, str]) -> bool:
    """Defaults, implied dependencies and environment; True when ``default`` is used."""
    uses_default = False
    for svc in services.values():
        if "network_mode" not in svc and "provider" not in svc:
            if not svc.get("networks"):
                svc["networks"] = {"default": None}
            if "default" in svc["networks"]:
                uses_default = True
        _implied_dependencies(svc)
        _environment(svc, env)
        _build_args(svc, env)
        _unique_lists(svc)
        for key in ("command", "entrypoint"):
            svc.setdefault(key, None)
        if "scale" in svc and (svc.get("deploy") or {}).get("replicas") is not None:
            if svc["scale"] != svc["deploy"]["replicas"]:
                raise InvalidArgument("can't set distinct values on 'scale' and 'deploy.replicas'")
    return uses_default


def name_resources(project: str, kind: str, resources: dict[str, Any]) -> None:
    """Give each network/volume/secret/config its engine-side name, as compose-go does."""
    for key, res in resources.items():
        if res.get("name") is None:
            res["name"] = key if res.get("external") else f"{project}_{key}"


def check_consistency(
    services: dict[str, Any],
    disabled: dict[str, Any],
    networks: dict[str, Any],
    volumes: dict[str, Any],
    secrets: dict[str, Any],
    configs: dict[str, Any],
) -> None:
    """References that point nowhere, with compose's messages."""
    for name, svc in services.items():
        if not svc.get("image") and not svc.get("build") and not svc.get("provider"):
            raise InvalidArgument(
                f'service "{name}" has neither an image nor a build context specified: invalid compose project'
            )
        if svc.get("network_mode") and svc.get("networks"):
            raise InvalidArgument(
                f"service {name} declares mutually exclusive `network_mode` and `networks`: invalid compose project"
            )
        replicas = (svc.get("deploy") or {}).get("replicas", svc.get("scale"))
        if svc.get("container_name") and isinstance(replicas, int) and replicas > 1:
            raise InvalidArgument(
                f"services.{name}: can't set container_name and {name} as container name must be unique: "
                "invalid compose project"
            )
        for dep, cfg in list((svc.get("depends_on") or {}).items()):
            if dep in services:
                continue
            if not cfg.get("required", True):
                del svc["depends_on"][dep]
                continue
            if dep in disabled:
                raise InvalidArgument(
                    f'service "{dep}" was pulled in as a dependency of service "{name}" but is not '
                    f'enabled by the active profiles. You may fix this by adding a common profile to "{dep}" and "{name}".'
                )
            raise InvalidArgument(
                f'service "{name}" depends on undefined service "{dep}": invalid compose project'
            )
        for net in svc.get("networks") or {}:
            if net not in networks:
                raise InvalidArgument(
                    f'service "{name}" refers to undefined network {net}: invalid compose project'
                )
        for vol in svc.get("volumes") or []:
            if vol.get("type") == "volume" and vol.get("source") and vol["source"] not in volumes:
                raise InvalidArgument(
                    f'service "{name}" refers to undefined volume {vol["source"]}: invalid compose project'
                )
        for kind, known in (("secret", secrets), ("config", configs)):
            for mount in svc.get(kind + "s") or []:
                if mount["source"] not in known:
                    raise InvalidArgument(
                        f'service "{name}" refers to undefined {kind} {mount["source"]}: invalid compose project'
                    )
        for key in ("network_mode", "ipc", "pid"):
            mode = svc.get(key)
            if isinstance(mode, str) and mode.startswith("service:"):
                target = mode[len("service:") :]
                if target not in services and target not in disabled:
                    raise InvalidArgument(
                        f'service "{name}" depends on undefined service "{target}": invalid compose project'
                    )
    for key, secret in secrets.items():
        if not secret.get("external") and not any(k in secret for k in ("file", "environment", "content")):
            raise InvalidArgument(
                f'secret "{key}" must declare either `file` or `environment`: invalid compose project'
            )
    for key, config in configs.items():
        if not config.get("external") and not any(k in config for k in ("file", "environment", "content")):
            raise InvalidArgument(
                f'config "{key}" must declare either `file`, `environment` or `content`: invalid compose project'
            )
