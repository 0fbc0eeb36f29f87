"""Which build contexts are git repositories, and how ``remote#ref:subdir`` splits (docker CLI's rules)."""

from __future__ import annotations

import pytest

from skiff.cli.remote_context import GitSource, is_git_url, is_url, parse_git_url
from skiff.errors import InvalidArgument


@pytest.mark.parametrize(
    ("source", "git", "url"),
    [
        ("git://host/repo.git", True, False),
        ("git@github.com:org/repo.git", True, False),
        ("github.com/org/repo", True, False),
        ("https://host/org/repo.git", True, True),
        ("https://host/org/repo.git#main:dir", True, True),
        ("https://host/context.tar.gz", False, True),
        ("http://host/Dockerfile", False, True),
        ("./local/dir", False, False),
    ],
)
def test_kinds_of_context(source: str, git: bool, url: bool) -> None:
    assert (is_git_url(source), is_url(source)) == (git, url)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("git://h:9418/r.git", GitSource("git://h:9418/r.git")),
        ("git://h/r.git#v1:sub/dir", GitSource("git://h/r.git", "v1", "sub/dir")),
        ("https://h/r.git#:sub", GitSource("https://h/r.git", "", "sub")),
        ("github.com/org/r#main", GitSource("https://github.com/org/r", "main")),
        ("git@github.com:org/r.git#pr/1:x", GitSource("git@github.com:org/r.git", "pr/1", "x")),
    ],
)
def test_remote_ref_and_subdirectory(source: str, expected: GitSource) -> None:
    assert parse_git_url(source) == expected


def test_a_ref_that_looks_like_an_option_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="invalid refspec: --upload-pack=x"):
        parse_git_url("git://h/r.git#--upload-pack=x")
