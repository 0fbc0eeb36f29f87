"""Reference parsing and normalisation, checked against Docker's behaviour."""

from __future__ import annotations

import pytest

from skiff.errors import InvalidArgument
from skiff.images.reference import normalize_tag, parse_reference

D = "sha256:" + "a" * 64

VALID = [
    # input, domain, path, tag, digest, familiar, canonical
    (
        "busybox",
        "docker.io",
        "library/busybox",
        "latest",
        None,
        "busybox:latest",
        "docker.io/library/busybox:latest",
    ),
    (
        "busybox:1.36",
        "docker.io",
        "library/busybox",
        "1.36",
        None,
        "busybox:1.36",
        "docker.io/library/busybox:1.36",
    ),
    ("library/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest", None),
    ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest", None),
    ("docker.io/library/busybox:x", "docker.io", "library/busybox", "x", None, "busybox:x", None),
    ("user/app:1.0", "docker.io", "user/app", "1.0", None, "user/app:1.0", "docker.io/user/app:1.0"),
    ("library/a/b", "docker.io", "library/a/b", "latest", None, "library/a/b:latest", None),
    ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000", "app", "latest", None, "localhost:5000/app:latest", None),
    ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None, "127.0.0.1:5000/a/b:t", None),
    ("example.com/a/b/c:tag", "example.com", "a/b/c", "tag", None, "example.com/a/b/c:tag", None),
    ("[::1]:5000/app:v", "[::1]:5000", "app", "v", None, "[::1]:5000/app:v", None),
    ("Foo/bar", "Foo", "bar", "latest", None, "Foo/bar:latest", None),  # upper case: a hostname
    (
        f"busybox@{D}",
        "docker.io",
        "library/busybox",
        None,
        D,
        f"busybox@{D}",
        f"docker.io/library/busybox@{D}",
    ),
    (f"busybox:1@{D}", "docker.io", "library/busybox", "1", D, f"busybox:1@{D}", None),
    ("a_b-c__d---e/x.y", "docker.io", "a_b-c__d---e/x.y", "latest", None, "a_b-c__d---e/x.y:latest", None),
    ("busybox:" + "T" * 128, "docker.io", "library/busybox", "T" * 128, None, None, None),
]


@pytest.mark.parametrize(("s", "domain", "path", "tag", "digest", "familiar", "canonical"), VALID)
def test_valid_references(
    s: str,
    domain: str,
    path: str,
    tag: str | None,
    digest: str | None,
    familiar: str | None,
    canonical: str | None,
) -> None:
    ref = parse_reference(s)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    if familiar is not None:
        assert ref.familiar() == familiar
        assert parse_reference(ref.familiar()) == ref  # familiar form round-trips
    if canonical is not None:
        assert ref.canonical() == canonical
    assert parse_reference(ref.canonical()) == ref


INVALID = [
    ("", "invalid reference format"),
    ("busybox:", "invalid reference format"),
    (":tag", "invalid reference format"),
    ("a:b:c", "invalid reference format"),
    ("/busybox", "invalid reference format"),
    ("busybox/", "invalid reference format"),
    ("bad___name", "invalid reference format"),
    ("-bad", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("Busybox", "invalid reference format: repository name must be lowercase"),
    ("foo/Bar:1", "invalid reference format: repository name must be lowercase"),
    ("localhost:5000/App", "invalid reference format: repository name must be lowercase"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("x/" + "a" * 254, "repository name must not be more than 255 characters"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
]


@pytest.mark.parametrize(("s", "message"), INVALID)
def test_invalid_references(s: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_reference(s)
    assert message in str(e.value)
    if message == "invalid reference format":
        assert str(e.value) == message  # Docker's exact wording, clients match on it


def test_no_default_tag_when_asked() -> None:
    assert parse_reference("busybox", default_tag=False).tag is None
    assert parse_reference("busybox", default_tag=False).familiar() == "busybox"


def test_name_and_repository() -> None:
    ref = parse_reference("localhost:5000/team/app:1")
    assert ref.name() == "localhost:5000/team/app"
    assert ref.repository() == "localhost:5000/team/app"
    assert parse_reference("nginx").name() == "nginx"


def test_with_tag_replaces_tag_and_digest() -> None:
    ref = parse_reference(f"busybox:1@{D}").with_tag("2")
    assert ref.familiar() == "busybox:2"
    with pytest.raises(InvalidArgument):
        ref.with_tag("bad tag")


def test_normalize_tag() -> None:
    assert normalize_tag("docker.io/library/busybox") == "busybox:latest"
    assert normalize_tag("me/app:v1") == "me/app:v1"
    with pytest.raises(InvalidArgument, match="digest"):
        normalize_tag(f"busybox@{D}")
