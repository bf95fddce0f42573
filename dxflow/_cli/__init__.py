"""The `dxflow` command line: a thin layer over the SDK.

`main` first offers the command to the pre-click fast path (`_fast`): the everyday reads
(`dxflow ps`, `workflow list`, `ping`, `whoami`) with a cached token are answered there
with the standard library alone, as a `docker ps` would be, without loading click or
the SDK. Everything else, and anything the fast path is not sure of, runs through click
(`_main`), which prints the same bytes for those reads. So this package's import loads
nothing but `COMMANDS`; `cli` is loaded when asked for.

Commands are registered in `COMMANDS` by name and "module:attribute"; a run imports
only the module of the command it runs (the SDK behind it loads when that command
opens an engine), so `dxflow ps` does not pay for `dxflow shell connect`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from ._main import LazyGroup as LazyGroup
    from ._main import cli as cli

__all__ = ["COMMANDS", "cli", "main"]

# To add a top-level command: one line, its name -> "module:attribute" under dxflow._cli.
COMMANDS: dict[str, str] = {
    "audit": "_engine:audit",
    "boot": "_boot:boot",
    "bridge": "bridges:bridge",
    "config": "_compose:config",
    "down": "_compose:down",
    "events": "_compose:events",
    "exec": "_compose:exec_command",
    "fleet": "bridges:fleet",
    "fs": "objects:fs",
    "info": "_engine:info",
    "key": "_keys:key",
    "kill": "_compose_control:kill",
    "logs": "_compose:logs",
    "object": "objects:object_group",
    "pause": "_compose_control:pause",
    "ping": "_engine:ping",
    "proxy": "proxies:proxy",
    "ps": "_compose:ps",
    "restart": "_compose_control:restart",
    "scale": "_compose:scale",
    "shell": "shells:shell_group",
    "start": "_compose_control:start",
    # the compose `stats`: a project's containers, or the engine's host outside a project
    "stats": "_compose:stats",
    "stop": "_compose_control:stop",
    "token": "_engine:token",
    "top": "_compose:top",
    "unpause": "_compose_control:unpause",
    "up": "_compose:up",
    "whoami": "_engine:whoami",
    "workflow": "_workflows:workflow",
}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI: every failure is one `error: ...` line, exit 2 for a usage error,
    1 otherwise (130 when interrupted), never a traceback."""
    from ._fast import answer

    code = answer(list(argv) if argv is not None else sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from ._main import run

    run(argv)


def __getattr__(name: str) -> Any:
    if name in ("cli", "LazyGroup"):  # click is loaded only when the click side is wanted
        from . import _main

        return getattr(_main, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
