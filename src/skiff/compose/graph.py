"""Services as a dependency graph: order, closure, cycles, and a parallel walk.

A service depends on what its ``depends_on`` names, and also on the services its
``links``, ``network_mode: service:x``, ``ipc``/``pid: service:x`` and ``volumes_from``
name (the loader usually adds those to ``depends_on`` already, as compose-go does;
adding them again is harmless). ``walk`` runs a function on every service once all of
its dependencies are done (or, reversed, once all of its dependents are), independent
services in parallel threads, as Compose's ``InDependencyOrder`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from skiff.errors import InvalidArgument

STARTED = "service_started"
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"
CONDITIONS = (STARTED, HEALTHY, COMPLETED)


@dataclass(frozen=True)
class Dependency:
    """One edge: the condition to wait for, whether it is required, restart on its recreate."""

    service: str
    condition: str = STARTED
    required: bool = True
    restart: bool = False


def _service_ref(mode: Any) -> str | None:
    if isinstance(mode, str) and mode.startswith("service:"):
        return mode[len("service:") :]
    return None


def dependencies(service: Mapping[str, Any]) -> dict[str, Dependency]:
    """The services ``service`` depends on, with their conditions."""
    out: dict[str, Dependency] = {}
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        raw = {name: None for name in raw}
    for name, spec in raw.items():
        spec = spec or {}
        condition = str(spec.get("condition") or STARTED)
        if condition not in CONDITIONS:
            raise InvalidArgument(f"depends_on.{name}: unknown condition {condition!r}")
        out[str(name)] = Dependency(
            str(name), condition, bool(spec.get("required", True)), bool(spec.get("restart", False))
        )
    implicit: list[str] = []
    for link in service.get("links") or []:
        implicit.append(str(link).split(":", 1)[0])
    for key in ("network_mode", "ipc", "pid"):
        if ref := _service_ref(service.get(key)):
            implicit.append(ref)
    for vf in service.get("volumes_from") or []:
        text = str(vf)
        if not text.startswith("container:"):
            implicit.append(text.split(":", 1)[0])
    for name in implicit:
        out.setdefault(name, Dependency(name))
    return out


def graph(services: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """service -> the services it depends on (only those in ``services``)."""
    return {name: {d for d in dependencies(svc) if d in services} for name, svc in services.items()}


def check_cycles(services: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a dependency cycle, naming it as Compose does."""
    edges = graph(services)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise InvalidArgument(f"dependency cycle detected: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)


def with_dependencies(services: Mapping[str, Mapping[str, Any]], names: Iterable[str]) -> set[str]:
    """``names`` and everything they depend on, transitively."""
    edges = graph(services)
    todo = [n for n in names if n in services]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(edges[name] - seen)
    return seen


def with_dependents(services: Mapping[str, Mapping[str, Any]], names: Iterable[str]) -> set[str]:
    """``names`` and every service that depends on them, transitively."""
    edges = graph(services)
    reverse: dict[str, set[str]] = {n: set() for n in edges}
    for name, deps in edges.items():
        for dep in deps:
            reverse[dep].add(name)
    todo = [n for n in names if n in services]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(reverse[name] - seen)
    return seen


def order(edges: Mapping[str, set[str]]) -> list[str]:
    """A topological order (dependencies first; ties by name), for sequential callers."""
    done: list[str] = []
    remaining = dict(edges)
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if not (deps & remaining.keys()))
        if not ready:
            raise InvalidArgument(f"dependency cycle detected among: {', '.join(sorted(remaining))}")
        for name in ready:
            done.append(name)
            del remaining[name]
    return done


def walk(
    edges: Mapping[str, set[str]],
    fn: Callable[[str], None],
    *,
    reverse: bool = False,
    workers: int = 8,
) -> None:
    """Call ``fn(name)`` for every node once its dependencies (``reverse``: dependents) are done.

    Independent nodes run in parallel threads. After a failure no new node starts, the
    running ones finish, and the first error is raised.
    """
    nodes = set(edges)
    waits_for: dict[str, set[str]] = {n: set(edges[n]) & nodes for n in nodes}
    if reverse:
        flipped: dict[str, set[str]] = {n: set() for n in nodes}
        for name, deps in waits_for.items():
            for dep in deps:
                flipped[dep].add(name)
        waits_for = flipped
    done: set[str] = set()
    errors: list[BaseException] = []
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(nodes) or 1))) as pool:
        running: dict[Future[None], str] = {}
        pending = set(nodes)
        while pending or running:
            if not errors:
                ready = sorted(n for n in pending if waits_for[n] <= done)
                for name in ready:
                    pending.discard(name)
                    running[pool.submit(fn, name)] = name
            if not running:
                if pending and not errors:
                    raise InvalidArgument(f"dependency cycle detected among: {', '.join(sorted(pending))}")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                name = running.pop(fut)
                exc = fut.exception()
                with lock:
                    if exc is not None:
                        errors.append(exc)
                    else:
                        done.add(name)
    if errors:
        raise errors[0]
