"""Swarm-mode routes while this daemon is not in a cluster: Docker's 503 answers.

dockerd answers every swarm endpoint of a node outside a swarm with 503 and one of two
messages; clients depend on it (docker-py's ``leave_swarm(force=True)`` treats 503 as
"nothing to leave", the CLI prints the hint). skiff's own cluster (issue 8) will serve these.
"""

from __future__ import annotations

from aiohttp import web

from skiff.api.app import Routes, error_response

NOT_IN_SWARM = "This node is not part of a swarm"
NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)


async def not_in_swarm(request: web.Request) -> web.Response:
    return error_response(503, NOT_IN_SWARM)


async def not_a_manager(request: web.Request) -> web.Response:
    return error_response(503, NOT_A_MANAGER)


async def init_unavailable(request: web.Request) -> web.Response:
    return error_response(
        503, "swarm mode is not available on skiffd: use 'skiff cluster init' for skiff's own cluster mode"
    )


def register(routes: Routes) -> None:
    routes.add("GET", "/swarm", not_a_manager)
    routes.add("POST", "/swarm/init", init_unavailable)
    routes.add("POST", "/swarm/join", init_unavailable)
    routes.add("POST", "/swarm/leave", not_in_swarm)
    routes.add("POST", "/swarm/update", not_a_manager)
    routes.add("GET", "/swarm/unlockkey", not_a_manager)
    routes.add("POST", "/swarm/unlock", not_a_manager)
    for prefix in ("/nodes", "/services", "/tasks", "/secrets", "/configs"):
        for method in ("GET", "POST", "DELETE"):
            routes.add(method, prefix, not_a_manager)
            routes.add(method, prefix + "/{rest:.*}", not_a_manager)
