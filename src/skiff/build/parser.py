"""Dockerfile text -> a list of :class:`Node` (one per instruction), with line numbers.

This is the line level of Docker's parser: parser directives (``# escape=``, ``# syntax=``)
before anything else, comments, line continuations with the escape character (comment lines
and empty lines inside a continuation are skipped, as Docker does), leading ``--flag`` words,
and each instruction's argument form (JSON array or shell form, ``key=value`` pairs, ...).
Variables are *not* expanded here: that needs the build's environment (see ``shell.py``).
What each instruction means, and most errors about it, is ``instructions.py``'s job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from skiff.errors import InvalidArgument

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_BOM = "\ufeff"
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")
HEREDOC_MARKER = re.compile(r"(?<!<)<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2(?!<)")


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed: names the file, the line and what is wrong."""

    def __init__(self, message: str, line: int = 0, file: str = "Dockerfile") -> None:
        self.reason = message
        self.line = line
        self.file = file
        where = f" on line {line}" if line else ""
        super().__init__(f"dockerfile parse error{where} of {file}: {message}")

    def located(self, line: int, file: str) -> DockerfileError:
        """The same error with a line (kept when it already has one) and a file name."""
        return DockerfileError(self.reason, self.line or line, file)


@dataclass(frozen=True)
class Heredoc:
    """A here-document after RUN, COPY or ADD (BuildKit's syntax, accepted here too).

    ``name`` is the delimiter; ``content`` the lines up to it (with their newlines; leading
    tabs removed for ``<<-``); ``expand`` is False when the delimiter was quoted (no variable
    substitution in COPY's inline files); ``raw`` is the text as written, delimiter line
    included, for a shell to read itself.
    """

    name: str
    content: str
    expand: bool = True
    raw: str = ""


@dataclass(frozen=True)
class Node:
    """One instruction as written.

    ``args`` depends on the instruction: the JSON array's strings (``json`` True), the words
    of a whitespace-separated list, the rest of the line as one string, or for ENV and LABEL
    alternating keys and values. ``original`` is the instruction text after continuation
    lines are joined (what ``Step n/m :`` prints).
    """

    keyword: str  # upper case, as written otherwise ("RUNN" stays "RUNN")
    args: tuple[str, ...]
    flags: tuple[str, ...] = ()
    json: bool = False
    original: str = ""
    line: int = 0
    end_line: int = 0
    sub: Node | None = None  # the instruction inside ONBUILD
    legacy_pairs: bool = False  # ENV/LABEL written as "KEY value with spaces"
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True)
class ParsedDockerfile:
    """The instructions in order, the escape character in effect and parser warnings."""

    nodes: tuple[Node, ...]
    escape: str = "\\"
    warnings: tuple[str, ...] = ()


class _Directives:
    def __init__(self) -> None:
        self.escape = "\\"
        self.continuation = re.compile(r"\\[ \t]*$")
        self.done = False
        self.seen: set[str] = set()

    def set_escape(self, value: str) -> None:
        if value not in ("`", "\\"):
            raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\")
        self.escape = value
        self.continuation = re.compile(re.escape(value) + r"[ \t]*$")

    def possible_directive(self, line: str) -> None:
        if self.done:
            return
        match = _DIRECTIVE.match(line)
        if match is None:
            self.done = True
            return
        key = match.group(1).lower()
        if key not in _KNOWN_DIRECTIVES:
            self.done = True
            return
        if key in self.seen:
            raise DockerfileError(f"only one {key} parser directive can be used")
        self.seen.add(key)
        if key == "escape":
            self.set_escape(match.group(2))


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _strip_comment(line: str) -> str:
    return "" if line.startswith("#") else line


def _continued(line: str, d: _Directives) -> tuple[str, bool]:
    """(line without a trailing escape, whether the instruction goes on)."""
    if d.continuation.search(line):
        return d.continuation.sub("", line), True
    return line, False


def parse(text: str, file: str = "Dockerfile") -> ParsedDockerfile:
    """Split ``text`` into instruction nodes; :class:`DockerfileError` names file and line."""
    d = _Directives()
    lines = text.split("\n")
    if lines and lines[0].startswith(_BOM):
        lines[0] = lines[0][1:]
    nodes: list[Node] = []
    warnings: list[str] = []
    i = 0
    while i < len(lines):
        raw = lines[i].rstrip("\r")
        i += 1
        start = i
        try:
            stripped = raw.lstrip()
            d.possible_directive(stripped)
        except DockerfileError as exc:
            raise exc.located(start, file) from None
        line, going_on = _continued(_strip_comment(stripped), d)
        if not going_on and line == "":
            continue
        empty_continuation = False
        while going_on and i < len(lines):
            raw = lines[i].rstrip("\r")
            i += 1
            if _is_comment(raw):
                continue
            if raw.strip() == "":
                empty_continuation = True
                continue
            part, going_on = _continued(raw, d)
            line += part
        if empty_continuation:
            warnings.append(f"[WARNING]: Empty continuation line found in:\n    {line}")
        heredocs: list[Heredoc] = []
        keyword = line.split(None, 1)[0].upper() if line.strip() else ""
        if keyword in _HEREDOC_KEYWORDS:
            for marker in HEREDOC_MARKER.finditer(line):
                chomp, quote, name = marker.group(1), marker.group(2), marker.group(3)
                body: list[str] = []
                raw_lines: list[str] = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError(f"unterminated heredoc {name}", start, file)
                    text_line = lines[i].rstrip("\r")
                    i += 1
                    raw_lines.append(text_line)
                    candidate = text_line.lstrip("\t") if chomp else text_line
                    if candidate == name:
                        break
                    body.append(candidate + "\n")
                heredocs.append(Heredoc(name, "".join(body), not quote, "\n".join(raw_lines)))
        try:
            node = _node(line, d, start, i)
        except DockerfileError as exc:
            raise exc.located(start, file) from None
        if heredocs:
            node = _replace(node, heredocs=tuple(heredocs))
        nodes.append(node)
    if not nodes:
        raise DockerfileError("file with no instructions", 0, file)
    if warnings:
        warnings.append("[WARNING]: Empty continuation lines will become errors in a future release.")
    return ParsedDockerfile(nodes=tuple(nodes), escape=d.escape, warnings=tuple(warnings))


def parse_line(line: str, escape: str = "\\", line_no: int = 0, file: str = "Dockerfile") -> Node:
    """One instruction on its own (ONBUILD triggers, ``--change`` values)."""
    d = _Directives()
    d.set_escape(escape)
    try:
        return _node(line, d, line_no, line_no)
    except DockerfileError as exc:
        raise exc.located(line_no, file) from None


def _node(line: str, d: _Directives, start: int, end: int) -> Node:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword = parts[0].upper()
    rest = ""
    flags: tuple[str, ...] = ()
    if len(parts) == 2:
        rest, flags = _extract_flags(parts[1])
        rest = rest.strip()
    base = Node(keyword=keyword, args=(), flags=flags, original=line.strip(), line=start, end_line=end)
    parser = _DISPATCH.get(keyword)
    if parser is None:
        return base  # unknown: instructions.py reports it with the line number
    if keyword == "ONBUILD":
        if not rest:
            return base
        return _replace(base, sub=_node(rest, d, start, end))
    return parser(base, rest, d)


def _replace(node: Node, **changes: object) -> Node:
    from dataclasses import replace

    return replace(node, **changes)  # type: ignore[arg-type]


def _extract_flags(line: str) -> tuple[str, tuple[str, ...]]:
    """Leading ``--name[=value]`` words (quotes allowed in them); returns (rest, flags)."""
    words: list[str] = []
    pos = 0
    n = len(line)
    while pos < n:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", tuple(words)
        if not line.startswith("--", pos):
            return line[pos:], tuple(words)
        word: list[str] = []
        quote = ""
        blank_ok = False
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
                elif ch != "\\":
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return line[pos:], tuple(words)
        if blank_ok or text:
            words.append(text)
    return "", tuple(words)


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes; quotes and escapes are kept for the expander."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = False
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos < n:
        ch = rest[pos]
        if not in_word:
            if ch.isspace():
                pos += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        elif ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _json_array(rest: str) -> list[str] | None:
    """The strings of a JSON array, None if ``rest`` is not one (then it is shell form)."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise DockerfileError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _maybe_json(node: Node, rest: str, d: _Directives) -> Node:
    if not rest:
        return node
    array = _json_array(rest)
    if array is not None:
        return _replace(node, args=tuple(array), json=True)
    return _replace(node, args=(rest,))


def _maybe_json_list(node: Node, rest: str, d: _Directives) -> Node:
    array = _json_array(rest)
    if array is not None:
        return _replace(node, args=tuple(array), json=True)
    return _whitespace_list(node, rest, d)


def _whitespace_list(node: Node, rest: str, d: _Directives) -> Node:
    if not rest:
        return node
    return _replace(node, args=tuple(_WHITESPACE.split(rest)))


def _string(node: Node, rest: str, d: _Directives) -> Node:
    return _replace(node, args=(rest,)) if rest else node


def _name_or_name_val(node: Node, rest: str, d: _Directives) -> Node:
    return _replace(node, args=tuple(parse_words(rest, d.escape)))


def _name_val(node: Node, rest: str, d: _Directives) -> Node:
    words = parse_words(rest, d.escape)
    if not words:
        return node
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{node.keyword} must have two arguments")
        return _replace(node, args=(parts[0], parts[1]), legacy_pairs=True)
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(
                f"Syntax error - can't find = in {json.dumps(word)}. Must be of the form: name=value"
            )
        key, _, value = word.partition("=")
        args += [key, value]
    return _replace(node, args=tuple(args))


def _health(node: Node, rest: str, d: _Directives) -> Node:
    parts = rest.split(None, 1)
    if not parts:
        return node
    kind = parts[0]
    cmd = _maybe_json(node, parts[1].strip() if len(parts) > 1 else "", d)
    return _replace(node, args=(kind, *cmd.args), json=cmd.json)


_DISPATCH = {
    "ADD": _maybe_json_list,
    "ARG": _name_or_name_val,
    "CMD": _maybe_json,
    "COPY": _maybe_json_list,
    "ENTRYPOINT": _maybe_json,
    "ENV": _name_val,
    "EXPOSE": _whitespace_list,
    "FROM": _whitespace_list,
    "HEALTHCHECK": _health,
    "LABEL": _name_val,
    "MAINTAINER": _string,
    "ONBUILD": _string,  # handled in _node
    "RUN": _maybe_json,
    "SHELL": _maybe_json,
    "STOPSIGNAL": _string,
    "USER": _string,
    "VOLUME": _maybe_json_list,
    "WORKDIR": _string,
}
