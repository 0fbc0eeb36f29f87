"""``skiff cluster init|join|leave|join-token|inspect`` and ``skiff node ...`` (docker swarm's
commands and output, under skiff's names)."""

from __future__ import annotations

import json
from typing import Any, cast

import click

from skiff.cli.cluster_rows import NODE_TABLE, NODE_TITLES, NodeRow, filter_nodes, pretty_node
from skiff.cli.context import CliContext, ExitCode, error_text, for_each, pass_cli, usage_errors
from skiff.cli.filters import parse_filters
from skiff.cli.format.table import render_rows, single
from skiff.cli.service_spec import parse_labels
from skiff.client.cluster import ClusterMixin
from skiff.errors import InvalidArgument, SkiffError

# The cluster calls of ``skiff.client.Client``; the CLI's unit tests pass a fake with the same methods.
ClusterClient = ClusterMixin


def cluster_client(obj: CliContext) -> ClusterClient:
    return cast(ClusterClient, obj.client)


def self_node_id(client: ClusterClient) -> str:
    """The id of the node the CLI talks to ("" when that cannot be told)."""
    try:
        return str(client.cluster_inspect().get("NodeID") or "")
    except SkiffError:
        return ""


# --- cluster ------------------------------------------------------------------------------


@click.group()
def cluster() -> None:
    """Manage the cluster (docker swarm's init/join/leave)."""


def _manager_addr(client: ClusterClient, fallback: str) -> str:
    try:
        managers = client.cluster_inspect().get("Managers") or []
    except SkiffError:
        managers = []
    return str(managers[0]) if managers else fallback


def _join_instructions(role: str, token: str, addr: str) -> str:
    return (
        f"To add a {role} to this cluster, run the following command:\n\n"
        f"    skiff cluster join --token {token} {addr}\n"
    )


@cluster.command("init")
@click.option("--advertise-addr", metavar="ADDR[:PORT]", help="Address other nodes reach this one at")
@click.option(
    "--listen-addr", default="0.0.0.0:2377", show_default=True, metavar="ADDR:PORT", help="Cluster port"
)
@click.option(
    "--store", metavar="URL", help="External store: etcd://h1:2379,h2:2379 (default: embedded SQLite)"
)
@click.option("--etcd-local", is_flag=True, help="Start and supervise a local etcd member as the store")
@pass_cli
def init(
    obj: CliContext, advertise_addr: str | None, listen_addr: str, store: str | None, etcd_local: bool
) -> None:
    """Initialize a cluster: this node becomes its first manager."""
    if store and etcd_local:
        raise click.UsageError("--store and --etcd-local are exclusive", click.get_current_context())
    if store and not store.startswith("etcd://"):
        raise click.UsageError(
            f"invalid --store {store!r}: expected etcd://host:2379[,host:2379...]",
            click.get_current_context(),
        )
    client = cluster_client(obj)
    result = client.cluster_init(
        advertise_addr=advertise_addr, listen_addr=listen_addr, store=store, etcd_local=etcd_local
    )
    node_id = result.get("NodeID", "")
    tokens = result.get("JoinTokens") or {}
    addr = _manager_addr(client, advertise_addr or listen_addr)
    click.echo(f"Cluster initialized: current node ({node_id}) is now a manager.\n")
    if tokens.get("Worker"):
        click.echo(_join_instructions("worker", tokens["Worker"], addr))
    click.echo(
        "To add a manager to this cluster, run 'skiff cluster join-token manager' and follow the instructions.\n"
    )


@cluster.command("join")
@click.option("--token", required=True, help="Token for entry into the cluster (skiff cluster join-token)")
@click.option("--advertise-addr", metavar="ADDR[:PORT]", help="Address other nodes reach this one at")
@click.option(
    "--listen-addr", default="0.0.0.0:2377", show_default=True, metavar="ADDR:PORT", help="Cluster port"
)
@click.argument("remote_addrs", nargs=-1, required=True, metavar="HOST:PORT...")
@pass_cli
def join(
    obj: CliContext, token: str, advertise_addr: str | None, listen_addr: str, remote_addrs: tuple[str, ...]
) -> None:
    """Join a cluster as a worker or a manager (the token says which)."""
    result = cluster_client(obj).cluster_join(
        list(remote_addrs), token, advertise_addr=advertise_addr, listen_addr=listen_addr
    )
    click.echo(f"This node joined a cluster as a {result.get('Role') or 'worker'}.")


@cluster.command("leave")
@click.option("-f", "--force", is_flag=True, help="Leave even if this is the last manager (ends the cluster)")
@pass_cli
def leave(obj: CliContext, force: bool) -> None:
    """Leave the cluster."""
    cluster_client(obj).cluster_leave(force=force)
    click.echo("Node left the cluster.")


@cluster.command("join-token")
@click.argument("role", type=click.Choice(["worker", "manager"]))
@click.option("--rotate", is_flag=True, help="Rotate join token")
@click.option("-q", "--quiet", is_flag=True, help="Only display token")
@pass_cli
def join_token(obj: CliContext, role: str, rotate: bool, quiet: bool) -> None:
    """Manage join tokens."""
    client = cluster_client(obj)
    token = client.cluster_join_token(role, rotate=rotate)
    if quiet:
        click.echo(token)
        return
    if rotate:
        click.echo(f"Successfully rotated {role} join token.\n")
    click.echo(_join_instructions(role, token, _manager_addr(client, "<manager-address>")))


@cluster.command("inspect")
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@pass_cli
def cluster_inspect(obj: CliContext, fmt: str) -> None:
    """Display the cluster: id, this node, role, managers, leader, store."""
    info = cluster_client(obj).cluster_inspect()
    click.echo(single(fmt, info) if fmt else json.dumps([info], indent=4))


# --- node ---------------------------------------------------------------------------------


@click.group()
def node() -> None:
    """Manage cluster nodes."""


@node.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output (id, name, role, label=k=v ...)"
)
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@pass_cli
def node_ls(obj: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List nodes in the cluster."""
    client = cluster_client(obj)
    with usage_errors():
        parsed = parse_filters(filters)
    raw = filter_nodes(client.nodes(), parsed)
    if quiet:
        for n in raw:
            click.echo(n.get("id", ""))
        return
    me = self_node_id(client)
    rows = sorted((NodeRow(n, me) for n in raw), key=lambda r: (r.Hostname, r.ID))
    text = render_rows(fmt, rows, NODE_TITLES, NODE_TABLE)
    if text:
        click.echo(text)


def _resolve_self(client: ClusterClient, ref: str) -> str:
    if ref != "self":
        return ref
    me = self_node_id(client)
    if not me:
        raise InvalidArgument("this node is not part of a cluster: 'self' names nothing")
    return me


@node.command("inspect")
@click.argument("refs", nargs=-1, required=True, metavar="self|NODE...")
@click.option("--pretty", is_flag=True, help="Print the information in a human friendly format")
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@pass_cli
def node_inspect(obj: CliContext, refs: tuple[str, ...], pretty: bool, fmt: str) -> None:
    """Display detailed information on one or more nodes."""
    client = cluster_client(obj)
    found: list[dict[str, Any]] = []
    failed = False
    for ref in refs:
        try:
            found.append(client.node_inspect(_resolve_self(client, ref)))
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    if pretty:
        me = self_node_id(client)
        click.echo("\n\n".join(pretty_node(n, me) for n in found))
    elif fmt:
        for n in found:
            click.echo(single(fmt, n))
    else:
        click.echo(json.dumps(found, indent=4))
    if failed:
        raise ExitCode(1)


@node.command("update")
@click.argument("ref", metavar="NODE")
@click.option("--label-add", multiple=True, metavar="KEY=VALUE", help="Add or update a node label")
@click.option("--label-rm", multiple=True, metavar="KEY", help="Remove a node label if exists")
@click.option(
    "--availability", type=click.Choice(["active", "pause", "drain"]), help="Availability of the node"
)
@click.option("--role", type=click.Choice(["worker", "manager"]), help="Role of the node")
@pass_cli
def node_update(
    obj: CliContext,
    ref: str,
    label_add: tuple[str, ...],
    label_rm: tuple[str, ...],
    availability: str | None,
    role: str | None,
) -> None:
    """Update a node's labels, availability or role."""
    with usage_errors():
        labels = parse_labels(label_add)
    client = cluster_client(obj)
    client.node_update(
        _resolve_self(client, ref),
        labels_add=labels or None,
        labels_rm=list(label_rm) or None,
        availability=availability,
        role=role,
    )
    click.echo(ref)


def _set_role(obj: CliContext, refs: tuple[str, ...], role: str) -> None:
    client = cluster_client(obj)
    failed = False
    for ref in refs:
        try:
            current = client.node_inspect(_resolve_self(client, ref))
            hostname = current.get("hostname") or ref
            if current.get("role") == role:
                click.echo(f"Node {hostname} is already a {role} in the cluster.")
                continue
            client.node_update(str(current.get("id") or ref), role=role)
            word = "promoted to a manager" if role == "manager" else "demoted"
            click.echo(f"Node {hostname} {word} in the cluster.")
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
    if failed:
        raise ExitCode(1)


@node.command("promote")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@pass_cli
def promote(obj: CliContext, refs: tuple[str, ...]) -> None:
    """Promote one or more nodes to manager."""
    _set_role(obj, refs, "manager")


@node.command("demote")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@pass_cli
def demote(obj: CliContext, refs: tuple[str, ...]) -> None:
    """Demote one or more managers to worker."""
    _set_role(obj, refs, "worker")


@node.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="NODE...")
@click.option("-f", "--force", is_flag=True, help="Force remove a node from the cluster (even when it is up)")
@pass_cli
def node_rm(obj: CliContext, refs: tuple[str, ...], force: bool) -> None:
    """Remove one or more nodes from the cluster."""
    client = cluster_client(obj)
    for_each(refs, lambda ref: client.node_rm(ref, force=force))


def register(group: click.Group) -> None:
    """Add ``cluster`` and ``node`` (with docker's ``list``/``remove`` aliases) to ``group``."""
    node.add_command(node_ls, "list")
    node.add_command(node_rm, "remove")
    group.add_command(cluster)
    group.add_command(node)
