"""Variable substitution and word splitting in Dockerfile arguments (Docker's shell lexer).

What is supported, as in Docker's ``shell.Lex``: ``$v``, ``${v}``, ``${v:-word}``,
``${v-word}``, ``${v:+word}``, ``${v+word}``, ``${v:?msg}``, ``${v?msg}``, prefix and suffix
removal (``${v#pat}``, ``${v##pat}``, ``${v%pat}``, ``${v%%pat}``), replacement
(``${v/pat/repl}``, ``${v//pat/repl}``), single and double quotes, and the escape character
(``\\`` or the ``# escape=`` directive's backtick) before ``$``, quotes and itself.

:func:`ShellLex.process_word` gives one string (quotes removed, variables expanded);
:func:`ShellLex.process_words` splits the result into words the way Docker does *after*
expansion, so ``$v`` holding spaces yields several words while ``"$v"`` stays one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from skiff.errors import InvalidArgument

_SPECIAL_PARAMS = "@*#?-$!0"


class SubstitutionError(InvalidArgument):
    """A syntax error inside a ``${...}`` expression, or ``${v?message}`` on an unset variable."""


class _Words:
    """Docker's word accumulator: spaces from expansions split words, quoted text never does."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Processor:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_escapes = False

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def process_until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to ``stop`` ("" = end of input); returns (text, words)."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._process_until(stop)
        finally:
            self.raw_escapes = saved

    def _process_until(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch == "$":
                value = self.dollar()
                out.append(value)
                words.add_string(value)
            elif ch == "'":
                value = self.single_quote()
                out.append(value)
                words.add_raw_string(value)
            elif ch == '"':
                value = self.double_quote()
                out.append(value)
                words.add_raw_string(value)
            else:
                ch = self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        out.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise SubstitutionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise SubstitutionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise SubstitutionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue  # an escape at the very end is dropped
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        ch = self.peek()
        if ch.isdigit():
            while self.peek().isdigit():
                self.next()
            return self.text[start : self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        while True:
            ch = self.peek()
            if not ch or not (ch.isalnum() or ch == "_"):
                break
            self.next()
        return self.text[start : self.pos]

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.lookup(name)[0]
        self.next()
        first = self.peek()
        if not first:
            raise SubstitutionError("syntax error: missing '}'")
        if first in "{}:":
            raise SubstitutionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if not ch:
            raise SubstitutionError("syntax error: missing '}'")
        if ch == "}":
            return self.lookup(name)[0]
        if ch in (":", "+", "-", "?", "#", "%"):
            null_is_unset = False
            modifier = ch
            if ch == ":":
                null_is_unset = True
                ch = self.next()
                modifier += ch
            if ch not in ("+", "-", "?", "#", "%"):
                raise SubstitutionError(f"unsupported modifier ({modifier}) in substitution")
            try:
                word, _ = self.process_until("}", ch in "#%")
            except SubstitutionError:
                if not self.peek():
                    raise SubstitutionError("syntax error: missing '}'") from None
                raise
            value, is_set = self.lookup(name)
            unset = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if unset else value
            if ch == "+":
                return "" if unset else word
            if ch == "?":
                if not is_set:
                    raise SubstitutionError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise SubstitutionError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            return _trim_suffix(word, value, greedy) if ch == "%" else _trim_prefix(word, value, greedy)
        if ch == "/":
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.process_until("/", True)
                replacement, _ = self.process_until("}", True)
            except SubstitutionError:
                if not self.peek():
                    raise SubstitutionError("syntax error: missing '}'") from None
                raise
            value, _ = self.lookup(name)
            regex = _pattern_regex(pattern, greedy=True)
            count = 0 if replace_all else 1
            return regex.sub(lambda _m: replacement, value, count=count)
        raise SubstitutionError(f"unsupported modifier ({ch}) in substitution")


def _pattern_regex(pattern: str, greedy: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (``*``, ``?``, ``\\`` escapes; no brackets) as a regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue
            if i >= len(pattern) or pattern[i] not in "*?\\":
                bad = pattern[i] if i < len(pattern) else ""
                raise SubstitutionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{bad}'"
                )
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    regex = _pattern_regex(pattern, greedy)
    ends = range(len(value), -1, -1) if greedy else range(len(value) + 1)
    for end in ends:
        if regex.fullmatch(value, 0, end):
            return value[end:]
    return value


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    regex = _pattern_regex(pattern, greedy)
    starts = range(len(value) + 1) if greedy else range(len(value), -1, -1)
    for start in starts:
        if regex.fullmatch(value, start):
            return value[:start]
    return value


class ShellLex:
    """Expands variables in Dockerfile arguments with a given escape character."""

    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def process_word(self, text: str, env: Mapping[str, str]) -> str:
        """``text`` with quotes removed and variables expanded."""
        return self._run(text, env)[0]

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """``text`` expanded and split into words (quoted parts never split)."""
        return self._run(text, env)[1]

    def expand_document(self, text: str, env: Mapping[str, str]) -> str:
        """A here-document's text expanded as a shell does: ``$v`` and ``${v...}`` replaced,
        quotes kept, the escape character only escaping ``$``, itself and a backquote."""
        out: list[str] = []
        processor = _Processor(text, env, self.escape)
        try:
            while processor.pos < len(text):
                ch = processor.peek()
                if ch == "$":
                    out.append(processor.dollar())
                    continue
                processor.next()
                if ch == self.escape and processor.peek() in ("$", self.escape, "`") and processor.peek():
                    ch = processor.next()
                out.append(ch)
        except SubstitutionError as exc:
            raise SubstitutionError(f"failed to process here-document: {exc.message}") from None
        return "".join(out)

    def _run(self, text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        try:
            return _Processor(text, env, self.escape).process_until("", False)
        except SubstitutionError as exc:
            raise SubstitutionError(f"failed to process {json.dumps(text)}: {exc.message}") from None
