"""Writes from outside the leader's loop: services declared, nodes joined or changed, task
states reported. Each is one compare-and-set transaction, retried on a race where that is
safe. The API and the agents call these; the leader reacts through its watch.
"""

from __future__ import annotations

import re
from dataclasses import replace

from skiff.cluster import keys
from skiff.cluster.model import (
    Availability,
    FailureAction,
    Node,
    Service,
    ServiceMode,
    ServiceSpec,
    Task,
    TaskState,
    UpdateState,
    UpdateStatus,
    advance,
    from_json,
    new_id,
    to_json,
)
from skiff.cluster.reconcile import rollback
from skiff.cluster.scheduler.constraints import parse_constraints, parse_preference
from skiff.cluster.state.base import Compare, Delete, Put, Store
from skiff.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_RETRIES = 20


def validate_spec(spec: ServiceSpec) -> None:
    """Reject a spec the cluster cannot run, with a message saying what is wrong."""
    if not _NAME.match(spec.name):
        raise InvalidArgument(
            f"invalid service name {spec.name!r}: use letters, digits, '_', '.', '-' (max 63)"
        )
    if not spec.template.image:
        raise InvalidArgument("a service needs an image")
    if spec.replicas < 0:
        raise InvalidArgument(f"invalid replicas value {spec.replicas}: must be 0 or more")
    if spec.mode is ServiceMode.GLOBAL and spec.replicas not in (0, 1):
        raise InvalidArgument("replicas can only be used with replicated mode")
    parse_constraints(spec.template.placement.constraints)
    for pref in spec.template.placement.preferences:
        parse_preference(pref)
    res = spec.template.resources
    for r in (res.reservations, res.limits):
        if r.nano_cpus < 0 or r.memory_bytes < 0:
            raise InvalidArgument("resources must not be negative")
    seen = set()
    for p in spec.template.ports:
        if p.mode != "host":
            raise InvalidArgument(f"port mode {p.mode!r} is not supported yet: use mode=host")
        if p.protocol not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid protocol {p.protocol!r} for port {p.target}")
        if not 0 < p.target < 65536 or not 0 <= p.published < 65536:
            raise InvalidArgument(f"invalid port {p.published}:{p.target}")
        if p.published and (p.protocol, p.published) in seen:
            raise InvalidArgument(f"port {p.published}/{p.protocol} is published twice")
        seen.add((p.protocol, p.published))
    for policy in (spec.update, spec.rollback):
        if policy.parallelism < 0 or policy.delay < 0 or policy.monitor < 0:
            raise InvalidArgument("update parallelism, delay and monitor must not be negative")
    if spec.rollback.failure_action is FailureAction.ROLLBACK:
        raise InvalidArgument("a rollback's failure action is pause or continue")
    restart = spec.restart
    if restart.delay < 0 or restart.window < 0 or restart.max_attempts < 0:
        raise InvalidArgument("restart delay, window and max attempts must not be negative")


async def create_service(store: Store, spec: ServiceSpec, *, now: float) -> Service:
    """A new service; its name is unique (``AlreadyExists`` otherwise)."""
    validate_spec(spec)
    service = Service(id=new_id(), spec=spec, created_at=now, updated_at=now)
    name_key = keys.service_name(spec.name)
    r = await store.txn(
        [Compare(name_key, 0), Compare(keys.service(service.id), 0)],
        [Put(name_key, service.id.encode()), Put(keys.service(service.id), to_json(service))],
    )
    if not r.succeeded:
        raise AlreadyExists(f"service {spec.name} already exists")
    return service


async def get_service(store: Store, service_id: str) -> tuple[Service, int]:
    kv = await store.get(keys.service(service_id))
    if kv is None:
        raise NotFound(f"service {service_id} not found")
    return from_json(Service, kv.value), kv.mod_revision


async def update_service(
    store: Store, service_id: str, spec: ServiceSpec, *, now: float, version: int = 0
) -> Service:
    """Replace the spec. ``version`` (if given) must be the current one (``Conflict`` otherwise),
    as Docker's ``service update --version``. A template change starts a rolling update."""
    validate_spec(spec)
    for _ in range(_RETRIES):
        service, rev = await get_service(store, service_id)
        if version and service.version != version:
            raise Conflict(f"update out of sequence: service {service_id} is at version {service.version}")
        if spec.name != service.spec.name:
            raise InvalidArgument("renaming a service is not supported")
        status = service.update_status
        if spec.template != service.spec.template:
            status = UpdateStatus(UpdateState.UPDATING, started_at=now, message="update in progress")
        updated = replace(
            service,
            spec=spec,
            previous_spec=service.spec,
            version=service.version + 1,
            update_status=status,
            updated_at=now,
        )
        r = await store.txn(
            [Compare(keys.service(service_id), rev)], [Put(keys.service(service_id), to_json(updated))]
        )
        if r.succeeded:
            return updated
        if version:
            raise Conflict(f"update out of sequence: service {service_id} changed")
    raise Conflict(f"service {service_id} keeps changing; try again")


async def rollback_service(store: Store, service_id: str, *, now: float) -> Service:
    """Return to the previous spec (``service rollback``)."""
    for _ in range(_RETRIES):
        service, rev = await get_service(store, service_id)
        if service.previous_spec is None:
            raise Conflict(f"service {service.spec.name} has no previous spec to roll back to")
        back = rollback(service, now, "manually requested rollback")
        r = await store.txn(
            [Compare(keys.service(service_id), rev)], [Put(keys.service(service_id), to_json(back))]
        )
        if r.succeeded:
            return back
    raise Conflict(f"service {service_id} keeps changing; try again")


async def remove_service(store: Store, service_id: str) -> None:
    """Remove the service; the leader then shuts its tasks down."""
    service, rev = await get_service(store, service_id)
    r = await store.txn(
        [Compare(keys.service(service_id), rev)],
        [Delete(keys.service(service_id)), Delete(keys.service_name(service.spec.name))],
    )
    if not r.succeeded:
        raise Conflict(f"service {service_id} changed while being removed; try again")


async def register_node(store: Store, node: Node, lease_id: int) -> None:
    """A node joins (or rejoins): its record, and its liveness key under its lease."""
    await store.txn(
        [],
        [
            Put(keys.node(node.id), to_json(node)),
            Put(keys.node_lease(node.id), node.address.encode(), lease_id),
        ],
    )


async def update_node(
    store: Store,
    node_id: str,
    *,
    now: float,
    availability: Availability | None = None,
    labels: dict[str, str] | None = None,
) -> Node:
    """``node update --availability / --label-add / --label-rm`` (labels given whole)."""
    for _ in range(_RETRIES):
        kv = await store.get(keys.node(node_id))
        if kv is None:
            raise NotFound(f"node {node_id} not found")
        node = from_json(Node, kv.value)
        changed = replace(
            node,
            availability=availability if availability is not None else node.availability,
            labels=labels if labels is not None else node.labels,
            updated_at=now,
        )
        r = await store.txn(
            [Compare(keys.node(node_id), kv.mod_revision)], [Put(keys.node(node_id), to_json(changed))]
        )
        if r.succeeded:
            return changed
    raise Conflict(f"node {node_id} keeps changing; try again")


async def report_task(
    store: Store, task_id: str, state: TaskState, *, now: float, message: str = "", **changes: object
) -> Task | None:
    """An agent's report: move the task to ``state`` if still legal. None: the task is gone."""
    for _ in range(_RETRIES):
        kv = await store.get(keys.task(task_id))
        if kv is None:
            return None
        task = from_json(Task, kv.value)
        moved = advance(task, state, now=now, message=message, **changes)
        r = await store.txn(
            [Compare(keys.task(task_id), kv.mod_revision)], [Put(keys.task(task_id), to_json(moved))]
        )
        if r.succeeded:
            return moved
    raise Conflict(f"task {task_id} keeps changing; try again")
