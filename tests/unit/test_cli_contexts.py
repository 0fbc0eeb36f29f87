"""skiff context: the contexts file, the CLI commands and the order a daemon address is chosen in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skiff.cli.context import CliContext
from skiff.cli.main import run
from skiff.client import DEFAULT_HOST
from skiff.client.contexts import ContextStore, select_host
from skiff.errors import AlreadyExists, InvalidArgument, NotFound

LAB = "unix:///run/skiff-lab/demo/n1/skiff.sock"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SKIFF_CONFIG", str(tmp_path))
    for var in ("SKIFF_HOST", "DOCKER_HOST", "SKIFF_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_store_create_use_remove(config: Path) -> None:
    store = ContextStore()
    assert store.current() == "default"
    assert [c.name for c in store.list()] == ["default"]
    store.create("lab-demo", "/run/skiff-lab/demo/n1/skiff.sock", "a lab")
    assert store.get("lab-demo").host == LAB  # a bare path means a unix socket
    with pytest.raises(AlreadyExists):
        store.create("lab-demo", LAB)
    assert store.use("lab-demo") == "default"
    data = json.loads((config / "contexts.json").read_text())
    assert data["current"] == "lab-demo"
    assert data["contexts"]["lab-demo"] == {"host": LAB, "description": "a lab"}
    with pytest.raises(InvalidArgument, match="in use"):
        store.remove("lab-demo")
    store.remove("lab-demo", force=True)
    assert store.current() == "default"
    with pytest.raises(NotFound):
        store.use("lab-demo")
    with pytest.raises(InvalidArgument):
        store.remove("default")
    with pytest.raises(InvalidArgument):
        store.create("default", LAB)
    with pytest.raises(InvalidArgument):
        store.create("bad name", LAB)
    with pytest.raises(InvalidArgument):
        store.create("x", "ftp://nope")


def test_resolution_order(config: Path) -> None:
    store = ContextStore()
    store.create("a", "tcp://10.0.0.1:2375")
    store.create("b", "tcp://10.0.0.2:2375")
    env: dict[str, str] = {"SKIFF_CONFIG": str(config)}
    assert select_host(None, env=env) == DEFAULT_HOST
    store.use("a")
    assert select_host(None, env=env) == "tcp://10.0.0.1:2375"  # current context
    env["SKIFF_CONTEXT"] = "b"
    assert select_host(None, env=env) == "tcp://10.0.0.2:2375"  # $SKIFF_CONTEXT over current
    assert select_host(None, "a", env=env) == "tcp://10.0.0.1:2375"  # --context over both
    assert select_host(None, "default", env=env) == DEFAULT_HOST
    env["DOCKER_HOST"] = "unix:///docker.sock"
    assert select_host(None, "a", env=env) == "unix:///docker.sock"  # env host over contexts
    env["SKIFF_HOST"] = "unix:///skiff.sock"
    assert select_host(None, "a", env=env) == "unix:///skiff.sock"  # SKIFF_HOST over DOCKER_HOST
    assert select_host("tcp://flag:1", "a", env=env) == "tcp://flag:1"  # -H over everything
    with pytest.raises(NotFound, match="context ls"):
        select_host(None, "gone", env={"SKIFF_CONFIG": str(config)})


def test_cli_context_uses_the_flags(config: Path) -> None:
    ContextStore().create("lab-demo", LAB)
    assert CliContext().host == DEFAULT_HOST
    assert CliContext(context_flag="lab-demo").host == LAB
    assert CliContext(host_flag="tcp://h:1", context_flag="lab-demo").host == "tcp://h:1"


def test_context_commands(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["context", "create", "lab-demo", "--host", LAB, "--description", "three nodes"]) == 0
    assert run(["context", "use", "lab-demo"]) == 0
    capsys.readouterr()
    assert run(["context", "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "SKIFF", "ENDPOINT"]
    assert lines[2].startswith("lab-demo *") and lines[2].endswith(LAB)
    assert not lines[1].startswith("default *")
    assert run(["context", "inspect"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown[0]["Name"] == "lab-demo" and shown[0]["Endpoints"]["skiff"]["Host"] == LAB
    assert run(["--context", "default", "context", "ls", "-q"]) == 0
    assert capsys.readouterr().out.split() == ["default", "lab-demo"]
    assert run(["context", "rm", "lab-demo"]) == 1  # in use
    assert "in use" in capsys.readouterr().err
    assert run(["context", "use", "default"]) == 0
    assert run(["context", "rm", "lab-demo"]) == 0
    assert run(["context", "inspect", "lab-demo"]) == 1
    assert "does not exist" in capsys.readouterr().err
