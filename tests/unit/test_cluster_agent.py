"""The node agent against a fake engine and a memory store: task state transitions, failure
reports, shutdown, stale containers at start, adoption, health, lease loss and re-registration,
and the leader's loop driving it (replicas, a killed container replaced, scale to zero)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from skiff.cluster import keys, ops
from skiff.cluster.agent import (
    LABEL_NODE,
    LABEL_SERVICE_NAME,
    LABEL_TASK,
    Agent,
    container_config,
    container_name,
)
from skiff.cluster.model import (
    Availability,
    Node,
    NodeStatus,
    PortConfig,
    ResourceRequirements,
    Resources,
    RestartPolicy,
    ServiceSpec,
    Task,
    TaskState,
    advance,
    from_json,
    new_task,
    to_json,
)
from skiff.cluster.orchestrator import Orchestrator
from skiff.cluster.state.memory import MemoryStore
from skiff.errors import Conflict, NotFound, Unavailable
from skiff.types.container import HealthConfig
from tests.cluster_support import all_tasks, service, template

NODE = "node0000000000000000000001"


class FakeEngine:
    """An in-memory Engine API: containers, images, events (see ``EngineClient``)."""

    def __init__(self, images: set[str] | None = None) -> None:
        self.images = set(images if images is not None else {"busybox"})
        self.registry = {"busybox", "alpine", "nginx"}  # what a pull can fetch
        self.containers: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.pulls: list[str] = []
        self.created: list[str] = []
        self.removed: list[str] = []
        self.exit_on_start: dict[str, int] = {}  # image -> exit code right after start
        self.fail_start: set[str] = set()  # images whose start fails
        self.create_delay = 0.0  # seconds each create takes
        self.inflight = 0  # creates in progress now
        self.max_inflight = 0  # most creates ever in progress at once
        self._subscribers: list[asyncio.Queue[dict[str, Any] | None]] = []
        self._ids = itertools.count(1)

    # EngineClient

    async def info(self) -> dict[str, Any]:
        return {"NCPU": 2, "MemTotal": 4 << 30, "Name": "fakehost"}

    async def image_exists(self, ref: str) -> bool:
        return ref in self.images

    async def pull(self, ref: str) -> None:
        self.pulls.append(ref)
        if ref not in self.registry:
            raise NotFound(f"pull access denied for {ref}, repository does not exist")
        self.images.add(ref)

    async def create(self, name: str, config: dict[str, Any]) -> str:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.create_delay:
                await asyncio.sleep(self.create_delay)
        finally:
            self.inflight -= 1
        if any(c["Name"] == "/" + name for c in self.containers.values()):
            raise Conflict(f'Conflict. The container name "/{name}" is already in use')
        if config["Image"] not in self.images:
            raise NotFound(f"No such image: {config['Image']}")
        cid = f"{next(self._ids):064x}"
        self.containers[cid] = {
            "Id": cid,
            "Name": "/" + name,
            "Labels": dict(config.get("Labels") or {}),
            "Config": {"Image": config["Image"], "Labels": dict(config.get("Labels") or {})},
            "State": {"Status": "created", "ExitCode": 0, "OOMKilled": False},
        }
        self.configs[cid] = config
        self.created.append(name)
        return cid

    async def start(self, container_id: str) -> None:
        c = self._get(container_id)
        image = c["Config"]["Image"]
        if image in self.fail_start:
            raise Conflict("driver failed programming external connectivity: port is already allocated")
        c["State"]["Status"] = "running"
        if "Healthcheck" in self.configs[container_id]:
            c["State"]["Health"] = {"Status": "starting"}
        if image in self.exit_on_start:
            self.exit(container_id, self.exit_on_start[image])

    async def stop(self, container_id: str, *, timeout: int) -> None:
        c = self._get(container_id)
        if c["State"]["Status"] == "running":
            self.exit(container_id, 137)

    async def remove(self, container_id: str, *, force: bool = True) -> None:
        c = self._get(container_id)
        if c["State"]["Status"] == "running":
            if not force:
                raise Conflict("You cannot remove a running container")
            self.exit(container_id, 137)
        del self.containers[container_id]
        self.removed.append(c["Name"][1:])
        self._emit(container_id, "destroy")

    async def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(c)
            for c in self.containers.values()
            if all(c["Labels"].get(k) == v for k, v in labels.items())
        ]

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        c = self.containers.get(container_id)
        return copy.deepcopy(c) if c is not None else None

    async def events(
        self, filters: Mapping[str, list[str]], *, since: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.remove(queue)

    async def logs(
        self, container_id: str, *, follow: bool = False, tail: str = "all", timestamps: bool = False
    ) -> AsyncIterator[tuple[str, bytes]]:
        yield "stdout", b"hello\n"

    async def close(self) -> None:
        pass

    # test controls

    def _get(self, container_id: str) -> dict[str, Any]:
        c = self.containers.get(container_id)
        if c is None:
            raise NotFound(f"No such container: {container_id}")
        return c

    def _emit(self, cid: str, action: str) -> None:
        labels = self.containers[cid]["Labels"] if cid in self.containers else {}
        event = {"Type": "container", "Action": action, "Actor": {"ID": cid, "Attributes": dict(labels)}}
        for q in self._subscribers:
            q.put_nowait(event)

    def exit(self, cid: str, code: int, *, event: bool = True) -> None:
        """The container's process ends with ``code`` (a ``die`` event, unless ``event`` is false:
        an event the agent missed)."""
        c = self._get(cid)
        c["State"].update(Status="exited", ExitCode=code)
        if event:
            self._emit(cid, "die")

    def break_events(self) -> None:
        """End every event stream (the daemon restarted, the connection broke)."""
        for q in self._subscribers:
            q.put_nowait(None)

    def set_health(self, cid: str, status: str) -> None:
        self._get(cid)["State"]["Health"] = {"Status": status}
        event = {
            "Type": "container",
            "Action": f"health_status: {status}",
            "Actor": {"ID": cid, "Attributes": {}},
        }
        for q in self._subscribers:
            q.put_nowait(event)

    def by_name(self, prefix: str) -> list[dict[str, Any]]:
        return [c for c in self.containers.values() if c["Name"].startswith("/" + prefix)]

    def running(self) -> list[dict[str, Any]]:
        return [c for c in self.containers.values() if c["State"]["Status"] == "running"]


def node(node_id: str = NODE, **kw: Any) -> Node:
    return Node(id=node_id, hostname=kw.pop("hostname", "host1"), address="10.0.0.1:2377", **kw)


async def put_assigned(store: MemoryStore, *, slot: int = 1, **tpl: Any) -> Task:
    """A task of a new service, assigned to ``NODE``, written to the store."""
    svc = service(f"svc{slot}", name=tpl.pop("name", "web"), tpl=template(**tpl))
    t = new_task(svc, slot=slot, node_id="", predecessor=None, now=1.0)
    t = advance(t, TaskState.ASSIGNED, now=1.0, node_id=NODE)
    await store.put(keys.task(t.id), to_json(t))
    return t


async def get_task(store: MemoryStore, task_id: str) -> Task | None:
    kv = await store.get(keys.task(task_id))
    return from_json(Task, kv.value) if kv is not None else None


async def until(store: MemoryStore, check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Wait until ``check()`` holds: it may depend on the fake engine, which the store's watch
    does not see, so this polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def wait_state(store: MemoryStore, task_id: str, state: TaskState) -> Task:
    async def reached() -> bool:
        t = await get_task(store, task_id)
        return t is not None and t.state is state

    await until(store, reached)
    t = await get_task(store, task_id)
    assert t is not None
    return t


async def states_of(store: MemoryStore, task_id: str) -> list[TaskState]:
    """Every state the task's record went through, from the store's history."""
    out: list[TaskState] = []
    last = await store.revision()
    async with store.watch(keys.ROOT, start_revision=1) as w:
        async for events in w:
            for e in events:
                if e.type == "put" and e.kv.key == keys.task(task_id):
                    s = from_json(Task, e.kv.value).state
                    if not out or out[-1] is not s:
                        out.append(s)
            if events[-1].kv.mod_revision >= last:
                break
    return out


@contextlib.asynccontextmanager
async def running_agent(
    engine: FakeEngine | None = None, store: Any = None, **kw: Any
) -> AsyncIterator[tuple[Any, FakeEngine, Agent]]:
    store = store or MemoryStore()
    engine = engine or FakeEngine()
    agent = Agent(store, kw.pop("the_node", node()), engine, **{"ttl": 1, **kw})
    await agent.start()
    try:
        yield store, engine, agent
    finally:
        await agent.stop()
        await store.close()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 30))  # type: ignore[arg-type]


# --- container config -----------------------------------------------------------------------


def test_container_config_and_name() -> None:
    tpl = template(
        image="nginx",
        command=("nginx", "-g", "daemon off;"),
        env=("A=1",),
        labels={"tier": "web"},
        ports=(),
    )
    tpl = replace(
        tpl,
        resources=ResourceRequirements(
            reservations=Resources(nano_cpus=0, memory_bytes=64 << 20),
            limits=Resources(nano_cpus=500_000_000, memory_bytes=128 << 20),
        ),
        ports=(PortConfig(target=80, published=8080), PortConfig(target=53, protocol="udp")),
        stop_grace_period=2.5,
    )
    svc = service("s1", name="web", tpl=tpl)
    t = advance(
        new_task(svc, slot=3, node_id="", predecessor=None, now=1.0), TaskState.ASSIGNED, now=1, node_id=NODE
    )
    assert container_name(t) == f"web.3.{t.id[:12]}"
    cfg = container_config(t)
    assert cfg["Image"] == "nginx"
    assert cfg["Cmd"] == ["nginx", "-g", "daemon off;"] and "Entrypoint" not in cfg
    assert cfg["Env"] == ["A=1"]
    assert cfg["StopTimeout"] == 3
    labels = cfg["Labels"]
    assert labels["tier"] == "web" and labels[LABEL_TASK] == t.id and labels[LABEL_NODE] == NODE
    assert labels[LABEL_SERVICE_NAME] == "web" and labels["com.docker.swarm.task.id"] == t.id
    host = cfg["HostConfig"]
    assert host["RestartPolicy"] == {"Name": "no"}
    assert host["Memory"] == 128 << 20 and host["NanoCpus"] == 500_000_000
    assert host["MemoryReservation"] == 64 << 20
    assert host["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}],
    }
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}

    glob = advance(
        new_task(service("s2", name="mon"), slot=0, node_id=NODE, predecessor=None, now=1.0),
        TaskState.ASSIGNED,
        now=1,
    )
    assert container_name(glob) == f"mon.{NODE[:12]}.{glob.id[:12]}"


# --- transitions ----------------------------------------------------------------------------


def test_assigned_task_prepares_starts_and_runs() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, _agent):
            t = await put_assigned(store, image="alpine", command=("sleep", "300"))
            done = await wait_state(store, t.id, TaskState.RUNNING)
            assert await states_of(store, t.id) == [
                TaskState.ASSIGNED,
                TaskState.PREPARING,
                TaskState.STARTING,
                TaskState.RUNNING,
            ]
            assert engine.pulls == ["alpine"]  # missing: pulled once
            [c] = engine.running()
            assert c["Name"] == "/" + container_name(t)
            assert done.container_id == c["Id"] and done.message == "started"
            assert engine.configs[c["Id"]]["Cmd"] == ["sleep", "300"]

    run(main)


def test_node_registered_with_engine_resources() -> None:
    async def main() -> None:
        async with running_agent(the_node=node(hostname="")) as (store, _, agent):
            kv = await store.get(keys.node(NODE))
            assert kv is not None
            n = from_json(Node, kv.value)
            assert n.hostname == "fakehost"
            assert n.resources == Resources(2_000_000_000, 4 << 30)
            assert n.status is NodeStatus.READY
            lease = await store.get(keys.node_lease(NODE))
            assert lease is not None and lease.lease == agent.lease_id

    run(main)


@pytest.mark.parametrize(("code", "state"), [(0, TaskState.COMPLETE), (3, TaskState.FAILED)])
def test_container_exit_reported(code: int, state: TaskState) -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, _):
            t = await put_assigned(store)
            await wait_state(store, t.id, TaskState.RUNNING)
            [c] = engine.running()
            engine.exit(c["Id"], code)
            ended = await wait_state(store, t.id, state)
            assert ended.exit_code == code
            if code:
                assert ended.message == "task: non-zero exit (3)"
                assert ended.error == "task: non-zero exit (3)"
            else:
                assert ended.message == "finished"
            assert c["Id"] in engine.containers  # kept while the task is desired running

    run(main)


def test_exit_right_after_start() -> None:
    async def main() -> None:
        engine = FakeEngine()
        engine.exit_on_start["busybox"] = 1
        async with running_agent(engine) as (store, _, _agent):
            t = await put_assigned(store)
            ended = await wait_state(store, t.id, TaskState.FAILED)
            assert ended.message == "task: non-zero exit (1)" and ended.exit_code == 1

    run(main)


def test_missing_image_rejects_task() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, _):
            t = await put_assigned(store, image="nosuch/image")
            ended = await wait_state(store, t.id, TaskState.REJECTED)
            assert "pulling image nosuch/image failed" in ended.message
            assert "repository does not exist" in ended.error
            assert not engine.containers

    run(main)


def test_start_failure_fails_task() -> None:
    async def main() -> None:
        engine = FakeEngine()
        engine.fail_start.add("busybox")
        async with running_agent(engine) as (store, _, _agent):
            t = await put_assigned(store)
            ended = await wait_state(store, t.id, TaskState.FAILED)
            assert "port is already allocated" in ended.message

    run(main)


def test_desired_shutdown_stops_and_removes() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, _):
            t = await put_assigned(store)
            running = await wait_state(store, t.id, TaskState.RUNNING)
            kv = await store.get(keys.task(t.id))
            assert kv is not None
            told = replace(running, desired_state=TaskState.SHUTDOWN)
            await store.put(keys.task(t.id), to_json(told))
            ended = await wait_state(store, t.id, TaskState.SHUTDOWN)
            assert not engine.containers and engine.removed == [container_name(t)]
            assert ended.finished_at > 0

    run(main)


def test_deleted_task_loses_its_container() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, agent):
            t = await put_assigned(store)
            await wait_state(store, t.id, TaskState.RUNNING)
            await store.delete(keys.task(t.id))

            async def gone() -> bool:
                await agent.settled()
                return not engine.containers

            await until(store, gone)

    run(main)


def test_tasks_of_other_nodes_are_ignored() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, agent):
            svc = service("other", name="other")
            t = advance(
                new_task(svc, slot=1, node_id="", predecessor=None, now=1.0),
                TaskState.ASSIGNED,
                now=1.0,
                node_id="someothernode",
            )
            await store.put(keys.task(t.id), to_json(t))
            mine = await put_assigned(store)
            await wait_state(store, mine.id, TaskState.RUNNING)
            await agent.settled()
            assert (await get_task(store, t.id)).state is TaskState.ASSIGNED  # type: ignore[union-attr]
            assert len(engine.containers) == 1

    run(main)


def test_health_reported_and_unhealthy_fails() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, _):
            hc = HealthConfig(test=("CMD", "true"), interval=1_000_000_000)
            t = await put_assigned(store, healthcheck=hc)
            running = await wait_state(store, t.id, TaskState.RUNNING)
            assert running.health == "starting" and not running.up
            [c] = engine.running()
            assert engine.configs[c["Id"]]["Healthcheck"]["Test"] == ["CMD", "true"]
            engine.set_health(c["Id"], "healthy")

            async def healthy() -> bool:
                got = await get_task(store, t.id)
                return got is not None and got.health == "healthy"

            await until(store, healthy)
            assert (await get_task(store, t.id)).up  # type: ignore[union-attr]
            engine.set_health(c["Id"], "unhealthy")
            ended = await wait_state(store, t.id, TaskState.FAILED)
            assert ended.message == "task: unhealthy container"
            assert engine.containers[c["Id"]]["State"]["Status"] == "exited"

    run(main)


# --- start-up reconciliation ----------------------------------------------------------------


def test_stale_containers_removed_and_live_ones_adopted_at_start() -> None:
    async def main() -> None:
        store, engine = MemoryStore(), FakeEngine()
        # a task running here before the agent restarted: its container is adopted
        kept = await put_assigned(store, slot=1)
        kept_cid = await engine.create(container_name(kept), container_config(kept))
        await engine.start(kept_cid)
        kept = advance(kept, TaskState.RUNNING, now=2.0, container_id=kept_cid)
        await store.put(keys.task(kept.id), to_json(kept))
        # orphaned while the node was away (desired shutdown): removed
        orphan = await put_assigned(store, slot=2)
        orphan_cid = await engine.create(container_name(orphan), container_config(orphan))
        await engine.start(orphan_cid)
        orphan = advance(orphan, TaskState.ORPHANED, now=3.0, desired_state=TaskState.SHUTDOWN)
        await store.put(keys.task(orphan.id), to_json(orphan))
        # a container whose task no longer exists: removed
        ghost = await put_assigned(store, slot=3)
        ghost_cid = await engine.create(container_name(ghost), container_config(ghost))
        await engine.start(ghost_cid)
        await store.delete(keys.task(ghost.id))
        # another node's container on the same engine: not ours, left alone
        foreign = await engine.create("foreign", {"Image": "busybox", "Labels": {LABEL_NODE: "elsewhere"}})
        async with running_agent(engine, store) as (_, _, agent):
            await agent.settled()
            assert set(engine.containers) == {kept_cid, foreign}
            assert engine.created.count(container_name(kept)) == 1  # adopted, not recreated
            t = await get_task(store, kept.id)
            assert t is not None and t.state is TaskState.RUNNING and t.container_id == kept_cid
            engine.exit(kept_cid, 2)  # the adopted container's events are followed
            await wait_state(store, kept.id, TaskState.FAILED)

    run(main)


def test_container_exited_while_agent_was_away() -> None:
    async def main() -> None:
        store, engine = MemoryStore(), FakeEngine()
        t = await put_assigned(store)
        cid = await engine.create(container_name(t), container_config(t))
        await engine.start(cid)
        await store.put(keys.task(t.id), to_json(advance(t, TaskState.RUNNING, now=2.0, container_id=cid)))
        engine.exit(cid, 5)
        async with running_agent(engine, store):
            ended = await wait_state(store, t.id, TaskState.FAILED)
            assert ended.exit_code == 5

    run(main)


def test_task_started_before_a_crash_is_not_created_twice() -> None:
    async def main() -> None:
        store, engine = MemoryStore(), FakeEngine()
        t = await put_assigned(store)
        cid = await engine.create(container_name(t), container_config(t))  # created, never reported
        async with running_agent(engine, store):
            await wait_state(store, t.id, TaskState.RUNNING)
            assert list(engine.containers) == [cid]

    run(main)


# --- lease ----------------------------------------------------------------------------------


def test_lease_loss_reregisters_and_keeps_user_settings() -> None:
    async def main() -> None:
        async with running_agent() as (store, _, agent):
            first = agent.lease_id
            await ops.update_node(store, NODE, now=5.0, availability=Availability.PAUSE, labels={"zone": "a"})
            await store.revoke(first)  # as if it expired during a partition
            assert await store.get(keys.node_lease(NODE)) is None

            async def back() -> bool:
                kv = await store.get(keys.node_lease(NODE))
                return kv is not None and kv.lease != first

            await until(store, back)
            assert agent.registrations == 2 and agent.lease_id != first
            kv = await store.get(keys.node(NODE))
            assert kv is not None
            n = from_json(Node, kv.value)
            assert n.availability is Availability.PAUSE and n.labels == {"zone": "a"}

    run(main)


def test_keepalive_holds_the_lease() -> None:
    async def main() -> None:
        async with running_agent() as (store, _, agent):
            lease = agent.lease_id
            await asyncio.sleep(2.5)  # more than two TTLs: the keepalives must have renewed it
            kv = await store.get(keys.node_lease(NODE))
            assert kv is not None and kv.lease == lease and agent.registrations == 1

    run(main)


def test_leave_removes_containers_and_marks_node_down() -> None:
    async def main() -> None:
        store, engine = MemoryStore(), FakeEngine()
        agent = Agent(store, node(), engine, ttl=1)
        await agent.start()
        t = await put_assigned(store)
        await wait_state(store, t.id, TaskState.RUNNING)
        await agent.stop(leave=True)
        assert not engine.containers
        assert await store.get(keys.node_lease(NODE)) is None
        kv = await store.get(keys.node(NODE))
        assert kv is not None and from_json(Node, kv.value).status is NodeStatus.DOWN
        await store.close()

    run(main)


# --- with the leader ------------------------------------------------------------------------


def test_leader_and_agent_run_a_service() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, agent):
            leader = Orchestrator(store)
            await leader.start()
            stop = asyncio.Event()
            loop = asyncio.ensure_future(leader.run(stop))
            try:
                spec = ServiceSpec(
                    name="web",
                    template=template(command=("sleep", "300")),
                    replicas=3,
                    restart=RestartPolicy(delay=0),
                )
                web = await ops.create_service(store, spec, now=1.0)

                async def running(n: int) -> bool:
                    live = [
                        t
                        for t in await all_tasks(store)
                        if t.state is TaskState.RUNNING and t.desired_state is TaskState.RUNNING
                    ]
                    return len(live) == n and len(engine.running()) == n

                await until(store, lambda: running(3))
                victim = engine.running()[0]
                engine.exit(victim["Id"], 137)

                async def replaced() -> bool:
                    return victim["Id"] not in engine.containers and await running(3)

                await until(store, replaced)
                failed = [t for t in await all_tasks(store) if t.state is TaskState.FAILED]
                assert len(failed) == 1 and failed[0].container_id == victim["Id"]

                await ops.update_service(store, web.id, replace(spec, replicas=0), now=2.0)

                async def empty() -> bool:
                    await agent.settled()
                    return not engine.containers

                await until(store, empty)
            finally:
                stop.set()
                await loop
                await leader.stop()

    run(main)


def test_missed_event_found_after_the_event_stream_breaks() -> None:
    async def main() -> None:
        async with running_agent() as (store, engine, _):
            t = await put_assigned(store)
            await wait_state(store, t.id, TaskState.RUNNING)
            [c] = engine.running()
            engine.exit(c["Id"], 4, event=False)  # died while the stream was down
            engine.break_events()
            ended = await wait_state(store, t.id, TaskState.FAILED)
            assert ended.exit_code == 4

    run(main)


def test_concurrency_is_bounded_and_every_task_runs() -> None:
    async def main() -> None:
        engine = FakeEngine()
        engine.create_delay = 0.05
        async with running_agent(engine, concurrency=2) as (store, _, _agent):
            tasks = [await put_assigned(store, slot=i) for i in range(1, 7)]

            async def all_running() -> bool:
                got = [await get_task(store, t.id) for t in tasks]
                return all(g is not None and g.state is TaskState.RUNNING for g in got)

            await until(store, all_running)
            assert engine.max_inflight == 2  # two at a time, never more
            assert len(engine.running()) == 6

    run(main)


class Partitionable:
    """A store its client can be cut off from: while ``cut``, every call fails (and a watch
    breaks at its next batch), as a RemoteStore's calls fail across a network partition."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.max_txn_ops = inner.max_txn_ops
        self.cut = False

    def _check(self) -> None:
        if self.cut:
            raise Unavailable("cluster store unreachable (partitioned)")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("close", "expire_due"):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return await attr(*args, **kwargs)

        return call

    def watch(self, prefix: str, *, start_revision: int = 0) -> _CutWatch:
        return _CutWatch(self, self.inner.watch(prefix, start_revision=start_revision))


class _CutWatch:
    def __init__(self, store: Partitionable, inner: Any) -> None:
        self.store = store
        self.inner = inner

    async def __aenter__(self) -> _CutWatch:
        self.store._check()
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    def __aiter__(self) -> _CutWatch:
        return self

    async def __anext__(self) -> list[Any]:
        self.store._check()
        events = await anext(self.inner)
        self.store._check()
        return list(events)

    async def close(self) -> None:
        await self.inner.close()


def test_partition_longer_than_the_lease() -> None:
    """Cut off for longer than its TTL, the node is declared down and its task orphaned; once the
    partition heals the agent registers again, removes the orphan's container and runs the
    replacement the leader places on it."""

    async def main() -> None:
        raw = MemoryStore()
        cut = Partitionable(raw)
        async with running_agent(store=cut) as (_, engine, agent):
            leader = Orchestrator(raw)
            await leader.start()
            stop = asyncio.Event()
            loop = asyncio.ensure_future(leader.run(stop))
            try:
                spec = ServiceSpec(
                    name="web", template=template(), replicas=1, restart=RestartPolicy(delay=0)
                )
                web = await ops.create_service(raw, spec, now=1.0)

                async def one_running() -> list[Task]:
                    return [
                        t
                        for t in await all_tasks(raw)
                        if t.service_id == web.id
                        and t.state is TaskState.RUNNING
                        and t.desired_state is TaskState.RUNNING
                    ]

                async def running_once() -> bool:
                    return len(await one_running()) == 1

                await until(raw, running_once)
                [first] = await one_running()
                cut.cut = True

                async def orphaned() -> bool:
                    t = await get_task(raw, first.id)
                    kv = await raw.get(keys.node(NODE))
                    down = kv is not None and from_json(Node, kv.value).status is NodeStatus.DOWN
                    return down and t is not None and t.state is TaskState.ORPHANED

                await until(raw, orphaned)
                assert first.container_id in engine.containers  # still there: the agent was cut off
                cut.cut = False

                async def healed() -> bool:
                    run = await one_running()
                    return (
                        len(run) == 1
                        and run[0].id != first.id
                        and [c["Id"] for c in engine.running()] == [run[0].container_id]
                        and first.container_id not in engine.containers
                    )

                await until(raw, healed, timeout=20)
                assert agent.registrations == 2
                kv = await raw.get(keys.node(NODE))
                assert kv is not None and from_json(Node, kv.value).status is NodeStatus.READY
            finally:
                stop.set()
                await loop
                await leader.stop()

    run(main)
