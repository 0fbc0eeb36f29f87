"""Per-invocation state shared by commands, and how errors become messages and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import click

from skiff.client import Client, TLSSettings, connect, is_daemon_error, resolve_host
from skiff.client.contexts import select_host
from skiff.errors import InvalidArgument, SkiffError

T = TypeVar("T")


class ExitCode(Exception):
    """Leave the CLI with ``code`` (after messages were printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class CliContext:
    """Global flags and the lazily created API client."""

    host_flag: str | None = None
    context_flag: str | None = None
    debug: bool = False
    tls: TLSSettings | None = None
    _client: Client | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        """-H, else $SKIFF_HOST/$DOCKER_HOST, else --context/$SKIFF_CONTEXT, else the current context."""
        return select_host(self.host_flag, self.context_flag)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connect(resolve_host(self.host), self.tls)
        return self._client


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


def error_text(exc: SkiffError) -> str:
    """docker's wording: daemon errors are prefixed, local ones are not."""
    if is_daemon_error(exc):
        return f"Error response from daemon: {exc.message}"
    return exc.message


def fail(exc: SkiffError, code: int = 1) -> NoReturn:
    """Print ``exc`` like docker and exit with ``code``."""
    click.echo(error_text(exc), err=True)
    raise ExitCode(code)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn a local ``InvalidArgument`` (a bad flag value) into a usage error: exit 125, hint."""
    try:
        yield
    except InvalidArgument as exc:
        if is_daemon_error(exc):
            raise
        raise click.UsageError(exc.message, click.get_current_context()) from exc


def for_each(refs: tuple[str, ...], action: Callable[[str], Any], echo: bool = True) -> None:
    """Apply ``action`` to each name like docker's multi-target commands: report each failure, exit 1."""
    failed = False
    for ref in refs:
        try:
            action(ref)
        except SkiffError as exc:
            click.echo(error_text(exc), err=True)
            failed = True
            continue
        if echo:
            click.echo(ref)
    if failed:
        raise ExitCode(1)


def debug_traceback(ctx: CliContext | None) -> None:
    """With --debug, show where an error came from."""
    if ctx is not None and ctx.debug:
        import traceback

        traceback.print_exc(file=sys.stderr)
