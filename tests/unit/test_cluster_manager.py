"""The cluster runtime without root: tokens, the state file, reference resolution, the API's
error mapping, and two runtimes (manager + worker) in one process on loopback ports with fake
engines: init, join, a service spread over both nodes, logs, node rules, leave, restart."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from skiff.api.app import Routes, errors_middleware
from skiff.api.cluster import CLUSTER_KEY, register
from skiff.cluster import keys
from skiff.cluster.manager import ClusterRuntime, advertise_address, resolve_ref, split_addr, task_label
from skiff.cluster.model import Task
from skiff.cluster.tokens import (
    ClusterState,
    cluster_digest,
    hash_token,
    load_state,
    make_join_token,
    new_cluster_key,
    node_secret,
    parse_join_token,
    save_state,
    secret_node,
    token_matches,
)
from skiff.errors import Conflict, InvalidArgument, NotFound, Unauthorized, Unavailable
from tests.cluster_support import template
from tests.unit.test_cluster_agent import FakeEngine

# --- tokens and secrets


def test_join_token_shape_and_checks() -> None:
    token = make_join_token("cluster1")
    prefix, version, digest, secret = token.split("-")
    assert (prefix, version, len(digest), len(secret)) == ("SKFTKN", "1", 50, 25)
    assert parse_join_token(token) == digest == cluster_digest("cluster1")
    assert cluster_digest("cluster2") != digest
    assert token_matches(token, hash_token(token))
    assert token_matches(token + "\n", hash_token(token))  # pasted with a newline
    other = make_join_token("cluster1")
    assert other != token and not token_matches(other, hash_token(token))
    assert not token_matches(token, "")
    for bad in ("", "SWMTKN-1-abc-def", token[:-1], token.replace("SKFTKN-1", "SKFTKN-2"), token.upper()):
        with pytest.raises(InvalidArgument, match="invalid join token"):
            parse_join_token(bad)


def test_node_secret_is_bound_to_node_and_key() -> None:
    key = new_cluster_key()
    secret = node_secret(key, "nodeA")
    assert secret.startswith("nodeA.")
    assert secret_node(key, secret) == "nodeA"
    forged = "nodeB." + secret.split(".", 1)[1]
    assert secret_node(key, forged) is None
    assert secret_node(new_cluster_key(), secret) is None
    assert secret_node(key, "") is None and secret_node("", secret) is None


# --- the state file


def _state(**kw: Any) -> ClusterState:
    base: dict[str, Any] = {
        "cluster_id": "c1",
        "node_id": "n1",
        "role": "manager",
        "secret": "n1.x",
        "listen_addr": "0.0.0.0:2377",
        "advertise_addr": "10.0.0.1:2377",
    }
    return ClusterState(**(base | kw))


def test_state_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "cluster" / "state.json"
    assert load_state(path) is None
    state = _state(managers=["10.0.0.1:2377"], worker_token="w")
    save_state(path, state)
    assert load_state(path) == state
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    data["from_a_newer_skiff"] = 1  # unknown keys are ignored
    path.write_text(json.dumps(data))
    assert load_state(path) == state


def test_state_file_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails before its rename leaves the old file whole and no temporary behind."""
    path = tmp_path / "state.json"
    save_state(path, _state(role="manager"))

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        save_state(path, _state(role="worker"))
    monkeypatch.undo()
    assert load_state(path) == _state(role="manager")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_state_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(InvalidArgument, match="cannot read the cluster state"):
        load_state(path)


# --- small pieces


def test_resolve_ref() -> None:
    items = [("abc123", "web"), ("abd456", "db"), ("xyz789", "abc123x")]
    assert resolve_ref("service", "abc123", items) == "abc123"  # exact id first
    assert resolve_ref("service", "db", items) == "abd456"  # then a name
    assert resolve_ref("service", "xy", items) == "xyz789"  # then a unique prefix
    with pytest.raises(InvalidArgument, match="ambiguous"):
        resolve_ref("service", "ab", items)
    with pytest.raises(NotFound, match="service nope not found"):
        resolve_ref("service", "nope", items)
    with pytest.raises(InvalidArgument, match="ambiguous"):
        resolve_ref("node", "twin", [("n1", "twin"), ("n2", "twin")])
    with pytest.raises(InvalidArgument):
        resolve_ref("node", "", items)


def test_addresses() -> None:
    assert split_addr("0.0.0.0:2377") == ("0.0.0.0", 2377)
    assert split_addr("10.1.2.3") == ("10.1.2.3", 2377)
    assert split_addr(":4000") == ("0.0.0.0", 4000)
    for bad in ("h:x", "h:70000", ""):
        with pytest.raises(InvalidArgument):
            split_addr(bad)
    assert advertise_address("10.9.9.9", "0.0.0.0", 2377, None) == "10.9.9.9:2377"
    assert advertise_address(None, "127.0.0.1", 4000, None) == "127.0.0.1:4000"
    assert advertise_address(None, "0.0.0.0", 4000, "127.0.0.1") == "127.0.0.1:4000"


def test_task_label() -> None:
    task = Task(
        id="t" * 25,
        service_id="s",
        service_name="web",
        slot=2,
        template=template(),
        spec_version=1,
        node_id="n" * 25,
    )
    assert task_label(task, "node2") == f"web.2.{'t' * 12}@node2"
    glob = Task(
        id="t" * 25,
        service_id="s",
        service_name="mon",
        slot=0,
        template=template(),
        spec_version=1,
        node_id="n" * 25,
    )
    assert task_label(glob, "") == f"mon.{'n' * 12}.{'t' * 12}@{'n' * 12}"


# --- the API's error mapping


def _app(runtime: ClusterRuntime | None) -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    register(Routes(app))
    if runtime is not None:
        app[CLUSTER_KEY] = runtime
    return app


def _run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


def test_api_outside_a_cluster(tmp_path: Path) -> None:
    async def main() -> None:
        runtime = ClusterRuntime(
            tmp_path, engine_host="unix:///nonexistent", engine_factory=lambda h: FakeEngine()
        )
        async with TestClient(TestServer(_app(runtime))) as client:
            for method, path in (
                ("GET", "/skiff/cluster/nodes"),
                ("GET", "/v1.41/skiff/cluster/services"),
                ("POST", "/skiff/cluster/services"),
                ("GET", "/skiff/cluster/join-token?role=worker"),
            ):
                resp = await client.request(method, path)
                assert resp.status == 503, path
                assert "not a cluster manager" in (await resp.json())["message"]
            resp = await client.get("/skiff/cluster")
            assert resp.status == 503 and "not part of a cluster" in (await resp.json())["message"]
            resp = await client.post("/skiff/cluster/join", json={"RemoteAddrs": ["127.0.0.1:1"]})
            assert resp.status == 400 and "JoinToken" in (await resp.json())["message"]
            resp = await client.post("/skiff/cluster/join", json={"RemoteAddrs": ["x"], "JoinToken": "nope"})
            assert resp.status == 400 and "invalid join token" in (await resp.json())["message"]
            resp = await client.post("/skiff/cluster/init", json=[1])
            assert resp.status == 400
        await runtime.stop()

    _run(main)


# --- two runtimes on loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)  # polling cadence, not an assertion on timing


@contextlib.asynccontextmanager
async def runtime_at(root: Path, name: str, engine: FakeEngine) -> AsyncIterator[ClusterRuntime]:
    rt = ClusterRuntime(root, engine_host="fake", node_name=name, ttl=3, engine_factory=lambda h: engine)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


def test_two_nodes_init_join_service_leave(tmp_path: Path) -> None:
    async def main() -> None:
        m_engine, w_engine = FakeEngine(), FakeEngine()
        m_port, w_port = free_port(), free_port()
        async with contextlib.AsyncExitStack() as stack:
            mgr = await stack.enter_async_context(runtime_at(tmp_path / "m", "mgr", m_engine))
            wrk = await stack.enter_async_context(runtime_at(tmp_path / "w", "wrk", w_engine))
            third = await stack.enter_async_context(runtime_at(tmp_path / "x", "third", FakeEngine()))

            out = await mgr.init(listen_addr=f"127.0.0.1:{m_port}")
            tokens = out["JoinTokens"]
            assert parse_join_token(tokens["Worker"]) == cluster_digest(out["ClusterID"])
            with pytest.raises(Unavailable, match="already part of a cluster"):
                await mgr.init(listen_addr=f"127.0.0.1:{free_port()}")
            state = load_state(tmp_path / "m" / "cluster" / "state.json")
            assert state is not None and state.role == "manager" and state.store.startswith("sqlite://")
            assert mgr.store is not None
            record = json.loads((await mgr.store.get(keys.CLUSTER)).value)  # type: ignore[union-attr]
            assert tokens["Worker"] not in json.dumps(record)  # only hashes in the store
            assert record["tokens"]["worker"] == hash_token(tokens["Worker"])

            # wrong token, wrong cluster, manager token on SQLite: refused, nothing kept
            bad = tokens["Worker"][:-3] + "zzz"
            with pytest.raises(Unauthorized, match="invalid join token"):
                await third.join([f"127.0.0.1:{m_port}"], bad, listen_addr=f"127.0.0.1:{free_port()}")
            foreign = make_join_token("another-cluster")
            with pytest.raises(InvalidArgument, match="not for the cluster"):
                await third.join([f"127.0.0.1:{m_port}"], foreign, listen_addr=f"127.0.0.1:{free_port()}")
            with pytest.raises(InvalidArgument, match="--store etcd://"):
                await third.join(
                    [f"127.0.0.1:{m_port}"], tokens["Manager"], listen_addr=f"127.0.0.1:{free_port()}"
                )
            assert third.state is None and not (tmp_path / "x" / "cluster" / "state.json").exists()

            joined = await wrk.join(
                [f"127.0.0.1:{m_port}"], tokens["Worker"], listen_addr=f"127.0.0.1:{w_port}"
            )
            assert joined["Role"] == "worker"
            with pytest.raises(Unavailable, match="Worker nodes can't be used"):
                await wrk.nodes()
            info = await wrk.inspect()
            assert info["Role"] == "worker" and info["Managers"] == [f"127.0.0.1:{m_port}"]

            async def both_ready() -> bool:
                nodes = await mgr.nodes()
                return len(nodes) == 2 and all(n["Status"] == "ready" for n in nodes)

            await until(both_ready)
            nodes = {n["hostname"]: n for n in await mgr.nodes()}
            assert nodes["mgr"]["role"] == "manager" and nodes["wrk"]["role"] == "worker"
            assert nodes["wrk"]["ManagerStatus"] is None
            await until(lambda: _leader_is(mgr, nodes["mgr"]["id"]))
            assert nodes["wrk"]["resources"]["memory_bytes"] == 4 << 30
            assert (await mgr.node_inspect("wrk"))["id"] == nodes["wrk"]["id"]
            assert (await mgr.node_inspect(nodes["wrk"]["id"][:8]))["hostname"] == "wrk"

            # node rules
            with pytest.raises(Conflict, match="not down"):
                await mgr.node_rm("wrk")
            with pytest.raises(Conflict, match="cluster manager"):
                await mgr.node_rm("mgr", force=True)
            with pytest.raises(Conflict, match="last manager"):
                await mgr.node_update("mgr", role="worker")
            with pytest.raises(InvalidArgument, match="--store etcd://"):
                await mgr.node_update("wrk", role="manager")
            await mgr.node_update("wrk", labels_add={"zone": "b", "ssd": "1"})
            await mgr.node_update("wrk", labels_rm=["ssd"])
            with pytest.raises(NotFound):
                await mgr.node_update("wrk", labels_rm=["ssd"])
            assert (await mgr.node_inspect("wrk"))["labels"] == {"zone": "b"}

            # a service spread over both nodes
            spec = {
                "name": "web",
                "template": {"image": "busybox", "command": ["sleep", "100"]},
                "replicas": 2,
            }
            sid = (await mgr.service_create(spec))["ID"]
            with pytest.raises(Conflict):
                await mgr.service_create(spec)
            with pytest.raises(InvalidArgument):
                await mgr.service_create({"name": "x"})

            async def running(n: int) -> bool:
                return (await mgr.service_inspect("web"))["Running"] == n

            await until(lambda: running(2))
            tasks = await mgr.tasks(service="web")
            live = [t for t in tasks if t["state"] == "running"]
            assert {t["NodeHostname"] for t in live} == {"mgr", "wrk"}
            assert all(t["ServiceName"] == "web" for t in tasks)
            assert len(m_engine.running()) == len(w_engine.running()) == 1
            assert (await mgr.services())[0]["Desired"] == 2
            assert [t["id"] for t in await mgr.tasks(node="wrk") if t["state"] == "running"] == [
                t["id"] for t in live if t["NodeHostname"] == "wrk"
            ]

            lines = [item async for item in mgr.service_logs("web")]
            assert sorted(label.split("@")[1] for label, _ in lines) == ["mgr", "wrk"]
            assert all(line == b"hello\n" and label.startswith("web.") for label, line in lines)

            # the same through the HTTP API: statuses and shapes
            async with TestClient(TestServer(_app(mgr))) as api:
                resp = await api.get("/skiff/cluster/services/nope")
                assert resp.status == 404 and (await resp.json())["message"] == "service nope not found"
                resp = await api.post("/v1.41/skiff/cluster/services", json={"name": "x"})
                assert resp.status == 400
                resp = await api.delete("/skiff/cluster/nodes/wrk")
                assert resp.status == 409 and "not down" in (await resp.json())["message"]
                resp = await api.post("/skiff/cluster/nodes/wrk/update", json={"Availability": "sideways"})
                assert resp.status == 400
                resp = await api.get("/skiff/cluster/tasks", params={"service": "web"})
                assert resp.status == 200 and {t["ServiceName"] for t in await resp.json()} == {"web"}
                resp = await api.get("/skiff/cluster/services/web/logs")
                assert resp.status == 200
                got = [json.loads(line) for line in (await resp.read()).splitlines()]
                assert sorted(g["Task"].split("@")[1] for g in got) == ["mgr", "wrk"]
                assert {base64.b64decode(g["Data"]) for g in got} == {b"hello\n"}
                resp = await api.get("/skiff/cluster")
                assert (await resp.json())["Store"] == "sqlite"

            # scale to 0, remove
            inspected = await mgr.service_inspect(sid[:6])
            await mgr.service_update("web", inspected["spec"] | {"replicas": 0})
            await until(lambda: running(0))

            async def no_containers() -> bool:
                return not m_engine.containers and not w_engine.containers

            await until(no_containers)
            await mgr.service_rm("web")
            assert await mgr.services() == []

            # the worker leaves: its node goes down, then can be removed
            await wrk.leave()
            assert wrk.state is None and not (tmp_path / "w" / "cluster" / "state.json").exists()

            async def worker_down() -> bool:
                return (await mgr.node_inspect("wrk"))["Status"] == "down"

            await until(worker_down)
            await mgr.node_rm("wrk")
            assert [n["hostname"] for n in await mgr.nodes()] == ["mgr"]

            # a rotated token: the old one is refused, the new one works
            rotated = await mgr.join_token("worker", rotate=True)
            assert rotated != tokens["Worker"] and await mgr.join_token("worker") == rotated
            with pytest.raises(Unauthorized):
                await third.join(
                    [f"127.0.0.1:{m_port}"], tokens["Worker"], listen_addr=f"127.0.0.1:{free_port()}"
                )
            with pytest.raises(InvalidArgument, match="unknown role"):
                await mgr.join_token("boss")

            # the manager refuses to leave without --force
            with pytest.raises(Unavailable, match="--force"):
                await mgr.leave()
            cluster_id = out["ClusterID"]

        # a restarted manager resumes from its state file
        async with runtime_at(tmp_path / "m", "mgr", FakeEngine()) as again:
            await until(lambda: _has_state(again))
            assert (await again.inspect())["ClusterID"] == cluster_id
            await until(lambda: _node_ready(again, "mgr"))
            await again.leave(force=True)
            assert not (tmp_path / "m" / "cluster" / "state.json").exists()
            assert not (tmp_path / "m" / "cluster" / "store.db").exists()

    _run(main)


async def _leader_is(rt: ClusterRuntime, node_id: str) -> bool:
    return (await rt.inspect())["Leader"] == node_id


async def _has_state(rt: ClusterRuntime) -> bool:
    return rt.state is not None and rt.store is not None


async def _node_ready(rt: ClusterRuntime, name: str) -> bool:
    return (await rt.node_inspect(name))["Status"] == "ready"


def test_unreachable_cluster_resumes_in_background_and_can_be_forgotten(tmp_path: Path) -> None:
    """A worker whose managers are gone: skiffd starts anyway (the runtime keeps trying in the
    background), refuses a second init, and ``leave --force`` forgets the cluster."""

    async def main() -> None:
        dead = f"127.0.0.1:{free_port()}"
        save_state(
            tmp_path / "cluster" / "state.json",
            _state(role="worker", listen_addr=f"127.0.0.1:{free_port()}", managers=[dead]),
        )
        async with runtime_at(tmp_path, "lonely", FakeEngine()) as rt:
            assert rt.state is None  # start() returned at once; resuming goes on in the background
            with pytest.raises(Unavailable, match="already part of a cluster"):
                await rt.init(listen_addr=f"127.0.0.1:{free_port()}")
            with pytest.raises(Unavailable, match="not part of a cluster"):
                await rt.leave()
            await rt.leave(force=True)
            assert not (tmp_path / "cluster" / "state.json").exists()
            out = await rt.init(listen_addr=f"127.0.0.1:{free_port()}")
            assert (await rt.inspect())["ClusterID"] == out["ClusterID"]
            await rt.leave(force=True)

    _run(main)
