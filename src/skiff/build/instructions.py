"""Parsed nodes -> typed instructions grouped into build stages, with Docker's errors.

Values stay as written (variables unexpanded): expansion needs the environment of the
moment the instruction runs, which only the builder knows. What *can* be checked without
it is checked here, with the line number: unknown instructions and flags, argument counts,
forms (``SHELL`` must be JSON), stage names, HEALTHCHECK durations, ONBUILD triggers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from skiff.build.parser import DockerfileError, Node, ParsedDockerfile, parse, parse_line

DEFAULT_SHELL = ("/bin/sh", "-c")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_DURATION_NUMBER = re.compile(r"\d*\.?\d*")
_DURATION_UNIT = re.compile(r"[^0-9.]+")  # Go: a unit runs up to the next digit or dot
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNITS["h"] = 3600 * 10**9


@dataclass(frozen=True)
class Instruction:
    """Base of every instruction: the node keeps the keyword, text and line for messages."""

    node: Node

    @property
    def keyword(self) -> str:
        return self.node.keyword

    @property
    def text(self) -> str:
        return self.node.original

    @property
    def line(self) -> int:
        return self.node.line


@dataclass(frozen=True)
class From(Instruction):
    base: str
    stage_name: str = ""
    platform: str = ""


@dataclass(frozen=True)
class Command(Instruction):
    """RUN, CMD or ENTRYPOINT: exec form (``shell_form`` False) or one shell string."""

    args: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Shell(Instruction):
    shell: tuple[str, ...]


@dataclass(frozen=True)
class KeyValues(Instruction):
    """ENV or LABEL: (key, value) pairs as written."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Arg(Instruction):
    """ARG: names with an optional default (None: no default)."""

    args: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Words(Instruction):
    """EXPOSE, VOLUME: a list of words."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class Value(Instruction):
    """MAINTAINER, USER, WORKDIR, STOPSIGNAL: one string."""

    value: str


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """HEALTHCHECK: ``test`` is Docker's form (["NONE"], ["CMD", ..], ["CMD-SHELL", cmd]); ns."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Onbuild(Instruction):
    """ONBUILD: the trigger's text, stored in the image and run by child builds."""

    trigger: str


@dataclass(frozen=True)
class Copy(Instruction):
    """COPY or ADD (``add``): sources, destination and flags, unexpanded."""

    sources: tuple[str, ...]
    dest: str
    add: bool = False
    from_: str = ""
    chown: str = ""
    chmod: str = ""


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and the instructions after it."""

    from_: From
    index: int
    instructions: tuple[Instruction, ...] = ()

    @property
    def name(self) -> str:
        return self.from_.stage_name


@dataclass(frozen=True)
class Dockerfile:
    """ARGs before the first FROM, the stages, the escape character and parser warnings."""

    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    escape: str = "\\"
    warnings: tuple[str, ...] = field(default=())

    def stage_index(self, name: str) -> int | None:
        """Index of the stage called ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for stage in self.stages:
            if stage.name and stage.name == lowered:
                return stage.index
        return None


def parse_dockerfile(text: str, file: str = "Dockerfile") -> Dockerfile:
    """Parse and check a whole Dockerfile."""
    parsed: ParsedDockerfile = parse(text, file)
    meta: list[Arg] = []
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    current_from: From | None = None
    for node in parsed.nodes:
        try:
            instruction = to_instruction(node)
        except DockerfileError as exc:
            raise exc.located(node.line, file) from None
        if isinstance(instruction, From):
            if current_from is not None and current is not None:
                stages.append(Stage(current_from, len(stages), tuple(current)))
            current_from, current = instruction, []
            continue
        if current is None:
            if isinstance(instruction, Arg):
                meta.append(instruction)
                continue
            raise DockerfileError("no build stage in current context", node.line, file)
        current.append(instruction)
    if current_from is None or current is None:
        raise DockerfileError("no build stage in current context", parsed.nodes[-1].line, file)
    stages.append(Stage(current_from, len(stages), tuple(current)))
    seen: set[str] = set()
    for stage in stages:
        if stage.name:
            if stage.name in seen:
                raise DockerfileError(f"duplicate name {stage.name}", stage.from_.line, file)
            seen.add(stage.name)
    return Dockerfile(tuple(meta), tuple(stages), parsed.escape, parsed.warnings)


def parse_trigger(trigger: str, escape: str = "\\") -> Instruction:
    """An ONBUILD trigger stored in a parent image, as an instruction."""
    return to_instruction(parse_line(trigger, escape, 0, "ONBUILD trigger"))


# -- one node -> one instruction -------------------------------------------------------------


def _flags(node: Node, allowed: dict[str, str]) -> dict[str, str]:
    """``--name=value`` / ``--name`` words checked against ``allowed`` (name -> "string"|"bool")."""
    out: dict[str, str] = {}
    for word in node.flags:
        if not word.startswith("--"):
            raise DockerfileError(f"Arg should start with -- : {word}")
        if word == "--":
            break
        name, has_value, value = word[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            raise DockerfileError(f"Unknown flag: {name}")
        if name in out:
            raise DockerfileError(f"Duplicate flag specified: {name}")
        if kind == "bool":
            if has_value and value.lower() not in ("true", "false"):
                raise DockerfileError(f"expecting boolean value for flag {name}, not: {value}")
            out[name] = "true" if not has_value else value.lower()
        else:
            if not has_value:
                raise DockerfileError(f"Missing a value on flag: {name}")
            out[name] = value
    return out


def _at_least_one(node: Node) -> None:
    if not node.args:
        raise DockerfileError(f"{node.keyword} requires at least one argument")


def _exactly_one(node: Node) -> None:
    if len(node.args) != 1:
        raise DockerfileError(f"{node.keyword} requires exactly one argument")


def parse_duration(text: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``1.5h``, ``0``) in nanoseconds, with Go's errors."""
    if text == "":
        return 0  # a flag given empty means "not set", as in Docker
    rest = text
    sign = 1
    if rest[0] in "+-":
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise DockerfileError(f'time: invalid duration "{text}"')
    total = 0.0
    while rest:
        number = _DURATION_NUMBER.match(rest)
        if number is None or number.group(0) in ("", "."):
            raise DockerfileError(f'time: invalid duration "{text}"')
        rest = rest[number.end() :]
        unit = _DURATION_UNIT.match(rest)
        name = unit.group(0) if unit else ""
        if not name:
            raise DockerfileError(f'time: missing unit in duration "{text}"')
        if name not in _UNITS:
            raise DockerfileError(f'time: unknown unit "{name}" in duration "{text}"')
        total += float(number.group(0)) * _UNITS[name]
        rest = rest[len(name) :]
    return sign * int(total)


def _interval(flags: dict[str, str], name: str) -> int:
    value = flags.get(name, "")
    ns = parse_duration(value)
    if ns < 0:
        raise DockerfileError(f"Interval {json.dumps(name)} cannot be negative")
    if 0 < ns < 1_000_000:
        raise DockerfileError(f"Interval {json.dumps(name)} cannot be less than 1ms")
    return ns


def to_instruction(node: Node) -> Instruction:
    """Check one node and give it its type (:class:`DockerfileError` without a line number)."""
    k = node.keyword
    if k == "FROM":
        flags = _flags(node, {"platform": "string"})
        if not node.args:
            raise DockerfileError("FROM requires an argument")
        if len(node.args) not in (1, 3) or (len(node.args) == 3 and node.args[1].lower() != "as"):
            raise DockerfileError("FROM requires either one or three arguments")
        name = node.args[2].lower() if len(node.args) == 3 else ""
        if name and not _STAGE_NAME.match(name):
            raise DockerfileError(
                f"invalid name for build stage: {json.dumps(node.args[2])}, "
                "name can't start with a number or contain symbols"
            )
        return From(node, base=node.args[0], stage_name=name, platform=flags.get("platform", ""))
    if k in ("RUN", "CMD", "ENTRYPOINT"):
        _flags(node, {})
        if not node.args and not node.json:
            raise DockerfileError(f"{k} requires at least one argument")
        return Command(node, args=node.args, shell_form=not node.json)
    if k == "SHELL":
        _flags(node, {})
        _at_least_one(node)
        if not node.json:
            raise DockerfileError("SHELL requires the arguments to be in JSON form")
        return Shell(node, shell=node.args)
    if k in ("ENV", "LABEL"):
        _flags(node, {})
        _at_least_one(node)
        pairs = tuple(zip(node.args[::2], node.args[1::2], strict=True))
        if any(not key for key, _ in pairs):
            raise DockerfileError(f"{k} names can not be blank")
        return KeyValues(node, pairs=pairs)
    if k == "ARG":
        _flags(node, {})
        _at_least_one(node)
        args: list[tuple[str, str | None]] = []
        for word in node.args:
            name, has_value, value = word.partition("=")
            if not name:
                raise DockerfileError("ARG names can not be blank")
            args.append((name, value if has_value else None))
        return Arg(node, args=tuple(args))
    if k in ("EXPOSE", "VOLUME"):
        _flags(node, {})
        _at_least_one(node)
        if k == "VOLUME" and any(not w.strip() for w in node.args):
            raise DockerfileError("VOLUME specified can not be an empty string")
        return Words(node, words=node.args)
    if k in ("MAINTAINER", "USER", "WORKDIR", "STOPSIGNAL"):
        _flags(node, {})
        _exactly_one(node)
        return Value(node, value=node.args[0])
    if k == "HEALTHCHECK":
        return _healthcheck(node)
    if k == "ONBUILD":
        _flags(node, {})
        if node.sub is None:
            raise DockerfileError("ONBUILD requires at least one argument")
        trigger = node.sub.keyword
        if trigger == "ONBUILD":
            raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("FROM", "MAINTAINER"):
            raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
        to_instruction(node.sub)  # a bad trigger fails here, not in a child build
        text = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
        return Onbuild(node, trigger=text)
    if k in ("COPY", "ADD"):
        allowed = {"chown": "string", "chmod": "string", "link": "bool"}
        if k == "COPY":
            allowed["from"] = "string"
        flags = _flags(node, allowed)
        if len(node.args) < 2:
            detail = ", but only one was provided. Destination could not be determined" if node.args else ""
            raise DockerfileError(f"{k} requires at least two arguments{detail}")
        chmod = flags.get("chmod", "")
        if chmod and not re.fullmatch(r"[0-7]{1,4}", chmod):
            raise DockerfileError(f"invalid chmod parameter: {chmod}; use an octal mode such as 0755")
        return Copy(
            node,
            sources=node.args[:-1],
            dest=node.args[-1],
            add=k == "ADD",
            from_=flags.get("from", ""),
            chown=flags.get("chown", ""),
            chmod=chmod,
        )
    raise DockerfileError(f"unknown instruction: {k}")


def _healthcheck(node: Node) -> Healthcheck:
    _at_least_one(node)
    kind = node.args[0].upper()
    if kind == "NONE":
        if len(node.args) > 1 or node.flags:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(node, test=("NONE",))
    if kind != "CMD":
        raise DockerfileError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    flags = _flags(
        node,
        {
            "interval": "string",
            "timeout": "string",
            "start-period": "string",
            "start-interval": "string",
            "retries": "string",
        },
    )
    cmd = node.args[1:]
    if not cmd:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *cmd) if node.json else ("CMD-SHELL", cmd[0])
    retries = 0
    if "retries" in flags:
        try:
            retries = int(flags["retries"])
        except ValueError:
            raise DockerfileError(f'strconv.ParseInt: parsing "{flags["retries"]}": invalid syntax') from None
        if retries < 0:
            raise DockerfileError("--retries cannot be negative")
    return Healthcheck(
        node,
        test=test,
        interval=_interval(flags, "interval"),
        timeout=_interval(flags, "timeout"),
        start_period=_interval(flags, "start-period"),
        start_interval=_interval(flags, "start-interval"),
        retries=retries,
    )
