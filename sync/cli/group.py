"""The ``phala-sync`` command group: lazy commands, and any error as one line on stderr.

Errors end a command with one line on stderr and exit status 1 (2 for a usage error);
``phala-sync --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from sync.errors import PhalaSyncError

#: Every command: name -> (module, attribute). A command's module is imported when the command is
#: invoked (or listed, for help), so that ``phala-sync sync`` imports only what ``sync`` needs
#: before its first request goes out.
LAZY_COMMANDS = {
    "sync": ("sync.cli.sync", "sync_command"),
    "serve": ("sync.cli.scheduling", "serve"),
    "deploy": ("sync.cli.scheduling", "deploy"),
    "db": ("sync.cli.db", "db"),
    "runs": ("sync.cli.lookups", "runs"),
    "inventory": ("sync.cli.lookups", "inventory"),
    "history": ("sync.cli.lookups", "history"),
    "changes": ("sync.cli.lookups", "changes"),
    "fleet": ("sync.cli.lookups", "fleet"),
    "report": ("sync.cli.report", "report"),
    "targets": ("sync.cli.targets", "targets"),
    "demo": ("sync.cli.demo", "demo"),
    "simulate": ("simulator.command", "simulate"),
    "simulate-evolve": ("simulator.command", "simulate_evolve"),
    "simulate-faults": ("simulator.command", "simulate_faults"),
}


class CliError(click.ClickException):
    """A failure reported as one line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"phala-sync: error: {self.format_message()}", err=True)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def error_line(exc: BaseException) -> str:
    """What went wrong, in one line, for any exception a command may end with."""
    if isinstance(exc, PhalaSyncError):
        return first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
        return (
            f"database error ({type(orig).__name__}): {first_line(str(orig))}; "
            "check --database-url or PHALA_SYNC_DATABASE_URL"
        )
    if isinstance(exc, SQLAlchemyError):
        return f"database error ({type(exc).__name__}): {first_line(str(exc))}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {first_line(str(exc))}"
    return (
        f"unexpected {type(exc).__name__}: {first_line(str(exc))} "
        "(run `phala-sync --debug ...` for the traceback)"
    )


class PhalaSyncGroup(click.Group):
    """A group that loads :data:`LAZY_COMMANDS` on demand and turns errors into one line.

    ``cli.commands`` holds the commands loaded so far; ``get_command`` loads any.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute = LAZY_COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError(error_line(exc)) from None


@click.group(cls=PhalaSyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="phala-sync", prog_name="phala-sync")
def cli(debug: bool) -> None:
    """Keep a SQL history of a Phala Cloud fleet (CVMs, apps, nodes, workspaces, creators).

    Settings come from flags, the environment (PHALA_CLOUD_API_KEY, PHALA_CLOUD_API_PREFIX,
    PHALA_SYNC_*) or a .env file in the current directory. Start with `phala-sync demo`.
    """


def command_named(name: str) -> click.Command:
    """The command ``name`` of :data:`cli`, its module imported if it was not yet."""
    command = cli.get_command(click.Context(cli), name)
    if command is None:
        raise KeyError(f"no phala-sync command {name!r}")
    return command
