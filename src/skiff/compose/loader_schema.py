"""The Compose file's JSON schema (written for skiff) and compose's validation messages.

The schema follows the Compose Specification's keys and types; it is skiff's own, written
from the specification's documentation (no package on PyPI ships the official schema in
a usable form). It is checked after interpolation, so a value that came from ``${N}`` has
already been cast (``loader_interpolate``). ``jsonschema`` does the checking; ``validate``
turns its first error into the words docker compose uses::

    validating /p/compose.yaml: services.web Additional property foo is not allowed
    validating /p/compose.yaml: services.web.ports must be a list
    validating /p/compose.yaml: services.web.depends_on.db.condition must be one of the
        following: "service_started", "service_healthy", "service_completed_successfully"
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from skiff.errors import InvalidArgument

Schema = dict[str, Any]

_X: Schema = {"^x-": {}}


def _obj(props: dict[str, Any], required: Iterable[str] = (), nullable: bool = False) -> Schema:
    """A closed object (unknown keys rejected) that also takes ``x-*`` extensions."""
    out: Schema = {
        "type": ["object", "null"] if nullable else "object",
        "properties": props,
        "patternProperties": _X,
        "additionalProperties": False,
    }
    if required:
        out["required"] = list(required)
    return out


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
STR_OR_NUM: Schema = {"type": ["string", "number"]}
STR_OR_INT: Schema = {"type": ["string", "integer"]}
STRINGS: Schema = {"type": "array", "items": STR}
UNIQUE_STRINGS: Schema = {"type": "array", "items": STR, "uniqueItems": True}
STR_OR_LIST: Schema = {"oneOf": [STR, STRINGS]}
COMMAND: Schema = {"oneOf": [{"type": "null"}, STR, STRINGS]}
DURATION: Schema = STR
LIST_OR_DICT: Schema = {
    "oneOf": [
        {
            "type": "object",
            "patternProperties": {".+": {"type": ["string", "number", "boolean", "null"]}},
            "additionalProperties": False,
        },
        UNIQUE_STRINGS,
    ]
}
EXTRA_HOSTS: Schema = {
    "oneOf": [
        {
            "type": "object",
            "patternProperties": {".+": {"oneOf": [STR, STRINGS]}},
            "additionalProperties": False,
        },
        UNIQUE_STRINGS,
    ]
}
OPTIONS: Schema = {"type": "object", "patternProperties": {".+": {"type": ["string", "number"]}}}
EXTERNAL: Schema = {"oneOf": [BOOL, _obj({"name": STR})]}
ULIMITS: Schema = {
    "type": "object",
    "patternProperties": {
        "^[a-z]+$": {"oneOf": [INT, _obj({"hard": INT, "soft": INT}, required=("soft", "hard"))]}
    },
    "additionalProperties": False,
}
FILE_MOUNTS: Schema = {
    "type": "array",
    "items": {
        "oneOf": [
            STR,
            _obj(
                {"source": STR, "target": STR, "uid": STR, "gid": STR, "mode": STR_OR_NUM},
                required=("source",),
            ),
        ]
    },
}
DEVICE_REQUESTS: Schema = {
    "type": "array",
    "items": _obj(
        {
            "capabilities": STRINGS,
            "count": {"oneOf": [STR, INT]},
            "device_ids": STRINGS,
            "driver": STR,
            "options": LIST_OR_DICT,
        }
    ),
}
UPDATE_CONFIG: Schema = _obj(
    {
        "parallelism": INT,
        "delay": DURATION,
        "failure_action": STR,
        "monitor": DURATION,
        "max_failure_ratio": NUM,
        "order": {"enum": ["start-first", "stop-first"]},
    }
)
RESOURCE: Schema = _obj(
    {
        "cpus": STR_OR_NUM,
        "memory": STR_OR_INT,
        "pids": INT,
        "devices": DEVICE_REQUESTS,
        "generic_resources": {"type": "array", "items": {"type": "object"}},
    }
)
DEPLOY: Schema = _obj(
    {
        "mode": STR,
        "endpoint_mode": STR,
        "replicas": INT,
        "labels": LIST_OR_DICT,
        "rollback_config": UPDATE_CONFIG,
        "update_config": UPDATE_CONFIG,
        "resources": _obj({"limits": RESOURCE, "reservations": RESOURCE}),
        "restart_policy": _obj(
            {"condition": STR, "delay": DURATION, "max_attempts": INT, "window": DURATION}
        ),
        "placement": _obj(
            {
                "constraints": STRINGS,
                "preferences": {"type": "array", "items": _obj({"spread": STR})},
                "max_replicas_per_node": INT,
            }
        ),
    },
    nullable=True,
)
BUILD: Schema = {
    "oneOf": [
        STR,
        _obj(
            {
                "context": STR,
                "dockerfile": STR,
                "dockerfile_inline": STR,
                "entitlements": STRINGS,
                "args": LIST_OR_DICT,
                "ssh": LIST_OR_DICT,
                "labels": LIST_OR_DICT,
                "cache_from": STRINGS,
                "cache_to": STRINGS,
                "no_cache": BOOL,
                "additional_contexts": LIST_OR_DICT,
                "network": STR,
                "provenance": {"type": ["string", "boolean"]},
                "sbom": {"type": ["string", "boolean"]},
                "pull": BOOL,
                "target": STR,
                "shm_size": STR_OR_INT,
                "extra_hosts": EXTRA_HOSTS,
                "isolation": STR,
                "privileged": BOOL,
                "secrets": FILE_MOUNTS,
                "tags": STRINGS,
                "ulimits": ULIMITS,
                "platforms": STRINGS,
            }
        ),
    ]
}
HEALTHCHECK: Schema = _obj(
    {
        "disable": BOOL,
        "interval": DURATION,
        "retries": NUM,
        "test": STR_OR_LIST,
        "timeout": DURATION,
        "start_period": DURATION,
        "start_interval": DURATION,
    }
)
SERVICE_VOLUME: Schema = {
    "oneOf": [
        STR,
        _obj(
            {
                "type": {"enum": ["bind", "volume", "tmpfs", "npipe", "cluster", "image"]},
                "source": STR,
                "target": STR,
                "read_only": BOOL,
                "consistency": STR,
                "bind": _obj(
                    {
                        "propagation": STR,
                        "create_host_path": BOOL,
                        "recursive": {"enum": ["enabled", "disabled", "writable", "readonly"]},
                        "selinux": {"enum": ["z", "Z"]},
                    }
                ),
                "volume": _obj({"nocopy": BOOL, "subpath": STR, "labels": LIST_OR_DICT}),
                "tmpfs": _obj(
                    {"size": {"oneOf": [{"type": "integer", "minimum": 0}, STR]}, "mode": STR_OR_NUM}
                ),
                "image": _obj({"subpath": STR}),
            },
            required=("type",),
        ),
    ]
}
PORT: Schema = {
    "oneOf": [
        NUM,
        STR,
        _obj(
            {
                "name": STR,
                "mode": STR,
                "host_ip": STR,
                "target": INT,
                "published": STR_OR_INT,
                "protocol": STR,
                "app_protocol": STR,
            }
        ),
    ]
}
SERVICE_NETWORKS: Schema = {
    "oneOf": [
        UNIQUE_STRINGS,
        {
            "type": "object",
            "patternProperties": {
                "^[a-zA-Z0-9._-]+$": _obj(
                    {
                        "aliases": STRINGS,
                        "interface_name": STR,
                        "ipv4_address": STR,
                        "ipv6_address": STR,
                        "link_local_ips": STRINGS,
                        "mac_address": STR,
                        "driver_opts": OPTIONS,
                        "priority": NUM,
                        "gw_priority": NUM,
                    },
                    nullable=True,
                )
            },
            "additionalProperties": False,
        },
    ]
}
CONDITIONS = ["service_started", "service_healthy", "service_completed_successfully"]
DEPENDS_ON: Schema = {
    "oneOf": [
        UNIQUE_STRINGS,
        {
            "type": "object",
            "patternProperties": {
                "^[a-zA-Z0-9._-]+$": _obj(
                    {"condition": {"enum": CONDITIONS}, "restart": BOOL, "required": BOOL},
                    required=("condition",),
                )
            },
            "additionalProperties": False,
        },
    ]
}
HOOK: Schema = {
    "type": "array",
    "items": _obj(
        {
            "command": COMMAND,
            "user": STR,
            "privileged": BOOL,
            "working_dir": STR,
            "environment": LIST_OR_DICT,
        },
        required=("command",),
    ),
}
SERVICE: Schema = _obj(
    {
        "annotations": LIST_OR_DICT,
        "attach": BOOL,
        "build": BUILD,
        "blkio_config": {"type": "object"},
        "cap_add": UNIQUE_STRINGS,
        "cap_drop": UNIQUE_STRINGS,
        "cgroup": {"enum": ["host", "private"]},
        "cgroup_parent": STR,
        "command": COMMAND,
        "configs": FILE_MOUNTS,
        "container_name": STR,
        "cpu_count": {"type": "integer", "minimum": 0},
        "cpu_percent": {"type": "number", "minimum": 0, "maximum": 100},
        "cpu_shares": STR_OR_NUM,
        "cpu_quota": STR_OR_NUM,
        "cpu_period": STR_OR_NUM,
        "cpu_rt_period": STR_OR_NUM,
        "cpu_rt_runtime": STR_OR_NUM,
        "cpus": STR_OR_NUM,
        "cpuset": STR,
        "credential_spec": {"type": "object"},
        "depends_on": DEPENDS_ON,
        "deploy": DEPLOY,
        "develop": {"type": ["object", "null"]},
        "device_cgroup_rules": STRINGS,
        "devices": {
            "type": "array",
            "items": {"oneOf": [STR, _obj({"source": STR, "target": STR, "permissions": STR})]},
        },
        "dns": STR_OR_LIST,
        "dns_opt": UNIQUE_STRINGS,
        "dns_search": STR_OR_LIST,
        "domainname": STR,
        "entrypoint": COMMAND,
        "env_file": {
            "oneOf": [
                STR,
                {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            STR,
                            _obj({"path": STR, "required": BOOL, "format": STR}, required=("path",)),
                        ]
                    },
                },
            ]
        },
        "label_file": STR_OR_LIST,
        "environment": LIST_OR_DICT,
        "expose": {"type": "array", "items": STR_OR_NUM, "uniqueItems": True},
        "extends": {"oneOf": [STR, _obj({"service": STR, "file": STR}, required=("service",))]},
        "external_links": UNIQUE_STRINGS,
        "extra_hosts": EXTRA_HOSTS,
        "gpus": {"oneOf": [{"enum": ["all"]}, DEVICE_REQUESTS]},
        "group_add": {"type": "array", "items": STR_OR_NUM, "uniqueItems": True},
        "healthcheck": HEALTHCHECK,
        "hostname": STR,
        "image": STR,
        "init": BOOL,
        "ipc": STR,
        "isolation": STR,
        "labels": LIST_OR_DICT,
        "links": UNIQUE_STRINGS,
        "logging": _obj(
            {
                "driver": STR,
                "options": {"type": "object", "additionalProperties": {"type": ["string", "number", "null"]}},
            }
        ),
        "mac_address": STR,
        "mem_limit": STR_OR_NUM,
        "mem_reservation": STR_OR_INT,
        "mem_swappiness": INT,
        "memswap_limit": STR_OR_NUM,
        "models": {"type": ["object", "array"]},
        "network_mode": STR,
        "networks": SERVICE_NETWORKS,
        "oom_kill_disable": BOOL,
        "oom_score_adj": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "pid": {"type": ["string", "null"]},
        "pids_limit": STR_OR_NUM,
        "platform": STR,
        "ports": {"type": "array", "items": PORT},
        "post_start": HOOK,
        "pre_stop": HOOK,
        "privileged": BOOL,
        "profiles": UNIQUE_STRINGS,
        "provider": {"type": "object"},
        "pull_policy": STR,
        "read_only": BOOL,
        "restart": STR,
        "runtime": STR,
        "scale": INT,
        "security_opt": UNIQUE_STRINGS,
        "shm_size": STR_OR_NUM,
        "secrets": FILE_MOUNTS,
        "sysctls": LIST_OR_DICT,
        "stdin_open": BOOL,
        "stop_grace_period": DURATION,
        "stop_signal": STR,
        "storage_opt": {"type": "object"},
        "tmpfs": STR_OR_LIST,
        "tty": BOOL,
        "ulimits": ULIMITS,
        "use_api_socket": BOOL,
        "user": STR,
        "uts": STR,
        "userns_mode": STR,
        "volumes": {"type": "array", "items": SERVICE_VOLUME},
        "volumes_from": UNIQUE_STRINGS,
        "working_dir": STR,
    }
)
_NAME_KEYS = "^[a-zA-Z0-9._-]+$"


def _named(item: Schema) -> Schema:
    return {
        "type": ["object", "null"],
        "patternProperties": {_NAME_KEYS: item},
        "additionalProperties": False,
    }


NETWORK: Schema = _obj(
    {
        "name": STR,
        "driver": STR,
        "driver_opts": OPTIONS,
        "ipam": _obj(
            {
                "driver": STR,
                "config": {
                    "type": "array",
                    "items": _obj(
                        {
                            "subnet": STR,
                            "ip_range": STR,
                            "gateway": STR,
                            "aux_addresses": {"type": "object", "additionalProperties": STR},
                        }
                    ),
                },
                "options": {"type": "object", "additionalProperties": STR},
            }
        ),
        "external": EXTERNAL,
        "internal": BOOL,
        "enable_ipv4": BOOL,
        "enable_ipv6": BOOL,
        "attachable": BOOL,
        "labels": LIST_OR_DICT,
    },
    nullable=True,
)
VOLUME: Schema = _obj(
    {"name": STR, "driver": STR, "driver_opts": OPTIONS, "external": EXTERNAL, "labels": LIST_OR_DICT},
    nullable=True,
)
SECRET: Schema = _obj(
    {
        "name": STR,
        "environment": STR,
        "file": STR,
        "external": EXTERNAL,
        "labels": LIST_OR_DICT,
        "driver": STR,
        "driver_opts": OPTIONS,
        "template_driver": STR,
    },
    nullable=True,
)
CONFIG: Schema = _obj(
    {
        "name": STR,
        "content": STR,
        "environment": STR,
        "file": STR,
        "external": EXTERNAL,
        "labels": LIST_OR_DICT,
        "template_driver": STR,
    },
    nullable=True,
)
INCLUDE: Schema = {
    "type": "array",
    "items": {
        "oneOf": [
            STR,
            _obj(
                {"path": STR_OR_LIST, "env_file": STR_OR_LIST, "project_directory": STR}, required=("path",)
            ),
        ]
    },
}
COMPOSE: Schema = _obj(
    {
        "version": STR,
        "name": STR,
        "include": INCLUDE,
        "services": _named(SERVICE),
        "models": {"type": "object"},
        "networks": _named(NETWORK),
        "volumes": _named(VOLUME),
        "secrets": _named(SECRET),
        "configs": _named(CONFIG),
    }
)

_VALIDATOR = jsonschema.Draft7Validator(COMPOSE)
_TYPE_WORDS = {"object": "mapping", "array": "list"}


def _path(error: ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path if p is not None]
    return ".".join(parts) if parts else "(root)"


def _types(expected: Any) -> list[str]:
    names = expected if isinstance(expected, list) else [expected]
    return [_TYPE_WORDS.get(str(n), str(n)) for n in names]


def _type_phrase(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return unique[0]
    return ", ".join(unique[:-1]) + " or " + unique[-1]


def _describe(error: ValidationError) -> str:
    """compose-go's wording for one error (the path is added by the caller)."""
    kind = error.validator
    schema_value: Any = error.validator_value
    instance: Any = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        schema: Any = error.schema
        known = set(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = sorted(k for k in instance if k not in known and not any(p.search(k) for p in patterns))
        return f"Additional property {extra[0] if extra else '?'} is not allowed"
    if kind == "type":
        return f"must be a {_type_phrase(_types(schema_value))}"
    if kind == "enum":
        options = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema_value)
        return f"must be one of the following: {options}"
    if kind == "required":
        missing = next((r for r in schema_value if r not in instance), "?")
        return f"{missing} is required"
    if kind == "uniqueItems":
        return "must contain unique items"
    if kind == "pattern":
        return f"does not match pattern {schema_value!r}"
    if kind in ("minimum", "maximum"):
        word = "greater than or equal to" if kind == "minimum" else "less than or equal to"
        return f"must be {word} {schema_value}"
    return str(error.message)


def _pick(error: ValidationError) -> tuple[ValidationError, str]:
    """The error to report and its description; oneOf/anyOf explain the closest branch."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        # A branch whose type matched failed for a deeper reason: report that reason.
        deeper = [
            e
            for e in error.context
            if not (e.validator == "type" and not e.relative_path and len(e.relative_schema_path) <= 2)
        ]
        if deeper:
            best = best_match(deeper)
            if best is not None:
                return _pick(best)
        names: list[str] = []
        for e in error.context:
            if e.validator == "type":
                names.extend(_types(cast(Any, e.validator_value)))
            elif e.validator == "enum":
                names.extend(repr(v) for v in cast(Any, e.validator_value))
        if names:
            return error, f"must be a {_type_phrase(names)}"
    return error, _describe(error)


def validate(data: dict[str, Any], source: str) -> None:
    """Raise ``InvalidArgument`` with compose's message for the first schema violation."""
    errors = list(_VALIDATOR.iter_errors(data))
    if not errors:
        return
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    chosen, description = _pick(errors[0])
    raise InvalidArgument(f"validating {source}: {_path(chosen)} {description}")
