"""Split a template into text and actions, and actions into tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass

from skiff.errors import InvalidArgument


class TemplateSyntaxError(InvalidArgument):
    """The template text is not valid Go template syntax."""


@dataclass(frozen=True)
class Token:
    """One token inside an action: kind is field|var|ident|string|number|bool|nil|char|punct."""

    kind: str
    value: str


@dataclass(frozen=True)
class Chunk:
    """Either literal text (``is_action`` False) or the tokens of one ``{{ }}`` action."""

    is_action: bool
    text: str = ""
    tokens: tuple[Token, ...] = ()


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<punct>:=|[()|=,])
    """,
    re.VERBOSE,
)


def _tokenize(action: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(action):
        m = _TOKEN.match(action, pos)
        if not m:
            raise TemplateSyntaxError(f"template: unexpected {action[pos]!r} in command {action.strip()!r}")
        kind = m.lastgroup or ""
        text = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "raw":
            tokens.append(Token("string", text[1:-1]))
        elif kind == "string":
            tokens.append(Token("string", _unquote(text)))
        elif kind == "ident" and text in ("true", "false"):
            tokens.append(Token("bool", text))
        elif kind == "ident" and text == "nil":
            tokens.append(Token("nil", text))
        else:
            tokens.append(Token(kind, text))
    return tuple(tokens)


def _unquote(text: str) -> str:
    # Go's interpreted string escapes are close enough to Python's unicode_escape for
    # the ASCII escapes templates use (\n, \t, \", \\).
    body = text[1:-1]
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def lex(source: str) -> list[Chunk]:
    """Text and action chunks, with ``{{-`` / ``-}}`` whitespace trimming applied."""
    chunks: list[Chunk] = []
    pos = 0
    trim_next = False
    while True:
        start = source.find("{{", pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if trim_next:
            text = text.lstrip()
        if start < 0:
            if text:
                chunks.append(Chunk(False, text))
            return chunks
        inner_start = start + 2
        if (
            source.startswith("- ", inner_start)
            or source.startswith("-\t", inner_start)
            or (source.startswith("-\n", inner_start))
        ):
            text = text.rstrip()
            inner_start += 1
        if text:
            chunks.append(Chunk(False, text))
        end = _find_close(source, inner_start)
        inner = source[inner_start:end]
        trim_next = False
        if inner.endswith(" -") or inner.endswith("\t-") or inner.endswith("\n-"):
            inner = inner[:-1]
            trim_next = True
        pos = end + 2
        stripped = inner.strip()
        if stripped.startswith("/*"):
            if not stripped.endswith("*/"):
                raise TemplateSyntaxError("template: unclosed comment")
            continue
        chunks.append(Chunk(True, text=stripped, tokens=_tokenize(inner)))


def _find_close(source: str, pos: int) -> int:
    """Index of the ``}}`` closing an action, skipping quoted strings."""
    i = pos
    while i < len(source):
        ch = source[i]
        if ch in "\"`'":
            j = i + 1
            while j < len(source) and source[j] != ch:
                j += 2 if ch != "`" and source[j] == "\\" else 1
            i = j + 1
            continue
        if source.startswith("}}", i):
            return i
        i += 1
    raise TemplateSyntaxError("template: unclosed action")
