"""The `dxflow` command line: a thin layer over the SDK."""

from __future__ import annotations

from collections.abc import Sequence

import click

from .._version import __version__
from ._boot import boot
from ._compose import COMMANDS as COMPOSE_COMMANDS
from ._engine import audit, info, ping, token, whoami
from ._keys import key
from ._workflows import workflow
from .objects import fs, object_group
from .shells import shell_group

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dxflow")
def cli() -> None:
    """dxflow: an engine for containerized workflows, shells and data.

    Without --url, commands talk to the engine booted on this machine (see
    `dxflow boot up`) through its unix socket, as its MASTER key.
    """


for command in (boot, ping, info, whoami, token, key, audit, workflow, object_group, fs):
    cli.add_command(command)
# `stats` is the compose one: a project's containers, or the engine's host outside a project.
for command in COMPOSE_COMMANDS:
    cli.add_command(command)
cli.add_command(shell_group)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="dxflow")
