"""One validated file's services and resources in the canonical (long-syntax) form.

Runs per file, before files are merged and before ``extends`` is applied, so merging only
ever sees one shape (compose-go does the same with its ``transform`` package). Relative
paths are made absolute against ``base_dir``: the project directory for ``-f`` files, the
file's own directory for a file named by ``extends``. The shapes are documented in
``model.py``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from skiff.compose.loader_syntax import duration, long_port, parse_port, parse_volume, size
from skiff.errors import InvalidArgument

# Bool fields compose encodes with omitempty (false is left out); pointer bools (init,
# attach) keep false.
_OMIT_FALSE = ("privileged", "read_only", "stdin_open", "tty", "oom_kill_disable")
_SIZES = ("mem_limit", "mem_reservation", "memswap_limit", "shm_size")
_INTS = ("cpu_shares", "cpu_quota", "cpu_period", "cpu_rt_period", "cpu_rt_runtime", "pids_limit")
_STRING_LISTS = ("dns", "dns_search", "tmpfs", "label_file")


def scalar_text(value: Any) -> str:
    """A YAML scalar as compose turns it into a string (``true``, ``1``, ``1.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def mapping(value: Any, nulls: bool = True, sep: str = "=") -> dict[str, Any]:
    """A list_or_dict (``["A=1", "B"]`` or ``{A: 1}``) as a map of strings.

    ``nulls``: a name without a value stays ``None`` (environment, args: resolved later),
    otherwise it becomes ``""`` (labels, sysctls).
    """
    out: dict[str, Any] = {}
    if value is None:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out[k] = scalar_text(v) if v is not None else (None if nulls else "")
        return out
    for item in value:
        key, found, val = str(item).partition(sep)
        out[key] = val if found else (None if nulls else "")
    return out


def resolve_path(path: str, base_dir: Path, home: str | None) -> str:
    """An absolute path: ``~`` is the home directory, relative paths are under ``base_dir``."""
    if path == "~" or path.startswith("~/"):
        if home:
            path = home + path[1:]
    p = Path(path)
    if not p.is_absolute():
        p = base_dir / p
    return os.path.normpath(str(p))


def is_remote_context(context: str) -> bool:
    """A build context that is a URL or a git address (left as written)."""
    return "://" in context or context.startswith(("git@", "github.com/")) or context.endswith(".git")


def _command(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [scalar_text(v) for v in value]
    try:
        return shlex.split(str(value))
    except ValueError as e:
        raise InvalidArgument(f"{where}: invalid command line string: {e}") from None


def _extra_hosts(value: Any) -> list[str]:
    entries: list[str] = []
    if isinstance(value, dict):
        for host, ips in value.items():
            for ip in ips if isinstance(ips, list) else [ips]:
                entries.append(f"{host}={ip}")
    else:
        for item in value or []:
            text = str(item)
            if "=" in text:
                entries.append(text)
            else:
                host, _, ip = text.partition(":")
                entries.append(f"{host}={ip}")
    return sorted(dict.fromkeys(entries))


def _ulimits(value: dict[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in value.items()}


def _file_mounts(value: list[Any], secrets: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in value:
        mount = {"source": item} if isinstance(item, str) else dict(item)
        if secrets and "target" not in mount:
            mount["target"] = f"/run/secrets/{mount['source']}"
        if isinstance(mount.get("mode"), str):
            mount["mode"] = int(mount["mode"], 8)
        out.append(mount)
    return out


def _build(value: Any, where: str, base_dir: Path, home: str | None) -> dict[str, Any]:
    build: dict[str, Any] = {"context": value} if isinstance(value, str) else dict(value)
    build.setdefault("context", ".")
    if "dockerfile" not in build and "dockerfile_inline" not in build:
        build["dockerfile"] = "Dockerfile"
    if not is_remote_context(build["context"]):
        build["context"] = resolve_path(build["context"], base_dir, home)
    for key in ("args", "ssh"):
        if key in build:
            build[key] = mapping(build[key])
    for key in ("labels", "additional_contexts"):
        if key in build:
            build[key] = mapping(build[key], nulls=False)
    if "additional_contexts" in build:
        build["additional_contexts"] = {
            k: v if is_remote_context(v) or ":" in v.split("/")[0] else resolve_path(v, base_dir, home)
            for k, v in build["additional_contexts"].items()
        }
    if "extra_hosts" in build:
        build["extra_hosts"] = _extra_hosts(build["extra_hosts"])
    if "shm_size" in build:
        build["shm_size"] = size(build["shm_size"], f"{where}.shm_size")
    if "secrets" in build:
        build["secrets"] = _file_mounts(build["secrets"], secrets=True)
    if "ulimits" in build:
        build["ulimits"] = _ulimits(build["ulimits"])
    return build


def _volume(item: Any, where: str, base_dir: Path, home: str | None) -> dict[str, Any]:
    if isinstance(item, str):
        try:
            vol = parse_volume(item)
        except InvalidArgument as e:
            raise InvalidArgument(f"{where}: {e}") from None
    else:
        vol = {k: (dict(v) if isinstance(v, dict) else v) for k, v in item.items()}
        if vol.get("bind") is not None:
            vol["bind"].setdefault("create_host_path", True)
        if "tmpfs" in vol and "size" in vol["tmpfs"]:
            vol["tmpfs"]["size"] = size(vol["tmpfs"]["size"], f"{where}.tmpfs.size")
        if "tmpfs" in vol and isinstance(vol["tmpfs"].get("mode"), str):
            vol["tmpfs"]["mode"] = int(vol["tmpfs"]["mode"], 8)
    if vol.get("read_only") is False:
        vol.pop("read_only")
    if vol["type"] == "bind":
        if not vol.get("source"):
            raise InvalidArgument(f"{where}: a bind mount needs a source")
        vol["source"] = resolve_path(vol["source"], base_dir, home)
    if vol["type"] == "tmpfs" and vol.get("source"):
        raise InvalidArgument(
            f'{where}: invalid mount config for type "tmpfs": field Source must not be specified'
        )
    if not vol.get("target"):
        raise InvalidArgument(f"{where}: the volume has no target")
    return vol


def _networks(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {name: None for name in value}
    out: dict[str, Any] = {}
    for name, cfg in value.items():
        if cfg is None:
            out[name] = None
            continue
        cfg = dict(cfg)
        if "driver_opts" in cfg:
            cfg["driver_opts"] = {k: scalar_text(v) for k, v in cfg["driver_opts"].items()}
        out[name] = cfg
    return out


def _depends_on(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {name: {"condition": "service_started", "required": True} for name in value}
    out: dict[str, Any] = {}
    for name, cfg in value.items():
        dep = dict(cfg)
        dep.setdefault("required", True)
        out[name] = dep
    return out


def _healthcheck(value: dict[str, Any], where: str) -> dict[str, Any]:
    hc = dict(value)
    if isinstance(hc.get("test"), str):
        hc["test"] = ["CMD-SHELL", hc["test"]]
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if key in hc:
            hc[key] = duration(hc[key], f"{where}.{key}")
    if "retries" in hc:
        hc["retries"] = int(hc["retries"])
    if hc.get("disable") is False:
        hc.pop("disable")
    return hc


def _resource(value: dict[str, Any], where: str) -> dict[str, Any]:
    res = dict(value)
    if "cpus" in res:
        try:
            res["cpus"] = float(res["cpus"])
        except ValueError:
            raise InvalidArgument(f"{where}.cpus: invalid number: {res['cpus']!r}") from None
    if "memory" in res:
        res["memory"] = size(res["memory"], f"{where}.memory")
    return res


def _deploy(value: dict[str, Any] | None, where: str) -> dict[str, Any]:
    deploy = dict(value or {})
    resources = dict(deploy.get("resources") or {})
    for key in ("limits", "reservations"):
        if key in resources:
            resources[key] = _resource(resources[key], f"{where}.resources.{key}")
    deploy["resources"] = resources
    deploy.setdefault("placement", {})
    if "labels" in deploy:
        deploy["labels"] = mapping(deploy["labels"], nulls=False)
    if "restart_policy" in deploy:
        policy = dict(deploy["restart_policy"])
        for key in ("delay", "window"):
            if key in policy:
                policy[key] = duration(policy[key], f"{where}.restart_policy.{key}")
        deploy["restart_policy"] = policy
    for cfg in ("update_config", "rollback_config"):
        if cfg in deploy:
            upd = dict(deploy[cfg])
            for key in ("delay", "monitor"):
                if key in upd:
                    upd[key] = duration(upd[key], f"{where}.{cfg}.{key}")
            deploy[cfg] = upd
    return deploy


def _device(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return dict(item)
    parts = str(item).split(":")
    source = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1] else source
    perms = parts[2] if len(parts) > 2 else "rwm"
    return {"source": source, "target": target, "permissions": perms}


def canonical_service(
    name: str, raw: dict[str, Any] | None, base_dir: Path, home: str | None
) -> dict[str, Any]:
    """One service's long-syntax form (paths resolved against ``base_dir``)."""
    where = f"services.{name}"
    svc: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        at = f"{where}.{key}"
        if key == "build":
            value = _build(value, at, base_dir, home)
        elif key in ("command", "entrypoint"):
            value = _command(value, at)
        elif key == "environment":
            value = mapping(value)
        elif key in ("labels", "annotations", "sysctls"):
            value = mapping(value, nulls=False)
        elif key == "env_file":
            items = [value] if isinstance(value, str) else value
            value = [
                {"path": resolve_path(i, base_dir, home), "required": True}
                if isinstance(i, str)
                else {
                    **i,
                    "path": resolve_path(i["path"], base_dir, home),
                    "required": i.get("required", True),
                }
                for i in items
            ]
        elif key == "ports":
            ports: list[dict[str, Any]] = []
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    ports.append(long_port(item))
                    continue
                try:
                    ports.extend(parse_port(scalar_text(item)))
                except InvalidArgument as e:
                    raise InvalidArgument(f"{at}.{i}: {e}") from None
            value = ports
        elif key == "expose":
            value = [scalar_text(v) for v in value]
        elif key == "volumes":
            value = [_volume(item, f"{at}.{i}", base_dir, home) for i, item in enumerate(value)]
        elif key == "networks":
            value = _networks(value)
        elif key == "depends_on":
            value = _depends_on(value)
        elif key == "healthcheck":
            value = _healthcheck(value, at)
        elif key == "deploy":
            value = _deploy(value, at)
        elif key in _STRING_LISTS:
            value = [value] if isinstance(value, str) else list(value)
        elif key == "extra_hosts":
            value = _extra_hosts(value)
        elif key == "ulimits":
            value = _ulimits(value)
        elif key == "secrets":
            value = _file_mounts(value, secrets=True)
        elif key == "configs":
            value = _file_mounts(value, secrets=False)
        elif key == "stop_grace_period":
            value = duration(value, at)
        elif key in _SIZES:
            value = size(value, at)
        elif key in _INTS:
            value = int(value)
        elif key == "cpus":
            value = float(value)
        elif key == "extends":
            value = {"service": value} if isinstance(value, str) else dict(value)
        elif key == "devices":
            value = [_device(d) for d in value]
        elif key == "group_add":
            value = [scalar_text(v) for v in value]
        elif key == "logging":
            value = dict(value)
            if "options" in value:
                value["options"] = {
                    k: scalar_text(v) for k, v in (value["options"] or {}).items() if v is not None
                }
        elif key == "pull_policy" and value == "if_not_present":
            value = "missing"
        if key in _OMIT_FALSE and value is False:
            continue
        if value == "" and key not in ("command", "entrypoint"):
            continue
        svc[key] = value
    return svc


def canonical_resource(
    kind: str, key: str, raw: dict[str, Any] | None, base_dir: Path, home: str | None, warnings: list[str]
) -> dict[str, Any]:
    """A top-level network, volume, secret or config in canonical form (``name`` set later)."""
    res = dict(raw or {})
    ext = res.get("external")
    if isinstance(ext, dict):
        if ext.get("name"):
            if res.get("name") and res["name"] != ext["name"]:
                raise InvalidArgument(f"{kind}.{key}: name and external.name conflict; only use name")
            res["name"] = ext["name"]
            warnings.append(
                f"{kind[:-1]} {key}: external.name is deprecated. Please set name and external: true"
            )
        res["external"] = True
    elif ext is False:
        res.pop("external")
    for opt in ("driver_opts",):
        if opt in res:
            res[opt] = {k: scalar_text(v) for k, v in res[opt].items()}
    if "labels" in res:
        res["labels"] = mapping(res["labels"], nulls=False)
    for flag in ("internal", "attachable"):
        if res.get(flag) is False:
            res.pop(flag)
    if kind in ("secrets", "configs") and "file" in res:
        res["file"] = resolve_path(res["file"], base_dir, home)
    return res
