"""``skiff context ls|use|create|rm|inspect``: named daemon endpoints (client/contexts.py)."""

from __future__ import annotations

import json

import click

from skiff.cli.context import CliContext, pass_cli
from skiff.client.contexts import ContextStore


@click.group("context")
def context_group() -> None:
    """Manage contexts (named daemon endpoints)."""


@context_group.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only show context names")
@pass_cli
def ls(cli: CliContext, quiet: bool) -> None:
    """List contexts; the current one is marked with *."""
    store = ContextStore()
    current = cli.context_flag or store.current()
    contexts = store.list()
    if quiet:
        for ctx in contexts:
            click.echo(ctx.name)
        return
    rows = [("NAME", "DESCRIPTION", "SKIFF ENDPOINT")]
    rows += [
        (ctx.name + (" *" if ctx.name == current else ""), ctx.description, ctx.host) for ctx in contexts
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, desc, host in rows:
        click.echo(f"{name.ljust(widths[0])}   {desc.ljust(widths[1])}   {host}".rstrip())


@context_group.command("use")
@click.argument("name")
def use(name: str) -> None:
    """Set the current context."""
    ContextStore().use(name)
    click.echo(name)
    click.echo(f'Current context is now "{name}"', err=True)


@context_group.command("create")
@click.argument("name")
@click.option("--host", required=True, metavar="URL", help="Daemon address (unix:///path or tcp://host:port)")
@click.option("--description", default="", help="Description of the context")
def create(name: str, host: str, description: str) -> None:
    """Create a context."""
    ContextStore().create(name, host, description)
    click.echo(name)
    click.echo(f'Successfully created context "{name}"', err=True)


@context_group.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove a context in use (default becomes current)")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove one or more contexts."""
    store = ContextStore()
    for name in names:
        store.remove(name, force=force)
        click.echo(name)


@context_group.command("inspect")
@click.argument("names", nargs=-1)
@pass_cli
def inspect(cli: CliContext, names: tuple[str, ...]) -> None:
    """Show contexts as JSON (the current one without a name)."""
    store = ContextStore()
    wanted = names or (cli.context_flag or store.current(),)
    out = []
    for name in wanted:
        ctx = store.get(name)
        out.append(
            {
                "Name": ctx.name,
                "Metadata": {"Description": ctx.description},
                "Endpoints": {"skiff": {"Host": ctx.host}},
                "Current": ctx.name == store.current(),
            }
        )
    click.echo(json.dumps(out, indent=4))


def register(cli: click.Group) -> None:
    cli.add_command(context_group)
