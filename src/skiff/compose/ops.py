"""Compose's commands as functions over a :class:`ProjectHandle` (no terminal I/O here).

``up``/``create`` observe, plan and execute; the others act on the containers the
project's labels find, in dependency order where Compose uses one (start: dependencies
first; stop/down: dependents first, taken from the ``depends_on`` label when there is
no file to read).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skiff.client import Client
from skiff.compose import labels as L
from skiff.compose.convert import image_name
from skiff.compose.executor import AttachHook, DependencyFailed, Executor, Started
from skiff.compose.graph import check_cycles, graph, walk
from skiff.compose.handle import ProjectHandle
from skiff.compose.images import BuildOutput, ensure_images
from skiff.compose.observed import ObservedContainer, list_containers, observe
from skiff.compose.plan import DIVERGED, Plan, PlanOptions, make_plan
from skiff.compose.progress import DONE, ERROR, WARNING
from skiff.errors import Conflict, NotFound, RuntimeFailure, SkiffError


@dataclass(frozen=True)
class UpOptions:
    """``up``/``create`` flags."""

    services: tuple[str, ...] = ()
    no_deps: bool = False
    recreate: str = DIVERGED
    recreate_deps: str = DIVERGED
    build: str = "auto"
    pull: str = "missing"
    scale: Mapping[str, int] = field(default_factory=dict)
    remove_orphans: bool = False
    timeout: int | None = None
    renew_anon_volumes: bool = False
    start: bool = True
    wait: bool = False


def up(
    h: ProjectHandle, opts: UpOptions, output: BuildOutput, before_start: AttachHook | None = None
) -> tuple[Plan, Executor]:
    """Converge the project (or the named services and their dependencies) and start it."""
    services = h.select(opts.services, deps=not opts.no_deps)
    check_cycles(services)
    for name in opts.scale:
        if name not in h.services:
            raise NotFound(f"no such service: {name}")
    image_ids = ensure_images(
        h.client, h.name, services, h.progress, output, build=opts.build, pull=opts.pull
    )
    known = {**h.services, **h.disabled}
    observed = observe(h.client, h.name, services, known)
    if observed.orphans and not opts.remove_orphans:
        names = ", ".join(c.name for c in observed.orphans)
        h.progress.event(
            "Warning",
            "orphans",
            f"Found orphan containers ({names}) for this project; use --remove-orphans",
            WARNING,
        )
    plan = make_plan(
        h.name,
        services,
        h.info.networks,
        h.info.volumes,
        observed,
        image_ids,
        PlanOptions(
            services=opts.services,
            recreate=opts.recreate,
            recreate_deps=opts.recreate_deps,
            scale=opts.scale,
            remove_orphans=opts.remove_orphans,
            start=opts.start,
        ),
    )
    ex = Executor(
        h,
        image_ids=image_ids,
        timeout=opts.timeout,
        inherit_volumes=not opts.renew_anon_volumes,
        before_start=before_start,
    )
    ex.apply(plan, observed, start=opts.start)
    if opts.wait:
        wait_running(h, ex)
    return plan, ex


def wait_running(h: ProjectHandle, ex: Executor) -> None:
    """``up --wait``: every container running, and healthy when it has a health check."""
    import time

    from skiff.compose.executor import HEALTH_POLL

    failures: list[str] = []
    for _service, ids in sorted(ex.containers.items()):
        for cid in ids:
            waiting = False
            while True:
                info = h.client.inspect_container(cid)
                name = str(info.get("Name", cid)).lstrip("/")
                state = info.get("State") or {}
                health = (state.get("Health") or {}).get("Status")
                if state.get("Status") in ("exited", "dead"):
                    code = state.get("ExitCode")
                    h.progress.event("Container", name, "Error", ERROR, f"exited ({code})")
                    failures.append(f"container {name} exited ({code})")
                    break
                if health == "unhealthy":
                    h.progress.event("Container", name, "Error", ERROR, "unhealthy")
                    failures.append(f"container {name} is unhealthy")
                    break
                if health in (None, "healthy") and state.get("Running"):
                    h.progress.event("Container", name, "Healthy" if health else "Running", DONE)
                    break
                if not waiting:
                    h.progress.event("Container", name, "Waiting")
                    waiting = True
                time.sleep(HEALTH_POLL)
    if failures:
        raise DependencyFailed("; ".join(failures))


def _edges_from_labels(containers: Iterable[ObservedContainer]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for c in containers:
        deps = edges.setdefault(c.service, set())
        for entry in filter(None, c.labels.get(L.DEPENDS_ON, "").split(",")):
            deps.add(entry.split(":", 1)[0])
    return {s: deps & edges.keys() for s, deps in edges.items()}


def _edges(h: ProjectHandle, containers: list[ObservedContainer]) -> dict[str, set[str]]:
    """Service dependencies: from the file when there is one, else from the containers' labels."""
    edges = _edges_from_labels(containers)
    if h.services:
        from_file = graph(h.services)
        for name, deps in from_file.items():
            edges[name] = set(deps)
        for name in list(edges):
            edges[name] &= edges.keys()
    return edges


def project_containers(
    h: ProjectHandle, services: Iterable[str] = (), *, all_: bool = True, oneoff: bool | None = False
) -> list[ObservedContainer]:
    """The project's containers (of ``services`` when given)."""
    wanted = set(services)
    for name in wanted:
        if h.services and name not in h.services and name not in h.disabled:
            raise NotFound(f"no such service: {name}")
    found = list_containers(h.client, h.name, oneoff=oneoff, all_=all_)
    return [c for c in found if not wanted or c.service in wanted]


def _per_service(
    h: ProjectHandle,
    containers: list[ObservedContainer],
    action: Callable[[ObservedContainer], None],
    *,
    reverse: bool = False,
) -> None:
    by_service: dict[str, list[ObservedContainer]] = {}
    for c in containers:
        by_service.setdefault(c.service, []).append(c)
    edges = {s: d & by_service.keys() for s, d in _edges(h, containers).items() if s in by_service}

    def one(service: str) -> None:
        errors: list[BaseException] = []
        threads = []
        for c in by_service[service]:

            def run(c: ObservedContainer = c) -> None:
                try:
                    action(c)
                except BaseException as exc:
                    errors.append(exc)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    walk(edges, one, reverse=reverse)


def _step(h: ProjectHandle, c: ObservedContainer, working: str, done: str, fn: Callable[[], None]) -> None:
    h.progress.event("Container", c.name, working)
    try:
        fn()
    except SkiffError as exc:
        h.progress.event("Container", c.name, "Error", ERROR, exc.message)
        raise
    h.progress.event("Container", c.name, done, DONE)


def stop(h: ProjectHandle, services: Iterable[str] = (), timeout: int | None = None) -> None:
    """Stop running containers, dependents first."""
    found = [c for c in project_containers(h, services) if c.running or c.state == "paused"]
    _per_service(
        h,
        found,
        lambda c: _step(h, c, "Stopping", "Stopped", lambda: h.client.stop(c.id, timeout)),
        reverse=True,
    )


def start(
    h: ProjectHandle, services: Iterable[str] = (), before_start: AttachHook | None = None
) -> list[Started]:
    """Start existing containers, dependencies first and their conditions met."""
    found = project_containers(h, services)
    if not found:
        raise NotFound("service(s) not found: no containers to start")
    ex = Executor(h, before_start=before_start)
    started: list[Started] = []
    by_service: dict[str, list[ObservedContainer]] = {}
    for c in found:
        by_service.setdefault(c.service, []).append(c)
        ex.containers.setdefault(c.service, []).append(c.id)
        ex.peers.setdefault(c.service, [])
    edges = {s: d & by_service.keys() for s, d in _edges(h, found).items() if s in by_service}

    def one(service: str) -> None:
        if service in h.services:
            ex.wait_dependencies(service, set(by_service))
        for c in by_service[service]:
            s = Started(c.id, c.name, c.service, c.running)
            started.append(s)
            if c.running:
                if before_start:
                    before_start(s)
                continue
            ex.start_container(s)

    walk(edges, one)
    return started


def restart(h: ProjectHandle, services: Iterable[str] = (), timeout: int | None = None) -> None:
    """Restart containers, dependencies first."""
    found = project_containers(h, services)
    _per_service(
        h, found, lambda c: _step(h, c, "Restarting", "Started", lambda: h.client.restart(c.id, timeout))
    )


def kill(h: ProjectHandle, services: Iterable[str] = (), signal: str | None = None) -> None:
    """Send a signal to running containers."""
    found = [c for c in project_containers(h, services) if c.running]
    if not found:
        raise NotFound("no container to kill")
    _per_service(
        h,
        found,
        lambda c: _step(h, c, "Killing", "Killed", lambda: h.client.kill(c.id, signal)),
        reverse=True,
    )


def pause(h: ProjectHandle, services: Iterable[str] = ()) -> None:
    found = [c for c in project_containers(h, services) if c.state == "running"]
    _per_service(h, found, lambda c: _step(h, c, "Pausing", "Paused", lambda: h.client.pause(c.id)))


def unpause(h: ProjectHandle, services: Iterable[str] = ()) -> None:
    found = [c for c in project_containers(h, services) if c.state == "paused"]
    _per_service(h, found, lambda c: _step(h, c, "Unpausing", "Unpaused", lambda: h.client.unpause(c.id)))


def removable(
    h: ProjectHandle, services: Iterable[str] = (), *, stopped_too: bool = False
) -> list[ObservedContainer]:
    """What ``rm`` would remove: stopped containers (running ones too with ``--stop``)."""
    return [c for c in project_containers(h, services) if stopped_too or not c.running]


def rm(h: ProjectHandle, containers: list[ObservedContainer], volumes: bool = False) -> None:
    """Remove (stopping first when running) the given containers."""

    def one(c: ObservedContainer) -> None:
        if c.running:
            _step(h, c, "Stopping", "Stopped", lambda: h.client.stop(c.id))
        _step(
            h, c, "Removing", "Removed", lambda: h.client.remove_container(c.id, force=True, volumes=volumes)
        )

    _per_service(h, containers, one, reverse=True)


@dataclass(frozen=True)
class DownOptions:
    remove_orphans: bool = False
    volumes: bool = False
    rmi: str | None = None  # "local" | "all"
    timeout: int | None = None


def down(h: ProjectHandle, opts: DownOptions) -> None:
    """Stop and remove the project's containers, then its networks (and volumes, images)."""
    known = {**h.services, **h.disabled}
    observed = observe(h.client, h.name, h.services, known)
    containers = observed.all_containers() + observed.oneoffs
    if not h.services or opts.remove_orphans:  # no file: everything labelled with the project
        containers += observed.orphans
    elif observed.orphans:
        names = ", ".join(c.name for c in observed.orphans)
        h.progress.event(
            "Warning",
            "orphans",
            f"Found orphan containers ({names}) for this project; use --remove-orphans",
            WARNING,
        )

    def one(c: ObservedContainer) -> None:
        if c.running or c.state == "paused":
            _step(h, c, "Stopping", "Stopped", lambda: h.client.stop(c.id, opts.timeout))
        _step(h, c, "Removing", "Removed", lambda: _remove_quietly(h, c.id, opts.volumes))

    _per_service(h, containers, one, reverse=True)
    for name, net in sorted(observed.networks.items()):
        key = (net.get("Labels") or {}).get(L.NETWORK, "")
        spec = h.info.networks.get(key) or {}
        if spec.get("external"):
            continue
        h.progress.event("Network", name, "Removing")
        try:
            h.client.remove_network(str(net.get("Id") or name))
        except NotFound:
            pass
        except (Conflict, RuntimeFailure) as exc:
            h.progress.event("Network", name, "Resource is still in use", WARNING, exc.message)
            continue
        h.progress.event("Network", name, "Removed", DONE)
    if opts.volumes:
        for name, vol in sorted(observed.volumes.items()):
            key = (vol.get("Labels") or {}).get(L.VOLUME, "")
            if (h.info.volumes.get(key) or {}).get("external"):
                continue
            h.progress.event("Volume", name, "Removing")
            try:
                h.client.remove_volume(name)
            except NotFound:
                pass
            except SkiffError as exc:
                h.progress.event("Volume", name, "Resource is still in use", WARNING, exc.message)
                continue
            h.progress.event("Volume", name, "Removed", DONE)
    if opts.rmi:
        for image in sorted(_images_to_remove(h, containers, opts.rmi)):
            h.progress.event("Image", image, "Removing")
            try:
                h.client.remove_image(image)
            except NotFound:
                continue
            except SkiffError as exc:
                h.progress.event("Image", image, "Error", WARNING, exc.message)
                continue
            h.progress.event("Image", image, "Removed", DONE)


def _remove_quietly(h: ProjectHandle, cid: str, volumes: bool) -> None:
    try:
        h.client.remove_container(cid, force=True, volumes=volumes)
    except NotFound:
        pass


def _images_to_remove(h: ProjectHandle, containers: list[ObservedContainer], mode: str) -> set[str]:
    """``--rmi local``: images built for services without ``image:``; ``all``: every service image."""
    out: set[str] = set()
    for name, svc in h.services.items():
        if mode == "all" or not svc.get("image"):
            out.add(image_name(h.name, name, svc))
    if mode == "all":
        out.update(str(c.summary.get("Image") or "") for c in containers if c.summary.get("Image"))
    elif not h.services:
        out.update(
            str(c.summary.get("Image"))
            for c in containers
            if str(c.summary.get("Image") or "") == f"{h.name}-{c.service}"
        )
    out.discard("")
    return out


def find_container(h: ProjectHandle, service: str, index: int = 1) -> ObservedContainer:
    """Container ``index`` of ``service`` (``exec``, ``port``)."""
    if h.services and service not in h.services:
        raise NotFound(f"no such service: {service}")
    for c in project_containers(h, [service], all_=True):
        if c.number == index:
            return c
    raise NotFound(
        f"service {service!r} is not running"
        if index == 1
        else f"service {service!r} has no container #{index}"
    )


@dataclass(frozen=True)
class ProjectSummary:
    """A row of ``compose ls``."""

    name: str
    status: str
    config_files: str


def list_projects(client: Client, all_: bool = False) -> list[ProjectSummary]:
    """Every project with containers on the daemon (running ones unless ``all_``)."""
    raw = client.containers(all=True, filters={"label": [L.PROJECT]})
    states: dict[str, dict[str, int]] = {}
    files: dict[str, str] = {}
    for s in raw:
        labels = s.get("Labels") or {}
        project = str(labels.get(L.PROJECT, ""))
        if not project:
            continue
        state = str(s.get("State") or "")
        counts = states.setdefault(project, {})
        counts[state] = counts.get(state, 0) + 1
        files.setdefault(project, str(labels.get(L.CONFIG_FILES, "")))
    out = []
    for project in sorted(states):
        counts = states[project]
        if not all_ and not counts.get("running"):
            continue
        status = ", ".join(f"{k}({v})" for k, v in sorted(counts.items()))
        out.append(ProjectSummary(project, status, files[project]))
    return out


def one_off_defaults(service: Mapping[str, Any]) -> dict[str, Any]:
    """A service as ``run`` uses it: no published ports, no restart policy, no replicas."""
    svc = dict(service)
    svc.pop("ports", None)
    svc.pop("restart", None)
    deploy = dict(svc.get("deploy") or {})
    deploy.pop("restart_policy", None)
    deploy.pop("replicas", None)
    if deploy:
        svc["deploy"] = deploy
    else:
        svc.pop("deploy", None)
    svc.pop("container_name", None)
    return svc
