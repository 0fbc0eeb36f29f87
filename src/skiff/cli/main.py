"""Entry point: the ``skiff`` group, global flags, and error -> exit code mapping in one place."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from skiff import __version__ as skiff_version
from skiff.cli.context import CliContext, ExitCode, debug_traceback, error_text
from skiff.client import TLSSettings
from skiff.errors import SkiffError

USAGE_EXIT = 125


@click.group(context_settings={"help_option_names": ["--help"]})
@click.option("-H", "--host", "host", metavar="URL", help="Daemon socket to connect to (or $SKIFF_HOST)")
@click.option(
    "-c",
    "--context",
    "context_name",
    metavar="NAME",
    help="Context to use (or $SKIFF_CONTEXT; see skiff context)",
)
@click.option("-D", "--debug", is_flag=True, help="Enable debug mode (show tracebacks)")
@click.option("--tls", is_flag=True, help="Use TLS; implied by --tlsverify")
@click.option("--tlsverify", is_flag=True, help="Use TLS and verify the remote")
@click.option("--tlscacert", metavar="FILE", help="Trust certs signed only by this CA")
@click.option("--tlscert", metavar="FILE", help="Path to TLS certificate file")
@click.option("--tlskey", metavar="FILE", help="Path to TLS key file")
@click.version_option(skiff_version, "-v", "--version", message="skiff version %(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    host: str | None,
    context_name: str | None,
    debug: bool,
    tls: bool,
    tlsverify: bool,
    tlscacert: str | None,
    tlscert: str | None,
    tlskey: str | None,
) -> None:
    """A Docker-compatible container engine: the client of skiffd."""
    settings = None
    if tls or tlsverify:
        # As the docker CLI: files not given come from $DOCKER_CERT_PATH or ~/.docker when there.
        certs = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")

        def default(given: str | None, name: str) -> str | None:
            return given or (str(certs / name) if (certs / name).is_file() else None)

        settings = TLSSettings(
            ca_cert=default(tlscacert, "ca.pem"),
            client_cert=default(tlscert, "cert.pem"),
            client_key=default(tlskey, "key.pem"),
            verify=tlsverify,
        )
    ctx.obj = CliContext(host_flag=host, context_flag=context_name, debug=debug, tls=settings)


def _register() -> None:
    # Imported here so each command module can import ``cli`` helpers without a cycle.
    from skiff.cli import (
        archive,
        build,
        cluster,
        compose,
        containers,
        context_cmd,
        ctrfs,
        exec_logs,
        images,
        lab_cmd,
        lifecycle,
        login,
        networks,
        query,
        registry,
        service,
        stack,
        stats,
        system,
        volumes,
    )

    for module in (
        containers,
        lifecycle,
        exec_logs,
        query,
        stats,
        images,
        build,
        archive,
        ctrfs,
        networks,
        volumes,
        system,
        registry,
        login,
        compose,
        context_cmd,
        lab_cmd,
        cluster,
        service,
        stack,
    ):
        module.register(cli)


_register()


def _usage_hint(exc: click.UsageError) -> str:
    path = exc.ctx.command_path if exc.ctx else "skiff"
    return f"See '{path} --help'."


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and for the console script, exits with) docker's exit codes."""
    code = run(argv)
    sys.exit(code)


def run(argv: list[str] | None = None) -> int:
    """The CLI without ``sys.exit``: handy for tests."""
    ctx: click.Context | None = None
    try:
        with cli.make_context("skiff", list(sys.argv[1:] if argv is None else argv)) as ctx:
            cli.invoke(ctx)
        return 0
    except ExitCode as exc:
        return exc.code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click.UsageError as exc:
        click.echo(f"skiff: {exc.format_message()}\n{_usage_hint(exc)}", err=True)
        return USAGE_EXIT
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except SkiffError as exc:
        debug_traceback(ctx.obj if ctx is not None else None)
        click.echo(error_text(exc), err=True)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
