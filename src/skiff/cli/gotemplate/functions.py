"""Template functions: Go's builtins and the ones docker adds (``json``, ``join``, ``pad``...)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def go_str(value: Any) -> str:
    """``fmt.Sprint(value)``: how Go prints a value in a template."""
    if value is None:
        return "<nil>"
    if type(value).__name__ == "_Missing":
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = " ".join(f"{go_str(k)}:{go_str(value[k])}" for k in sorted(value, key=str))
        return f"map[{inner}]"
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    return re.sub(r"e([+-])?0*(\d\d)", lambda m: f"e{m.group(1) or '+'}{m.group(2)}", text)


def truth(value: Any) -> bool:
    """Go template truth: false, 0, nil, empty string/slice/map are false."""
    if value is None or type(value).__name__ == "_Missing":
        return False
    if isinstance(value, bool | int | float | str | Sequence | Mapping):
        return bool(value)
    return True


def to_json(value: Any) -> str:
    """docker's ``json``: compact, no HTML escaping."""
    if type(value).__name__ == "_Missing":
        value = None
    to_dict = getattr(value, "to_json", None)
    if callable(to_dict):
        value = to_dict()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if value is None:
            raise ValueError("index of untyped nil")
        value = value.get(key) if isinstance(value, Mapping) else value[int(key)]
    return value


def _len(value: Any) -> int:
    if value is None or type(value).__name__ == "_Missing":
        raise ValueError("len of nil pointer")
    return len(value)


def _eq(a: Any, *others: Any) -> bool:
    return any(a == b for b in others)


def _and(*args: Any) -> Any:
    for a in args:
        if not truth(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if truth(a):
            return a
    return args[-1]


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the common verbs (%s %v %d %q %t %f %x %%)."""
    it = iter(args)
    out: list[str] = []
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2) or "", m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        try:
            arg = next(it)
        except StopIteration:
            out.append(f"%!{verb}(MISSING)")
            continue
        spec = f"%{flags}{width}" + (f".{prec}" if prec is not None else "")
        if verb in "sv":
            out.append((spec + "s") % go_str(arg))
        elif verb == "q":
            out.append((spec + "s") % json.dumps(go_str(arg), ensure_ascii=False))
        elif verb == "t":
            out.append((spec + "s") % go_str(bool(arg)))
        elif verb in "dxXobfeEgG":
            out.append((spec + verb) % arg)
        else:
            out.append(f"%!{verb}({go_str(arg)})")
    out.append(fmt[pos:])
    return "".join(out)


def _print(*args: Any) -> str:
    # Go's Sprint puts spaces between operands when neither is a string.
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(a)
    return out


def _slice(value: Any, *idx: int) -> Any:
    if len(idx) == 0:
        return value
    if len(idx) == 1:
        return value[idx[0] :]
    return value[idx[0] : idx[1]]


def _split(s: str, sep: str) -> list[str]:
    return s.split(sep) if sep else list(s)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # Go builtins
    "and": _and,
    "or": _or,
    "not": lambda a: not truth(a),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "printf": sprintf,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    # docker's additions (cli/templates/templates.go)
    "json": to_json,
    "join": lambda items, sep: sep.join(go_str(i) for i in (items or [])),
    "split": _split,
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "truncate": lambda s, n: go_str(s)[: int(n)],
    "pad": lambda s, pre, post: " " * int(pre) + go_str(s) + " " * int(post),
}
