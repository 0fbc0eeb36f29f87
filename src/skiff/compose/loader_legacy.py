"""Older compose file formats, read as the Compose Specification.

- ``version: "2.x"`` / ``"3.x"``: the key is dropped with compose v2's warning; the rest is
  the specification already, apart from ``volume_driver`` (2.x), which is dropped with a
  warning.
- Version 1 (docker-compose before 1.6): no ``version`` and no ``services``, every
  top-level key a service. The services move under ``services:``; v1-only keys become
  their successors: ``net`` -> ``network_mode``, ``dockerfile`` -> ``build.dockerfile``,
  ``log_driver``/``log_opt`` -> ``logging``. The services share the project's default
  network, where ``links`` resolve as before (by service name and alias).
"""

from __future__ import annotations

from typing import Any

from skiff.compose.loader_yaml import ParsedFile

TOP_LEVEL = frozenset(
    {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models"}
)


def is_v1(data: dict[str, Any]) -> bool:
    """A version 1 file: only service definitions (and extensions) at the top level."""
    keys = [k for k in data if not k.startswith("x-")]
    if not keys or any(k in TOP_LEVEL for k in keys):
        return False
    return all(isinstance(data[k], dict) for k in keys)


def _v1_service(svc: dict[str, Any]) -> dict[str, Any]:
    out = dict(svc)
    if "net" in out:
        net = out.pop("net")
        out.setdefault("network_mode", net)
    if "dockerfile" in out:
        dockerfile = out.pop("dockerfile")
        build = out.get("build")
        if isinstance(build, str):
            out["build"] = {"context": build, "dockerfile": dockerfile}
        elif isinstance(build, dict):
            build.setdefault("dockerfile", dockerfile)
    if "log_driver" in out or "log_opt" in out:
        logging: dict[str, Any] = {}
        if "log_driver" in out:
            logging["driver"] = out.pop("log_driver")
        if "log_opt" in out:
            logging["options"] = out.pop("log_opt")
        out.setdefault("logging", logging)
    return out


def upgrade(parsed: ParsedFile, source: str, warnings: list[str]) -> ParsedFile:
    """The file in the specification's shape (a new ``ParsedFile`` when it changed)."""
    data = parsed.data
    if "version" in data:
        warnings.append(
            f"{source}: the attribute `version` is obsolete, it will be ignored, "
            "please remove it to avoid potential confusion"
        )
        data = {k: v for k, v in data.items() if k != "version"}
        services = data.get("services")
        if isinstance(services, dict):
            for name, svc in services.items():
                if isinstance(svc, dict) and "volume_driver" in svc:
                    warnings.append(
                        f"{source}: services.{name}.volume_driver is not supported and is ignored"
                    )
                    services[name] = {k: v for k, v in svc.items() if k != "volume_driver"}
        return ParsedFile(data, parsed.resets, parsed.overrides)
    if "services" not in data and is_v1(data):
        warnings.append(
            f"{source}: version 1 file format (services at the top level) is deprecated; "
            "read as the services of a Compose Specification file"
        )
        services = {k: _v1_service(v) for k, v in data.items() if not k.startswith("x-")}
        upgraded = {"services": services, **{k: v for k, v in data.items() if k.startswith("x-")}}

        def moved(path: tuple[str, ...]) -> tuple[str, ...]:
            return path if path[0].startswith("x-") else ("services", *path)

        return ParsedFile(upgraded, [moved(p) for p in parsed.resets], [moved(p) for p in parsed.overrides])
    return parsed
