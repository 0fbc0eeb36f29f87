"""What each instruction does to a stage's state: build arguments, expansion, the image config.

Pure rules, no files or containers (the engine's builder runs RUN and COPY): which ARGs are
in effect and what they expand to, how ENV/LABEL/CMD/... change the image configuration, and
the text Docker records for each step in the image history (``/bin/sh -c #(nop)  ENV a=b``),
which is also the heart of the step's cache key.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from skiff.build.instructions import (
    DEFAULT_SHELL,
    Arg,
    Command,
    Healthcheck,
    Instruction,
    KeyValues,
    Onbuild,
    Shell,
    Value,
    Words,
)
from skiff.build.parser import HEREDOC_MARKER
from skiff.build.shell import ShellLex
from skiff.errors import InvalidArgument
from skiff.types.container import HealthConfig
from skiff.types.image import ImageConfig

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Usable without an ARG line, never recorded in the image (Docker's predefined ARGs).
PREDEFINED_ARGS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?", re.IGNORECASE)


def go_quote(items: Sequence[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]`` (how Docker writes CMD and friends in history)."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


def env_dict(env: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in env:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def set_env(env: Sequence[str], key: str, value: str) -> tuple[str, ...]:
    """``env`` with ``key`` set (replacing an earlier value in place, as Docker does)."""
    out = list(env)
    for i, entry in enumerate(out):
        if entry.partition("=")[0] == key:
            out[i] = f"{key}={value}"
            return tuple(out)
    out.append(f"{key}={value}")
    return tuple(out)


class BuildArgs:
    """The ``--build-arg`` values, and which of them a Dockerfile line consumed."""

    def __init__(self, given: Mapping[str, str | None]) -> None:
        self.given = {k: v for k, v in given.items() if v is not None}
        self.consumed: set[str] = set()

    def value(self, name: str, default: str | None) -> str | None:
        """The value an ``ARG name[=default]`` line gives ``name``."""
        self.consumed.add(name)
        if name in self.given:
            return self.given[name]
        return default

    def predefined(self) -> dict[str, str]:
        """Proxy arguments given on the command line (usable without an ARG line)."""
        return {k: v for k, v in self.given.items() if k in PREDEFINED_ARGS}

    def unconsumed(self) -> list[str]:
        """Given arguments no ARG line (and no predefined name) took, sorted."""
        return sorted(k for k in self.given if k not in self.consumed and k not in PREDEFINED_ARGS)


def meta_args(args: Sequence[Arg], build_args: BuildArgs, lex: ShellLex) -> dict[str, str | None]:
    """Values of the ARGs before the first FROM (each default may use the ones before it)."""
    values: dict[str, str | None] = {}
    for instruction in args:
        for name, default in instruction.args:
            env = {k: v for k, v in values.items() if v is not None}
            expanded = lex.process_word(default, env) if default is not None else None
            values[name] = build_args.value(name, expanded)
    return values


@dataclass
class StageState:
    """A stage being built: the image config so far and the ARGs it declared."""

    config: ImageConfig
    author: str = ""
    args: dict[str, str | None] = field(default_factory=dict)
    cmd_set: bool = False

    @classmethod
    def begin(cls, config: ImageConfig) -> StageState:
        """Docker's ``beginStage``: ONBUILD triggers are taken away, a PATH is always set."""
        env = config.env
        if not any(e.startswith("PATH=") for e in env):
            env = (*env, DEFAULT_PATH)
        return cls(config=replace(config, env=env, on_build=()))

    def arg_values(self, build_args: BuildArgs) -> dict[str, str]:
        """Declared ARGs with a value, plus the predefined ones given."""
        out = build_args.predefined()
        out.update({k: v for k, v in self.args.items() if v is not None})
        return out

    def expansion_env(self, build_args: BuildArgs) -> dict[str, str]:
        """What ``$var`` sees: ARG values, with ENV values winning over an ARG of the same name."""
        env = self.arg_values(build_args)
        env.update(env_dict(self.config.env))
        return env

    def run_env(self, build_args: BuildArgs) -> tuple[str, ...]:
        """Extra environment of a RUN container: ARG values ENV does not override."""
        image_env = env_dict(self.config.env)
        return tuple(f"{k}={v}" for k, v in self.arg_values(build_args).items() if k not in image_env)

    def recorded_args(self) -> list[str]:
        """``k=v`` of declared ARGs with values, sorted: what RUN's history entry starts with."""
        return sorted(f"{k}={v}" for k, v in self.args.items() if v is not None)

    @property
    def shell(self) -> tuple[str, ...]:
        return self.config.shell or DEFAULT_SHELL


def declare_args(
    state: StageState, instruction: Arg, build_args: BuildArgs, meta: Mapping[str, str | None], lex: ShellLex
) -> str:
    """Apply an ARG line to the stage; returns the history comment."""
    parts: list[str] = []
    for name, default in instruction.args:
        expanded = None
        if default is not None:
            expanded = lex.process_word(default, state.expansion_env(build_args))
        elif name in meta:
            expanded = meta[name]
        state.args[name] = build_args.value(name, expanded)
        parts.append(name if default is None else f"{name}={expanded}")
    return "ARG " + " ".join(parts)


def command_line(state: StageState, instruction: Command) -> tuple[str, ...]:
    """The argv of RUN/CMD/ENTRYPOINT: exec form as written, shell form through the SHELL.

    A RUN with here-documents: ``RUN <<EOF`` alone runs the document as the script (as
    BuildKit does); otherwise the shell gets the line and the documents as written, and
    reads them itself (``RUN cat <<A > /a``).
    """
    if not instruction.shell_form:
        return instruction.args
    heredocs = instruction.node.heredocs
    if not heredocs:
        return (*state.shell, instruction.args[0])
    if len(heredocs) == 1 and HEREDOC_MARKER.fullmatch(instruction.args[0].strip()):
        return (*state.shell, heredocs[0].content)
    script = "\n".join([instruction.args[0], *(h.raw for h in heredocs)])
    return (*state.shell, script)


def parse_ports(words: Sequence[str]) -> list[str]:
    """EXPOSE words (``80``, ``80/udp``, ``8000-8002``) -> ``["80/tcp", ...]``."""
    out: list[str] = []
    for word in words:
        m = _PORT.fullmatch(word)
        if m is None:
            raise InvalidArgument(f"Invalid containerPort: {word}")
        start, end = int(m.group(1)), int(m.group(2) or m.group(1))
        proto = (m.group(3) or "tcp").lower()
        if not 0 < start <= end <= 65535:
            raise InvalidArgument(f"Invalid range for port: {word}")
        out.extend(f"{p}/{proto}" for p in range(start, end + 1))
    return out


def _append_unique(existing: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*existing, *new)))


def _duration(ns: int) -> str:
    """Go's time.Duration String() for whole seconds and below (enough for history text)."""
    if ns == 0:
        return "0s"
    seconds, rest = divmod(ns, 10**9)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    frac = f".{rest:09d}".rstrip("0") if rest else ""
    return text + f"{seconds}{frac.rstrip('.')}s"


def apply_metadata(state: StageState, instruction: Instruction, build_args: BuildArgs, lex: ShellLex) -> str:
    """Apply a config-only instruction to ``state``; returns Docker's history comment for it.

    ``ARG`` is handled by :func:`declare_args`; RUN, COPY, ADD and WORKDIR by the builder.
    """
    c = state.config
    env = state.expansion_env(build_args)
    k = instruction.keyword
    if isinstance(instruction, KeyValues):
        pairs = [
            (lex.process_word(key, env), lex.process_word(value, env)) for key, value in instruction.pairs
        ]
        if any(not key for key, _ in pairs):
            raise InvalidArgument(f"{k} names can not be blank")
        if k == "ENV":
            new_env = c.env
            for key, value in pairs:
                new_env = set_env(new_env, key, value)
            state.config = replace(c, env=new_env)
        else:
            state.config = replace(c, labels={**c.labels, **dict(pairs)})
        return k + "".join(f" {key}={value}" for key, value in pairs)
    if isinstance(instruction, Command):
        argv = command_line(state, instruction)
        if k == "CMD":
            state.config = replace(c, cmd=argv)
            state.cmd_set = True
        else:
            state.config = replace(c, entrypoint=argv, cmd=c.cmd if state.cmd_set else None)
        return f"{k} {go_quote(argv)}"
    if isinstance(instruction, Shell):
        state.config = replace(c, shell=instruction.shell)
        return f"SHELL {go_quote(instruction.shell)}"
    if isinstance(instruction, Words):
        words = [lex.process_word(word, env) for word in instruction.words]
        if k == "EXPOSE":
            state.config = replace(c, exposed_ports=_append_unique(c.exposed_ports, parse_ports(words)))
            return "EXPOSE " + " ".join(words)
        if any(not w.strip() for w in words):
            raise InvalidArgument("VOLUME specified can not be an empty string")
        state.config = replace(c, volumes=_append_unique(c.volumes, words))
        return f"VOLUME [{' '.join(words)}]"
    if isinstance(instruction, Value):
        value = lex.process_word(instruction.value, env)
        if k == "MAINTAINER":
            state.author = value
            return f"MAINTAINER {value}"
        if k == "USER":
            state.config = replace(c, user=value)
            return f"USER {value}"
        if k == "STOPSIGNAL":
            state.config = replace(c, stop_signal=value)
            return f"STOPSIGNAL {value}"
        raise AssertionError(k)
    if isinstance(instruction, Healthcheck):
        hc = HealthConfig(
            test=instruction.test,
            interval=instruction.interval,
            timeout=instruction.timeout,
            start_period=instruction.start_period,
            start_interval=instruction.start_interval,
            retries=instruction.retries,
        )
        state.config = replace(c, healthcheck=hc)
        durations = " ".join(
            json.dumps(_duration(d)) for d in (hc.interval, hc.timeout, hc.start_period, hc.start_interval)
        )
        return f"HEALTHCHECK &{{{go_quote(hc.test)} {durations} '\\x{hc.retries:02x}'}}"
    if isinstance(instruction, Onbuild):
        state.config = replace(c, on_build=(*c.on_build, instruction.trigger))
        return f"ONBUILD {instruction.trigger}"
    raise AssertionError(f"not a config-only instruction: {k}")


def workdir(state: StageState, value: str, build_args: BuildArgs, lex: ShellLex) -> str:
    """The new WORKDIR (relative ones join the current one), set on the state."""
    expanded = lex.process_word(value, state.expansion_env(build_args))
    path = posixpath.normpath(posixpath.join(state.config.working_dir or "/", expanded))
    if path.startswith("//"):
        path = path[1:]
    state.config = replace(state.config, working_dir=path)
    return path


def nop_created_by(state: StageState, comment: str) -> str:
    """History text of a config-only step: ``/bin/sh -c #(nop)  ENV a=b``."""
    return " ".join((*state.shell, "#(nop) ", comment))


def run_created_by(state: StageState, argv: Sequence[str], build_args: BuildArgs) -> str:
    """History text of a RUN step: ``|N a=b ... /bin/sh -c cmd`` when ARGs are in effect."""
    recorded = state.recorded_args()
    if not state.arg_values(build_args):
        return " ".join(argv)
    return " ".join((f"|{len(recorded)}", *recorded, *argv))
