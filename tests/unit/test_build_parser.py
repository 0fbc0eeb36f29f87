"""The Dockerfile parser: line handling, every instruction's form, errors with file and line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skiff.build.instructions import (
    Arg,
    Command,
    Copy,
    Healthcheck,
    KeyValues,
    Onbuild,
    Shell,
    Value,
    Words,
    parse_dockerfile,
    parse_duration,
    parse_trigger,
)
from skiff.build.parser import DockerfileError, parse


def only(text: str) -> object:
    """The single instruction after ``FROM busybox``."""
    df = parse_dockerfile("FROM busybox\n" + text)
    (instruction,) = df.stages[0].instructions
    return instruction


# -- lines ---------------------------------------------------------------------------------------


def test_comments_blank_lines_and_line_numbers() -> None:
    df = parse_dockerfile("# a comment\n\nFROM busybox\n   # indented comment\nRUN echo hi\n")
    stage = df.stages[0]
    assert stage.from_.line == 3
    assert stage.instructions[0].line == 5
    assert stage.instructions[0].text == "RUN echo hi"


def test_continuation_skips_comments_and_warns_on_empty_lines() -> None:
    df = parse_dockerfile("FROM busybox\nRUN echo a \\\n  # inside\n\n  && echo b\nCMD x\n")
    run = df.stages[0].instructions[0]
    assert isinstance(run, Command)
    assert run.args == ("echo a   && echo b",)
    assert (run.node.line, run.node.end_line) == (2, 5)
    assert df.stages[0].instructions[1].line == 6
    assert any("Empty continuation line" in w for w in df.warnings)


def test_escape_directive_backtick() -> None:
    df = parse_dockerfile("# escape=`\nFROM busybox\nRUN dir c:\\ `\n  && echo done\n")
    assert df.escape == "`"
    run = df.stages[0].instructions[0]
    assert isinstance(run, Command)
    assert run.args == ("dir c:\\   && echo done",)


def test_directives_only_at_the_top_and_syntax_accepted() -> None:
    df = parse_dockerfile("# syntax=docker/dockerfile:1\n# escape=\\\nFROM busybox\n")
    assert df.escape == "\\"
    # After an instruction or comment, "# escape=`" is just a comment.
    df = parse_dockerfile("# hello\n# escape=`\nFROM busybox\nRUN a \\\n b\n")
    assert df.escape == "\\"
    run = df.stages[0].instructions[0]
    assert isinstance(run, Command) and run.args == ("a  b",)


def test_repeated_or_bad_directive_is_an_error_with_line() -> None:
    with pytest.raises(DockerfileError, match=r"line 2 .*only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM busybox\n")
    with pytest.raises(DockerfileError, match=r"line 1 .*invalid escape token"):
        parse("# escape=x\nFROM busybox\n")


def test_bom_and_crlf() -> None:
    df = parse_dockerfile("\ufeffFROM busybox\r\nRUN echo hi\r\n")
    run = df.stages[0].instructions[0]
    assert isinstance(run, Command) and run.args == ("echo hi",)


def test_keywords_are_case_insensitive() -> None:
    df = parse_dockerfile("from busybox as Build\nrun echo\n")
    assert df.stages[0].name == "build"
    assert df.stages[0].instructions[0].keyword == "RUN"


# -- every instruction ---------------------------------------------------------------------------


def test_run_cmd_entrypoint_shell_and_exec_forms() -> None:
    run = only("RUN echo $HOME")
    assert isinstance(run, Command) and run.shell_form and run.args == ("echo $HOME",)
    cmd = only('CMD ["echo", "a b"]')
    assert isinstance(cmd, Command) and not cmd.shell_form and cmd.args == ("echo", "a b")
    entry = only("ENTRYPOINT [not json")
    assert isinstance(entry, Command) and entry.shell_form and entry.args == ("[not json",)
    empty = only("CMD []")
    assert isinstance(empty, Command) and empty.args == () and not empty.shell_form


def test_json_with_non_strings_is_an_error() -> None:
    with pytest.raises(DockerfileError, match=r"line 2 .*arrays must be comprised of strings only"):
        parse_dockerfile('FROM busybox\nCMD ["a", 1]\n')


def test_shell_needs_json() -> None:
    shell = only('SHELL ["/bin/bash", "-c"]')
    assert isinstance(shell, Shell) and shell.shell == ("/bin/bash", "-c")
    with pytest.raises(DockerfileError, match="SHELL requires the arguments to be in JSON form"):
        only("SHELL /bin/bash -c")


def test_env_and_label_both_forms() -> None:
    env = only('ENV A=1 B="two words" C=\\$x')
    assert isinstance(env, KeyValues)
    assert env.pairs == (("A", "1"), ("B", '"two words"'), ("C", "\\$x"))
    legacy = only("ENV NAME  value with  spaces")
    assert isinstance(legacy, KeyValues) and legacy.pairs == (("NAME", "value with  spaces"),)
    label = only('LABEL "com.example.vendor"="ACME" version=1.0')
    assert isinstance(label, KeyValues) and label.pairs[1] == ("version", "1.0")
    with pytest.raises(DockerfileError, match='can\'t find = in "C"'):
        only("ENV A=1 C")
    with pytest.raises(DockerfileError, match="ENV must have two arguments"):
        only("ENV ONLYNAME")
    with pytest.raises(DockerfileError, match="LABEL names can not be blank"):
        only("LABEL =x")


def test_arg_with_and_without_defaults() -> None:
    arg = only("ARG A B=2 C=")
    assert isinstance(arg, Arg) and arg.args == (("A", None), ("B", "2"), ("C", ""))


def test_copy_and_add_flags() -> None:
    copy = only("COPY --from=build --chown=app:app --chmod=0755 a b* /dest/")
    assert isinstance(copy, Copy)
    assert (copy.sources, copy.dest, copy.from_, copy.chown, copy.chmod) == (
        ("a", "b*"),
        "/dest/",
        "build",
        "app:app",
        "0755",
    )
    add = only('ADD ["a file", "/d"]')
    assert isinstance(add, Copy) and add.add and add.sources == ("a file",) and add.dest == "/d"
    with pytest.raises(DockerfileError, match="Unknown flag: from"):
        only("ADD --from=x a b")
    with pytest.raises(
        DockerfileError, match="COPY requires at least two arguments, but only one was provided"
    ):
        only("COPY a")
    with pytest.raises(DockerfileError, match="invalid chmod"):
        only("COPY --chmod=u+x a b")


def test_words_values_and_misc() -> None:
    expose = only("EXPOSE 80 443/tcp 53/udp")
    assert isinstance(expose, Words) and expose.words == ("80", "443/tcp", "53/udp")
    volume = only('VOLUME ["/data", "/logs"]')
    assert isinstance(volume, Words) and volume.words == ("/data", "/logs")
    for keyword in ("USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER"):
        v = only(f"{keyword} some value")
        assert isinstance(v, Value) and v.value == "some value"
    with pytest.raises(DockerfileError, match="USER requires exactly one argument"):
        only("USER")
    with pytest.raises(DockerfileError, match="VOLUME specified can not be an empty string"):
        only('VOLUME ["/a", ""]')


def test_healthcheck_forms_and_durations() -> None:
    hc = only("HEALTHCHECK --interval=1m30s --timeout=5s --retries=3 CMD curl -f http://localhost/")
    assert isinstance(hc, Healthcheck)
    assert hc.test == ("CMD-SHELL", "curl -f http://localhost/")
    assert (hc.interval, hc.timeout, hc.retries) == (90 * 10**9, 5 * 10**9, 3)
    exec_form = only('HEALTHCHECK CMD ["/bin/check", "-q"]')
    assert isinstance(exec_form, Healthcheck) and exec_form.test == ("CMD", "/bin/check", "-q")
    none = only("HEALTHCHECK NONE")
    assert isinstance(none, Healthcheck) and none.test == ("NONE",)
    with pytest.raises(DockerfileError, match="HEALTHCHECK NONE takes no arguments"):
        only("HEALTHCHECK NONE x")
    with pytest.raises(DockerfileError, match='Unknown type "RUN" in HEALTHCHECK'):
        only("HEALTHCHECK RUN x")
    with pytest.raises(DockerfileError, match="cannot be less than 1ms"):
        only("HEALTHCHECK --interval=10us CMD x")
    assert parse_duration("1.5h") == 5400 * 10**9
    assert parse_duration("300ms") == 300_000_000
    assert parse_duration("-0") == 0 and parse_duration(".5s") == 500_000_000
    # Go's messages: a number needs a unit, and the unit runs up to the next digit or dot.
    for text, message in (
        ("5", 'time: missing unit in duration "5"'),
        ("5sec", 'time: unknown unit "sec" in duration "5sec"'),
        ("5 seconds", 'time: unknown unit " seconds" in duration "5 seconds"'),
        ("x", 'time: invalid duration "x"'),
        ("-", 'time: invalid duration "-"'),
    ):
        with pytest.raises(DockerfileError) as info:
            parse_duration(text)
        assert info.value.reason == message


def test_onbuild() -> None:
    onbuild = only("ONBUILD RUN echo hi")
    assert isinstance(onbuild, Onbuild) and onbuild.trigger == "RUN echo hi"
    for bad, message in (
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD MAINTAINER x", "MAINTAINER isn't allowed"),
        ("ONBUILD RUNN x", "unknown instruction: RUNN"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
    ):
        with pytest.raises(DockerfileError, match=message):
            only(bad)
    trigger = parse_trigger("COPY --chown=1:1 a /b")
    assert isinstance(trigger, Copy) and trigger.chown == "1:1"


# -- stages --------------------------------------------------------------------------------------


def test_meta_args_stages_and_names() -> None:
    df = parse_dockerfile(
        "ARG BASE=busybox\nFROM $BASE AS build\nRUN x\nFROM --platform=linux/amd64 scratch\nCOPY --from=build /a /a\n"
    )
    assert [a.args for a in df.meta_args] == [(("BASE", "busybox"),)]
    assert [s.name for s in df.stages] == ["build", ""]
    assert df.stages[1].from_.platform == "linux/amd64"
    assert df.stage_index("BUILD") == 0
    assert df.stage_index("nope") is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("FROM busybox\nRUNN echo\n", 2, "unknown instruction: RUNN"),
        ("FROM\n", 1, "FROM requires an argument"),
        ("FROM a b\n", 1, "FROM requires either one or three arguments"),
        ("FROM a AS 1x\n", 1, "invalid name for build stage"),
        ("RUN echo\nFROM busybox\n", 1, "no build stage in current context"),
        ("FROM a AS x\nFROM b AS x\n", 2, "duplicate name x"),
        ("FROM busybox\nRUN --mount=type=cache x\n", 2, "Unknown flag: mount"),
        ("FROM busybox\nCOPY --chown a b\n", 2, "Missing a value on flag: chown"),
        ("# only a comment\n", 0, "file with no instructions"),
        ("FROM busybox\n\n\nEXPOSE\n", 4, "EXPOSE requires at least one argument"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(text, "app.Dockerfile")
    assert info.value.line == line
    assert info.value.file == "app.Dockerfile"
    assert message in info.value.message
    assert "app.Dockerfile" in info.value.message
    if line:
        assert f"line {line}" in info.value.message
    assert info.value.status == 400


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("FROMRUNCOPYENVARG ={}[]\"'\\`$#-\n\tabc:/.*0")), max_size=120))
def test_parser_only_ever_raises_its_own_error(text: str) -> None:
    try:
        parse_dockerfile(text)
    except DockerfileError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_only_ever_raises_its_own_error_on_any_text(text: str) -> None:
    try:
        parse_dockerfile("FROM busybox\n" + text)
    except DockerfileError:
        pass


def test_heredocs_after_run_copy_and_add() -> None:
    df = parse_dockerfile(
        "FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<-'CONF' /etc/c\n\tk=$v\n\tCONF\n"
        "RUN cat <<A && cat <<B\na\nA\nb\nB\nCMD x\n"
    )
    run, copy, two, cmd = df.stages[0].instructions
    assert isinstance(run, Command) and run.node.heredocs[0].content == "echo one\necho two\n"
    assert (run.node.line, run.node.end_line) == (2, 5)
    assert isinstance(copy, Copy) and copy.sources == ("<<-'CONF'",)
    doc = copy.node.heredocs[0]
    assert (doc.name, doc.content, doc.expand) == ("CONF", "k=$v\n", False)
    assert [h.name for h in two.node.heredocs] == ["A", "B"]
    assert cmd.line == 14
    with pytest.raises(DockerfileError, match="unterminated heredoc EOF"):
        parse_dockerfile("FROM busybox\nRUN <<EOF\necho\n")
    # Only RUN, COPY and ADD take here-documents; << elsewhere is plain text.
    label = only("LABEL a=<<EOF")
    assert isinstance(label, KeyValues) and label.node.heredocs == ()
