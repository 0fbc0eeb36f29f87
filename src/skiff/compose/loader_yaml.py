"""Reading a compose file's YAML the way compose-go (yaml.v3) reads it.

PyYAML speaks YAML 1.1, where ``yes``/``on`` are booleans, ``22:22`` is the number 1342
(sexagesimal) and dates become ``date`` objects; yaml.v3 reads all of those as strings,
and a compose file relies on it (``ports: [22:22]``). So the loader here resolves plain
scalars by YAML 1.2's rules, refuses duplicate keys and non-string keys as compose does,
keeps anchors, aliases and ``<<`` merge keys, and understands compose's ``!reset`` (drop
the inherited value) and ``!override`` (replace instead of merging) tags, which are
returned as paths beside the data for the merge step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from skiff.errors import InvalidArgument


class _Reset:
    """Placeholder for a ``!reset`` value until the paths are collected."""


@dataclass
class _Override:
    value: Any


@dataclass
class ParsedFile:
    """A file's data with its ``!reset`` and ``!override`` paths (mapping keys only)."""

    data: dict[str, Any]
    resets: list[tuple[str, ...]] = field(default_factory=list)
    overrides: list[tuple[str, ...]] = field(default_factory=list)


_INT = re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 plain scalars, duplicate-key checks and compose's tags."""

    yaml_implicit_resolvers: dict[Any, Any] = {
        first: [
            (tag, rx)
            for tag, rx in resolvers
            if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen:
                    raise InvalidArgument(
                        f"line {key_node.start_mark.line + 1}: mapping key {_go_str(key)} "
                        f"already defined at line {seen[key]}"
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=True)


def _go_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.startswith(("0b", "0o", "0x")):
        return sign * int(body, 0)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body, 8)  # yaml.v3 still reads YAML 1.1's 0755 as octal
    return sign * int(body)


def _construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> _Reset:
    return _Reset()


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    return _Override(loader.construct_object(yaml.ScalarNode("tag:yaml.org,2002:str", node.value), deep=True))


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("!reset", _construct_reset)
_Loader.add_constructor("!override", _construct_override)


def parse_yaml(text: str, source: str) -> ParsedFile:
    """Parse one compose file; errors name ``source`` and the line."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except InvalidArgument as e:
        raise InvalidArgument(f"{source}: yaml: unmarshal errors:\n  {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InvalidArgument(f"{source}: yaml: {where}{e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise InvalidArgument(f"{source}: yaml: {e}") from None
    if len(docs) > 1:
        raise InvalidArgument(f"{source}: a compose file holds one YAML document, found {len(docs)}")
    data = docs[0] if docs else None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source}: Top-level object must be a mapping")
    parsed = ParsedFile({})
    try:
        parsed.data = _collect(data, (), parsed)
    except InvalidArgument as e:
        raise InvalidArgument(f"{source}: {e}") from None
    return parsed


def _collect(value: Any, path: tuple[str, ...], parsed: ParsedFile) -> Any:
    """Check keys are strings, and turn ``!reset``/``!override`` markers into paths."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                where = f"in {'.'.join(path)}" if path else "at top level"
                raise InvalidArgument(f"non-string key {where}: {_go_repr(k)}")
            sub = (*path, k)
            if isinstance(v, _Reset):
                parsed.resets.append(sub)
                continue
            if isinstance(v, _Override):
                parsed.overrides.append(sub)
                v = v.value
            out[k] = _collect(v, sub, parsed)
        return out
    if isinstance(value, list):
        return [
            _collect(v, (*path, str(i)), parsed) for i, v in enumerate(value) if not isinstance(v, _Reset)
        ]
    if isinstance(value, _Override):
        return _collect(value.value, path, parsed)
    return value


def _go_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)
