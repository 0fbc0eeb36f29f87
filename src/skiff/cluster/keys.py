"""Where each cluster object lives in the store. Every key starts with ``/skiff/``.

::

    /skiff/cluster                      cluster id, join-token hashes            (manager, later)
    /skiff/leader                       the leading manager, under its lease     (manager)
    /skiff/nodes/<node>                 Node (JSON)                              (leader; agent on join)
    /skiff/leases/nodes/<node>          under the node's lease: present = alive  (agent)
    /skiff/alloc/<node>                 placement generation of the node         (leader's plans)
    /skiff/services/<service>           Service (JSON)                           (API; leader for status)
    /skiff/names/services/<name>        the service id holding the name          (API)
    /skiff/tasks/<task>                 Task (JSON)                              (leader; agent for state)
    /skiff/sync/<leader>                a leader's barrier: written, then awaited on its watch
    /skiff/endpoints/<service>/<task>   reserved: a healthy task's address, under its node's lease
    /skiff/networks/<network>           reserved: multi-host networks
    /skiff/configs/<id>, /skiff/secrets/<id>   reserved

A node's liveness is a separate key under its lease, so keepalives never rewrite the Node
record and the leader learns of a death from one watch event. ``alloc`` is bumped by every plan
that places a task on the node: two planners that placed on the same node from the same view
conflict there (see ``plan.py``).
"""

from __future__ import annotations

ROOT = "/skiff/"
CLUSTER = "/skiff/cluster"
LEADER = "/skiff/leader"
NODES = "/skiff/nodes/"
NODE_LEASES = "/skiff/leases/nodes/"
ALLOC = "/skiff/alloc/"
SERVICES = "/skiff/services/"
SERVICE_NAMES = "/skiff/names/services/"
TASKS = "/skiff/tasks/"
SYNC = "/skiff/sync/"
ENDPOINTS = "/skiff/endpoints/"
NETWORKS = "/skiff/networks/"
CONFIGS = "/skiff/configs/"
SECRETS = "/skiff/secrets/"


def node(node_id: str) -> str:
    return NODES + node_id


def node_lease(node_id: str) -> str:
    return NODE_LEASES + node_id


def alloc(node_id: str) -> str:
    return ALLOC + node_id


def service(service_id: str) -> str:
    return SERVICES + service_id


def service_name(name: str) -> str:
    return SERVICE_NAMES + name


def task(task_id: str) -> str:
    return TASKS + task_id


def sync(leader: str) -> str:
    return SYNC + leader


def endpoint(service_id: str, task_id: str) -> str:
    return f"{ENDPOINTS}{service_id}/{task_id}"
