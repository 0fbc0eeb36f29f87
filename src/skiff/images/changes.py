"""Dockerfile instructions applied to an image config: ``import --change`` / ``commit --change``."""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import shlex
from collections.abc import Sequence

from skiff.errors import InvalidArgument
from skiff.types.image import ImageConfig

# What dockerd accepts in --change; any other real instruction is "not a valid change command".
_ALLOWED = {
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}
_KNOWN = _ALLOWED | {"ADD", "ARG", "COPY", "FROM", "HEALTHCHECK", "MAINTAINER", "RUN", "SHELL"}
_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?")


def _json_list(rest: str) -> list[str] | None:
    """Exec form: a JSON array of strings, else None (shell form), like the Dockerfile parser."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return value
    return None


def _command(rest: str, shell: tuple[str, ...] | None) -> tuple[str, ...]:
    exec_form = _json_list(rest)
    if exec_form is not None:
        return tuple(exec_form)
    return (*(shell or ("/bin/sh", "-c")), rest)


def _pairs(instruction: str, rest: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` or the legacy ``k v with spaces`` form (ENV and LABEL)."""
    try:
        words = shlex.split(rest)
    except ValueError as e:
        raise InvalidArgument(f"dockerfile parse error line 1: {instruction}: {e}") from None
    if not words:
        raise InvalidArgument(f"dockerfile parse error line 1: {instruction} requires at least one argument")
    if "=" not in words[0]:
        parts = rest.strip().split(None, 1)
        if len(parts) < 2:
            raise InvalidArgument(f"dockerfile parse error line 1: {instruction} must have two arguments")
        return [(parts[0], parts[1])]
    out: list[tuple[str, str]] = []
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise InvalidArgument(
                f"dockerfile parse error line 1: {instruction} names can not be blank"
                if not key
                else f"dockerfile parse error line 1: Syntax error - can't find = in {w!r}."
                " Must be of the form: name=value"
            )
        out.append((key, value))
    return out


def _ports(rest: str) -> list[str]:
    out: list[str] = []
    for word in rest.split():
        m = _PORT_RE.fullmatch(word)
        if m is None:
            raise InvalidArgument(f"invalid containerPort: {word}")
        start, end, proto = int(m.group(1)), int(m.group(2) or m.group(1)), m.group(3) or "tcp"
        if not 0 < start <= end <= 65535:
            raise InvalidArgument(f"invalid range specified for container port: {word}")
        out.extend(f"{p}/{proto}" for p in range(start, end + 1))
    return out


def _append_unique(existing: tuple[str, ...], new: Sequence[str]) -> tuple[str, ...]:
    seen = list(existing)
    for item in new:
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def apply_changes(config: ImageConfig, changes: Sequence[str]) -> ImageConfig:
    """Apply each change (one Dockerfile instruction per string) in order; returns a new config."""
    c = config
    cmd_set = False
    for change in changes:
        line = change.strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if not rest and "\t" in word:
            word, _, rest = word.partition("\t")
        instruction, rest = word.upper(), rest.strip()
        if instruction not in _KNOWN:
            raise InvalidArgument(f"dockerfile parse error line 1: unknown instruction: {word.upper()}")
        if instruction not in _ALLOWED:
            raise InvalidArgument(f"{instruction.lower()} is not a valid change command")
        if not rest:
            raise InvalidArgument(
                f"dockerfile parse error line 1: {instruction} requires at least one argument"
            )
        if instruction == "CMD":
            c = dataclasses.replace(c, cmd=_command(rest, c.shell))
            cmd_set = True
        elif instruction == "ENTRYPOINT":
            # As in a Dockerfile: a new ENTRYPOINT drops an inherited CMD, not one set just before.
            c = dataclasses.replace(c, entrypoint=_command(rest, c.shell), cmd=c.cmd if cmd_set else None)
        elif instruction == "ENV":
            env = list(c.env)
            for key, value in _pairs(instruction, rest):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            c = dataclasses.replace(c, env=tuple(env))
        elif instruction == "LABEL":
            labels = dict(c.labels)
            labels.update(_pairs(instruction, rest))
            c = dataclasses.replace(c, labels=labels)
        elif instruction == "EXPOSE":
            c = dataclasses.replace(c, exposed_ports=_append_unique(c.exposed_ports, _ports(rest)))
        elif instruction == "VOLUME":
            vols = _json_list(rest)
            new = vols if vols is not None else rest.split()
            if any(not v.strip() for v in new):
                raise InvalidArgument("VOLUME specified can not be an empty string")
            c = dataclasses.replace(c, volumes=_append_unique(c.volumes, new))
        elif instruction == "USER":
            c = dataclasses.replace(c, user=rest)
        elif instruction == "WORKDIR":
            c = dataclasses.replace(c, working_dir=posixpath.join(c.working_dir or "/", rest))
        elif instruction == "STOPSIGNAL":
            c = dataclasses.replace(c, stop_signal=rest)
        elif instruction == "ONBUILD":
            trigger = rest.split(None, 1)[0].upper()
            if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
                raise InvalidArgument(f"{trigger} isn't allowed as an ONBUILD trigger")
            c = dataclasses.replace(c, on_build=(*c.on_build, rest))
    return c
