"""``skiff lab up|down|ls|kill|partition|restart|add-node``: a multi-host cluster on one machine."""

from __future__ import annotations

import os
import time

import click
from rich.console import Console
from rich.table import Table

from skiff.cli.context import CliContext, pass_cli
from skiff.client.contexts import ContextStore
from skiff.cluster import lab as labs
from skiff.errors import Forbidden, NotFound, SkiffError

console = Console(highlight=False, stderr=True)
out = Console(highlight=False)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise Forbidden("skiff lab makes network namespaces and runs skiffd: run it as root")


def _progress() -> labs.Progress:
    start = time.monotonic()

    def show(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {message}", markup=True)

    return show


def _current_context(cli: CliContext) -> str | None:
    try:
        return cli.context_flag or ContextStore().current()
    except SkiffError:
        return None


def _lab(cli: CliContext, name: str | None) -> labs.Lab:
    return labs.resolve_lab(name, _current_context(cli))


def _context_host(lab: labs.Lab) -> str | None:
    try:
        return ContextStore().get(labs.context_name(lab.name)).host
    except SkiffError:
        return None


def node_table(lab: labs.Lab) -> Table:
    title = f"lab {lab.name}: {lab.subnet} on bridge {lab.bridge}, sockets {lab.run_dir}/nK/skiff.sock"
    table = Table(title=title, title_justify="left")
    for col in ("NODE", "ROLE", "ADDRESS", "STATE", "PID", "NODE ID"):
        table.add_column(col)
    for node in lab.nodes:
        table.add_row(
            node.name,
            "manager" if node.manager else "worker",
            node.address,
            labs.node_status(node),
            str(node.pid or "-"),
            node.node_id[:12] or "-",
        )
    return table


@click.group("lab")
def lab_group() -> None:
    """A real multi-host cluster on this machine (network namespaces, one skiffd each)."""


@lab_group.command("up")
@click.option("--nodes", "nodes", type=int, default=3, show_default=True, help="Number of hosts")
@click.option("--managers", type=int, default=1, show_default=True, help="How many of them are managers")
@click.option("--etcd", is_flag=True, help="Managers share an etcd cluster (one member each)")
@click.option("--name", default=labs.DEFAULT_NAME, show_default=True, help="Lab name (1-8 of a-z0-9)")
@click.option("--image", "images", multiple=True, help="Image copied into every node (default busybox)")
@click.option("--no-cluster", is_flag=True, help="Only the hosts, no cluster init/join")
@pass_cli
def up(
    cli: CliContext,
    nodes: int,
    managers: int,
    etcd: bool,
    name: str,
    images: tuple[str, ...],
    no_cluster: bool,
) -> None:
    """Start a lab: N hosts, n1 initialises the cluster, the others join."""
    _need_root()
    try:
        source: str | None = cli.host
    except SkiffError:
        source = None
    lab = labs.up(
        name,
        nodes,
        managers,
        etcd,
        images or labs.DEFAULT_IMAGES,
        source_host=source,
        cluster=not no_cluster,
        progress=_progress(),
    )
    out.print(node_table(lab))
    if not no_cluster:
        out.print(f"Cluster store: {lab.store_url or 'SQLite on n1'}.")
    out.print(f"Context [bold]{labs.context_name(lab.name)}[/] ({lab.nodes[0].host}) is current; try:")
    out.print("  skiff node ls\n  skiff service create --replicas 6 busybox sleep 1d\n  skiff lab down")


@lab_group.command("down")
@click.argument("name", required=False)
@pass_cli
def down(cli: CliContext, name: str | None) -> None:
    """Remove a lab and everything it made; switch back to the previous context."""
    _need_root()
    if name is None:
        try:
            name = _lab(cli, None).name
        except NotFound:
            name = labs.DEFAULT_NAME
    labs.down(name, progress=_progress())
    out.print(f"lab {name} removed")


@lab_group.command("ls")
def ls() -> None:
    """List labs and their nodes."""
    found = labs.labs()
    if not found:
        out.print("no lab is up")
        return
    for lab in found:
        out.print(node_table(lab))


@lab_group.command("kill")
@click.argument("node")
@click.option("--name", help="Lab (default: the current context's, or the only one)")
@pass_cli
def kill(cli: CliContext, node: str, name: str | None) -> None:
    """Cut a node's power: SIGKILL its skiffd, conmon and containers; its link goes down."""
    _need_root()
    lab = _lab(cli, name)
    before = _context_host(lab)
    killed = labs.kill(lab.name, node)
    out.print(f"{killed.name} killed")
    after = _context_host(lab)
    if after and after != before:
        out.print(f"context {labs.context_name(lab.name)} now uses {after}")


@lab_group.command("partition")
@click.argument("node")
@click.option("--heal", is_flag=True, help="Bring the node's link back")
@click.option("--name", help="Lab (default: the current context's, or the only one)")
@pass_cli
def partition(cli: CliContext, node: str, heal: bool, name: str | None) -> None:
    """Cut a node off the lab network (it keeps running), or heal it."""
    _need_root()
    done = labs.partition(_lab(cli, name).name, node, heal=heal)
    out.print(f"{done.name} {'reconnected' if heal else 'partitioned'}")


@lab_group.command("restart")
@click.argument("node")
@click.option("--name", help="Lab (default: the current context's, or the only one)")
@pass_cli
def restart(cli: CliContext, node: str, name: str | None) -> None:
    """Boot a killed node again (its skiffd resumes its cluster role)."""
    _need_root()
    back = labs.restart(_lab(cli, name).name, node, progress=_progress())
    out.print(f"{back.name} restarted (pid {back.pid})")


@lab_group.command("add-node")
@click.option("--name", help="Lab (default: the current context's, or the only one)")
@pass_cli
def add_node(cli: CliContext, name: str | None) -> None:
    """Add a host that joins the lab's cluster as a worker."""
    _need_root()
    lab = _lab(cli, name)
    try:
        source: str | None = ContextStore().get(lab.previous_context).host if lab.previous_context else None
    except SkiffError:
        source = None
    node = labs.add_node(lab.name, source_host=source, progress=_progress())
    out.print(f"{node.name} joined ({node.address})")


def register(cli: click.Group) -> None:
    cli.add_command(lab_group)
