"""Build contexts without root: unpacking, the Dockerfile, .dockerignore, sources and hashes."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from skiff.build.context import BuildContext, Source, content_hash, resolve_sources
from skiff.build.dockerignore import IgnoreMatcher, read_patterns
from skiff.errors import InvalidArgument, NotFound


def tar_of(files: dict[str, bytes | None], *, links: dict[str, str] | None = None) -> bytes:
    """A tar with files (None: a directory) and symlinks, owned by the test user."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.uid, info.gid = os.getuid(), os.getgid()
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            info.uid, info.gid = os.getuid(), os.getgid()
            tf.addfile(info)
    return buf.getvalue()


def unpack(tmp_path: Path, body: bytes) -> BuildContext:
    if os.geteuid() != 0:
        pytest.skip("unpacking sets owners (root); covered by the integration tier otherwise")
    return BuildContext.unpack(io.BytesIO(body), tmp_path / "ctx")


# -- .dockerignore -------------------------------------------------------------------------------


def test_read_patterns_docker_rules() -> None:
    text = "\ufeff# comment\n ignored-with-spaces \n!  keep/me \n/abs/path\n\n  #not-a-comment\n./a/../b\n"
    assert read_patterns(text) == ["ignored-with-spaces", "!keep/me", "abs/path", "#not-a-comment", "b"]


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "dir/a.log", False),  # * does not cross /
        (["**/*.log"], "dir/sub/a.log", True),
        (["dir"], "dir/sub/file", True),  # a parent directory matches
        (["dir", "!dir/keep"], "dir/keep", False),
        (["dir", "!dir/keep", "dir/keep"], "dir/keep", True),  # the last match wins
        (["?.txt"], "a.txt", True),
        (["?.txt"], "ab.txt", False),
        ([".dockerignore"], ".dockerignore", True),
        (["Dockerfile"], "Dockerfile", True),
        (["*", "!*.py"], "main.py", False),
    ],
)
def test_ignore_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert IgnoreMatcher(patterns).matches(path) is excluded


# -- contexts ------------------------------------------------------------------------------------


def test_unpack_tar_gzip_and_bare_dockerfile(tmp_path: Path) -> None:
    body = tar_of({"Dockerfile": b"FROM busybox\n", "dir": None, "dir/a": b"a"})
    ctx = unpack(tmp_path, gzip.compress(body))
    assert (ctx.root / "dir" / "a").read_bytes() == b"a"
    assert ctx.read_dockerfile("") == ("FROM busybox\n", "Dockerfile")
    bare = BuildContext.unpack(io.BytesIO(b"FROM scratch\n"), tmp_path / "bare")
    assert bare.read_dockerfile("")[0] == "FROM scratch\n"


def test_dockerfile_lookup(tmp_path: Path) -> None:
    ctx = unpack(tmp_path, tar_of({"dockerfile": b"FROM a\n", "sub": None, "sub/x.Dockerfile": b"FROM b\n"}))
    assert ctx.read_dockerfile("") == ("FROM a\n", "dockerfile")  # Docker's lower-case fallback
    assert ctx.read_dockerfile("sub/x.Dockerfile") == ("FROM b\n", "sub/x.Dockerfile")
    with pytest.raises(NotFound, match="Cannot locate specified Dockerfile: nope"):
        ctx.read_dockerfile("nope")


def test_hostile_context_stays_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    body = tar_of({"link/evil": b"x"}, links={"link": str(outside)})
    # A symlink first, then a file "through" it: the file lands inside the context.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, str(outside)
        tf.addfile(info)
        data = tarfile.TarInfo("link/evil")
        data.size = 1
        tf.addfile(data, io.BytesIO(b"x"))
    ctx = unpack(tmp_path, buf.getvalue())
    assert list(outside.iterdir()) == []
    assert body  # the helper builds such tars too
    with pytest.raises(InvalidArgument, match="leaves the root"):
        unpack(tmp_path / "2", tar_of({"../escape": b"x"}))
    assert ctx.root.exists()


def test_drop_ignored_like_dockerd(tmp_path: Path) -> None:
    ctx = unpack(
        tmp_path,
        tar_of({"Dockerfile": b"FROM a\n", ".dockerignore": b"Dockerfile\n.dockerignore\n", "keep": b"k"}),
    )
    ctx.drop_ignored("Dockerfile")
    assert sorted(p.name for p in ctx.root.iterdir()) == ["keep"]


def test_sources_wildcards_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    (root / "dir").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.md", "dir/d.txt"):
        (root / name).write_text(name)
    found = resolve_sources(root, ["*.txt"], "COPY")
    assert [s.name for s in found] == ["a.txt", "b.txt"]
    found = resolve_sources(root, ["dir", "c.md"], "COPY")
    assert [(s.name, s.is_dir) for s in found] == [("dir", True), ("c.md", False)]
    with pytest.raises(NotFound, match="COPY failed: file not found in build context"):
        resolve_sources(root, ["missing"], "COPY")
    with pytest.raises(InvalidArgument, match="no source files were specified"):
        resolve_sources(root, ["*.none"], "COPY")
    # ".." cannot climb out of the context.
    assert resolve_sources(root, ["../../c.md"], "ADD")[0].path == root / "c.md"


def test_content_hash_follows_content_not_mtime(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("one")
    first = content_hash([Source(f, "f", False)])
    os.utime(f, (0, 0))
    assert content_hash([Source(f, "f", False)]) == first
    assert first.startswith("file:")
    f.write_text("two")
    assert content_hash([Source(f, "f", False)]) != first
    assert content_hash([Source(tmp_path, "", True)]).startswith("dir:")
    assert content_hash([Source(f, "f", False), Source(tmp_path, "", True)]).startswith("multi:")
