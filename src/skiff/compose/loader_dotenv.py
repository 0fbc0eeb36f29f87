"""Compose's ``.env`` / ``env_file`` grammar (compose-go's ``dotenv`` package).

- ``KEY=VALUE``, ``KEY: VALUE`` and ``export KEY=VALUE``; blank lines and ``#`` lines skipped.
- A name is letters, digits, ``_ . - [ ]``; a line with only a name takes the value from
  the lookup (the environment) and is left out when the lookup has none.
- Unquoted values end at the line's end, lose a `` #...`` comment and trailing space, and
  are interpolated (``${V:-d}`` and friends, see ``loader_interpolate``).
- ``'single'`` quotes are literal. ``"double"`` quotes may span lines, understand
  ``\\n \\t \\" \\\\ \\$`` escapes and are interpolated.
- Interpolation sees the lookup first (the process environment), then the names defined
  earlier in the same file.

python-dotenv is close but lacks ``${V:?e}``/``${V:+r}``, the ``KEY: VALUE`` form and
compose's escapes, and a file must parse the same in skiff and in docker compose.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from skiff.compose.loader_interpolate import TemplateError, substitute
from skiff.errors import InvalidArgument

_EXPORT = re.compile(r"^export\s+")
_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0\d{0,3})')
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "c": "\\c",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
}


def _expand_escapes(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        seq = m.group()
        if seq == "\\$":
            return "$$"  # a literal dollar for the interpolation that follows
        if seq.startswith("\\0"):
            digits = seq[2:]
            return chr(int(digits, 8)) if digits else "\0"
        return _SIMPLE_ESCAPES[seq[1]]

    return _ESCAPE.sub(one, text)


def parse_dotenv(
    text: str, lookup: Callable[[str], str | None] | None = None, source: str = ".env"
) -> dict[str, str]:
    """The variables a ``.env``-format text defines, in order."""
    env: dict[str, str] = {}
    outer = lookup or (lambda _name: None)

    def resolve(name: str) -> str | None:
        value = outer(name)
        return value if value is not None else env.get(name)

    def expand(value: str, line: int) -> str:
        try:
            return substitute(value, resolve)
        except TemplateError as e:
            raise InvalidArgument(f"{source}: line {line}: {e}") from None
        except InvalidArgument as e:
            raise InvalidArgument(f"{source}: line {line}: {e}") from None

    src = text.replace("\r\n", "\n")
    line = 1
    while src:
        # Skip blank lines and comment lines.
        stripped = src.lstrip(" \t\r\n")
        line += src[: len(src) - len(stripped)].count("\n")
        src = stripped
        if not src:
            break
        if src.startswith("#"):
            _, _, src = src.partition("\n")
            line += 1
            continue
        src = _EXPORT.sub("", src, count=1)
        key_end = None
        for i, ch in enumerate(src):
            if ch in " \t":
                continue
            if ch in "=:\n":
                key_end = i
                break
            if ch.isalnum() or ch in "_.-[]":
                continue
            first = src.split("\n", 1)[0]
            raise InvalidArgument(
                f'{source}: line {line}: unexpected character "{ch}" in variable name "{first}"'
            )
        if key_end is None:  # the last line: a bare name without a newline
            key_end = len(src)
        key = src[:key_end].strip()
        sep = src[key_end : key_end + 1]
        if sep in ("\n", ""):
            if " " in key or "\t" in key:
                raise InvalidArgument(
                    f'{source}: line {line}: unexpected character " " in variable name "{key}"'
                )
            inherited = outer(key)
            if inherited is not None:
                env[key] = inherited
            src = src[key_end + 1 :]
            line += 1
            continue
        if " " in key or "\t" in key:
            raise InvalidArgument(f'{source}: line {line}: unexpected character " " in variable name "{key}"')
        rest = src[key_end + 1 :].lstrip(" \t")
        value, src, consumed_lines = _value(rest, line, source)
        start_line = line
        line += consumed_lines
        if value[1] == "'":
            env[key] = value[0]
        elif value[1] == '"':
            env[key] = expand(_expand_escapes(value[0]), start_line)
        else:
            env[key] = expand(value[0], start_line)
    return env


def _value(src: str, line: int, source: str) -> tuple[tuple[str, str], str, int]:
    """(value, quote) and the text after it, and how many newlines were consumed."""
    quote = src[:1]
    if quote not in ("'", '"'):
        value, nl, rest = src.partition("\n")
        value = value.split(" #", 1)[0].rstrip()
        return (value, ""), rest, 1 if nl else 0
    escaped = False
    for i in range(1, len(src)):
        ch = src[i]
        if ch != quote:
            escaped = not escaped and ch == "\\"
            continue
        if escaped:
            escaped = False
            continue
        value = src[1:i]
        rest = src[i + 1 :]
        # Anything after the closing quote up to the line's end is ignored (comments).
        _, nl, rest = rest.partition("\n")
        return (value, quote), rest, value.count("\n") + (1 if nl else 0)
    first = src.split("\n", 1)[0]
    raise InvalidArgument(f"{source}: line {line}: unterminated quoted value {first}")


def read_dotenv(path: Path, lookup: Callable[[str], str | None] | None = None) -> dict[str, str]:
    """Parse a ``.env``-format file; a read error names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"{path}: not UTF-8 text: {e}") from None
    except FileNotFoundError:
        raise InvalidArgument(f"env file {path} not found: stat {path}: no such file or directory") from None
    except OSError as e:
        raise InvalidArgument(f"failed to read {path}: {e.strerror}") from None
    return parse_dotenv(text, lookup, str(path))
