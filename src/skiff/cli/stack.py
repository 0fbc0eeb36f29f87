"""``skiff stack deploy|ls|ps|services|rm``: a compose file's services as cluster services.

Each compose service becomes a ``ServiceSpec`` named ``<stack>_<service>`` and labelled
``com.docker.stack.namespace=<stack>`` (the service and its containers), as ``docker stack``
does. Its ``deploy:`` section gives mode, replicas, resources, placement and the restart,
update and rollback policies; ports are published on the node running the task (host mode).
Keys the cluster does not use (build, depends_on, ...) are listed and ignored, as docker does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from skiff.cli.cluster import ClusterClient, cluster_client
from skiff.cli.cluster_rows import SERVICE_TABLE, SERVICE_TITLES, STACK_TABLE, STACK_TITLES, ServiceRow
from skiff.cli.context import CliContext, ExitCode, error_text, pass_cli, usage_errors
from skiff.cli.format.table import render_rows
from skiff.cli.service import show_tasks
from skiff.cli.service_spec import STACK_LABEL, check_constraint, check_preference
from skiff.cluster.model import (
    FailureAction,
    Placement,
    PortConfig,
    ResourceRequirements,
    Resources,
    RestartCondition,
    RestartPolicy,
    ServiceMode,
    ServiceSpec,
    TaskTemplate,
    UpdateOrder,
    UpdatePolicy,
)
from skiff.compose.values import duration_ns, nano_cpus
from skiff.errors import InvalidArgument, SkiffError
from skiff.types.codec import decode, to_plain
from skiff.types.container import HealthConfig

# Service keys a stack uses; everything else is reported as ignored.
_USED = frozenset(
    {
        "image",
        "command",
        "entrypoint",
        "environment",
        "labels",
        "healthcheck",
        "ports",
        "deploy",
        "working_dir",
        "user",
        "stop_grace_period",
        "networks",
    }
)
_USED_DEPLOY = frozenset(
    {
        "mode",
        "replicas",
        "resources",
        "placement",
        "restart_policy",
        "update_config",
        "rollback_config",
        "labels",
    }
)


def _seconds(value: Any, what: str) -> float:
    return duration_ns(value, what) / 1e9


def _resources(spec: Mapping[str, Any]) -> Resources:
    return Resources(
        nano_cpus=nano_cpus(spec.get("cpus")),
        memory_bytes=int(spec.get("memory") or 0),
    )


def _policy(cfg: Mapping[str, Any] | None, what: str, default: UpdatePolicy) -> UpdatePolicy:
    if not cfg:
        return default
    changes: dict[str, Any] = {}
    if cfg.get("parallelism") is not None:
        changes["parallelism"] = int(cfg["parallelism"])
    if cfg.get("delay") is not None:
        changes["delay"] = _seconds(cfg["delay"], f"{what}.delay")
    if cfg.get("monitor") is not None:
        changes["monitor"] = _seconds(cfg["monitor"], f"{what}.monitor")
    if cfg.get("failure_action"):
        try:
            changes["failure_action"] = FailureAction(str(cfg["failure_action"]))
        except ValueError:
            raise InvalidArgument(
                f"{what}.failure_action: {cfg['failure_action']!r} is not pause, rollback or continue"
            ) from None
    if cfg.get("order"):
        try:
            changes["order"] = UpdateOrder(str(cfg["order"]))
        except ValueError:
            raise InvalidArgument(
                f"{what}.order: {cfg['order']!r} is not stop-first or start-first"
            ) from None
    return dataclasses.replace(default, **changes)


def _restart(cfg: Mapping[str, Any] | None) -> RestartPolicy:
    if not cfg:
        return RestartPolicy()
    changes: dict[str, Any] = {}
    if cfg.get("condition"):
        try:
            changes["condition"] = RestartCondition(str(cfg["condition"]))
        except ValueError:
            raise InvalidArgument(
                f"deploy.restart_policy.condition: {cfg['condition']!r} is not none, on-failure or any"
            ) from None
    if cfg.get("delay") is not None:
        changes["delay"] = _seconds(cfg["delay"], "deploy.restart_policy.delay")
    if cfg.get("max_attempts") is not None:
        changes["max_attempts"] = int(cfg["max_attempts"])
    if cfg.get("window") is not None:
        changes["window"] = _seconds(cfg["window"], "deploy.restart_policy.window")
    return RestartPolicy(**changes)


def _healthcheck(hc: Mapping[str, Any] | None) -> HealthConfig | None:
    if not hc:
        return None
    if hc.get("disable"):
        return HealthConfig(test=("NONE",))
    test = hc.get("test") or ()
    return HealthConfig(
        test=tuple(str(t) for t in test),
        interval=duration_ns(hc.get("interval"), "healthcheck.interval"),
        timeout=duration_ns(hc.get("timeout"), "healthcheck.timeout"),
        retries=int(hc.get("retries") or 0),
        start_period=duration_ns(hc.get("start_period"), "healthcheck.start_period"),
        start_interval=duration_ns(hc.get("start_interval"), "healthcheck.start_interval"),
    )


def _ports(ports: list[Mapping[str, Any]]) -> tuple[PortConfig, ...]:
    out = []
    for p in ports:
        published = str(p.get("published") or "0")
        if not published.isdigit():
            raise InvalidArgument(f"ports: published port {published!r} must be a single port for a stack")
        out.append(
            PortConfig(
                target=int(p["target"]),
                published=int(published),
                protocol=str(p.get("protocol") or "tcp"),
                mode="host",
            )
        )
    return tuple(out)


def unsupported_keys(service: Mapping[str, Any]) -> list[str]:
    """The keys of a compose service a stack ignores (docker's "Ignoring unsupported options")."""
    out = [k for k in service if k not in _USED and not k.startswith("x-")]
    networks = service.get("networks") or {}
    if set(networks) - {"default"}:
        out.append("networks")
    deploy = service.get("deploy") or {}
    out += [f"deploy.{k}" for k in deploy if k not in _USED_DEPLOY]
    return sorted(out)


def service_spec(stack: str, name: str, service: Mapping[str, Any]) -> ServiceSpec:
    """One compose service (canonical form, ``skiff.compose.model``) -> the cluster's spec."""
    image = service.get("image")
    if not image:
        raise InvalidArgument(
            f"service {name!r} has no image: a stack runs images (build them and push them first)"
        )
    deploy: Mapping[str, Any] = service.get("deploy") or {}
    resources = deploy.get("resources") or {}
    placement = deploy.get("placement") or {}
    env = tuple(f"{k}={v}" for k, v in (service.get("environment") or {}).items() if v is not None)
    ns = {STACK_LABEL: stack}
    mode = str(deploy.get("mode") or "replicated")
    if mode not in ("replicated", "global"):
        raise InvalidArgument(f"service {name!r}: deploy.mode {mode!r} is not replicated or global")
    prefs = []
    for p in placement.get("preferences") or []:
        if isinstance(p, Mapping) and "spread" in p:
            prefs.append(check_preference(f"spread={p['spread']}"))
        else:
            raise InvalidArgument(
                f"service {name!r}: placement preference {p!r}: expected spread: node.labels.<name>"
            )
    grace = service.get("stop_grace_period")
    tpl = TaskTemplate(
        image=str(image),
        command=tuple(service.get("command") or ()),
        entrypoint=tuple(service.get("entrypoint") or ()),
        env=env,
        labels={**(service.get("labels") or {}), **ns},
        workdir=str(service.get("working_dir") or ""),
        user=str(service.get("user") or ""),
        resources=ResourceRequirements(
            reservations=_resources(resources.get("reservations") or {}),
            limits=_resources(resources.get("limits") or {}),
        ),
        placement=Placement(
            constraints=tuple(check_constraint(str(c)) for c in placement.get("constraints") or ()),
            preferences=tuple(prefs),
        ),
        ports=_ports(service.get("ports") or []),
        healthcheck=_healthcheck(service.get("healthcheck")),
        stop_grace_period=_seconds(grace, "stop_grace_period") if grace is not None else 10.0,
    )
    return ServiceSpec(
        name=f"{stack}_{name}",
        template=tpl,
        labels={**(deploy.get("labels") or {}), **ns},
        mode=ServiceMode(mode),
        replicas=int(deploy["replicas"]) if deploy.get("replicas") is not None else 1,
        restart=_restart(deploy.get("restart_policy")),
        update=_policy(deploy.get("update_config"), "deploy.update_config", UpdatePolicy()),
        rollback=_policy(
            deploy.get("rollback_config"), "deploy.rollback_config", ServiceSpec("", tpl).rollback
        ),
    )


def stack_services(client: ClusterClient, stack: str) -> list[dict[str, Any]]:
    return [
        s for s in client.services() if ((s.get("spec") or {}).get("labels") or {}).get(STACK_LABEL) == stack
    ]


@click.group()
def stack() -> None:
    """Manage stacks: compose files deployed as cluster services."""


@stack.command("deploy")
@click.option("-c", "--compose-file", "files", multiple=True, required=True, help="Path to a Compose file")
@click.option("--prune", is_flag=True, help="Prune services that are no longer referenced")
@click.option("-d", "--detach", is_flag=True, default=True, hidden=True, help="Exit immediately (always)")
@click.argument("name", metavar="STACK")
@pass_cli
def deploy(obj: CliContext, files: tuple[str, ...], prune: bool, detach: bool, name: str) -> None:
    """Deploy a new stack or update an existing stack."""
    from skiff.compose.loader import load_project

    with usage_errors():
        project = load_project([Path(f) for f in files], None, name, os.environ, ())
        for warning in project.warnings:
            click.echo(f"WARN: {warning}", err=True)
        specs = []
        ignored: set[str] = set()
        for svc_name in project.service_names():
            svc = project.services[svc_name]
            ignored.update(unsupported_keys(svc))
            specs.append(service_spec(name, svc_name, svc))
    if ignored:
        click.echo(f"Ignoring unsupported options: {', '.join(sorted(ignored))}\n", err=True)
    client = cluster_client(obj)
    existing = {str((s.get("spec") or {}).get("name")): s for s in stack_services(client, name)}
    wanted = {s.name for s in specs}
    if prune:
        for svc_name, s in sorted(existing.items()):
            if svc_name not in wanted:
                click.echo(f"Removing service {svc_name}")
                client.service_rm(str(s.get("id") or svc_name))
    for spec in specs:
        current = existing.get(spec.name)
        if current is None:
            click.echo(f"Creating service {spec.name}")
            client.service_create(to_plain(spec))
            continue
        if decode(ServiceSpec, current["spec"]) == spec:
            continue
        click.echo(f"Updating service {spec.name} (id: {current.get('id', '')})")
        client.service_update(str(current.get("id") or spec.name), to_plain(spec))


@stack.command("ls")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@pass_cli
def ls(obj: CliContext, fmt: str) -> None:
    """List stacks."""
    counts: dict[str, int] = {}
    for s in cluster_client(obj).services():
        ns = ((s.get("spec") or {}).get("labels") or {}).get(STACK_LABEL)
        if ns:
            counts[ns] = counts.get(ns, 0) + 1
    rows = [_StackRow(n, c) for n, c in sorted(counts.items())]
    text = render_rows(fmt, rows, STACK_TITLES, STACK_TABLE)
    if text:
        click.echo(text)


class _StackRow:
    def __init__(self, name: str, services: int) -> None:
        self.Name = name
        self.Services = services

    def to_json(self) -> dict[str, str]:
        return {"Name": self.Name, "Services": str(self.Services)}


def _need(services: list[dict[str, Any]], name: str) -> None:
    if not services:
        click.echo(f"Nothing found in stack: {name}", err=True)
        raise ExitCode(1)


@stack.command("services")
@click.argument("name", metavar="STACK")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@pass_cli
def services(obj: CliContext, name: str, quiet: bool, fmt: str) -> None:
    """List the services in the stack."""
    found = stack_services(cluster_client(obj), name)
    _need(found, name)
    rows = sorted((ServiceRow(s, trunc=not quiet) for s in found), key=lambda r: r.Name)
    text = render_rows("{{.ID}}" if quiet else fmt, rows, SERVICE_TITLES, SERVICE_TABLE)
    if text:
        click.echo(text)


@stack.command("ps")
@click.argument("name", metavar="STACK")
@click.option("-q", "--quiet", is_flag=True, help="Only display task IDs")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@pass_cli
def ps(obj: CliContext, name: str, quiet: bool, no_trunc: bool, fmt: str) -> None:
    """List the tasks in the stack."""
    client = cluster_client(obj)
    found = stack_services(client, name)
    _need(found, name)
    tasks: list[Mapping[str, Any]] = []
    for s in found:
        tasks.extend(client.tasks(service=str(s.get("id"))))
    show_tasks(tasks, quiet=quiet, no_trunc=no_trunc, fmt=fmt)


@stack.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="STACK...")
@pass_cli
def rm(obj: CliContext, names: tuple[str, ...]) -> None:
    """Remove one or more stacks."""
    client = cluster_client(obj)
    failed = False
    for name in names:
        found = stack_services(client, name)
        if not found:
            click.echo(f"Nothing found in stack: {name}", err=True)
            continue
        for s in sorted(found, key=lambda s: str((s.get("spec") or {}).get("name"))):
            svc_name = str((s.get("spec") or {}).get("name"))
            click.echo(f"Removing service {svc_name}")
            try:
                client.service_rm(str(s.get("id") or svc_name))
            except SkiffError as exc:
                click.echo(error_text(exc), err=True)
                failed = True
    if failed:
        raise ExitCode(1)


def register(group: click.Group) -> None:
    """Add ``stack`` (with docker's ``list``/``remove``/``up`` aliases) to ``group``."""
    stack.add_command(ls, "list")
    stack.add_command(rm, "remove")
    stack.add_command(rm, "down")
    stack.add_command(deploy, "up")
    group.add_command(stack)
