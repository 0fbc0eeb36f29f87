"""Go's text/tabwriter as docker configures it (minwidth 10, padding 3) and --format dispatch."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from skiff.cli.gotemplate import Template


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells; the last cell of a line is never padded (as tabwriter)."""
    lines = text.split("\n")
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "\n".join(out)


_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")


class HeaderContext:
    """Dot for rendering a ``table`` header: every field renders as its column title.

    docker renders the header by running the same template against a context whose
    fields return titles; ``{{.Label "x"}}`` still works because titles are callable.
    """

    def __init__(self, titles: dict[str, str]) -> None:
        self._titles = titles

    def template_field(self, name: str) -> Any:
        title = self._titles.get(name) or _default_title(name)
        return _Title(title)


class _Title(str):
    """A column title that may also be "called" like a method (``.Label "k"``)."""

    def __call__(self, *args: Any) -> str:
        return str(self)


def _default_title(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()


def render_rows(
    fmt: str,
    rows: Sequence[Any],
    titles: dict[str, str],
    default_table: str,
    raw_json: Callable[[Any], Any] | None = None,
) -> str:
    """Render rows like docker's formatter: ``table ...``, ``table``, ``json`` or a plain template.

    Returns the text to print, without the final newline.
    """
    fmt = fmt or "table"
    if fmt == "json":
        return "\n".join(
            json.dumps(raw_json(r) if raw_json else r.to_json(), separators=(",", ":")) for r in rows
        )
    if fmt == "table":
        fmt = default_table
    is_table = fmt.startswith("table")
    if is_table:
        fmt = fmt[len("table") :].lstrip()
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    template = Template(fmt)
    lines = [template.execute(r) for r in rows]
    if not is_table:
        return "\n".join(lines)
    header = template.execute(HeaderContext(titles))
    return tabwrite("\n".join([header, *lines]))


def single(fmt: str, value: Any) -> str:
    """``-f``/``--format`` on one object (inspect, version, info); ``json`` dumps it."""
    if fmt == "json":
        return json.dumps(value, separators=(",", ":"))
    return Template(fmt.replace("\\t", "\t").replace("\\n", "\n")).execute(value)
