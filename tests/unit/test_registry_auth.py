"""Registry auth pieces: scopes, the ACL's rules, htpasswd files, tokens, per-request checks."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import time
from pathlib import Path

import bcrypt
import jwt
import pytest

from skiff.errors import InvalidArgument
from skiff.registry.server import auth
from skiff.registry.server.auth import Access, Acl, Grant, Htpasswd, TokenAccess, TokenIssuer
from skiff.registry.server.errors import RegistryError

SECRET = b"k" * 64


def test_parse_scope() -> None:
    assert auth.parse_scope("repository:a/b:pull,push") == [
        Access("repository", "a/b", frozenset({"pull", "push"}))
    ]
    # A name with a port, a resource class, several scopes in one parameter.
    got = auth.parse_scope("repository:localhost:5000/x:pull repository(plugin):p:push registry:catalog:*")
    assert got == [
        Access("repository", "localhost:5000/x", frozenset({"pull"})),
        Access("repository", "p", frozenset({"push"})),
        Access("registry", "catalog", frozenset({"*"})),
    ]
    assert auth.parse_scope("repository:a:") == [Access("repository", "a", frozenset())]
    for bad in ("repository", "repository:a", ":a:pull"):
        with pytest.raises(RegistryError):
            auth.parse_scope(bad)


def test_access_scope_text() -> None:
    assert auth.push("a/b").scope() == "repository:a/b:pull,push"
    assert auth.CATALOG.scope() == "registry:catalog:*"


def test_parse_basic() -> None:
    header = "Basic " + base64.b64encode(b"alice:pa:ss").decode()
    assert auth.parse_basic(header) == ("alice", "pa:ss")
    assert auth.parse_basic("basic " + base64.b64encode(b"u:").decode()) == ("u", "")
    for bad in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert auth.parse_basic(bad) is None


ACL_DOC = {
    "acl": [
        {"match": {"account": "admin"}, "actions": ["*"]},
        {"match": {"account": "/.+/", "name": "${account}/*"}, "actions": ["pull", "push", "delete"]},
        {"match": {"account": "/.+/", "name": "shared/*"}, "actions": ["pull", "push"]},
        {"match": {"name": "public/*"}, "actions": ["pull"]},
        {"match": {"account": "", "name": "open/*"}, "actions": ["pull", "push"]},
    ]
}


def test_acl_first_match_decides() -> None:
    acl = Acl.from_doc(ACL_DOC)
    want = Access("repository", "alice/app", frozenset({"pull", "push", "delete"}))
    assert acl.granted("alice", want) == {"pull", "push", "delete"}
    assert acl.granted("bob", want) == frozenset()
    assert acl.granted("admin", want) == want.actions
    assert acl.granted("admin", auth.CATALOG) == {"*"}
    assert acl.granted("alice", auth.CATALOG) == frozenset()
    shared = Access("repository", "shared/x", frozenset({"pull", "push", "delete"}))
    assert acl.granted("bob", shared) == {"pull", "push"}
    public = Access("repository", "public/x", frozenset({"pull", "push"}))
    assert acl.granted("", public) == {"pull"}
    assert acl.granted("carol", public) == {"pull"}
    # Anonymous ("") matches neither "/.+/" nor a user's own namespace.
    assert acl.granted("", Access("repository", "/x", frozenset({"pull"}))) == frozenset()
    assert acl.granted("", Access("repository", "open/x", frozenset({"push"}))) == {"push"}
    assert acl.granted("dave", Access("repository", "open/x", frozenset({"push"}))) == frozenset()


def test_acl_list_form_and_globs() -> None:
    acl = Acl.from_doc([{"match": {"name": "team-?/*"}, "actions": ["pull"]}])
    assert acl.granted("x", Access("repository", "team-a/app", frozenset({"pull", "push"}))) == {"pull"}
    assert acl.granted("x", Access("repository", "team-ab/app", frozenset({"pull"}))) == frozenset()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"acl": "x"}, "expected a list"),
        ([1], "rule 1: expected an object"),
        ([{"match": {"user": "x"}, "actions": ["pull"]}], "unknown match key"),
        ([{"match": {"name": 1}, "actions": ["pull"]}], "must be a string"),
        ([{"match": {"name": "/(/"}, "actions": ["pull"]}], "bad regex"),
        ([{"actions": "pull"}], "actions must be a list"),
        ([{"actions": ["read"]}], "unknown action"),
    ],
)
def test_acl_errors(doc: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Acl.from_doc(doc)


def test_acl_file_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "acl.yml").write_text("acl:\n  - match: {account: admin}\n    actions: ['*']\n")
    assert Acl.load(tmp_path / "acl.yml").granted("admin", auth.pull("x")) == {"pull"}
    (tmp_path / "acl.json").write_text('[{"match": {}, "actions": ["pull"]}]')
    assert Acl.load(tmp_path / "acl.json").granted("", auth.pull("x")) == {"pull"}
    (tmp_path / "bad.yml").write_text("acl: [\n")
    with pytest.raises(InvalidArgument, match="not YAML"):
        Acl.load(tmp_path / "bad.yml")
    with pytest.raises(InvalidArgument, match="cannot read"):
        Acl.load(tmp_path / "missing.yml")


def _hash(password: str) -> str:
    # As htpasswd -B writes: "$2y$" and cost 5.
    return "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode()[4:]


def test_htpasswd(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    f.write_text(f"# users\nalice:{_hash('secret')}\n\nbob:{_hash('other')}\n")
    h = Htpasswd(f)
    assert asyncio.run(h.check("alice", "secret"))
    assert asyncio.run(h.check("alice", "secret"))  # cached
    assert not asyncio.run(h.check("alice", "wrong"))
    assert not asyncio.run(h.check("carol", "secret"))
    # Edits are picked up without a restart.
    f.write_text(f"alice:{_hash('changed')}\n")
    os.utime(f, (time.time() + 5, time.time() + 5))
    assert not asyncio.run(h.check("alice", "secret"))
    assert asyncio.run(h.check("alice", "changed"))


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="apache2-utils' htpasswd not installed")
def test_htpasswd_file_from_apache_htpasswd(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(f), "alice", "s3cret"], check=True, capture_output=True)
    assert f.read_text().startswith("alice:$2y$")
    h = Htpasswd(f)
    assert asyncio.run(h.check("alice", "s3cret"))
    assert not asyncio.run(h.check("alice", "S3cret"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice:{SHA}abc", "only bcrypt"),
        ("alice:$apr1$x$y", "only bcrypt"),
        ("nocolon", "expected user:hash"),
    ],
)
def test_htpasswd_rejects(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "htpasswd"
    f.write_text(text + "\n")
    with pytest.raises(InvalidArgument, match=message):
        Htpasswd(f)


def test_tokens_round_trip() -> None:
    issuer = TokenIssuer(SECRET, "svc")
    answer = issuer.issue("alice", [auth.push("a/b"), Access("repository", "none", frozenset())])
    assert answer["token"] == answer["access_token"]
    assert answer["expires_in"] == auth.TOKEN_TTL
    grant = issuer.verify(answer["token"])
    assert grant.account == "alice"
    assert grant.access == (auth.push("a/b"),)  # empty grants are left out
    assert grant.allows(auth.pull("a/b"))
    assert grant.allows(auth.push("a/b"))
    assert not grant.allows(auth.delete("a/b"))
    assert not grant.allows(auth.pull("a/c"))


def test_tokens_rejected() -> None:
    issuer = TokenIssuer(SECRET, "svc")
    token = issuer.issue("alice", [])["token"]
    with pytest.raises(jwt.InvalidTokenError):
        TokenIssuer(SECRET, "other-service").verify(token)
    with pytest.raises(jwt.InvalidTokenError):
        TokenIssuer(b"x" * 64, "svc").verify(token)
    expired = TokenIssuer(SECRET, "svc", ttl=-120).issue("alice", [])["token"]
    with pytest.raises(jwt.ExpiredSignatureError):
        issuer.verify(expired)


def test_grant_wildcard() -> None:
    assert Grant("a", (Access("registry", "catalog", frozenset({"*"})),)).allows(auth.CATALOG)
    assert Grant("a", None).allows(auth.delete("anything"))


def test_token_access_challenges() -> None:
    access = TokenAccess(TokenIssuer(SECRET, "svc"))
    with pytest.raises(RegistryError) as exc:
        asyncio.run(access.authorize(None, "http://h:5000", [auth.push("a")]))
    assert exc.value.status == 401
    assert exc.value.headers["WWW-Authenticate"] == (
        'Bearer realm="http://h:5000/token",service="svc",scope="repository:a:pull,push"'
    )
    token = TokenIssuer(SECRET, "svc").issue("u", [auth.pull("a")])["token"]
    assert asyncio.run(access.authorize(f"Bearer {token}", "http://h", [auth.pull("a")])).account == "u"
    with pytest.raises(RegistryError) as exc:
        asyncio.run(access.authorize(f"Bearer {token}", "http://h", [auth.push("a")]))
    assert 'error="insufficient_scope"' in exc.value.headers["WWW-Authenticate"]
    with pytest.raises(RegistryError) as exc:
        asyncio.run(access.authorize("Bearer garbage", "http://h", []))
    assert 'error="invalid_token"' in exc.value.headers["WWW-Authenticate"]
    fixed = TokenAccess(TokenIssuer(SECRET, "svc"), realm="https://auth.example/token")
    with pytest.raises(RegistryError) as exc:
        asyncio.run(fixed.authorize(None, "http://h", []))
    assert exc.value.headers["WWW-Authenticate"] == 'Bearer realm="https://auth.example/token",service="svc"'


def test_secret_is_made_once(tmp_path: Path) -> None:
    first = auth.load_secret(tmp_path / "token.key")
    assert len(first) == 64
    assert (tmp_path / "token.key").stat().st_mode & 0o777 == 0o600
    assert auth.load_secret(tmp_path / "token.key") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.key"]
