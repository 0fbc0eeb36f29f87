"""Compose's variable interpolation: ``$V ${V} ${V:-d} ${V-d} ${V:?e} ${V?e} ${V:+r} ${V+r} $$``.

The grammar is compose-go's ``template`` package: a name is ``[_a-zA-Z][_a-zA-Z0-9]*``;
``$`` before anything else stays a literal ``$``; the word after a modifier is itself a
template (``${A:-${B:-x}}``) evaluated only when it is used, and braces inside it nest.
``interpolate`` walks a loaded file and substitutes every string *value* (never a key),
then casts the values at the paths compose casts (``replicas: ${N}`` becomes an int).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from skiff.errors import InvalidArgument

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")


class TemplateError(InvalidArgument):
    """A ``${`` that does not form a valid substitution."""


class RequiredVariableError(InvalidArgument):
    """``${V:?err}`` or ``${V?err}`` with V missing."""


Lookup = Callable[[str], str | None]


class Template:
    """One string's substitution with a variable lookup; ``unset`` collects names not found."""

    def __init__(self, text: str, lookup: Lookup) -> None:
        self.text = text
        self.lookup = lookup
        self.unset: list[str] = []

    def substitute(self) -> str:
        out, _ = self._run(0, top=True)
        return out

    def _invalid(self) -> TemplateError:
        return TemplateError(f"Invalid template: {_go_quote(self.text)}")

    def _run(self, i: int, top: bool, evaluate: bool = True) -> tuple[str, int]:
        """Substitute from ``i``; at top level to the end, else up to the closing brace."""
        s = self.text
        out: list[str] = []
        depth = 0
        while i < len(s):
            c = s[i]
            if c == "$":
                piece, i = self._dollar(i, evaluate)
                out.append(piece)
                continue
            if not top:
                if c == "{":
                    depth += 1
                elif c == "}":
                    if depth == 0:
                        return "".join(out), i
                    depth -= 1
            out.append(c)
            i += 1
        if not top:
            raise self._invalid()
        return "".join(out), i

    def _dollar(self, i: int, evaluate: bool) -> tuple[str, int]:
        s = self.text
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if nxt == "$":
            return "$", i + 2
        if nxt == "{":
            return self._braced(i + 2, evaluate)
        m = _NAME.match(s, i + 1)
        if m is None:
            return "$", i + 1
        return (self._get(m.group()) if evaluate else ""), m.end()

    def _get(self, name: str) -> str:
        value = self.lookup(name)
        if value is None:
            if name not in self.unset:
                self.unset.append(name)
            return ""
        return value

    def _braced(self, i: int, evaluate: bool) -> tuple[str, int]:
        s = self.text
        m = _NAME.match(s, i)
        if m is None:
            raise self._invalid()
        name, i = m.group(), m.end()
        if i < len(s) and s[i] == "}":
            return (self._get(name) if evaluate else ""), i + 1
        colon = s.startswith(":", i)
        op = s[i + 1 : i + 2] if colon else s[i : i + 1]
        if op not in ("-", "?", "+"):
            raise self._invalid()
        start = i + (2 if colon else 1)
        value = self.lookup(name) if evaluate else None
        is_set = value is not None
        has_value = is_set and value != ""
        present = has_value if colon else is_set
        if op == "-":
            word, end = self._run(start, top=False, evaluate=evaluate and not present)
            result = value if present else word
        elif op == "+":
            word, end = self._run(start, top=False, evaluate=evaluate and present)
            result = word if present else ""
        else:
            word, end = self._run(start, top=False, evaluate=evaluate and not present)
            if evaluate and not present:
                detail = f": {word}" if word else ""
                raise RequiredVariableError(f"required variable {name} is missing a value{detail}")
            result = value
        return (result or "") if evaluate else "", end + 1


def substitute(text: str, lookup: Lookup, unset: list[str] | None = None) -> str:
    """``text`` with every substitution applied; names not found are appended to ``unset``."""
    if "$" not in text:
        return text
    t = Template(text, lookup)
    result = t.substitute()
    if unset is not None:
        unset.extend(n for n in t.unset if n not in unset)
    return result


def _go_quote(text: str) -> str:
    """A string as Go's ``%#v`` prints it."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------
# Walking a file and casting (compose-go's interpolateTypeCastMapping)

_TRUE = ("y", "yes", "true", "on")
_FALSE = ("n", "no", "false", "off")


def _to_bool(value: str) -> Any:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidArgument(f"failed to cast to expected type: invalid boolean: {value}")


def _to_int(value: str) -> Any:
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidArgument(
            f'failed to cast to expected type: strconv.Atoi: parsing "{value}": invalid syntax'
        ) from None


def _to_float(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        raise InvalidArgument(
            f'failed to cast to expected type: strconv.ParseFloat: parsing "{value}": invalid syntax'
        ) from None


def _to_mode(value: str) -> Any:
    try:
        return int(value, 8) if value.startswith("0") else int(value, 10)
    except ValueError:
        raise InvalidArgument(f"failed to cast to expected type: invalid file mode: {value}") from None


_S = ("services", "*")
_CASTS: list[tuple[tuple[str, ...], Callable[[str], Any]]] = [
    ((*_S, "cpu_count"), _to_int),
    ((*_S, "cpu_percent"), _to_float),
    ((*_S, "cpu_period"), _to_int),
    ((*_S, "cpu_quota"), _to_int),
    ((*_S, "cpu_rt_period"), _to_int),
    ((*_S, "cpu_rt_runtime"), _to_int),
    ((*_S, "cpus"), _to_float),
    ((*_S, "cpu_shares"), _to_int),
    ((*_S, "init"), _to_bool),
    ((*_S, "deploy", "replicas"), _to_int),
    ((*_S, "deploy", "update_config", "parallelism"), _to_int),
    ((*_S, "deploy", "update_config", "max_failure_ratio"), _to_float),
    ((*_S, "deploy", "rollback_config", "parallelism"), _to_int),
    ((*_S, "deploy", "rollback_config", "max_failure_ratio"), _to_float),
    ((*_S, "deploy", "restart_policy", "max_attempts"), _to_int),
    ((*_S, "deploy", "placement", "max_replicas_per_node"), _to_int),
    ((*_S, "deploy", "resources", "limits", "pids"), _to_int),
    ((*_S, "healthcheck", "retries"), _to_int),
    ((*_S, "healthcheck", "disable"), _to_bool),
    ((*_S, "oom_kill_disable"), _to_bool),
    ((*_S, "oom_score_adj"), _to_int),
    ((*_S, "pids_limit"), _to_int),
    ((*_S, "ports", "[]", "target"), _to_int),
    ((*_S, "privileged"), _to_bool),
    ((*_S, "read_only"), _to_bool),
    ((*_S, "scale"), _to_int),
    ((*_S, "stdin_open"), _to_bool),
    ((*_S, "tty"), _to_bool),
    ((*_S, "attach"), _to_bool),
    ((*_S, "depends_on", "*", "required"), _to_bool),
    ((*_S, "depends_on", "*", "restart"), _to_bool),
    ((*_S, "env_file", "[]", "required"), _to_bool),
    ((*_S, "ulimits", "*"), _to_int),
    ((*_S, "ulimits", "*", "hard"), _to_int),
    ((*_S, "ulimits", "*", "soft"), _to_int),
    ((*_S, "volumes", "[]", "read_only"), _to_bool),
    ((*_S, "volumes", "[]", "volume", "nocopy"), _to_bool),
    ((*_S, "volumes", "[]", "bind", "create_host_path"), _to_bool),
    ((*_S, "volumes", "[]", "tmpfs", "mode"), _to_mode),
    ((*_S, "secrets", "[]", "mode"), _to_mode),
    ((*_S, "configs", "[]", "mode"), _to_mode),
    ((*_S, "build", "privileged"), _to_bool),
    ((*_S, "build", "no_cache"), _to_bool),
    ((*_S, "build", "pull"), _to_bool),
    (("networks", "*", "external"), _to_bool),
    (("networks", "*", "internal"), _to_bool),
    (("networks", "*", "attachable"), _to_bool),
    (("networks", "*", "enable_ipv4"), _to_bool),
    (("networks", "*", "enable_ipv6"), _to_bool),
    (("volumes", "*", "external"), _to_bool),
    (("secrets", "*", "external"), _to_bool),
    (("configs", "*", "external"), _to_bool),
]


def _cast_for(path: tuple[str, ...]) -> Callable[[str], Any] | None:
    for pattern, cast in _CASTS:
        if len(pattern) == len(path) and all(
            (p == "*" and not q.startswith("[")) or (p == "[]" and q.startswith("[")) or p == q
            for p, q in zip(pattern, path, strict=True)
        ):
            return cast
    return None


def format_path(path: tuple[str, ...]) -> str:
    """``services.web.ports[0]`` as compose prints a path (list items by index)."""
    out = ""
    for part in path:
        if part.startswith("["):
            out += "." + part[1:-1]
        else:
            out += ("." if out else "") + part
    return out


def interpolate(data: Any, env: Mapping[str, str], unset: list[str]) -> Any:
    """Substitute every string value in a parsed file (a copy), casting where compose casts."""

    def lookup(name: str) -> str | None:
        return env.get(name)

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, f"[{i}]")) for i, v in enumerate(value)]
        if isinstance(value, str):
            try:
                result: Any = substitute(value, lookup, unset)
            except TemplateError:
                raise InvalidArgument(
                    f"invalid interpolation format for {format_path(path)}.\n"
                    f"You may need to escape any $ with another $.\n{value}"
                ) from None
            except InvalidArgument as e:
                raise InvalidArgument(f"error while interpolating {format_path(path)}: {e}") from None
            cast = _cast_for(path)
            if cast is not None:
                try:
                    result = cast(result)
                except InvalidArgument as e:
                    raise InvalidArgument(f"error while interpolating {format_path(path)}: {e}") from None
            return result
        return value

    return walk(data, ())
