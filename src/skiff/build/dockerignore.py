"""``.dockerignore``: Docker's reading rules and matching (``*``, ``?``, ``**``, ``!``, order).

Matching is docker-py's ``docker.utils.build.Pattern`` (a port of moby's ``fileutils``
patterns, already a dependency of the client): a path matches a pattern when it, or one of
its parent directories, does; the last matching pattern wins, so ``!`` exceptions after a
broader pattern re-include. Unlike docker-py's ``PatternMatcher`` nothing is added:
docker-py always keeps ``.dockerignore`` itself, while the daemon must see it as excluded
when the file says so (then the daemon removes it from the context, as dockerd does).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence

from docker.utils.build import Pattern, split_path


def read_patterns(text: str) -> list[str]:
    """Patterns from ``.dockerignore`` text (moby's ``dockerignore.ReadAll``)."""
    out: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.lstrip("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


class IgnoreMatcher:
    """Decides whether a context path (relative, ``/``-separated) is excluded."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [p for p in (Pattern(text) for text in patterns) if p.dirs]

    def matches(self, path: str) -> bool:
        """True if ``path`` is excluded by the patterns."""
        matched = False
        parent = os.path.dirname(path)
        parent_dirs = split_path(parent)
        for pattern in self.patterns:
            hit = pattern.match(path)
            if not hit and parent and len(pattern.dirs) <= len(parent_dirs):
                hit = pattern.match("/".join(parent_dirs[: len(pattern.dirs)]))
            if hit:
                matched = not pattern.exclusion
        return matched
