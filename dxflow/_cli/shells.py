"""`dxflow shell ...`: persistent terminal sessions on the engine, through the SDK."""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import sys
from typing import Any

import click

from .._durations import parse_duration
from .._exceptions import ApiError, DxflowError
from .._models import ShellInfo
from .._wire import envelope
from ._common import Options, engine_command, fail
from ._complete import shell_names
from ._output import emit_json, key_values, table
from ._terminal import DEFAULT_DETACH_KEYS, attach, ending, parse_detach_keys

__all__ = ["shell_group"]


@click.group("shell")
def shell_group() -> None:
    """Persistent terminal sessions on the engine's host or in a workflow's container.

    A session outlives its clients (and the engine): create it, connect, detach with
    Ctrl-], connect again later, from here or from another machine.
    """


# -- how sessions are shown ---------------------------------------------------------------


def _signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(number).name
    return f"signal {number}"


def _ending(info: ShellInfo | dict[str, Any]) -> str:
    """How a session ended: `exited with code 3`, `was killed by SIGKILL`."""
    return ending(info if isinstance(info, dict) else info.model_dump())


def _exit_cell(info: ShellInfo) -> str | int | None:
    if info.exit_code is not None:
        return info.exit_code
    return _signal_name(info.signal) if info.signal else None


def _command(info: ShellInfo, width: int = 0) -> str:
    text = shlex.join(info.command)
    return text if not width or len(text) <= width else text[: width - 3] + "..."


def _show(info: ShellInfo, as_json: bool) -> None:
    if as_json:
        return emit_json(info)
    pairs: list[tuple[str, Any]] = [
        ("name", info.name), ("state", info.state), ("pid", info.pid),
        ("command", _command(info)), ("size", f"{info.rows}x{info.cols}"),
        ("created", info.created), ("clients", info.clients),
    ]  # fmt: skip
    if info.workflow:
        pairs.append(("container", f"{info.workflow}/{info.service}"))
    if info.owner:
        pairs.append(("owner", info.owner))
    if info.user:
        pairs.append(("runs as", info.user))
    if info.state != "running":
        pairs += [("exit code", _exit_cell(info)), ("exited", info.exited)]
    if info.error:
        pairs.append(("error", info.error))
    key_values(pairs)


def _error(exc: DxflowError, as_json: bool) -> None:
    """One error among several (the others go on)."""
    if as_json and isinstance(exc, ApiError):
        click.echo(json.dumps(envelope(exc)), err=True)
    else:
        click.echo(f"error: {exc.message}", err=True)


# -- commands -----------------------------------------------------------------------------


def _pairs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    if bad := [item for item in value if "=" not in item or item.startswith("=")]:
        raise click.BadParameter(f"{bad[0]!r} is not KEY=VALUE")
    return dict(item.split("=", 1) for item in value)


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    try:
        seconds = None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds is not None and seconds <= 0:
        raise click.BadParameter("must be more than 0")
    return seconds


@shell_group.command()
@click.argument("name", shell_complete=shell_names)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD [ARGS]...]")
@click.option("--workflow", help="Open the session in a container of this workflow "
              "(needs WORKFLOW too)...")  # fmt: skip
@click.option("--service", help="...running this service (give both).")
@click.option("--cwd", metavar="DIR", help="Start in this folder.")
@click.option("-e", "--env", multiple=True, callback=_pairs, metavar="KEY=VALUE",
              help="An environment variable of the session (repeatable).")  # fmt: skip
@click.option("--rows", default=24, show_default=True, type=click.IntRange(1, 1000),
              help="The terminal's size until a client connects.")  # fmt: skip
@click.option("--cols", default=80, show_default=True, type=click.IntRange(1, 1000))
@click.option("--record", metavar="PATH",
              help="Record the session (asciicast v2) to PATH in the object store "
              "(needs OBJECT too).")  # fmt: skip
@click.option("--idle-timeout", metavar="SECONDS", callback=_seconds,
              help="End it after this long without clients or output (90, 30m).")  # fmt: skip
@click.option("--exist-ok", is_flag=True,
              help="Use a running session NAME as it is (an ended one starts anew).")  # fmt: skip
@click.option("--replace", is_flag=True,
              help="Remove a session NAME (ending its program) and start it anew.")  # fmt: skip
@engine_command
def create(opts: Options, name: str, command: tuple[str, ...], workflow: str | None,
           service: str | None, cwd: str | None, env: dict[str, str], rows: int, cols: int,
           record: str | None, idle_timeout: float | None, exist_ok: bool,
           replace: bool) -> None:  # fmt: skip
    """Start the session NAME running CMD (default: the login shell; `sh` in a container).

    On the host, a key that is not MASTER runs as its run-as OS user (`key register
    --run-as`, else the engine's `run_as`), in that user's home, with a clean environment.

    Put CMD after `--` when it has options: `dxflow shell create build -- bash -l`.
    A program that cannot start leaves a `failed` session (exit 1); `prune` forgets it.
    Through a booted engine a host session starts in the user's home (`--cwd` to choose).
    """
    with opts.engine() as engine:
        shell = engine.shells.create(
            name, command[0] if command else None, command[1:], env, cwd, rows, cols,
            workflow, service, record, idle_timeout, exist_ok=exist_ok, replace=replace,
        )  # fmt: skip
    info = shell.info
    if info.state == "failed":
        if opts.json:
            emit_json(info)
            sys.exit(1)
        fail(f"shell {info.name!r} failed to start: {info.error or _ending(info)}")
    _show(info, opts.json)


@shell_group.command("list")
@engine_command
def list_shells(opts: Options) -> None:
    """Sessions: state, process, command, connected clients, exit code."""
    with opts.engine() as engine:
        found = [shell.info for shell in engine.shells.list()]
    if opts.json:
        return emit_json(found)
    table(
        [(i.name, i.state, i.pid, _command(i, 40), i.created, i.clients, _exit_cell(i))
         for i in found],
        ["name", "state", "pid", "command", "created", "clients", "exit code"],
    )  # fmt: skip


@shell_group.command()
@click.argument("name", shell_complete=shell_names)
@click.option("--signal", "signal_name", default="SIGTERM", show_default=True,
              help="A signal name (SIGHUP, INT) or number.")  # fmt: skip
@engine_command
def kill(opts: Options, name: str, signal_name: str) -> None:
    """Send a signal to the session's program (interactive shells ignore SIGTERM: use SIGHUP)."""
    with opts.engine() as engine:
        shell = engine.shells.get(name)
        shell.kill(signal_name)
    if opts.json:
        return emit_json(shell.info)
    now = "is still running" if shell.info.state == "running" else _ending(shell.info)
    click.echo(f"sent {signal_name} to {name}: it {now}")


@shell_group.command()
@click.argument("names", metavar="NAME...", nargs=-1, required=True, shell_complete=shell_names)
@engine_command
def remove(opts: Options, names: tuple[str, ...]) -> None:
    """End sessions (SIGHUP, SIGKILL 2 s later) and forget them.

    With several, the others go on when one fails (exit 1).
    """
    removed: list[ShellInfo] = []
    with opts.engine() as engine:
        for name in names:
            try:
                shell = engine.shells.get(name)
                shell.remove()
            except DxflowError as exc:
                _error(exc, opts.json)
                continue
            removed.append(shell.info)
            if not opts.json:
                click.echo(f"removed {name}")
    if opts.json:
        emit_json(removed)
    if len(removed) < len(names):
        sys.exit(1)


@shell_group.command()
@engine_command
def prune(opts: Options) -> None:
    """Forget every session that has ended (exited, or failed to start)."""
    with opts.engine() as engine:
        gone = engine.shells.prune()
    if opts.json:
        return emit_json(gone)
    for info in gone:
        click.echo(f"removed {info.name} ({info.error or _ending(info)})")
    if not gone:
        click.echo("no ended sessions")


@shell_group.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", shell_complete=shell_names)
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", metavar="SECONDS", type=click.FloatRange(0, 86_400, min_open=True),
              help="Give up waiting after this long (the command goes on running).")  # fmt: skip
@engine_command
def run(opts: Options, name: str, cmd: tuple[str, ...], timeout: float | None) -> None:
    """Type CMD at the prompt of NAME; print its output and exit with its exit code.

    The words of CMD are joined by spaces and read by the session's shell, so its syntax
    works (`dxflow shell run s1 -- 'cd src && make'`), and what a command changes (the
    folder, variables) stays for the next one.
    """
    with opts.engine() as engine:
        result = engine.shells.get(name).run(" ".join(cmd), timeout)
    if opts.json:
        emit_json(result)
    else:
        click.echo(result.output, nl=False)
    sys.exit(result.exit_code)


def _detach_keys(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_detach_keys(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@shell_group.command()
@click.argument("name", shell_complete=shell_names)
@click.option("--offset", type=click.IntRange(min=0),
              help="Replay the output from this offset (default: all that is held).")  # fmt: skip
@click.option("--detach-keys", default=DEFAULT_DETACH_KEYS, show_default=True,
              callback=_detach_keys, metavar="KEYS",
              help="The keys that detach, docker's way: ctrl-p,ctrl-q or q.")  # fmt: skip
@engine_command
def connect(opts: Options, name: str, offset: int | None, detach_keys: str) -> None:
    """Connect this terminal to the session NAME, like an ssh login to it.

    Keys go to the session as typed (Ctrl-C too) and its output comes here. Ctrl-]
    (or --detach-keys) detaches: the session keeps running; connect again later to go on
    (its recent output is replayed first). When the session's program ends, connect
    prints how it ended and exits with its exit code (128 + N for a signal N).

    Several clients may be connected at once: they see the same output and may all type.
    The size follows the latest client: connecting, and every resize of this window,
    set the session's size to this terminal's.

    Without a terminal (stdin a pipe or a file), the input is sent as it is and connect
    detaches at its end. There is no JSON form: --json changes only how errors are printed.
    """
    with opts.engine() as engine:
        code = attach(engine.shells.get(name), detach_keys=detach_keys, offset=offset)
    if code is not None:
        sys.exit(code)
