"""``skiff service create|ls|ps|inspect|scale|update|rollback|rm|logs`` with docker's flags and output."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from skiff.cli.cluster import ClusterClient, cluster_client
from skiff.cli.cluster_rows import (
    SERVICE_TABLE,
    SERVICE_TITLES,
    TASK_TABLE,
    TASK_TITLES,
    ServiceRow,
    TaskRow,
    filter_tasks,
    order_tasks,
    pretty_service,
    slot_name,
    task_error,
)
from skiff.cli.context import CliContext, ExitCode, error_text, pass_cli, usage_errors
from skiff.cli.filters import parse_filters
from skiff.cli.format.table import render_rows, single
from skiff.cli.service_spec import parse_scale, spec_from_flags, update_spec
from skiff.cluster.model import ServiceSpec
from skiff.errors import InvalidArgument, SkiffError
from skiff.types.codec import decode, to_plain

F = TypeVar("F", bound=Callable[..., Any])


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _o(*names: str, multiple: bool = False, help: str, **kw: Any) -> Callable[[Any], Any]:
    return click.option(*names, multiple=multiple, help=help, **kw)


def _f(*names: str, help: str) -> Callable[[Any], Any]:
    return click.option(*names, is_flag=True, default=False, help=help)


COMMON_OPTIONS: list[Callable[[Any], Any]] = [
    _o("--replicas", type=int, help="Number of tasks"),
    _o("--workdir", "-w", help="Working directory inside the container"),
    _o("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    _o("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
    _o("--stop-grace-period", metavar="DURATION", help="Time to wait before force killing a container"),
    _o("--reserve-memory", metavar="BYTES", help="Reserve Memory (e.g. 128m)"),
    _o("--reserve-cpu", metavar="DECIMAL", help="Reserve CPUs (e.g. 0.5)"),
    _o("--limit-memory", metavar="BYTES", help="Limit Memory"),
    _o("--limit-cpu", metavar="DECIMAL", help="Limit CPUs"),
    _o("--health-cmd", help="Command to run to check health"),
    _o("--health-interval", metavar="DURATION", help="Time between running the check (ms|s|m|h)"),
    _o("--health-timeout", metavar="DURATION", help="Maximum time to allow one check to run (ms|s|m|h)"),
    _o("--health-retries", type=int, help="Consecutive failures needed to report unhealthy"),
    _o("--health-start-period", metavar="DURATION", help="Start period for the container to initialize"),
    _f("--no-healthcheck", help="Disable any container-specified HEALTHCHECK"),
    _o(
        "--restart-condition",
        metavar="none|on-failure|any",
        help="Restart when condition is met (default any)",
    ),
    _o("--restart-max-attempts", type=int, help="Maximum number of restarts before giving up"),
    _o("--restart-delay", metavar="DURATION", help="Delay between restart attempts (default 5s)"),
    _o("--restart-window", metavar="DURATION", help="Window used to evaluate the restart policy"),
    _o(
        "--update-parallelism",
        type=int,
        help="Maximum number of tasks updated simultaneously (0 to update all)",
    ),
    _o("--update-delay", metavar="DURATION", help="Delay between updates"),
    _o("--update-failure-action", metavar="pause|rollback|continue", help="Action on update failure"),
    _o("--update-order", metavar="stop-first|start-first", help="Update order"),
    _o("--update-monitor", metavar="DURATION", help="Duration after each task update to monitor for failure"),
    _o(
        "--update-max-failure-ratio",
        type=float,
        help="Failure rate to tolerate during an update (not yet used)",
    ),
    _o("--rollback-parallelism", type=int, help="Maximum number of tasks rolled back simultaneously"),
    _o("--rollback-delay", metavar="DURATION", help="Delay between task rollbacks"),
    _o("--rollback-failure-action", metavar="pause|continue", help="Action on rollback failure"),
    _o("--rollback-order", metavar="stop-first|start-first", help="Rollback order"),
    _o(
        "--rollback-monitor",
        metavar="DURATION",
        help="Duration after each task rollback to monitor for failure",
    ),
    _o(
        "--rollback-max-failure-ratio",
        type=float,
        help="Failure rate to tolerate during a rollback (not yet used)",
    ),
    _f("-d", "--detach", help="Exit immediately instead of waiting for the service to converge"),
    _f("-q", "--quiet", help="Suppress progress output"),
]

CREATE_OPTIONS: list[Callable[[Any], Any]] = [
    _o("--name", help="Service name"),
    _o("--mode", default="replicated", show_default=True, help="Service mode (replicated or global)"),
    _o("-e", "--env", multiple=True, help="Set environment variables"),
    _o("--env-file", multiple=True, help="Read in a file of environment variables"),
    _o("-l", "--label", multiple=True, help="Service labels"),
    _o("--container-label", multiple=True, help="Container labels"),
    _o(
        "--constraint",
        multiple=True,
        help="Placement constraints (node.labels.ssd==true, node.role!=manager)",
    ),
    _o("--placement-pref", multiple=True, help="Add a placement preference (spread=node.labels.zone)"),
    _o(
        "-p",
        "--publish",
        multiple=True,
        help="Publish a port on the task's node (8080:80, published=8080,target=80)",
    ),
]

UPDATE_OPTIONS: list[Callable[[Any], Any]] = [
    _o("--image", help="Service image tag"),
    _o("--args", help="Service command args"),
    _o("--env-add", multiple=True, help="Add or update an environment variable"),
    _o("--env-rm", multiple=True, help="Remove an environment variable"),
    _o("--label-add", multiple=True, help="Add or update a service label"),
    _o("--label-rm", multiple=True, help="Remove a label by its key"),
    _o("--container-label-add", multiple=True, help="Add or update a container label"),
    _o("--container-label-rm", multiple=True, help="Remove a container label by its key"),
    _o("--constraint-add", multiple=True, help="Add or update a placement constraint"),
    _o("--constraint-rm", multiple=True, help="Remove a constraint"),
    _o("--placement-pref-add", multiple=True, help="Add a placement preference"),
    _o("--placement-pref-rm", multiple=True, help="Remove a placement preference"),
    _o("--publish-add", multiple=True, help="Add or update a published port"),
    _o("--publish-rm", multiple=True, help="Remove a published port by its target port"),
    _f("--force", help="Force update even if no changes require it (replaces every task)"),
    _f("--rollback", help="Rollback to previous specification"),
]


@click.group()
def service() -> None:
    """Manage cluster services."""


def _warn_unsupported(params: Mapping[str, Any]) -> None:
    for name in ("update_max_failure_ratio", "rollback_max_failure_ratio"):
        if params.get(name):
            flag = "--" + name.replace("_", "-")
            click.echo(f"Warning: {flag} is not supported yet and was ignored.", err=True)


@service.command("create", context_settings={"allow_interspersed_args": False})
@_apply(CREATE_OPTIONS + COMMON_OPTIONS)
@click.argument("image")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def create(obj: CliContext, /, image: str, args: tuple[str, ...], **params: Any) -> None:
    """Create a new service: IMAGE [COMMAND] [ARG...]."""
    with usage_errors():
        spec = spec_from_flags(params, image, args)
    _warn_unsupported(params)
    client = cluster_client(obj)
    result = client.service_create(to_plain(spec))
    sid = str(result.get("ID", ""))
    click.echo(sid)
    if not params["detach"]:
        converge(client, sid, quiet=params["quiet"])


@service.command("update", context_settings={"allow_interspersed_args": True})
@_apply(UPDATE_OPTIONS + COMMON_OPTIONS)
@click.argument("ref", metavar="SERVICE")
@pass_cli
def update(obj: CliContext, /, ref: str, **params: Any) -> None:
    """Update a service (a template change rolls out as a rolling update)."""
    client = cluster_client(obj)
    rollback = bool(params["rollback"])
    if rollback:
        given = [
            k
            for k, v in params.items()
            if v not in (None, (), False) and k not in ("rollback", "detach", "quiet")
        ]
        if given:
            raise click.UsageError(
                "--rollback cannot be combined with other update flags", click.get_current_context()
            )
        client.service_update(ref, None, rollback=True)
    else:
        current = client.service_inspect(ref)
        spec = decode(ServiceSpec, current["spec"])
        with usage_errors():
            new = update_spec(spec, params)
        _warn_unsupported(params)
        client.service_update(ref, to_plain(new), force=bool(params["force"]))
    click.echo(ref)
    if rollback:
        click.echo("rollback: manually requested rollback")
    if not params["detach"]:
        converge(client, ref, quiet=params["quiet"])


@service.command("rollback")
@click.argument("ref", metavar="SERVICE")
@_apply([COMMON_OPTIONS[-2], COMMON_OPTIONS[-1]])
@pass_cli
def rollback(obj: CliContext, ref: str, detach: bool, quiet: bool) -> None:
    """Revert changes to a service's configuration."""
    client = cluster_client(obj)
    client.service_update(ref, None, rollback=True)
    click.echo(ref)
    click.echo("rollback: manually requested rollback")
    if not detach:
        converge(client, ref, quiet=quiet)


@service.command("scale")
@click.argument("pairs", nargs=-1, required=True, metavar="SERVICE=REPLICAS...")
@_apply([COMMON_OPTIONS[-2]])
@pass_cli
def scale(obj: CliContext, pairs: tuple[str, ...], detach: bool) -> None:
    """Scale one or multiple replicated services."""
    with usage_errors():
        wanted = [parse_scale(p) for p in pairs]
    client = cluster_client(obj)
    failed = False
    done = []
    for name, count in wanted:
        try:
            current = client.service_inspect(name)
            spec = decode(ServiceSpec, current["spec"])
            if spec.mode.value != "replicated":
                raise InvalidArgument(f"{name}: scale can only be used with replicated mode")
            client.service_update(name, to_plain(_with_replicas(spec, count)))
            click.echo(f"{name} scaled to {count}")
            done.append(name)
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    if not detach:
        for name in done:
            converge(client, name, quiet=False)
    if failed:
        raise ExitCode(1)


def _with_replicas(spec: ServiceSpec, count: int) -> ServiceSpec:
    import dataclasses

    return dataclasses.replace(spec, replicas=count)


@service.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output (id, name, label, mode)")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@pass_cli
def ls(obj: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List services."""
    with usage_errors():
        parsed = parse_filters(filters)
    rows = [ServiceRow(s) for s in cluster_client(obj).services()]
    rows = [r for r in rows if _service_matches(r, parsed)]
    rows.sort(key=lambda r: r.Name)
    if quiet:
        fmt = "{{.ID}}"
        rows = [ServiceRow(r.raw, trunc=False) for r in rows]
    text = render_rows(fmt, rows, SERVICE_TITLES, SERVICE_TABLE)
    if text:
        click.echo(text)


def _service_matches(row: ServiceRow, filters: Mapping[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "id":
            ok = any(str(row.raw.get("id", "")).startswith(v) for v in values)
        elif key == "name":
            ok = any(v in row.Name for v in values)
        elif key == "mode":
            ok = row.Mode in values
        elif key == "label":
            labels = (row.raw.get("spec") or {}).get("labels") or {}
            ok = any(
                (k in labels and (not sep or labels[k] == v))
                for k, sep, v in (f.partition("=") for f in values)
            )
        else:
            raise click.UsageError(
                f"invalid filter {key!r}: use id, name, label or mode", click.get_current_context()
            )
        if not ok:
            return False
    return True


@service.command("ps")
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE...")
@click.option("-q", "--quiet", is_flag=True, help="Only display task IDs")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output (desired-state, id, name, node)"
)
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@pass_cli
def ps(
    obj: CliContext, refs: tuple[str, ...], quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str
) -> None:
    """List the tasks of one or more services (with their history per slot)."""
    client = cluster_client(obj)
    with usage_errors():
        parsed = parse_filters(filters)
    tasks: list[Mapping[str, Any]] = []
    failed = False
    for ref in refs:
        try:
            sid = str(client.service_inspect(ref).get("id", ref))
            tasks.extend(client.tasks(service=sid))
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    with usage_errors():
        tasks = filter_tasks(tasks, parsed)
    show_tasks(tasks, quiet=quiet, no_trunc=no_trunc, fmt=fmt)
    if failed:
        raise ExitCode(1)


def show_tasks(tasks: list[Mapping[str, Any]], *, quiet: bool, no_trunc: bool, fmt: str) -> None:
    ordered = order_tasks(tasks)
    if quiet:
        for t, _ in ordered:
            click.echo(t.get("id", ""))
        return
    now = time.time()
    rows = [TaskRow(t, trunc=not no_trunc, history=h, now=now) for t, h in ordered]
    text = render_rows(fmt, rows, TASK_TITLES, TASK_TABLE)
    if text:
        click.echo(text)


@service.command("inspect")
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE...")
@click.option("--pretty", is_flag=True, help="Print the information in a human friendly format")
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@pass_cli
def inspect(obj: CliContext, refs: tuple[str, ...], pretty: bool, fmt: str) -> None:
    """Display detailed information on one or more services."""
    client = cluster_client(obj)
    found: list[dict[str, Any]] = []
    failed = False
    for ref in refs:
        try:
            found.append(client.service_inspect(ref))
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    if pretty:
        click.echo("\n".join(pretty_service(s) for s in found), nl=False)
    elif fmt:
        for s in found:
            click.echo(single(fmt, s))
    else:
        click.echo(json.dumps(found, indent=4))
    if failed:
        raise ExitCode(1)


@service.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE...")
@pass_cli
def rm(obj: CliContext, refs: tuple[str, ...]) -> None:
    """Remove one or more services."""
    client = cluster_client(obj)
    failed = False
    for ref in refs:
        try:
            client.service_rm(ref)
            click.echo(ref)
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    if failed:
        raise ExitCode(1)


@service.command("logs")
@click.argument("ref", metavar="SERVICE")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--raw", is_flag=True, help="Do not neatly format logs (no task prefix)")
@pass_cli
def logs(obj: CliContext, ref: str, follow: bool, tail: str, timestamps: bool, raw: bool) -> None:
    """Fetch the logs of a service's tasks, each line prefixed by its task (name.slot.id@node)."""
    out = sys.stdout.buffer
    for label, line in cluster_client(obj).service_logs(ref, follow=follow, tail=tail, timestamps=timestamps):
        if raw:
            out.write(line)
        else:
            out.write(f"{label}    | ".encode() + line)
        if not line.endswith(b"\n"):
            out.write(b"\n")
        out.flush()


# --- convergence --------------------------------------------------------------------------


def _is_up(task: Mapping[str, Any]) -> bool:
    if task.get("state") != "running":
        return False
    hc = (task.get("template") or {}).get("healthcheck") or {}
    test = hc.get("test") or ()
    if test and test[0] != "NONE":
        return task.get("health") == "healthy"
    return True


class Convergence:
    """Where a service's rollout stands: the live tasks per slot and how many are up."""

    def __init__(self, service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> None:
        spec = service.get("spec") or {}
        self.version = int(service.get("version") or 1)
        self.global_mode = spec.get("mode") == "global"
        status = service.get("update_status") or {}
        self.update_state = str(status.get("state") or "")
        self.update_message = str(status.get("message") or "")
        self.live = [t for t in tasks if t.get("desired_state") == "running"]
        current = [t for t in self.live if int(t.get("spec_version") or 0) >= self.version]
        self.desired = len(self.live) if self.global_mode else int(spec.get("replicas", 1))
        self.up = min(self.desired, sum(1 for t in current if _is_up(t)))
        # the tasks of the current spec, one line each (an old task being replaced is not shown)
        self.slots = sorted(current, key=lambda t: (int(t.get("slot") or 0), str(t.get("node_id") or "")))

    @property
    def converged(self) -> bool:
        if self.update_state in ("updating", "rollback_started"):
            return False
        stale = [t for t in self.live if int(t.get("spec_version") or 0) < self.version]
        return self.up == self.desired and len(self.live) == self.desired and not stale

    @property
    def failed(self) -> str:
        if self.update_state in ("paused", "rollback_paused"):
            return self.update_message or f"update {self.update_state}"
        return ""

    def lines(self) -> list[str]:
        what = "rolling back update: " if self.update_state.startswith("rollback") else ""
        out = [f"overall progress: {what}{self.up} out of {self.desired} tasks"]
        for t in self.slots:
            label = (
                f"{t.get('slot')}/{self.desired}"
                if not self.global_mode
                else str(t.get("NodeHostname") or t.get("node_id"))
            )
            state = str(t.get("state") or "new")
            reason = task_error(t)
            out.append(f"{label}: {reason}" if reason else f"{label}: {state:<10}{progress_bar(state)}")
        return out


_PROGRESS = ("new", "pending", "assigned", "preparing", "starting", "running")


def progress_bar(state: str, width: int = 50) -> str:
    """docker's per-task bar: ``[=====>    ]`` filled as far as the task got towards running."""
    step = _PROGRESS.index(state) if state in _PROGRESS else 0
    filled = width * step // (len(_PROGRESS) - 1)
    return "[" + "=" * filled + ">" + " " * (width - filled) + "]"


def converge(
    client: ClusterClient,
    ref: str,
    *,
    quiet: bool,
    poll: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until the service's tasks run its current spec, showing progress like docker; then
    watch them for the monitor period ("verify"). A paused update ends it with exit 1."""
    try:
        _converge(client, ref, quiet=quiet, poll=poll, sleep=sleep, clock=clock)
    except KeyboardInterrupt:
        click.echo(
            f"Operation continuing in background.\nUse `skiff service ps {ref}` to check progress.", err=True
        )
        raise


def _converge(
    client: ClusterClient,
    ref: str,
    *,
    quiet: bool,
    poll: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    display = _Display(quiet=quiet, tty=sys.stdout.isatty())
    try:
        _poll(client, ref, display, poll=poll, sleep=sleep, clock=clock)
    finally:
        display.close()


class _Display:
    """Progress lines: redrawn in place with rich on a terminal, printed when changed otherwise."""

    def __init__(self, *, quiet: bool, tty: bool) -> None:
        self.quiet = quiet
        self.tty = tty
        self.live: Live | None = None
        self.shown: list[str] = []

    def show(self, lines: list[str]) -> None:
        if self.quiet or lines == self.shown:
            return
        self.shown = lines
        if not self.tty:
            click.echo("\n".join(lines))
            return
        if self.live is None:
            self.live = Live(console=Console(file=sys.stdout), auto_refresh=False)
            self.live.start()
        self.live.update(Text("\n".join(lines)), refresh=True)

    def say(self, text: str, err: bool = False) -> None:
        """A line after the progress: the progress stays above it as it was last drawn."""
        self.close()
        self.shown = []
        if not self.quiet or err:
            click.echo(text, err=err)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _poll(
    client: ClusterClient,
    ref: str,
    display: _Display,
    *,
    poll: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    stable_since: float | None = None
    while True:
        svc = client.service_inspect(ref)
        state = Convergence(svc, client.tasks(service=str(svc.get("id", ref))))
        if state.failed:
            display.show(state.lines())
            display.say(f"Error: {state.failed}", err=True)
            raise ExitCode(1)
        monitor = float(((svc.get("spec") or {}).get("update") or {}).get("monitor", 5.0))
        monitor = min(monitor, 5.0)
        if state.converged:
            if stable_since is None:
                stable_since = clock()
                display.show(state.lines())
                if monitor > 0:
                    display.say(f"verify: Waiting {monitor:g} seconds to verify that tasks are stable...")
            if clock() - stable_since >= monitor:
                display.say("verify: Service converged")
                return
        else:
            stable_since = None
            display.show(state.lines())
        sleep(poll)


def register(group: click.Group) -> None:
    """Add ``service`` (with docker's ``list``/``remove`` aliases) to ``group``."""
    service.add_command(ls, "list")
    service.add_command(rm, "remove")
    group.add_command(service)


__all__ = ["converge", "register", "service", "show_tasks", "slot_name"]
