"""What instructions do to a stage: ARG scoping, ENV precedence, the image config, history text."""

from __future__ import annotations

from typing import cast

import pytest

from skiff.build.dispatch import (
    DEFAULT_PATH,
    BuildArgs,
    StageState,
    apply_metadata,
    command_line,
    declare_args,
    meta_args,
    nop_created_by,
    parse_ports,
    run_created_by,
    workdir,
)
from skiff.build.instructions import Arg, Command, Instruction, parse_dockerfile
from skiff.build.shell import ShellLex
from skiff.errors import InvalidArgument
from skiff.types import HealthConfig, ImageConfig

LEX = ShellLex()


def instructions(text: str) -> list[Instruction]:
    return list(parse_dockerfile("FROM busybox\n" + text).stages[0].instructions)


def run_all(state: StageState, text: str, build_args: BuildArgs | None = None) -> list[str]:
    args = build_args or BuildArgs({})
    comments = []
    for i in instructions(text):
        if isinstance(i, Arg):
            comments.append(declare_args(state, i, args, {}, LEX))
        else:
            comments.append(apply_metadata(state, i, args, LEX))
    return comments


def test_begin_sets_path_and_drops_onbuild() -> None:
    state = StageState.begin(ImageConfig(on_build=("RUN x",)))
    assert state.config.env == (DEFAULT_PATH,)
    assert state.config.on_build == ()
    kept = StageState.begin(ImageConfig(env=("PATH=/bin",)))
    assert kept.config.env == ("PATH=/bin",)


def test_env_expands_with_the_environment_before_the_instruction() -> None:
    state = StageState.begin(ImageConfig())
    comments = run_all(state, "ENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n")
    env = dict(e.split("=", 1) for e in state.config.env)
    assert (env["abc"], env["def"], env["ghi"]) == ("bye", "hello", "bye")
    assert comments[1] == "ENV abc=bye def=hello"
    # Replacing keeps the variable's position, as Docker does.
    assert [e.split("=")[0] for e in state.config.env] == ["PATH", "abc", "def", "ghi"]


def test_arg_values_defaults_overrides_and_env_precedence() -> None:
    args = BuildArgs({"A": "from-cli", "UNUSED": "x", "HTTP_PROXY": "http://p"})
    state = StageState.begin(ImageConfig())
    run_all(state, "ARG A\nARG B=dflt\nARG C\nENV B=env-wins\nLABEL a=$A b=$B c=${C:-none}\n", args)
    assert state.config.labels == {"a": "from-cli", "b": "env-wins", "c": "none"}
    assert args.unconsumed() == ["UNUSED"]  # the proxy argument is predefined
    # RUN gets ARG values ENV does not override, and the proxy one.
    assert set(state.run_env(args)) == {"A=from-cli", "HTTP_PROXY=http://p"}
    assert state.recorded_args() == ["A=from-cli", "B=dflt"]


def test_meta_args_feed_from_and_redeclared_args() -> None:
    df = parse_dockerfile("ARG V=1\nARG IMG=base:$V\nFROM $IMG\nARG V\nLABEL v=$V\n")
    args = BuildArgs({})
    meta = meta_args(df.meta_args, args, LEX)
    assert meta == {"V": "1", "IMG": "base:1"}
    state = StageState.begin(ImageConfig())
    arg, label = df.stages[0].instructions
    assert isinstance(arg, Arg)
    declare_args(state, arg, args, meta, LEX)
    apply_metadata(state, label, args, LEX)
    assert state.config.labels == {"v": "1"}


def test_cmd_entrypoint_shell_and_history_text() -> None:
    state = StageState.begin(ImageConfig(cmd=("base",)))
    comments = run_all(state, 'SHELL ["/bin/bash", "-c"]\nENTRYPOINT run.sh\n')
    assert state.config.entrypoint == ("/bin/bash", "-c", "run.sh")
    assert state.config.cmd is None  # an inherited CMD goes with a new ENTRYPOINT
    assert comments == ['SHELL ["/bin/bash" "-c"]', 'ENTRYPOINT ["/bin/bash" "-c" "run.sh"]']
    state = StageState.begin(ImageConfig())
    run_all(state, 'CMD ["a"]\nENTRYPOINT ["b"]\n')
    assert (state.config.entrypoint, state.config.cmd) == (("b",), ("a",))
    assert nop_created_by(state, "ENV a=b") == "/bin/sh -c #(nop)  ENV a=b"


def test_run_history_text_records_args() -> None:
    state = StageState.begin(ImageConfig())
    args = BuildArgs({"V": "2"})
    run_all(state, "ARG V\n", args)
    (run,) = instructions("RUN make")
    argv = command_line(state, cast(Command, run))
    assert argv == ("/bin/sh", "-c", "make")
    assert run_created_by(state, argv, args) == "|1 V=2 /bin/sh -c make"
    plain = StageState.begin(ImageConfig())
    assert run_created_by(plain, argv, BuildArgs({})) == "/bin/sh -c make"


def test_other_metadata() -> None:
    state = StageState.begin(ImageConfig())
    comments = run_all(
        state,
        "ENV P=8080\nEXPOSE $P 53/udp 7000-7001\nVOLUME /data /logs\nUSER app:app\nSTOPSIGNAL SIGINT\n"
        "MAINTAINER me\nONBUILD RUN echo child\nHEALTHCHECK --interval=5s CMD true\n",
    )
    c = state.config
    assert c.exposed_ports == ("8080/tcp", "53/udp", "7000/tcp", "7001/tcp")
    assert c.volumes == ("/data", "/logs")
    assert (c.user, c.stop_signal, state.author) == ("app:app", "SIGINT", "me")
    assert c.on_build == ("RUN echo child",)
    assert c.healthcheck == HealthConfig(test=("CMD-SHELL", "true"), interval=5 * 10**9)
    assert comments[1] == "EXPOSE 8080 53/udp 7000-7001"
    assert comments[2] == "VOLUME [/data /logs]"
    assert comments[-1].startswith('HEALTHCHECK &{["CMD-SHELL" "true"] "5s"')


def test_workdir_joins_relative_paths() -> None:
    state = StageState.begin(ImageConfig())
    args = BuildArgs({})
    assert workdir(state, "/a", args, LEX) == "/a"
    assert workdir(state, "b/../c", args, LEX) == "/a/c"
    run_all(state, "ENV D=/x\n")
    assert workdir(state, "$D/y", args, LEX) == "/x/y"


def test_bad_ports() -> None:
    with pytest.raises(InvalidArgument, match="Invalid containerPort"):
        parse_ports(["eighty"])
    with pytest.raises(InvalidArgument):
        parse_ports(["0"])


def test_run_heredocs_become_scripts() -> None:
    state = StageState.begin(ImageConfig())
    alone, piped = instructions("RUN <<EOF\necho $HOME\nEOF\nRUN cat <<A > /f\nx\nA\n")
    assert command_line(state, cast(Command, alone)) == ("/bin/sh", "-c", "echo $HOME\n")
    assert command_line(state, cast(Command, piped)) == ("/bin/sh", "-c", "cat <<A > /f\nx\nA")


def test_here_document_expansion_keeps_quotes() -> None:
    text = 'a="$x" \\$y printf "%s\\n" ${z:-d}\n'
    assert LEX.expand_document(text, {"x": "X"}) == 'a="X" $y printf "%s\\n" d\n'
