"""``compose ps|logs|top|port|images|ls|events``: looking at a project."""

from __future__ import annotations

import functools
import json
import sys
import time
from datetime import datetime
from typing import Any

import click

from skiff.cli.compose import ComposeContext, pass_compose
from skiff.cli.context import CliContext, ExitCode, pass_cli
from skiff.cli.format.rows import ContainerRow, short_id
from skiff.cli.format.table import render_rows, tabwrite
from skiff.compose import labels as L
from skiff.compose import ops
from skiff.compose.attach import AttachedSession
from skiff.compose.logs import Followers, LogPrinter, log_chunks
from skiff.errors import InvalidArgument, NotFound
from skiff.units import human_size

PS_TABLE = "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}"
PS_TITLES = {"RunningFor": "CREATED", "ID": "CONTAINER ID"}
_JSON_FIELDS = (
    "Command",
    "CreatedAt",
    "ExitCode",
    "Health",
    "ID",
    "Image",
    "Labels",
    "LocalVolumes",
    "Mounts",
    "Name",
    "Names",
    "Networks",
    "Ports",
    "Project",
    "RunningFor",
    "Service",
    "Size",
    "State",
    "Status",
)


class ComposeRow(ContainerRow):
    """``compose ps``'s row: docker's container fields plus Name, Service, Project, Health."""

    @property
    def Name(self) -> str:
        return self.Names

    @property
    def Service(self) -> str:
        return str((self.raw.get("Labels") or {}).get(L.SERVICE, ""))

    @property
    def Project(self) -> str:
        return str((self.raw.get("Labels") or {}).get(L.PROJECT, ""))

    @property
    def Health(self) -> str:
        status = str(self.raw.get("Status", ""))
        for word in ("healthy", "unhealthy", "starting"):
            if f"({word})" in status or f"(health: {word})" in status:
                return word
        return ""

    @property
    def ExitCode(self) -> int:
        status = str(self.raw.get("Status", ""))
        if status.startswith("Exited (") and ")" in status:
            try:
                return int(status[len("Exited (") : status.index(")")])
            except ValueError:
                return 0
        return 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _JSON_FIELDS}
        out["Publishers"] = [
            {
                "URL": p.get("IP", ""),
                "TargetPort": p.get("PrivatePort"),
                "PublishedPort": p.get("PublicPort", 0),
                "Protocol": p.get("Type"),
            }
            for p in self.raw.get("Ports") or []
        ]
        return out


@click.command("ps")
@click.option(
    "-a",
    "--all",
    "all_",
    is_flag=True,
    help="Show all stopped containers (including those created by the run command)",
)
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option("--services", "services_only", is_flag=True, help="Display services")
@click.option("--status", "statuses", multiple=True, help="Filter services by status")
@click.option(
    "--format",
    "fmt",
    default="table",
    help="Format output using a custom template ('table', 'json' or a Go template)",
)
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.argument("services", nargs=-1)
@pass_compose
def ps(
    c: ComposeContext,
    all_: bool,
    quiet: bool,
    services_only: bool,
    statuses: tuple[str, ...],
    fmt: str,
    no_trunc: bool,
    services: tuple[str, ...],
) -> None:
    """List containers."""
    h = c.handle(services, file_optional=True)
    found = ops.project_containers(h, services, all_=True, oneoff=None if all_ else False)
    if not all_ and not statuses:
        found = [x for x in found if x.state in ("running", "restarting", "paused")]
    if statuses:
        found = [x for x in found if x.state in statuses]
    if services_only:
        for name in sorted({x.service for x in found}):
            click.echo(name)
        return
    rows = [ComposeRow(dict(x.summary), trunc=not no_trunc) for x in found]
    if quiet:
        for r in rows:
            click.echo(str(r.raw.get("Id")) if no_trunc else r.ID)
        return
    text = render_rows(fmt, rows, PS_TITLES, PS_TABLE)
    if text:
        click.echo(text)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option(
    "-n", "--tail", default="all", help="Number of lines to show from the end of the logs for each container"
)
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@click.option("--since", help="Show logs since timestamp or relative (e.g. 42m)")
@click.option("--until", help="Show logs before a timestamp or relative (e.g. 42m)")
@click.option("--no-color", is_flag=True, help="Produce monochrome output")
@click.option("--no-log-prefix", is_flag=True, help="Don't print prefix in logs")
@click.option("--index", type=int, help="index of the container if service has multiple replicas")
@click.argument("services", nargs=-1)
@pass_compose
def logs(
    c: ComposeContext,
    follow: bool,
    tail: str,
    timestamps: bool,
    since: str | None,
    until: str | None,
    no_color: bool,
    no_log_prefix: bool,
    index: int | None,
    services: tuple[str, ...],
) -> None:
    """View output from containers."""
    h = c.handle(services, file_optional=True)
    found = ops.project_containers(h, services, all_=True)
    if index is not None:
        found = [x for x in found if x.number == index]
    printer = LogPrinter(sys.stdout, color=c.color() and not no_color, prefix=not no_log_prefix)
    printer.register(AttachedSession.short(x.name, h.name) for x in found)
    params: dict[str, object] = {"stdout": 1, "stderr": 1, "tail": tail, "follow": int(follow)}
    params.update({k: v for k, v in (("since", since), ("until", until)) if v})
    if timestamps:
        params["timestamps"] = 1
    followers = Followers()

    def follow_one(cid: str, name: str, extra: dict[str, object]) -> None:
        tty = bool((h.client.inspect_container(cid).get("Config") or {}).get("Tty"))
        printer.consume(
            AttachedSession.short(name, h.name), log_chunks(h.client, cid, {**params, **extra}), tty
        )

    for x in found:
        followers.add(x.id, functools.partial(follow_one, x.id, x.name, {}))
    if follow:
        _follow_new(c, h.name, services, followers, follow_one)
    try:
        followers.wait()
    except KeyboardInterrupt:
        raise ExitCode(130) from None


def _follow_new(
    c: ComposeContext, project: str, services: tuple[str, ...], followers: Followers, follow_one: Any
) -> None:
    """``logs -f`` also follows containers that start later (a scale-up, a restart)."""
    import threading

    client = c.cli.client
    filters = {
        "type": ["container"],
        "event": ["start"],
        "label": [f"{L.PROJECT}={project}", f"{L.ONEOFF}=False"],
    }

    def run() -> None:
        for ev in client.events(since=str(int(time.time())), filters=filters):
            attrs = (ev.get("Actor") or {}).get("Attributes") or {}
            if services and attrs.get(L.SERVICE) not in services:
                continue
            cid = str(ev.get("id") or "")
            name = str(attrs.get("name") or cid[:12])
            followers.forget(cid)
            extra = {"tail": "all", "since": str(ev.get("time") or "")}
            followers.add(cid, functools.partial(follow_one, cid, name, extra))

    threading.Thread(target=run, name="compose-logs-events", daemon=True).start()


@click.command("top")
@click.argument("services", nargs=-1)
@pass_compose
def top(c: ComposeContext, services: tuple[str, ...]) -> None:
    """Display the running processes."""
    h = c.handle(services, file_optional=True)
    first = True
    for x in ops.project_containers(h, services, all_=False):
        result = h.client.top(x.id)
        if not first:
            click.echo()
        first = False
        click.echo(x.name)
        lines = ["\t".join(result.get("Titles") or [])]
        lines += ["\t".join(str(v) for v in proc) for proc in result.get("Processes") or []]
        click.echo(tabwrite("\n".join(lines), minwidth=0, padding=3))


@click.command("port")
@click.option("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
@click.option("--protocol", default="tcp", type=click.Choice(["tcp", "udp"]), help="tcp or udp")
@click.argument("service")
@click.argument("private_port")
@pass_compose
def port(c: ComposeContext, index: int, protocol: str, service: str, private_port: str) -> None:
    """Print the public port for a port binding."""
    if not private_port.isdigit():
        raise InvalidArgument(f"invalid port {private_port!r}")
    h = c.handle((service,), file_optional=True)
    x = ops.find_container(h, service, index)
    ports = ((h.client.inspect_container(x.id).get("NetworkSettings") or {}).get("Ports")) or {}
    bindings = ports.get(f"{private_port}/{protocol}") or []
    if not bindings:
        raise NotFound(f"no port {private_port}/{protocol} for container {x.name}")
    b = bindings[0]
    click.echo(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}")


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option(
    "--format", "fmt", default="table", type=click.Choice(["table", "json"]), help="Format the output"
)
@click.argument("services", nargs=-1)
@pass_compose
def images(c: ComposeContext, quiet: bool, fmt: str, services: tuple[str, ...]) -> None:
    """List images used by the created containers."""
    h = c.handle(services, file_optional=True)
    rows = []
    cache: dict[str, dict[str, Any]] = {}
    for x in ops.project_containers(h, services, all_=True):
        image_id = str(x.summary.get("ImageID") or "")
        if image_id not in cache:
            try:
                cache[image_id] = h.client.inspect_image(image_id)
            except NotFound:
                cache[image_id] = {}
        info = cache[image_id]
        tags = info.get("RepoTags") or [str(x.summary.get("Image") or "<none>:<none>")]
        repo, _, tag = str(tags[0]).rpartition(":")
        rows.append(
            {
                "ContainerName": x.name,
                "Repository": repo or tags[0],
                "Tag": tag or "latest",
                "ID": image_id,
                "Size": int(info.get("Size") or 0),
            }
        )
    if quiet:
        for ident in dict.fromkeys(str(r["ID"]) for r in rows):
            click.echo(short_id(ident))
        return
    if fmt == "json":
        click.echo(json.dumps(rows))
        return
    lines = ["CONTAINER\tREPOSITORY\tTAG\tIMAGE ID\tSIZE"]
    lines += [
        f"{r['ContainerName']}\t{r['Repository']}\t{r['Tag']}\t{short_id(str(r['ID']))}\t{human_size(int(r['Size']))}"
        for r in rows
    ]
    click.echo(tabwrite("\n".join(lines)))


@click.command("ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all stopped Compose projects")
@click.option("-q", "--quiet", is_flag=True, help="Only display project names")
@click.option(
    "--format", "fmt", default="table", type=click.Choice(["table", "json"]), help="Format the output"
)
@pass_cli
def ls(obj: CliContext, all_: bool, quiet: bool, fmt: str) -> None:
    """List running compose projects."""
    projects = ops.list_projects(obj.client, all_)
    if quiet:
        for p in projects:
            click.echo(p.name)
        return
    if fmt == "json":
        click.echo(
            json.dumps(
                [{"Name": p.name, "Status": p.status, "ConfigFiles": p.config_files} for p in projects]
            )
        )
        return
    lines = ["NAME\tSTATUS\tCONFIG FILES", *(f"{p.name}\t{p.status}\t{p.config_files}" for p in projects)]
    click.echo(tabwrite("\n".join(lines), padding=3))


@click.command("events")
@click.option("--json", "as_json", is_flag=True, help="Output events as a stream of json objects")
@click.argument("services", nargs=-1)
@pass_compose
def events(c: ComposeContext, as_json: bool, services: tuple[str, ...]) -> None:
    """Receive real time events from containers."""
    h = c.handle(services, file_optional=True)
    filters = {"type": ["container"], "label": [f"{L.PROJECT}={h.name}"]}
    try:
        for ev in h.client.events(filters=filters):
            attrs = dict((ev.get("Actor") or {}).get("Attributes") or {})
            service = attrs.get(L.SERVICE, "")
            if services and service not in services:
                continue
            shown = {k: v for k, v in attrs.items() if not k.startswith("com.docker.compose.")}
            nano = int(ev.get("timeNano") or int(ev.get("time") or 0) * 10**9)
            when = datetime.fromtimestamp(nano / 1e9)
            cid = str(ev.get("id") or (ev.get("Actor") or {}).get("ID") or "")
            action = str(ev.get("Action") or ev.get("status") or "")
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "time": when.isoformat(),
                            "type": "container",
                            "action": action,
                            "id": cid,
                            "service": service,
                            "attributes": shown,
                        }
                    )
                )
            else:
                text = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
                click.echo(f"{when.strftime('%Y-%m-%d %H:%M:%S.%f')} container {action} {cid} ({text})")
    except KeyboardInterrupt:
        return


def register(group: click.Group) -> None:
    for cmd in (ps, logs, top, port, images, ls, events):
        group.add_command(cmd)
