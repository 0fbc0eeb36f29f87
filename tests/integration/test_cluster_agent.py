"""The node agent on a real skiffd: an in-process SQLite store and leader, the agent talking to a
private test daemon over its unix socket. A service's replicas become running containers; a
killed container fails its task and a replacement runs; an env change rolls the containers
over; scaling to zero removes them; a stale labelled container made before the agent started
is removed. Health checks reach the task, logs come back split by stream, and a failed pull
rejects the task; limits and a host-mode port reach the container."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from skiff.cluster import ops
from skiff.cluster.agent import LABEL_NODE, LABEL_SERVICE_ID, LABEL_TASK, Agent, HttpEngine
from skiff.cluster.model import (
    Node,
    PortConfig,
    ResourceRequirements,
    Resources,
    RestartCondition,
    RestartPolicy,
    ServiceSpec,
    Task,
    TaskState,
    TaskTemplate,
    UpdatePolicy,
    UpdateState,
)
from skiff.cluster.orchestrator import Orchestrator
from skiff.cluster.state.sqlite import SQLiteStore
from skiff.types.container import HealthConfig
from tests.cluster_support import all_tasks
from tests.daemon_fixture import Daemon

TIMEOUT = 60.0


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``check`` (it reads the daemon too, which no watch covers) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


def test_agent_runs_a_service_on_skiffd(daemon: Daemon, tmp_path: Path) -> None:
    node_id = "skiffagenttest" + secrets.token_hex(6)
    api = daemon.client()
    # A container of this node whose task the store never heard of (left from an earlier life).
    stale = api.create_container(
        "busybox:latest",
        ["sleep", "300"],
        name=f"skiff-agent-stale-{node_id[-6:]}",
        labels={LABEL_NODE: node_id, LABEL_TASK: "nosuchtask"},
    )["Id"]
    api.start(stale)

    async def main() -> None:
        store = SQLiteStore(tmp_path / "store.db")
        engine = HttpEngine(daemon.host)
        probe = HttpEngine(daemon.host)
        agent = Agent(store, Node(id=node_id, hostname="", address="127.0.0.1:2377"), engine, ttl=3)
        leader = Orchestrator(store)
        stop = asyncio.Event()
        loop: asyncio.Future[None] | None = None
        try:
            await agent.start()
            await leader.start()
            loop = asyncio.ensure_future(leader.run(stop))
            assert agent.node.resources.nano_cpus > 0 and agent.node.resources.memory_bytes > 0

            spec = ServiceSpec(
                name=f"web{node_id[-6:]}",
                template=TaskTemplate(image="busybox:latest", command=("sleep", "300"), stop_grace_period=1),
                replicas=2,
                restart=RestartPolicy(delay=0),
                update=UpdatePolicy(parallelism=1, monitor=0),
            )
            web = await ops.create_service(store, spec, now=agent.clock())

            async def containers() -> list[dict[str, Any]]:
                return await probe.list_containers({LABEL_SERVICE_ID: web.id})

            async def settled(n: int, **want: Any) -> bool:
                """``n`` tasks running as desired, each in its own running container, no others."""
                tasks = [
                    t
                    for t in await all_tasks(store)
                    if t.service_id == web.id
                    and t.desired_state is TaskState.RUNNING
                    and not t.state.terminal
                ]
                cs = await containers()
                running = {c["Id"] for c in cs if c["State"] == "running"}
                return (
                    len(tasks) == n
                    and all(t.state is TaskState.RUNNING for t in tasks)
                    and {t.container_id for t in tasks} == running
                    and len(cs) == n
                    and all(getattr(t, k) == v for t in tasks for k, v in want.items())
                )

            await until(lambda: settled(2), "2 replicas running")
            assert await probe.inspect(stale) is None, "the stale container was not removed"
            cs = await containers()
            names = sorted(c["Names"][0].lstrip("/") for c in cs)
            assert [n.split(".")[:2] for n in names] == [[spec.name, "1"], [spec.name, "2"]]
            for c in cs:
                info = await probe.inspect(c["Id"])
                assert info is not None
                assert info["HostConfig"]["RestartPolicy"]["Name"] in ("no", "")
                assert info["Config"]["Labels"][LABEL_NODE] == node_id

            # the agent restarts (as with skiffd): it adopts the running containers
            ids = sorted(c["Id"] for c in cs)
            await agent.stop()
            agent = Agent(store, agent.node, engine, ttl=3)
            await agent.start()
            await agent.settled()
            assert await settled(2)
            assert sorted(c["Id"] for c in await containers()) == ids

            # kill one container: its task fails, a replacement runs, the old container goes
            victim = cs[0]["Id"]
            victim_task = next(t for t in await all_tasks(store) if t.container_id == victim)
            api.kill(victim)
            await until(lambda: settled(2), "replacement running")

            async def victim_failed() -> Task:
                return next(t for t in await all_tasks(store) if t.id == victim_task.id)

            failed = await victim_failed()
            assert failed.state is TaskState.FAILED and failed.message.startswith("task: non-zero exit (")
            assert failed.exit_code not in (None, 0)
            assert await probe.inspect(victim) is None

            # a rolling update (env change) replaces every container
            before = {c["Id"] for c in await containers()}
            changed = replace(spec, template=replace(spec.template, env=("ROLLED=1",)))
            updated = await ops.update_service(store, web.id, changed, now=agent.clock())
            await until(lambda: settled(2, spec_version=updated.version), "update rolled out")
            after = await containers()
            assert not before & {c["Id"] for c in after}
            for c in after:
                info = await probe.inspect(c["Id"])
                assert info is not None and "ROLLED=1" in info["Config"]["Env"]

            async def update_done() -> bool:
                svc, _ = await ops.get_service(store, web.id)
                return svc.update_status is not None and svc.update_status.state is UpdateState.COMPLETED

            await until(update_done, "update completed")

            # scale to zero: every container goes
            await ops.update_service(store, web.id, replace(changed, replicas=0), now=agent.clock())

            async def empty() -> bool:
                return not await containers()

            await until(empty, "containers removed after scaling to 0")
            live = [t for t in await all_tasks(store) if t.service_id == web.id and not t.state.terminal]
            assert not live
        finally:
            stop.set()
            if loop is not None:
                await loop
            await leader.stop()
            await agent.stop()
            with contextlib.suppress(Exception):
                for c in await probe.list_containers({LABEL_NODE: node_id}):
                    await probe.remove(c["Id"], force=True)
            await engine.close()
            await probe.close()
            await store.close()

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(Exception):
            api.remove_container(stale, force=True)


def test_agent_health_logs_and_rejected_pull(daemon: Daemon, tmp_path: Path) -> None:
    node_id = "skiffagenttest" + secrets.token_hex(6)

    async def main() -> None:
        store = SQLiteStore(tmp_path / "store.db")
        engine = HttpEngine(daemon.host)
        agent = Agent(store, Node(id=node_id, hostname="", address="127.0.0.1:2377"), engine, ttl=3)
        leader = Orchestrator(store)
        stop = asyncio.Event()
        loop: asyncio.Future[None] | None = None
        try:
            await agent.start()
            await leader.start()
            loop = asyncio.ensure_future(leader.run(stop))
            checked = ServiceSpec(
                name=f"hc{node_id[-6:]}",
                template=TaskTemplate(
                    image="busybox:latest",
                    command=("sh", "-c", "echo hello-from-task; echo oops >&2; exec sleep 300"),
                    healthcheck=HealthConfig(test=("CMD", "true"), interval=500_000_000),
                    stop_grace_period=1,
                    resources=ResourceRequirements(
                        limits=Resources(nano_cpus=500_000_000, memory_bytes=64 << 20)
                    ),
                    ports=(PortConfig(target=8080),),  # published 0: any free port on the node
                ),
            )
            hc = await ops.create_service(store, checked, now=agent.clock())

            async def up() -> bool:
                return any(t.up for t in await all_tasks(store) if t.service_id == hc.id)

            await until(up, "the health-checked task running and healthy")
            [task] = [t for t in await all_tasks(store) if t.service_id == hc.id]
            assert task.health == "healthy"
            lines: list[tuple[str, bytes]] = []
            async for line in engine.logs(task.container_id):
                lines.append(line)
            assert ("stdout", b"hello-from-task\n") in lines and ("stderr", b"oops\n") in lines
            info = await engine.inspect(task.container_id)
            assert info is not None
            assert info["HostConfig"]["Memory"] == 64 << 20 and info["HostConfig"]["NanoCpus"] == 500_000_000
            [binding] = info["NetworkSettings"]["Ports"]["8080/tcp"]
            assert int(binding["HostPort"]) > 0

            # nothing listens on port 9 of the loopback: the pull fails, the task is rejected
            bad = ServiceSpec(
                name=f"bad{node_id[-6:]}",
                template=TaskTemplate(image="127.0.0.1:9/skiff-agent-test/nosuch:latest"),
                restart=RestartPolicy(condition=RestartCondition.NONE),
            )
            svc = await ops.create_service(store, bad, now=agent.clock())

            async def rejected() -> bool:
                return any(
                    t.state is TaskState.REJECTED for t in await all_tasks(store) if t.service_id == svc.id
                )

            await until(rejected, "the task of a missing image rejected")
            [task] = [t for t in await all_tasks(store) if t.service_id == svc.id]
            assert task.message.startswith("pulling image 127.0.0.1:9/skiff-agent-test/nosuch:latest failed")
            assert task.error
        finally:
            stop.set()
            if loop is not None:
                await loop
            await leader.stop()
            await agent.stop(leave=True)  # removes this node's containers
            await engine.close()
            await store.close()

    asyncio.run(main())
