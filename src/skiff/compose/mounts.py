"""A service's volumes, tmpfs, secrets and configs as Engine API ``Binds`` and ``Mounts``.

Compose's choices: a volume or bind without advanced options goes into ``Binds``
(``src:dst:rw[,nocopy]``; a bind that way creates a missing host path), anything else
into ``Mounts``. File-based secrets are bind-mounted read-only at ``/run/secrets/<name>``
(or ``target``), file-based configs at ``/<name>`` (or ``target``); secrets and configs
whose value is ``content`` or ``environment`` have no file to bind and are copied into
the container after create (``files``), as newer Compose versions do.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skiff.compose.values import size_bytes
from skiff.errors import InvalidArgument

JSON = dict[str, Any]


@dataclass(frozen=True)
class InjectedFile:
    """A secret or config with no file on the host: its bytes, written at ``path`` before start."""

    path: str
    data: bytes
    mode: int = 0o444


@dataclass
class MountPlan:
    """What a service's storage becomes in a create body."""

    binds: list[str] = field(default_factory=list)
    mounts: list[JSON] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    files: list[InjectedFile] = field(default_factory=list)


def volume_name(volumes: Mapping[str, Any], key: str) -> str:
    """The daemon's name of a project volume key (``name:``, else the key itself)."""
    spec = volumes.get(key)
    if isinstance(spec, Mapping) and spec.get("name"):
        return str(spec["name"])
    return key


def _bind_string(source: str, vol: Mapping[str, Any], extra: list[str]) -> str:
    options = ["ro" if vol.get("read_only") else "rw", *extra]
    return f"{source}:{vol['target']}:{','.join(options)}"


def service_mounts(
    service_name: str,
    service: Mapping[str, Any],
    project_volumes: Mapping[str, Any],
    secrets: Mapping[str, Any],
    configs: Mapping[str, Any],
    environment: Mapping[str, str],
    inherited: Mapping[str, str] | None = None,
) -> MountPlan:
    """Binds/Mounts/Tmpfs/injected files of ``service``.

    ``inherited`` maps a target to the anonymous volume an earlier container of the
    service had there, so a recreated container keeps its anonymous volumes' data.
    """
    out = MountPlan()
    targets: set[str] = set()
    for i, vol in enumerate(service.get("volumes") or []):
        where = f"services.{service_name}.volumes[{i}]"
        if not isinstance(vol, Mapping) or not vol.get("target"):
            raise InvalidArgument(f"{where}: a volume needs a target")
        target = str(vol["target"])
        targets.add(target)
        kind = str(vol.get("type") or "volume")
        if kind == "volume":
            _volume(out, vol, project_volumes, inherited or {}, where)
        elif kind == "bind":
            _bind(out, vol, where)
        elif kind == "tmpfs":
            opts = vol.get("tmpfs") or {}
            tmpfs: JSON = {}
            if opts.get("size"):
                tmpfs["SizeBytes"] = size_bytes(opts["size"], f"{where}.tmpfs.size")
            if opts.get("mode") is not None:
                tmpfs["Mode"] = _mode(opts["mode"])
            out.mounts.append(
                {
                    "Type": "tmpfs",
                    "Target": target,
                    "ReadOnly": bool(vol.get("read_only")),
                    "TmpfsOptions": tmpfs,
                }
            )
        else:
            raise InvalidArgument(f"{where}: volume type {kind!r} is not supported")
    for entry in service.get("tmpfs") or []:
        path, _, opts = str(entry).partition(":")
        out.tmpfs[path] = opts
    for kind, base, defined in (("secrets", "/run/secrets/", secrets), ("configs", "/", configs)):
        for i, ref in enumerate(service.get(kind) or []):
            ref = {"source": ref} if isinstance(ref, str) else ref
            where = f"services.{service_name}.{kind}[{i}]"
            source = str(ref.get("source") or "")
            spec = defined.get(source)
            if not isinstance(spec, Mapping):
                raise InvalidArgument(f"{where}: {kind[:-1]} {source!r} is not defined")
            target = str(ref.get("target") or source)
            if not target.startswith("/"):
                target = base + target
            if target in targets:
                raise InvalidArgument(f"{where}: {target} is already mounted")
            targets.add(target)
            if spec.get("external"):
                raise InvalidArgument(f"unsupported external {kind[:-1]} {spec.get('name') or source}")
            mode = _mode(ref["mode"]) if ref.get("mode") is not None else 0o444
            if spec.get("file"):
                out.mounts.append(
                    {"Type": "bind", "Source": str(spec["file"]), "Target": target, "ReadOnly": True}
                )
            elif spec.get("content") is not None:
                out.files.append(InjectedFile(target, str(spec["content"]).encode(), mode))
            elif spec.get("environment"):
                var = str(spec["environment"])
                value = environment.get(var, os.environ.get(var))
                if value is None:
                    raise InvalidArgument(f"{where}: environment variable {var} is not set")
                out.files.append(InjectedFile(target, value.encode(), mode))
            else:
                raise InvalidArgument(f"{where}: {kind[:-1]} {source!r} has no file, content or environment")
    return out


def _mode(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    try:
        return int(text, 8) if text.startswith("0") else int(text)
    except ValueError:
        raise InvalidArgument(f"invalid mode: {value!r}") from None


def _volume(
    out: MountPlan,
    vol: Mapping[str, Any],
    volumes: Mapping[str, Any],
    inherited: Mapping[str, str],
    where: str,
) -> None:
    target = str(vol["target"])
    opts = vol.get("volume") or {}
    source = vol.get("source")
    if not source:
        if target in inherited:
            out.binds.append(_bind_string(inherited[target], vol, []))
        else:
            out.mounts.append({"Type": "volume", "Target": target, "ReadOnly": bool(vol.get("read_only"))})
        return
    name = volume_name(volumes, str(source))
    if opts.get("subpath") or opts.get("labels"):
        mount: JSON = {
            "Type": "volume",
            "Source": name,
            "Target": target,
            "ReadOnly": bool(vol.get("read_only")),
        }
        vo: JSON = {"NoCopy": bool(opts.get("nocopy"))}
        if opts.get("subpath"):
            vo["Subpath"] = str(opts["subpath"])
        if opts.get("labels"):
            vo["Labels"] = dict(opts["labels"])
        mount["VolumeOptions"] = vo
        out.mounts.append(mount)
        return
    out.binds.append(_bind_string(name, vol, ["nocopy"] if opts.get("nocopy") else []))


def _bind(out: MountPlan, vol: Mapping[str, Any], where: str) -> None:
    source = str(vol.get("source") or "")
    if not source:
        raise InvalidArgument(f"{where}: a bind mount needs a source")
    opts = vol.get("bind") or {}
    if opts.get("create_host_path", True) and not opts.get("propagation") and not opts.get("recursive"):
        extra = [str(opts["selinux"])] if opts.get("selinux") else []
        out.binds.append(_bind_string(source, vol, extra))
        return
    mount: JSON = {
        "Type": "bind",
        "Source": source,
        "Target": str(vol["target"]),
        "ReadOnly": bool(vol.get("read_only")),
    }
    if opts.get("propagation"):
        mount["BindOptions"] = {"Propagation": str(opts["propagation"])}
    out.mounts.append(mount)


def files_tar(files: list[InjectedFile]) -> bytes:
    """A tar to extract at ``/`` that holds ``files`` (and their parent directories)."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for f in files:
            parts = f.path.strip("/").split("/")
            for depth in range(1, len(parts)):
                d = "/".join(parts[:depth])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tf.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size = len(f.data)
            info.mode = f.mode
            tf.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()
