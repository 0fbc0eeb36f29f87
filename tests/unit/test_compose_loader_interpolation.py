"""Compose interpolation (every form, nesting, errors, casts) and the .env grammar."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skiff.compose.loader_dotenv import parse_dotenv, read_dotenv
from skiff.compose.loader_interpolate import interpolate, substitute
from skiff.errors import InvalidArgument

ENV = {"SET": "value", "EMPTY": "", "PORT": "8080", "N": "3", "T": "yes", "F": "off"}


def sub(text: str, env: dict[str, str] | None = None) -> str:
    return substitute(text, (env if env is not None else ENV).get)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("plain", "plain"),
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a${SET}b", "avalueb"),
        ("$SET-x", "value-x"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("cost $5", "cost $5"),
        ("trailing $", "trailing $"),
        ("$ x", "$ x"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        # :- default when unset or empty; - only when unset
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${SET:-d}", "value"),
        ("${UNSET-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${SET-d}", "value"),
        # :+ replacement when set and non-empty; + when set
        ("${SET:+r}", "r"),
        ("${EMPTY:+r}", ""),
        ("${UNSET:+r}", ""),
        ("${SET+r}", "r"),
        ("${EMPTY+r}", "r"),
        ("${UNSET+r}", ""),
        # ? forms when the value is there
        ("${SET:?err}", "value"),
        ("${EMPTY?err}", ""),
        # nesting and words with spaces, colons, braces
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-a ${SET} b}", "a value b"),
        ("${UNSET:-host:${PORT}}", "host:8080"),
        ("${UNSET:-{json}}", "{json}"),
        ("${SET:+${PORT}x}", "8080x"),
        ("${UNSET:-$$}", "$"),
        ("${lower_case:-x}", "x"),
    ],
)
def test_substitution_forms(text: str, want: str) -> None:
    assert sub(text) == want


def test_unset_names_are_collected_once_and_defaults_do_not_count() -> None:
    unset: list[str] = []
    substitute("$A ${A} ${B:-x} ${SET:-$C}", ENV.get, unset)
    assert unset == ["A"]


def test_unused_branch_is_not_evaluated() -> None:
    # The error inside a default that is not used must not fire.
    assert sub("${SET:-${MISSING:?boom}}") == "value"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?need it}", "required variable UNSET is missing a value: need it"),
        ("${EMPTY:?need it}", "required variable EMPTY is missing a value: need it"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("${UNSET:?port ${PORT}}", "required variable UNSET is missing a value: port 8080"),
    ],
)
def test_required_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        sub(text)
    assert str(exc.value) == message


@pytest.mark.parametrize("text", ["${", "${SET", "${}", "${1X}", "${SET:x}", "${SET!}", "${UNSET:-${X}"])
def test_invalid_templates(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        sub(text)
    assert "Invalid template" in str(exc.value)


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=40))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert sub(text) == text


@given(st.text(max_size=40))
def test_double_dollar_escapes_anything(text: str) -> None:
    assert sub(text.replace("$", "$$")) == text


def test_interpolate_walks_values_not_keys_and_casts() -> None:
    data = {
        "services": {
            "${SET}": {
                "image": "img:${PORT}",
                "privileged": "${T}",
                "tty": "${F}",
                "deploy": {"replicas": "${N}"},
                "ports": ["${PORT}:80", {"target": "${PORT}", "published": "${PORT}"}],
                "environment": {"A": "${N}"},
                "healthcheck": {"retries": "${N}"},
            }
        },
        "volumes": {"v": {"external": "${T}"}},
        "x-ext": ["${SET}"],
    }
    unset: list[str] = []
    out = interpolate(data, ENV, unset)
    svc = out["services"]["${SET}"]
    assert svc["image"] == "img:8080"
    assert svc["privileged"] is True and svc["tty"] is False
    assert svc["deploy"]["replicas"] == 3
    assert svc["ports"] == ["8080:80", {"target": 8080, "published": "8080"}]
    assert svc["environment"] == {"A": "3"}  # environment stays a string
    assert svc["healthcheck"]["retries"] == 3
    assert out["volumes"]["v"]["external"] is True
    assert out["x-ext"] == ["value"]
    assert data["services"]["${SET}"]["image"] == "img:${PORT}"  # the input is not modified


def test_interpolate_errors_name_the_path() -> None:
    with pytest.raises(InvalidArgument) as exc:
        interpolate({"services": {"web": {"image": "${TAG:?set TAG}"}}}, {}, [])
    assert (
        str(exc.value)
        == "error while interpolating services.web.image: required variable TAG is missing a value: set TAG"
    )
    with pytest.raises(InvalidArgument) as exc:
        interpolate({"services": {"web": {"ports": ["${"]}}}, {}, [])
    assert str(exc.value) == (
        "invalid interpolation format for services.web.ports.0.\nYou may need to escape any $ with another $.\n${"
    )
    with pytest.raises(InvalidArgument) as exc:
        interpolate({"services": {"web": {"privileged": "${X}"}}}, {"X": "maybe"}, [])
    assert "services.web.privileged" in str(exc.value) and "invalid boolean: maybe" in str(exc.value)
    with pytest.raises(InvalidArgument) as exc:
        interpolate({"services": {"web": {"deploy": {"replicas": "${X}"}}}}, {"X": "two"}, [])
    assert "services.web.deploy.replicas" in str(exc.value)


# --- .env -----------------------------------------------------------------------


def test_dotenv_grammar() -> None:
    text = """
# a comment
PLAIN=value
export EXPORTED=yes
SPACED = padded value\t\x20
YAML_STYLE: colon
EMPTY=
COMMENTED=abc # a comment
HASH=abc#not-a-comment
SINGLE='literal $PLAIN \\n # kept'
DOUBLE="expanded $PLAIN\\ttab\\nline \\"q\\" \\$PLAIN"
MULTI="line1
line2"
REF=${PLAIN}-${UNDEFINED:-dflt}
DOTTED.NAME-1=ok
"""
    env = parse_dotenv(text, {"OUTER": "o"}.get)
    assert env == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "padded value",
        "YAML_STYLE": "colon",
        "EMPTY": "",
        "COMMENTED": "abc",
        "HASH": "abc#not-a-comment",
        "SINGLE": "literal $PLAIN \\n # kept",
        "DOUBLE": 'expanded value\ttab\nline "q" $PLAIN',
        "MULTI": "line1\nline2",
        "REF": "value-dflt",
        "DOTTED.NAME-1": "ok",
    }


def test_dotenv_lookup_wins_over_the_file_and_bare_names_inherit() -> None:
    env = parse_dotenv("A=file\nB=${A}\nINHERITED\nMISSING\n", {"A": "outer", "INHERITED": "i"}.get)
    assert env == {"A": "file", "B": "outer", "INHERITED": "i"}


def test_dotenv_crlf_and_last_line_without_newline() -> None:
    assert parse_dotenv("A=1\r\nB=2") == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A B=1\n", "line 1: unexpected character"),
        ("OK=1\nBAD$=1\n", 'line 2: unexpected character "$" in variable name "BAD$=1"'),
        ('A="never closed\n', "line 1: unterminated quoted value"),
        ("A=${B:?needed}\n", "required variable B is missing a value: needed"),
        ("A=${\n", "Invalid template"),
    ],
)
def test_dotenv_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_dotenv(text, source="/p/.env")
    assert message in str(exc.value)
    assert str(exc.value).startswith("/p/.env: ")


def test_read_dotenv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as exc:
        read_dotenv(tmp_path / "nope.env")
    assert "not found" in str(exc.value)
