"""The click side of the `dxflow` command line: the group, its lazily loaded commands
(see `COMMANDS` in the package), and turning every failure into one `error: ...` line.

`dxflow._cli.main` comes here for everything the pre-click fast path (`_fast`) does not
answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .._version import __version__
from . import COMMANDS

__all__ = ["LazyGroup", "cli", "internal_error", "run"]


class LazyGroup(click.Group):
    """A group whose commands are imported when they are looked up (see `COMMANDS`)."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, _, attribute = self.lazy[cmd_name].partition(":")
        loaded = importlib.import_module(f"{__package__}.{module}")
        command: click.Command = getattr(loaded, attribute)
        self.commands[cmd_name] = command
        return command


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="dxflow")
def cli() -> None:
    """dxflow: an engine for containerized workflows, shells and data.

    Without --url, commands talk to the engine booted on this machine (see
    `dxflow boot up`) through its unix socket, as its MASTER key (or as --key).
    """


def _usage(exc: click.UsageError) -> NoReturn:
    no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())
    if isinstance(exc, no_args) and exc.ctx is not None:  # `dxflow` or a group alone
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    where = exc.ctx.command_path if exc.ctx is not None else "dxflow"
    message = exc.format_message().rstrip(".")
    click.echo(f"error: {message}; see `{where} --help`", err=True)
    sys.exit(exc.exit_code)


def internal_error(exc: BaseException) -> NoReturn:
    if os.environ.get("DXFLOW_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    kind = type(exc).__name__
    click.echo(
        f"error: internal error: {kind}: {exc} (please report; rerun with DXFLOW_DEBUG=1 "
        "for the traceback)",
        err=True,
    )
    sys.exit(1)


def run(argv: Sequence[str] | None = None) -> None:
    """Run the CLI through click: every failure is one `error: ...` line, exit 2 for a
    usage error, 1 otherwise (130 when interrupted), never a traceback."""
    from .._exceptions import DxflowError, UsageError
    from ._common import cli_message, fail

    args = list(argv) if argv is not None else None
    try:
        code = cli.main(args=args, prog_name="dxflow", standalone_mode=False)
    except click.UsageError as exc:
        _usage(exc)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except (click.Abort, KeyboardInterrupt, EOFError):
        click.echo("", err=True)
        sys.exit(130)
    except UsageError as exc:
        fail(cli_message(exc), 2)
    except DxflowError as exc:
        fail(cli_message(exc))
    except BrokenPipeError:  # `dxflow ... | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:
        internal_error(exc)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
