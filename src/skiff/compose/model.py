"""A loaded Compose project: the canonical form ``docker compose config --format json`` prints.

``loader.load_project`` returns a :class:`Project`. Every service and resource is a plain
dict in the Compose Specification's *canonical* form, i.e. what docker compose v2 prints
for ``docker compose config --format json`` (compose-go's types, JSON-encoded), so that the
runtime reads one shape only and never a short syntax:

services[name] (only keys that are set, except ``command``/``entrypoint``, always present)::

    image: str
    build: {context: "/abs/dir" (or a URL), dockerfile: "Dockerfile", args: {k: str|None},
            target: str, labels: {k: str}, ...}           # `build: .` becomes this
    command / entrypoint: list[str] | None               # a string is shell-split; None = unset
    environment: {k: str | None}                         # list form, env_file merged in; None =
                                                         # not set anywhere (compose sends only "k")
    ports: [{mode: "ingress", host_ip?: str, target: int, published?: str, protocol: "tcp"|"udp"}]
                                                         # ranges expanded, one dict per port
    expose: [str]                                        # "3000", "8000-8010"
    volumes: [{type: "bind"|"volume"|"tmpfs", source?: str, target: str, read_only?: true,
               bind?: {create_host_path?: true, propagation?, selinux?},
               volume?: {nocopy?: true, subpath?}, tmpfs?: {size?: int, mode?: int}}]
                                                         # bind sources absolute, ~ expanded;
                                                         # volume sources are the *key* in volumes
    networks: {net: None | {aliases?: [str], ipv4_address?, ipv6_address?, priority?, ...}}
                                                         # {"default": None} unless network_mode
    network_mode: str                                    # "host", "none", "service:x", "container:x"
    depends_on: {svc: {condition: "service_started"|"service_healthy"|
                                  "service_completed_successfully", required: bool, restart?: bool}}
                                                         # links, volumes_from, service:x add entries
    healthcheck: {test: [str] (["CMD-SHELL", s] for a string), interval/timeout/start_period/
                  start_interval: Go duration str ("30s", "1m30s"), retries: int, disable?: true}
    deploy: {replicas?: int, resources: {limits?: {cpus?: float, memory?: int, pids?: int},
             reservations?: {...}}, restart_policy?: {condition, delay: dur, max_attempts: int,
             window: dur}, placement: {}, labels?: {..}}
    labels / sysctls / annotations: {k: str}             # list form "k=v" becomes a map
    links: [str] ("db" or "db:alias"), extra_hosts: ["host=ip"] (sorted),
    dns / dns_search / dns_opt / tmpfs / cap_add / cap_drop / profiles / security_opt: [str]
    ulimits: {name: int | {soft: int, hard: int}}
    secrets / configs: [{source: str, target?: str, uid?, gid?, mode?: int}]
                                                         # secrets get target /run/secrets/<source>;
                                                         # a config's default target is /<source>
    stop_grace_period: dur str, stop_signal, restart, hostname, domainname, user, working_dir,
    init: bool, tty / stdin_open / privileged / read_only: true when set,
    mem_limit / mem_reservation / memswap_limit / shm_size: int bytes, cpus: float,
    container_name, pull_policy, platform, ipc, pid, userns_mode, logging, volumes_from, ...
    x-*: anything                                       # extensions are kept as written

networks / volumes / secrets / configs[key]::

    {name: "<project>_<key>" (or the key when external, or as written), driver?, driver_opts?:
     {k: str}, labels?: {k: str}, external?: true, internal?: true, attachable?: true,
     ipam?: {driver?, config?: [{subnet, gateway, ip_range, aux_addresses}]}, enable_ipv6?,
     file?: "/abs/path" (secrets/configs), environment?: str, content?: str}

Only keys that are set appear, as compose-go's ``omitempty`` does; ``to_json`` adds the
``null``/``{}`` members compose prints anyway (``command``, ``entrypoint``, a network's
``ipam``). A service disabled by profiles is in ``disabled`` with the same shape, so a
command that names it explicitly can enable it (``enable``), as Compose does.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Service = dict[str, Any]
Resource = dict[str, Any]

# Keys compose-go encodes without omitempty: present in JSON output even when unset.
_ALWAYS_IN_JSON = ("command", "entrypoint")


@dataclass
class Project:
    """A loaded, merged, interpolated and normalized Compose project."""

    name: str
    working_dir: Path
    services: dict[str, Service] = field(default_factory=dict)
    networks: dict[str, Resource] = field(default_factory=dict)
    volumes: dict[str, Resource] = field(default_factory=dict)
    secrets: dict[str, Resource] = field(default_factory=dict)
    configs: dict[str, Resource] = field(default_factory=dict)
    # The interpolation environment: `.env` values overlaid by the process environment.
    environment: dict[str, str] = field(default_factory=dict)
    # Absolute paths of the files loaded, in order (for the config_files label).
    config_files: list[Path] = field(default_factory=list)
    # The `.env`/--env-file files read (for the environment_file label).
    env_files: list[Path] = field(default_factory=list)
    # Profiles that were active, and services left out because of them.
    profiles: list[str] = field(default_factory=list)
    disabled: dict[str, Service] = field(default_factory=dict)
    # Top-level x-* extensions.
    extensions: dict[str, Any] = field(default_factory=dict)
    # What compose would log as WARN while loading (obsolete `version`, unset variables).
    warnings: list[str] = field(default_factory=list)

    def service_names(self) -> list[str]:
        """The enabled services' names, sorted."""
        return sorted(self.services)

    def volume_names(self) -> list[str]:
        """The top-level volume keys, sorted (what ``config --volumes`` prints)."""
        return sorted(self.volumes)

    def enable(self, names: list[str]) -> None:
        """Move services disabled by profiles back in, when a command names them explicitly."""
        for name in names:
            if name in self.disabled:
                self.services[name] = self.disabled.pop(name)

    def to_dict(self) -> dict[str, Any]:
        """The project as compose prints it, YAML flavour (unset keys left out)."""
        out: dict[str, Any] = {"name": self.name, "services": copy.deepcopy(self.services)}
        for svc in out["services"].values():
            for key in _ALWAYS_IN_JSON:
                if svc.get(key) is None:
                    svc.pop(key, None)
        for key in ("networks", "volumes", "secrets", "configs"):
            value = getattr(self, key)
            if value:
                out[key] = copy.deepcopy(value)
        out.update(copy.deepcopy(self.extensions))
        return out

    def to_json_dict(self) -> dict[str, Any]:
        """The project as ``docker compose config --format json`` prints it."""
        out = self.to_dict()
        # Go's json encoder drops x-* extensions (json:"-") of the project, services, resources.
        for kind in ("services", "networks", "volumes", "secrets", "configs"):
            for key, item in out.get(kind, {}).items():
                out[kind][key] = {k: v for k, v in item.items() if not k.startswith("x-")}
        for svc in out["services"].values():
            for key in _ALWAYS_IN_JSON:
                svc.setdefault(key, None)
        for net in out.get("networks", {}).values():
            net.setdefault("ipam", {})
        return {k: v for k, v in out.items() if not k.startswith("x-")}

    def to_json(self) -> str:
        """``config --format json``: two-space indented, keys sorted within maps."""
        data = self.to_json_dict()
        top = {
            k: data[k] for k in ("name", "services", "networks", "volumes", "secrets", "configs") if k in data
        }
        return json.dumps(_sorted(top, top_level=True), indent=2, ensure_ascii=False)

    def to_yaml(self) -> str:
        """``config`` output: the normalized YAML."""
        data = self.to_dict()
        return yaml.dump(
            _sorted(data, top_level=True),
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=10_000,
        )


_TOP_ORDER = ("name", "services", "networks", "volumes", "secrets", "configs")


def _sorted(value: Any, top_level: bool = False) -> Any:
    """Maps with sorted keys (Go's encoders sort map keys); the top level in compose's order."""
    if isinstance(value, dict):
        if top_level:
            keys = [k for k in _TOP_ORDER if k in value] + sorted(k for k in value if k not in _TOP_ORDER)
        else:
            keys = sorted(value)
        return {k: _sorted(value[k]) for k in keys}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with indented sequences, as compose's yaml.v3 encoder writes it."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def choose_scalar_style(self) -> str:
        # yaml.v3 quotes with double quotes where quoting is needed ("8000", "true").
        style = str(super().choose_scalar_style() or "")
        return '"' if style == "'" else style


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)
