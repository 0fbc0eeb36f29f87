"""Variable substitution in Dockerfile arguments: every modifier, quotes and escapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skiff.build.shell import ShellLex, SubstitutionError

ENV = {"x": "X", "empty": "", "sp": "a b", "path": "/usr/local/bin/app.tar.gz", "n": "1"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$x", "X"),
        ("${x}", "X"),
        ("pre${x}post", "preXpost"),
        ("$x_y", ""),  # the name is x_y, unset
        ("${x}_y", "X_y"),
        ("$unset", ""),
        ("${unset:-default}", "default"),
        ("${empty:-default}", "default"),
        ("${empty-default}", ""),
        ("${unset-default}", "default"),
        ("${x:-default}", "X"),
        ("${x:+alt}", "alt"),
        ("${empty:+alt}", ""),
        ("${empty+alt}", "alt"),
        ("${unset+alt}", ""),
        ("${unset:-$x}", "X"),
        ("${x:?must be set}", "X"),
        ("${path#*/}", "usr/local/bin/app.tar.gz"),
        ("${path##*/}", "app.tar.gz"),
        ("${path%.*}", "/usr/local/bin/app.tar"),
        ("${path%%.*}", "/usr/local/bin/app"),
        ("${sp/a/z}", "z b"),
        ("${path//\\//_}", "_usr_local_bin_app.tar.gz"),
        ("\\$x", "$x"),
        ("\\${x}", "${x}"),
        ("'$x'", "$x"),
        ('"$x"', "X"),
        ('"\\$x"', "$x"),
        ('"a\\"b"', 'a"b'),
        ('"a\\nb"', "a\\nb"),  # inside double quotes only \" \$ \\ are escapes
        ("a\\ b", "a b"),
        ("$", "$"),
        ("$1", ""),
        ("trailing\\", "trailing"),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert ShellLex().process_word(word, ENV) == expected


def test_words_split_after_expansion_but_not_inside_quotes() -> None:
    lex = ShellLex()
    assert lex.process_words("$sp c", ENV) == ["a", "b", "c"]
    assert lex.process_words('"$sp" c', ENV) == ["a b", "c"]
    assert lex.process_words("'a  b'  \"\" c", ENV) == ["a  b", "c"]


def test_backtick_escape() -> None:
    lex = ShellLex("`")
    assert lex.process_word("`$x", ENV) == "$x"
    assert lex.process_word("c:\\dir\\$x", ENV) == "c:\\dir\\X"


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${x", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:-a}", "bad substitution"),
        ("${x!y}", "unsupported modifier (!)"),
        ("${unset?}", "unset: is not allowed to be unset"),
        ("${empty:?no empty}", "empty: no empty"),
        ("'open", "matching single-quote"),
        ('"open', "matching double-quote"),
    ],
)
def test_errors(word: str, message: str) -> None:
    with pytest.raises(SubstitutionError, match="failed to process") as info:
        ShellLex().process_word(word, ENV)
    assert message in info.value.message
    assert info.value.status == 400


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("${}:-+?#%/'\"\\` xab")), max_size=40))
def test_only_substitution_errors(word: str) -> None:
    try:
        ShellLex().process_word(word, ENV)
        ShellLex("`").process_words(word, ENV)
    except SubstitutionError:
        pass
