"""``ClusterRuntime``: skiffd's part in a cluster, as manager or worker.

One per skiffd. Outside a cluster it does nothing but answer "not in a cluster". After
``init`` or ``join`` (or at start, when ``<root>/cluster/state.json`` says so) it runs:

- the **cluster listener** on ``listen_addr`` (default ``0.0.0.0:2377``): the store gateway
  (``cluster/gateway.py``, managers only) and the node-to-node routes under
  ``/skiff/cluster/node/`` — ``hello`` (which cluster is this), ``join`` (a join token buys a
  node id and secret) and ``tasks/{id}/logs`` (a task's container logs from this node's
  engine, for ``service logs`` on a manager). Everything but hello and join needs
  ``Authorization: Bearer <node secret>``. Plain HTTP for now (see docs/architecture.md);
- on a **manager**, the store (SQLite at ``<root>/cluster/store.db``, or etcd for HA), an
  ``Election`` and, while it leads, the ``Orchestrator`` (``leadership.lead_forever``);
- on **every node**, the ``Agent`` driving the local engine through the Engine API;
  workers reach the store through ``RemoteStore`` to the managers.

The API layer (``api/cluster.py``) calls the methods here; they answer plain JSON-ready dicts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from skiff.cluster import keys, ops
from skiff.cluster.gateway import StoreGateway, bearer, json_response
from skiff.cluster.model import (
    Availability,
    Node,
    NodeRole,
    Resources,
    Service,
    ServiceMode,
    ServiceSpec,
    Task,
    TaskState,
    from_json,
    new_id,
    to_json,
)
from skiff.cluster.state.base import Compare, Delete, Put, Store
from skiff.cluster.tokens import (
    ClusterState,
    cluster_digest,
    hash_token,
    load_state,
    make_join_token,
    new_cluster_key,
    node_secret,
    parse_join_token,
    remove_state,
    save_state,
    secret_node,
    token_matches,
)
from skiff.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    SkiffError,
    Unauthorized,
    Unavailable,
)
from skiff.types.codec import from_plain, to_plain

if TYPE_CHECKING:
    from skiff.cluster.agent import Agent, EngineClient
    from skiff.cluster.etcdlocal import LocalEtcd

log = logging.getLogger(__name__)

DEFAULT_PORT = 2377
NODE_INFO = "/skiff/nodeinfo/"  # per node: engine version, os, arch (not the scheduler's business)
NOT_IN_CLUSTER = (
    "This node is not a cluster manager. Use `skiff cluster init` or `skiff cluster join` "
    "to connect this node to a cluster and try again."
)
NOT_A_MANAGER = (
    "This node is not a cluster manager. Worker nodes can't be used to view or modify cluster "
    "state. Please run this command on a manager node or promote the current node to a manager."
)
ALREADY_IN_CLUSTER = (
    "This node is already part of a cluster. Use `skiff cluster leave` to leave this cluster "
    "and join another one."
)
SQLITE_ONE_MANAGER = (
    "this cluster's store is SQLite inside one manager, which cannot be shared by a second "
    "manager: for several managers (HA) initialise the cluster with `--store etcd://host:2379,...`"
)
WATCH_SELF_EVERY = 2.0  # seconds between looks at this node's own record (role changes, removal)
MANAGERS_EVERY = 15  # ... and every this many looks, a worker refreshes the managers' addresses
TASK_ID_LABEL = "com.skiff.cluster.task.id"
NODE_ID_LABEL = "com.skiff.cluster.node.id"


def split_addr(addr: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host:port`` (or ``host``, or ``:port``) -> (host, port)."""
    addr = addr.strip()
    if not addr:
        raise InvalidArgument("empty address")
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = addr, ""
    host = host.strip("[]")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise InvalidArgument(f"invalid address {addr!r}: the port must be a number") from None
    if not 0 < number < 65536:
        raise InvalidArgument(f"invalid address {addr!r}: port out of range")
    return host or "0.0.0.0", number


def source_address_towards(host: str) -> str | None:
    """The local address the kernel would use to reach ``host`` (a UDP connect: nothing is sent)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        addr: str = s.getsockname()[0]
        return addr
    return None


def advertise_address(advertise: str | None, listen_host: str, port: int, towards: str | None) -> str:
    """Where other nodes reach this one: the flag, a specific listen address, else the address
    of the route towards the manager (join) or of the default route (init)."""
    if advertise:
        host, p = split_addr(advertise, port)
        return f"{host}:{p}"
    if listen_host not in ("0.0.0.0", "::", ""):
        return f"{listen_host}:{port}"
    host = source_address_towards(towards or "192.0.2.1") or "127.0.0.1"
    return f"{host}:{port}"


def resolve_ref(kind: str, ref: str, items: Sequence[tuple[str, str]]) -> str:
    """The id of the one item (id, name) that ``ref`` names: an exact id, an exact name, or a
    unique id prefix. ``NotFound`` / ``InvalidArgument`` (ambiguous) otherwise."""
    if not ref:
        raise InvalidArgument(f"{kind} reference is empty")
    for item_id, _ in items:
        if item_id == ref:
            return item_id
    named = [i for i, name in items if name == ref]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise InvalidArgument(f"{kind} {ref} is ambiguous ({len(named)} matches found)")
    prefixed = [i for i, _ in items if i.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise InvalidArgument(f"{kind} {ref} is ambiguous ({len(prefixed)} matches found)")
    raise NotFound(f"{kind} {ref} not found")


def task_label(task: Task, hostname: str) -> str:
    """``web.1.<task id>@node`` as ``docker service logs`` prints (global: the node id instead)."""
    middle = str(task.slot) if task.slot else task.node_id[:12]
    return f"{task.service_name}.{middle}.{task.id[:12]}@{hostname or task.node_id[:12]}"


class ClusterRuntime:
    """See module doc."""

    def __init__(
        self,
        root: Path,
        *,
        engine_host: str,
        node_name: str | None = None,
        ttl: int = 5,
        clock: Callable[[], float] = time.time,
        engine_factory: Callable[[str], EngineClient] | None = None,
    ) -> None:
        self.dir = root / "cluster"
        self.engine_factory = engine_factory
        self.state_path = self.dir / "state.json"
        self.engine_host = engine_host
        self.node_name = node_name or platform.node()
        self.ttl = ttl
        self.clock = clock
        self.state: ClusterState | None = None
        self.store: Store | None = None
        self._holds_store = False  # this node serves the store (a manager)
        self._runner: web.AppRunner | None = None
        self._agent: tuple[Agent, EngineClient] | None = None
        self._stop_leading: asyncio.Event | None = None
        self._leading_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._known: dict[str, float] = {}  # node id -> until when its secret check is cached
        self._http: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._resume_task: asyncio.Task[None] | None = None
        self._etcd: LocalEtcd | None = None
        self.leading = False

    # --- lifecycle

    async def start(self) -> None:
        """Resume the role the state file records (nothing when there is none)."""
        state = load_state(self.state_path)
        if state is None:
            return
        log.info("cluster: resuming as %s %s of cluster %s", state.role, state.node_id, state.cluster_id)
        self._resume_task = asyncio.get_running_loop().create_task(
            self._resume(state), name="skiff-cluster-resume"
        )

    async def _resume(self, state: ClusterState) -> None:
        """Activate, retrying while the managers (or the store) cannot be reached."""
        delay = 1.0
        while True:
            async with self._lock:
                try:
                    await self._activate(state)
                    return
                except (SkiffError, OSError) as e:
                    log.error("cluster: could not resume (trying again in %.0f s): %s", delay, e)
                    await self._deactivate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        if self._resume_task is not None:
            self._resume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resume_task
            self._resume_task = None
        await self._deactivate()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _engine(self) -> EngineClient:
        """A client of this node's engine (the caller closes it)."""
        if self.engine_factory is not None:
            return self.engine_factory(self.engine_host)
        from skiff.client.aio import HttpEngine

        return HttpEngine(self.engine_host)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._http

    async def _activate(self, state: ClusterState) -> None:
        """Listener, store, leadership loop and agent for ``state`` (which is then ours)."""
        self.state = state
        if self._runner is None:
            await self._listen(state.listen_addr)
        manager = state.role == NodeRole.MANAGER
        if manager and state.etcd_local and self._etcd is None:
            self._etcd = self._local_etcd(state)
            await self._etcd.start()
        await self._open_for_role(state, manager=manager)

    async def _open_for_role(self, state: ClusterState, *, manager: bool) -> None:
        """A manager opens the store itself and leads when elected; a worker reaches the store
        through the managers' gateway. Then the agent and the watch on this node's record."""
        if manager:
            from skiff.cluster.state import open_store

            self.store = open_store(state.store)
            self._holds_store = True
            self._start_leading()
        else:
            from skiff.cluster.state.remote import RemoteStore

            self.store = RemoteStore(state.managers, state.secret, max_txn_ops=state.max_txn_ops)
            self._holds_store = False
        await self._start_agent()
        self._watch_task = asyncio.get_running_loop().create_task(
            self._watch_self(), name="skiff-cluster-self"
        )

    def _local_etcd(self, state: ClusterState) -> LocalEtcd:
        """This manager's etcd member: client port = cluster port + 2, peer port = + 3."""
        from skiff.cluster.etcdlocal import LocalEtcd

        host, port = split_addr(state.advertise_addr)
        data = self.dir / "etcd"
        return LocalEtcd(
            data,
            name=state.node_id,
            host=host,
            client_port=port + 2,
            peer_port=port + 3,
            initial_cluster=state.etcd_initial_cluster,
            existing=bool(state.etcd_initial_cluster) or data.exists(),
        )

    async def _deactivate(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        await self._stop_agent(leave=False)
        await self._stop_leadership()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            with contextlib.suppress(SkiffError, OSError):
                await self.store.close()
            self.store = None
        if self._etcd is not None:
            await self._etcd.stop()
            self._etcd = None
        self._holds_store = False
        self.state = None

    def _start_leading(self) -> None:
        from skiff.cluster.election import Election, leader_value
        from skiff.cluster.leadership import lead_forever
        from skiff.cluster.orchestrator import Orchestrator

        assert self.state is not None and self.store is not None
        store, node_id = self.store, self.state.node_id
        election = Election(
            store, node_id, value=leader_value(node_id, self.state.advertise_addr), ttl=self.ttl
        )
        self._stop_leading = asyncio.Event()

        def changed(event: str, orch: Orchestrator | None) -> None:
            self.leading = event == "leading"
            log.info("cluster: %s %s", node_id, "leads" if self.leading else "no longer leads")

        self._leading_task = asyncio.get_running_loop().create_task(
            lead_forever(
                election,
                lambda: Orchestrator(store, name=node_id, clock=self.clock),
                self._stop_leading,
                on_change=changed,
            ),
            name="skiff-cluster-leadership",
        )

    async def _stop_leadership(self) -> None:
        if self._stop_leading is not None:
            self._stop_leading.set()
        if self._leading_task is not None:
            try:
                await asyncio.wait_for(self._leading_task, self.ttl * 2)
            except (TimeoutError, SkiffError, OSError) as e:
                log.warning("cluster: leadership loop did not end cleanly: %s", e)
            except asyncio.CancelledError:
                pass
            self._leading_task = None
        self._stop_leading = None
        self.leading = False

    async def _start_agent(self) -> None:
        from skiff.cluster.agent import Agent

        assert self.state is not None and self.store is not None
        node = await self._describe_node()
        engine = self._engine()
        agent = Agent(self.store, node, engine, ttl=self.ttl, clock=self.clock)
        try:
            await agent.start()
        except BaseException:
            await engine.close()
            raise
        self._agent = (agent, engine)

    async def _stop_agent(self, *, leave: bool) -> None:
        held, self._agent = self._agent, None
        if held is None:
            return
        agent, engine = held
        try:
            await agent.stop(leave=leave)
        except (SkiffError, OSError) as e:
            log.warning("cluster: agent stop: %s", e)
        finally:
            await engine.close()

    async def _engine_info(self) -> dict[str, Any]:
        engine = self._engine()
        try:
            info: dict[str, Any] = await engine.info()
            return info
        except (SkiffError, OSError) as e:
            log.warning("cluster: engine info: %s", e)
            return {}
        finally:
            await engine.close()

    async def _description(self) -> dict[str, Any]:
        """This node's hostname, resources and engine, as sent on join."""
        info = await self._engine_info()
        return {
            "Hostname": self.node_name,
            "Resources": {
                "nano_cpus": int(info.get("NCPU") or os.cpu_count() or 1) * 1_000_000_000,
                "memory_bytes": int(info.get("MemTotal") or 0),
            },
            "EngineVersion": str(info.get("ServerVersion") or ""),
            "OS": str(info.get("OSType") or "linux"),
            "Architecture": str(info.get("Architecture") or platform.machine()),
        }

    async def _describe_node(self) -> Node:
        """The node record the agent registers: the stored one, refreshed from the engine."""
        assert self.state is not None and self.store is not None
        desc = await self._description()
        kv = await self.store.get(keys.node(self.state.node_id))
        now = self.clock()
        resources = from_plain(Resources, desc["Resources"])
        if kv is not None:
            node = from_json(Node, kv.value)
        else:
            node = Node(id=self.state.node_id, hostname=self.node_name, created_at=now)
        role = NodeRole.MANAGER if self.state.role == NodeRole.MANAGER else NodeRole.WORKER
        node = replace(
            node,
            hostname=self.node_name,
            address=self.state.advertise_addr,
            resources=resources,
            role=role,
            updated_at=now,
        )
        await self.store.put(NODE_INFO + node.id, json.dumps(desc).encode())
        return node

    # --- the cluster listener

    async def _listen(self, listen_addr: str) -> None:
        host, port = split_addr(listen_addr)
        app = web.Application(client_max_size=64 * 1024**2)
        StoreGateway(lambda: self.store if self._holds_store else None, self._authorize).register(app)
        app.router.add_get("/skiff/cluster/node/hello", self._hello)
        app.router.add_post("/skiff/cluster/node/join", self._handle_join)
        app.router.add_get("/skiff/cluster/node/tasks/{task}/logs", self._handle_task_logs)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as e:
            await runner.cleanup()
            raise InvalidArgument(
                f"cannot listen on {listen_addr} for the cluster: {e.strerror or e}"
            ) from None
        self._runner = runner

    async def _authorize(self, request: web.Request) -> None:
        state = self.state
        token = bearer(request)
        if state is None or not state.cluster_key:
            # a worker holds no cluster key: it accepts only its managers' ... and its own secret
            if state is not None and token and token == state.secret:
                return
            if state is not None and token and await self._manager_secret(token):
                return
            raise Unauthorized("cluster token missing or not valid")
        node_id = secret_node(state.cluster_key, token)
        if node_id is None:
            raise Unauthorized("cluster token missing or not valid")
        if self._known.get(node_id, 0) > time.monotonic():
            return
        if node_id != state.node_id and self.store is not None:
            if await self.store.get(keys.node(node_id)) is None:
                raise Unauthorized(f"node {node_id} is not part of this cluster (removed?)")
        self._known[node_id] = time.monotonic() + 10

    async def _manager_secret(self, token: str) -> bool:
        """On a worker: is ``token`` the secret of one of the cluster's managers? (A manager
        fetching a task's logs.) The worker asks the store whether that node is a manager;
        the secret itself is checked by the manager handling the store request below."""
        if self.store is None or self.state is None:
            return False
        node_id, _, _ = token.partition(".")
        if self._known.get(token, 0) > time.monotonic():
            return True
        kv = await self.store.get(keys.node(node_id))
        if kv is None or from_json(Node, kv.value).role != NodeRole.MANAGER:
            return False
        from skiff.cluster.state.remote import RemoteStore

        probe = RemoteStore(self.state.managers, token)  # the managers check the secret
        try:
            await probe.revision()
        except Unauthorized:
            return False
        except (SkiffError, OSError):
            return False
        finally:
            await probe.close()
        self._known[token] = time.monotonic() + 30
        return True

    async def _hello(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        if state is None:
            return json_response({"message": "this node is in no cluster"}, 503)
        return json_response(
            {
                "ClusterID": state.cluster_id,
                "NodeID": state.node_id,
                "Role": state.role,
                "Managers": state.managers,
            }
        )

    async def _handle_join(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise InvalidArgument("the join request is a JSON object")
            return json_response(await self.admit(body))
        except SkiffError as e:
            return json_response({"message": e.message}, e.status)
        except (ValueError, KeyError, TypeError) as e:
            return json_response({"message": f"invalid join request: {e}"}, 400)

    async def _handle_task_logs(self, request: web.Request) -> web.StreamResponse:
        try:
            await self._authorize(request)
        except SkiffError as e:
            return json_response({"message": e.message}, e.status)
        task_id = request.match_info["task"]
        engine = self._engine()
        try:
            found = await engine.list_containers({TASK_ID_LABEL: task_id})
            if not found:
                return json_response({"message": f"no container for task {task_id} on this node"}, 404)
            container = str(found[0]["Id"])
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError, RuntimeError):
                async for stream, line in engine.logs(
                    container,
                    follow=request.query.get("follow") == "1",
                    tail=request.query.get("tail", "all"),
                    timestamps=request.query.get("timestamps") == "1",
                ):
                    out = {"stream": stream, "data": base64.b64encode(line).decode()}
                    await resp.write(json.dumps(out).encode() + b"\n")
            return resp
        finally:
            await engine.close()

    # --- init, join, leave

    async def init(
        self,
        *,
        advertise_addr: str | None = None,
        listen_addr: str = f"0.0.0.0:{DEFAULT_PORT}",
        store: str | None = None,
        etcd_local: bool = False,
    ) -> dict[str, Any]:
        async with self._lock:
            if self.state is not None or self.state_path.exists():
                raise Unavailable(ALREADY_IN_CLUSTER)
            if etcd_local and store:
                raise InvalidArgument("--etcd-local and --store are exclusive: a cluster has one store")
            listen_host, port = split_addr(listen_addr)
            advertise = advertise_address(advertise_addr, listen_host, port, None)
            store_url = store or f"sqlite://{self.dir / 'store.db'}"
            if etcd_local:
                from skiff.cluster.etcdlocal import MAX_TXN_OPS, etcd_binary

                etcd_binary()  # installed? (before anything starts)
                store_url = f"etcd://{split_addr(advertise)[0]}:{port + 2}?max-txn-ops={MAX_TXN_OPS}"
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            cluster_id, node_id, key = new_id(), new_id(), new_cluster_key()
            state = ClusterState(
                cluster_id=cluster_id,
                node_id=node_id,
                role=NodeRole.MANAGER.value,
                secret=node_secret(key, node_id),
                listen_addr=f"{listen_host}:{port}",
                advertise_addr=advertise,
                managers=[advertise],
                store=store_url,
                cluster_key=key,
                worker_token=make_join_token(cluster_id),
                manager_token=make_join_token(cluster_id),
                etcd_local=etcd_local,
            )
            try:
                await self._listen(state.listen_addr)  # a port in use fails here, before anything is kept
                if etcd_local:
                    shutil.rmtree(self.dir / "etcd", ignore_errors=True)
                    self._etcd = self._local_etcd(state)
                    await self._etcd.start()
                await self._create_cluster(state)
                save_state(self.state_path, state)
                await self._activate(state)
            except BaseException:
                await self._deactivate()
                remove_state(self.state_path)
                if etcd_local:
                    shutil.rmtree(self.dir / "etcd", ignore_errors=True)
                raise
            log.info("cluster: initialised cluster %s; this node %s manages it", cluster_id, node_id)
            return {
                "ClusterID": cluster_id,
                "NodeID": node_id,
                "JoinTokens": {"Worker": state.worker_token, "Manager": state.manager_token},
            }

    async def _create_cluster(self, state: ClusterState) -> None:
        """The cluster record and this first manager's node, in a store that holds no cluster."""
        from skiff.cluster.state import open_store

        s = open_store(state.store)
        try:
            state.max_txn_ops = s.max_txn_ops
            record = {
                "id": state.cluster_id,
                "store": state.store,
                "created_at": self.clock(),
                "tokens": {
                    "worker": hash_token(state.worker_token),
                    "manager": hash_token(state.manager_token),
                },
            }
            desc = await self._description()
            node = Node(
                id=state.node_id,
                hostname=self.node_name,
                role=NodeRole.MANAGER,
                address=state.advertise_addr,
                resources=from_plain(Resources, desc["Resources"]),
                created_at=self.clock(),
                updated_at=self.clock(),
            )
            r = await s.txn(
                [Compare(keys.CLUSTER, 0)],
                [
                    Put(keys.CLUSTER, json.dumps(record).encode()),
                    Put(keys.node(state.node_id), to_json(node)),
                ],
            )
            if not r.succeeded:
                held = await s.get(keys.CLUSTER)
                other = json.loads(held.value).get("id", "?") if held else "?"
                raise Conflict(
                    f"the store {state.store} already holds cluster {other}: join that cluster instead"
                )
        finally:
            await s.close()

    async def join(
        self,
        remote_addrs: Sequence[str],
        token: str,
        *,
        advertise_addr: str | None = None,
        listen_addr: str = f"0.0.0.0:{DEFAULT_PORT}",
    ) -> dict[str, Any]:
        async with self._lock:
            if self.state is not None or self.state_path.exists():
                raise Unavailable(ALREADY_IN_CLUSTER)
            if not remote_addrs:
                raise InvalidArgument("join needs the address of a manager (host:port)")
            digest = parse_join_token(token)
            listen_host, port = split_addr(listen_addr)
            remotes = [f"{h}:{p}" for h, p in (split_addr(a) for a in remote_addrs)]
            advertise = advertise_address(advertise_addr, listen_host, port, split_addr(remotes[0])[0])
            await self._listen(f"{listen_host}:{port}")
            try:
                answer = await self._ask_to_join(remotes, token, digest, advertise)
                role = str(answer["Role"])
                state = ClusterState(
                    cluster_id=str(answer["ClusterID"]),
                    node_id=str(answer["NodeID"]),
                    role=role,
                    secret=str(answer["Secret"]),
                    listen_addr=f"{listen_host}:{port}",
                    advertise_addr=advertise,
                    managers=[str(a) for a in answer.get("Managers") or remotes],
                    store=str(answer.get("Store") or ""),
                    max_txn_ops=int(answer.get("MaxTxnOps") or 128),
                    cluster_key=str(answer.get("ClusterKey") or ""),
                    worker_token=str(answer.get("WorkerToken") or ""),
                    manager_token=str(answer.get("ManagerToken") or ""),
                    etcd_local=bool(answer.get("EtcdLocal")),
                    etcd_initial_cluster=str(answer.get("EtcdInitialCluster") or ""),
                )
                if state.etcd_local:
                    shutil.rmtree(self.dir / "etcd", ignore_errors=True)
                save_state(self.state_path, state)
                await self._activate(state)
            except BaseException:
                await self._deactivate()
                remove_state(self.state_path)
                raise
            log.info("cluster: joined cluster %s as %s %s", state.cluster_id, role, state.node_id)
            return {"NodeID": state.node_id, "Role": role}

    async def _ask_to_join(
        self, remotes: list[str], token: str, digest: str, advertise: str
    ) -> dict[str, Any]:
        desc = await self._description()
        body = {"Token": token, "Addr": advertise, **desc}
        last: str = ""
        for remote in remotes:
            try:
                async with self._client().get(
                    f"http://{remote}/skiff/cluster/node/hello", timeout=aiohttp.ClientTimeout(total=10)
                ) as resp:
                    hello = await resp.json(content_type=None)
                    if resp.status != 200:
                        last = f"{remote}: {hello.get('message')}"
                        continue
                if cluster_digest(str(hello.get("ClusterID"))) != digest:
                    raise InvalidArgument(
                        f"the join token is not for the cluster at {remote} (cluster {hello.get('ClusterID')})"
                    )
                async with self._client().post(
                    f"http://{remote}/skiff/cluster/node/join",
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as resp:
                    answer: dict[str, Any] = await resp.json(content_type=None)
                    if resp.status == 503:
                        last = f"{remote}: {answer.get('message')}"
                        continue
                    if resp.status >= 400:
                        exc = {400: InvalidArgument, 401: Unauthorized, 404: NotFound, 409: Conflict}.get(
                            resp.status, Unavailable
                        )
                        raise exc(str(answer.get("message")))
                    return answer
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as e:
                last = f"{remote}: {e}"
        raise Unavailable(f"could not join: no manager answered ({last})")

    async def admit(self, body: dict[str, Any]) -> dict[str, Any]:
        """A manager admits a joining node (its join token decides its role)."""
        state, store = self.state, self.store
        if state is None or store is None or not self._holds_store:
            raise Unavailable("this node is not a cluster manager: join through a manager's address")
        record = await self._cluster_record()
        token = str(body.get("Token") or "")
        hashes = record.get("tokens") or {}
        if token_matches(token, hashes.get("manager", "")):
            role = NodeRole.MANAGER
        elif token_matches(token, hashes.get("worker", "")):
            role = NodeRole.WORKER
        else:
            raise Unauthorized("invalid join token: it was rotated, or it is not this cluster's")
        if role is NodeRole.MANAGER and state.store.startswith("sqlite:"):
            raise InvalidArgument(f"cannot join as a manager: {SQLITE_ONE_MANAGER}")
        addr = str(body.get("Addr") or "")
        if not addr:
            raise InvalidArgument("the join request names no address for the node")
        now = self.clock()
        node = Node(
            id=new_id(),
            hostname=str(body.get("Hostname") or addr),
            role=role,
            address=addr,
            resources=from_plain(Resources, body.get("Resources") or {}),
            created_at=now,
            updated_at=now,
        )
        info = {k: body.get(k) for k in ("Hostname", "Resources", "EngineVersion", "OS", "Architecture")}
        await store.txn(
            [Compare(keys.node(node.id), 0)],
            [Put(keys.node(node.id), to_json(node)), Put(NODE_INFO + node.id, json.dumps(info).encode())],
        )
        managers = await self.manager_addrs()
        if role is NodeRole.MANAGER:
            managers = sorted(set(managers) | {addr})
        initial_cluster, store_url = "", state.store
        if role is NodeRole.MANAGER and state.etcd_local:
            # its own etcd member joins ours (the cluster waits for it: quorum is now 2 of 2)
            from skiff.cluster.etcdlocal import add_member

            host, port = split_addr(addr)
            ours = [f"http://127.0.0.1:{split_addr(state.advertise_addr)[1] + 2}"]
            initial_cluster = await add_member(ours, node.id, f"http://{host}:{port + 3}")
            store_url = f"etcd://{host}:{port + 2}," + state.store.removeprefix("etcd://")
        answer: dict[str, Any] = {
            "ClusterID": state.cluster_id,
            "NodeID": node.id,
            "Secret": node_secret(state.cluster_key, node.id),
            "Role": role.value,
            "Managers": managers,
            "MaxTxnOps": store.max_txn_ops,
        }
        if role is NodeRole.MANAGER:
            answer |= {
                "Store": store_url,
                "EtcdLocal": state.etcd_local,
                "EtcdInitialCluster": initial_cluster,
                "ClusterKey": state.cluster_key,
                "WorkerToken": state.worker_token,
                "ManagerToken": state.manager_token,
            }
        log.info("cluster: admitted %s %s (%s at %s)", role.value, node.id, node.hostname, addr)
        return answer

    async def leave(self, *, force: bool = False) -> None:
        if self.state is None and self._resume_task is not None and force:
            # not resumed (the managers or the store are unreachable): forget the cluster anyway
            self._resume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resume_task
            self._resume_task = None
            async with self._lock:
                held = load_state(self.state_path)
                remove_state(self.state_path)
                if held is not None and held.role == NodeRole.MANAGER:
                    self._forget_store_files()
            return
        async with self._lock:
            state = self.state
            if state is None:
                raise Unavailable("This node is not part of a cluster")
            if state.role == NodeRole.MANAGER and not force:
                others = [a for a in await self.manager_addrs() if a != state.advertise_addr]
                if not others:
                    raise Unavailable(
                        "You are attempting to leave the cluster on a node that is participating as a "
                        "manager. Removing the last manager erases all current state of the cluster. "
                        "Use `--force` to ignore this message."
                    )
                raise Unavailable(
                    "You are attempting to leave the cluster on a node that is participating as a "
                    "manager. Demote it first (`skiff node demote`), or use `--force` to ignore this message."
                )
            await self._stop_agent(leave=True)
            await self._remove_task_containers(state.node_id)
            if state.etcd_local and state.role == NodeRole.MANAGER:
                await self._leave_etcd(state)
            sqlite = state.role == NodeRole.MANAGER and state.store.startswith("sqlite:")
            await self._deactivate()
            remove_state(self.state_path)
            if state.etcd_local or sqlite:
                self._forget_store_files()
            log.info("cluster: left cluster %s", state.cluster_id)

    def _forget_store_files(self) -> None:
        """The SQLite store and a local etcd member's data (a manager that left)."""
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)
        for name in ("store.db", "store.db-wal", "store.db-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()

    async def _leave_etcd(self, state: ClusterState) -> None:
        """A leaving manager takes its etcd member out of the etcd cluster first (while the
        others still make a quorum with it), unless it is the last one."""
        from skiff.cluster.etcdlocal import remove_member

        others = [a for a in await self._manager_addrs_quietly() if a != state.advertise_addr]
        if not others:
            return
        await self._stop_leadership()
        urls = [f"http://{h}:{p + 2}" for h, p in (split_addr(a) for a in others)]
        try:
            if await remove_member(urls, state.node_id):
                log.info("cluster: etcd member %s removed", state.node_id)
                return
        except (SkiffError, OSError) as e:
            log.warning("cluster: %s", e)
        log.warning("cluster: could not remove this node's etcd member; remove it with etcdctl member remove")

    async def _manager_addrs_quietly(self) -> list[str]:
        try:
            return await asyncio.wait_for(self.manager_addrs(), 10)
        except (SkiffError, OSError, TimeoutError):
            return []

    async def _remove_task_containers(self, node_id: str) -> None:
        """``leave`` takes this node's task containers with it, as ``docker swarm leave`` does."""
        engine = self._engine()
        try:
            for c in await engine.list_containers({NODE_ID_LABEL: node_id}):
                with contextlib.suppress(SkiffError):
                    await engine.remove(str(c["Id"]), force=True)
        except (SkiffError, OSError) as e:
            log.warning("cluster: removing task containers on leave: %s", e)
        finally:
            await engine.close()

    # --- role changes seen in the store

    async def _watch_self(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(WATCH_SELF_EVERY)
            if asyncio.current_task() is not self._watch_task:
                return  # a role switch started another
            tick += 1
            try:
                await self._look_at_self(refresh_managers=tick % MANAGERS_EVERY == 0)
            except (SkiffError, OSError) as e:
                log.debug("cluster: own record: %s", e)

    async def _look_at_self(self, *, refresh_managers: bool) -> None:
        state, store = self.state, self.store
        if state is None or store is None:
            return
        kv = await store.get(keys.node(state.node_id))
        if kv is None:
            return  # removed (node rm --force); the node keeps running until it leaves
        node = from_json(Node, kv.value)
        if node.role.value != state.role:
            await self._switch_role(node.role)
        elif state.role == NodeRole.WORKER and refresh_managers:
            managers = await self.manager_addrs()
            if managers and managers != state.managers:
                state.managers = managers
                save_state(self.state_path, state)
                from skiff.cluster.state.remote import RemoteStore

                if isinstance(store, RemoteStore):
                    store.set_addrs(managers)

    async def _switch_role(self, role: NodeRole) -> None:
        async with self._lock:
            state = self.state
            if state is None:
                return
            log.info("cluster: this node becomes a %s", role.value)
            await self._stop_agent(leave=False)
            await self._stop_leadership()
            if role is NodeRole.MANAGER:
                record = await self._cluster_record()
                state.store = str(record.get("store") or state.store)
                # the promoting manager handed over the cluster key through the store's
                # promotion record (only managers can read it back out)
                grant = await self.store.get(PROMOTION + state.node_id) if self.store else None
                if grant is not None:
                    data = json.loads(grant.value)
                    state.cluster_key = data.get("key", "")
                    state.worker_token = data.get("worker", "")
                    state.manager_token = data.get("manager", "")
                    assert self.store is not None
                    await self.store.delete(PROMOTION + state.node_id)
            else:
                state.managers = [a for a in await self.manager_addrs() if a != state.advertise_addr]
                state.cluster_key = state.worker_token = state.manager_token = ""
            if self.store is not None:
                await self.store.close()
            state.role = role.value
            save_state(self.state_path, state)
            if self._watch_task is not None and self._watch_task is not asyncio.current_task():
                self._watch_task.cancel()
            self._watch_task = None
            await self._open_for_role(state, manager=role is NodeRole.MANAGER)

    # --- queries

    def _manager(self) -> tuple[ClusterState, Store]:
        """This node's state and store, if it is a manager (503 otherwise)."""
        if self.state is None or self.store is None:
            raise Unavailable(NOT_IN_CLUSTER)
        if not self._holds_store:
            raise Unavailable(NOT_A_MANAGER)
        return self.state, self.store

    async def _cluster_record(self) -> dict[str, Any]:
        assert self.store is not None
        kv = await self.store.get(keys.CLUSTER)
        if kv is None:
            raise Unavailable("the cluster store holds no cluster record")
        out: dict[str, Any] = json.loads(kv.value)
        return out

    async def _nodes(self) -> list[Node]:
        _, store = self._manager()
        return [from_json(Node, kv.value) for kv in (await store.range(keys.NODES)).kvs]

    async def manager_addrs(self) -> list[str]:
        assert self.store is not None
        kvs = (await self.store.range(keys.NODES)).kvs
        return sorted(
            {n.address for n in (from_json(Node, kv.value) for kv in kvs) if n.role is NodeRole.MANAGER}
        )

    async def _leader_id(self) -> str | None:
        from skiff.cluster.election import parse_leader

        assert self.store is not None
        kv = await self.store.get(keys.LEADER)
        leader = parse_leader(kv.value if kv else None)
        return str(leader["node_id"]) if leader and leader.get("node_id") else None

    async def inspect(self) -> dict[str, Any]:
        state = self.state
        if state is None or self.store is None:
            raise Unavailable("This node is not part of a cluster")
        leader: str | None = None
        with contextlib.suppress(SkiffError, OSError):
            leader = await self._leader_id()
        managers = state.managers
        with contextlib.suppress(SkiffError, OSError):
            managers = await self.manager_addrs()
        store = state.store if state.role == NodeRole.MANAGER else ""
        return {
            "ClusterID": state.cluster_id,
            "NodeID": state.node_id,
            "Role": state.role,
            "Addr": state.advertise_addr,
            "ListenAddr": state.listen_addr,
            "Managers": managers,
            "Leader": leader,
            "Store": "sqlite" if store.startswith("sqlite:") else store,
        }

    async def join_token(self, role: str, *, rotate: bool = False) -> str:
        state, store = self._manager()
        if role not in ("worker", "manager"):
            raise InvalidArgument(f"unknown role {role!r}: use worker or manager")
        field_name = f"{role}_token"
        if rotate:
            async with self._lock:
                token = make_join_token(state.cluster_id)
                for _ in range(20):
                    kv = await store.get(keys.CLUSTER)
                    if kv is None:
                        raise Unavailable("the cluster store holds no cluster record")
                    record = json.loads(kv.value)
                    record.setdefault("tokens", {})[role] = hash_token(token)
                    r = await store.txn(
                        [Compare(keys.CLUSTER, kv.mod_revision)],
                        [Put(keys.CLUSTER, json.dumps(record).encode())],
                    )
                    if r.succeeded:
                        break
                else:
                    raise Conflict("the cluster record keeps changing; try again")
                setattr(state, field_name, token)
                save_state(self.state_path, state)
                return token
        token = str(getattr(state, field_name))
        record = await self._cluster_record()
        if not token or not token_matches(token, (record.get("tokens") or {}).get(role, "")):
            raise Conflict(
                f"the {role} join token was rotated on another manager: ask that manager, or rotate it here "
                f"(`skiff cluster join-token --rotate {role}`)"
            )
        return token

    # --- nodes

    async def _node_status(self) -> tuple[set[str], str | None, dict[str, dict[str, Any]]]:
        _, store = self._manager()
        alive = {kv.key.removeprefix(keys.NODE_LEASES) for kv in (await store.range(keys.NODE_LEASES)).kvs}
        leader = await self._leader_id()
        infos = {
            kv.key.removeprefix(NODE_INFO): json.loads(kv.value) for kv in (await store.range(NODE_INFO)).kvs
        }
        return alive, leader, infos

    @staticmethod
    def _node_out(node: Node, alive: set[str], leader: str | None, info: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = to_plain(node)
        ready = node.id in alive
        out["Status"] = "ready" if ready else "down"
        out["status"] = out["Status"]
        out["leader"] = out["Leader"] = node.id == leader
        out["ManagerStatus"] = (
            {
                "Leader": node.id == leader,
                "Reachability": "reachable" if ready else "unreachable",
                "Addr": node.address,
            }
            if node.role is NodeRole.MANAGER
            else None
        )
        out["EngineVersion"] = info.get("EngineVersion", "")
        out["Description"] = info
        return out

    async def nodes(self) -> list[dict[str, Any]]:
        nodes = await self._nodes()
        alive, leader, infos = await self._node_status()
        return [
            self._node_out(n, alive, leader, infos.get(n.id, {}))
            for n in sorted(nodes, key=lambda n: n.hostname)
        ]

    async def _resolve_node(self, ref: str) -> Node:
        nodes = await self._nodes()
        node_id = resolve_ref("node", ref, [(n.id, n.hostname) for n in nodes])
        return next(n for n in nodes if n.id == node_id)

    async def node_inspect(self, ref: str) -> dict[str, Any]:
        node = await self._resolve_node(ref)
        alive, leader, infos = await self._node_status()
        return self._node_out(node, alive, leader, infos.get(node.id, {}))

    async def node_update(
        self,
        ref: str,
        *,
        labels_add: dict[str, str] | None = None,
        labels_rm: Sequence[str] | None = None,
        availability: str | None = None,
        role: str | None = None,
    ) -> None:
        _, store = self._manager()
        node = await self._resolve_node(ref)
        avail: Availability | None = None
        if availability is not None:
            try:
                avail = Availability(availability)
            except ValueError:
                raise InvalidArgument(
                    f"invalid availability {availability!r}: use active, pause or drain"
                ) from None
        labels: dict[str, str] | None = None
        if labels_add or labels_rm:
            labels = dict(node.labels)
            for k in labels_rm or ():
                if k not in labels:
                    raise NotFound(f"key {k} doesn't exist in node's labels")
                labels.pop(k)
            labels.update(labels_add or {})
        if avail is not None or labels is not None:
            await ops.update_node(store, node.id, now=self.clock(), availability=avail, labels=labels)
        if role is not None:
            await self._set_role(node.id, role)

    async def _set_role(self, node_id: str, role: str) -> None:
        state, store = self._manager()
        try:
            new = NodeRole(role)
        except ValueError:
            raise InvalidArgument(f"invalid role {role!r}: use worker or manager") from None
        for _ in range(20):
            kv = await store.get(keys.node(node_id))
            if kv is None:
                raise NotFound(f"node {node_id} not found")
            node = from_json(Node, kv.value)
            if node.role is new:
                return
            writes: list[Put | Delete] = []
            if new is NodeRole.MANAGER:
                if state.store.startswith("sqlite:"):
                    raise InvalidArgument(f"cannot promote {node.hostname}: {SQLITE_ONE_MANAGER}")
                if state.etcd_local:
                    raise InvalidArgument(
                        f"cannot promote {node.hostname}: this cluster's managers each run an etcd member "
                        "(--etcd-local); add a manager by joining it with the manager token"
                    )
                # the node needs the cluster key to check secrets: hand it over in the store
                grant = {
                    "key": state.cluster_key,
                    "worker": state.worker_token,
                    "manager": state.manager_token,
                }
                writes.append(Put(PROMOTION + node_id, json.dumps(grant).encode()))
            else:
                managers = [n for n in await self._nodes() if n.role is NodeRole.MANAGER]
                if len(managers) <= 1:
                    raise Conflict("cannot demote the last manager of the cluster")
            writes.append(Put(keys.node(node_id), to_json(replace(node, role=new, updated_at=self.clock()))))
            r = await store.txn([Compare(keys.node(node_id), kv.mod_revision)], writes)
            if r.succeeded:
                return
        raise Conflict(f"node {node_id} keeps changing; try again")

    async def node_rm(self, ref: str, *, force: bool = False) -> None:
        _, store = self._manager()
        node = await self._resolve_node(ref)
        alive, _, _ = await self._node_status()
        if node.role is NodeRole.MANAGER:
            raise Conflict(
                f"node {node.id} is a cluster manager: demote it (`skiff node demote`) before removing it"
            )
        if node.id in alive and not force:
            raise Conflict(
                f"node {node.id} is not down and can't be removed: drain it, make it leave, or use --force"
            )
        await store.txn(
            [],
            [
                Delete(keys.node(node.id)),
                Delete(keys.node_lease(node.id)),
                Delete(keys.alloc(node.id)),
                Delete(NODE_INFO + node.id),
            ],
        )
        self._known.pop(node.id, None)

    # --- services and tasks

    async def _services(self) -> list[Service]:
        _, store = self._manager()
        return [from_json(Service, kv.value) for kv in (await store.range(keys.SERVICES)).kvs]

    async def _tasks(self) -> list[Task]:
        _, store = self._manager()
        return [from_json(Task, kv.value) for kv in (await store.range(keys.TASKS)).kvs]

    async def _resolve_service(self, ref: str) -> Service:
        services = await self._services()
        service_id = resolve_ref("service", ref, [(s.id, s.spec.name) for s in services])
        return next(s for s in services if s.id == service_id)

    @staticmethod
    def _service_out(service: Service, tasks: list[Task]) -> dict[str, Any]:
        out: dict[str, Any] = to_plain(service)
        mine = [t for t in tasks if t.service_id == service.id and t.desired_state is TaskState.RUNNING]
        out["Running"] = sum(1 for t in mine if t.state is TaskState.RUNNING)
        out["Desired"] = service.spec.replicas if service.spec.mode is ServiceMode.REPLICATED else len(mine)
        return out

    async def services(self) -> list[dict[str, Any]]:
        services, tasks = await self._services(), await self._tasks()
        return [self._service_out(s, tasks) for s in sorted(services, key=lambda s: s.spec.name)]

    async def service_inspect(self, ref: str) -> dict[str, Any]:
        service = await self._resolve_service(ref)
        return self._service_out(service, await self._tasks())

    @staticmethod
    def _spec(plain: Any) -> ServiceSpec:
        if not isinstance(plain, dict):
            raise InvalidArgument("a service spec is a JSON object")
        if not plain.get("name"):
            raise InvalidArgument("a service needs a name")
        if not isinstance(plain.get("template"), dict):
            raise InvalidArgument("a service spec needs a template with an image")
        try:
            spec: ServiceSpec = from_plain(ServiceSpec, plain)
        except (TypeError, ValueError, KeyError) as e:
            raise InvalidArgument(f"invalid service spec: {e}") from None
        return spec

    async def service_create(self, plain: Any) -> dict[str, Any]:
        _, store = self._manager()
        service = await ops.create_service(store, self._spec(plain), now=self.clock())
        return {"ID": service.id}

    async def service_update(
        self, ref: str, plain: Any = None, *, rollback: bool = False, force: bool = False, version: int = 0
    ) -> None:
        _, store = self._manager()
        service = await self._resolve_service(ref)
        if rollback:
            await ops.rollback_service(store, service.id, now=self.clock())
            return
        spec = self._spec(plain) if plain is not None else service.spec
        if force:
            # docker's --force: a new template generation even without a change
            labels = dict(spec.template.labels)
            labels["com.skiff.cluster.force-update"] = str(
                int(labels.get("com.skiff.cluster.force-update", "0")) + 1
            )
            spec = replace(spec, template=replace(spec.template, labels=labels))
        elif plain is None:
            return
        await ops.update_service(store, service.id, spec, now=self.clock(), version=version)

    async def service_rm(self, ref: str) -> None:
        _, store = self._manager()
        service = await self._resolve_service(ref)
        await ops.remove_service(store, service.id)

    async def tasks(self, *, service: str | None = None, node: str | None = None) -> list[dict[str, Any]]:
        tasks = await self._tasks()
        nodes = {n.id: n for n in await self._nodes()}
        if service:
            sid = (await self._resolve_service(service)).id
            tasks = [t for t in tasks if t.service_id == sid]
        if node:
            nid = resolve_ref("node", node, [(n.id, n.hostname) for n in nodes.values()])
            tasks = [t for t in tasks if t.node_id == nid]
        out = []
        for t in sorted(tasks, key=lambda t: (t.service_name, t.slot, t.node_id, -t.created_at)):
            plain: dict[str, Any] = to_plain(t)
            n = nodes.get(t.node_id)
            plain["NodeHostname"] = n.hostname if n else ""
            plain["ServiceName"] = t.service_name
            out.append(plain)
        return out

    async def service_logs(
        self, ref: str, *, follow: bool = False, tail: str = "all", timestamps: bool = False
    ) -> AsyncGenerator[tuple[str, bytes], None]:
        """(task label, line) from every task of the service that has a container, merged."""
        state, _ = self._manager()
        service = await self._resolve_service(ref)
        nodes = {n.id: n for n in await self._nodes()}
        tasks = [
            t
            for t in await self._tasks()
            if t.service_id == service.id and t.node_id in nodes and (t.container_id or t.state.on_node)
        ]
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=1024)
        params = {"follow": "1" if follow else "0", "tail": tail, "timestamps": "1" if timestamps else "0"}

        async def fetch(task: Task) -> None:
            node = nodes[task.node_id]
            label = task_label(task, node.hostname)
            url = f"http://{node.address}/skiff/cluster/node/tasks/{task.id}/logs"
            try:
                async with self._client().get(
                    url, params=params, headers={"Authorization": f"Bearer {state.secret}"}
                ) as resp:
                    if resp.status != 200:
                        return
                    async for raw in resp.content:
                        if raw.strip():
                            msg = json.loads(raw)
                            await queue.put((label, base64.b64decode(msg.get("data") or "")))
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as e:
                log.debug("cluster: logs of %s: %s", task.id, e)

        async def all_done() -> None:
            try:
                await asyncio.gather(*(fetch(t) for t in tasks))
            finally:
                await queue.put(None)

        runner = asyncio.ensure_future(all_done())
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


PROMOTION = "/skiff/promotions/"  # node id -> the cluster key handed to a node being promoted


def wipe_cluster_dir(root: Path) -> None:
    """Remove ``<root>/cluster`` entirely (tests, a forced reset)."""
    shutil.rmtree(root / "cluster", ignore_errors=True)
