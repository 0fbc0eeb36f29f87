"""login, logout: registry credentials checked by skiffd, kept in docker's config.json."""

from __future__ import annotations

import sys

import click

from skiff.cli.context import CliContext, pass_cli
from skiff.client.credentials import Credentials, CredentialStore, server_key
from skiff.errors import InvalidArgument, SkiffError


def _read_password_stdin() -> str:
    text = sys.stdin.read()
    return text.removesuffix("\n").removesuffix("\r")


@click.command("login")
@click.option("-u", "--username", help="Username")
@click.option("-p", "--password", help="Password or Personal Access Token")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@click.argument("server", required=False)
@pass_cli
def login(
    obj: CliContext, username: str | None, password: str | None, password_stdin: bool, server: str | None
) -> None:
    """Authenticate to a registry (Docker Hub when SERVER is left out)."""
    store = CredentialStore()
    key = server_key(server or "")
    if password and password_stdin:
        raise InvalidArgument("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = _read_password_stdin()
    elif password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    if not username and not password:
        existing = store.get(key)
        if existing is not None:
            click.echo("Authenticating with existing credentials...")
            try:
                obj.client.login(existing.username, existing.password, key, existing.identity_token)
                click.echo("Login Succeeded")
                return
            except SkiffError as exc:
                click.echo(f"Login did not succeed, error: {exc.message}", err=True)
    if not sys.stdin.isatty() and (not username or not password):
        raise InvalidArgument("Cannot perform an interactive login from a non TTY device")
    if not username:
        username = click.prompt("Username", err=True).strip()
        if not username:
            raise InvalidArgument("Username is required")
    if not password:
        password = click.prompt("Password", hide_input=True, err=True)
        if not password:
            raise InvalidArgument("Password is required")
    result = obj.client.login(username, password, key)
    token = str(result.get("IdentityToken") or "")
    creds = Credentials(username, "" if token else password, token)
    path = store.store(key, creds)
    if not store.uses_helper(key):
        click.echo(
            f"\nWARNING! Your credentials are stored unencrypted in '{path}'.\n"
            "Configure a credential helper to remove this warning. See\n"
            "https://docs.docker.com/go/credential-store/\n",
            err=True,
        )
    click.echo(str(result.get("Status") or "Login Succeeded"))


@click.command("logout")
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry (Docker Hub when SERVER is left out)."""
    store = CredentialStore()
    key = server_key(server or "")
    if store.get(key) is None and not store.uses_helper(key):
        click.echo(f"Not logged in to {key}")
        return
    click.echo(f"Removing login credentials for {key}")
    store.erase(key)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(login)
    group.add_command(logout)
