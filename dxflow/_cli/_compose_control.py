"""`dxflow start|stop|restart|pause|unpause|kill [SERVICE]...` in a project folder, as
`docker compose` has them: the project's existing containers, changed in place (nothing
created or removed; `up` and `down` do that). Each prints the project's containers after.
"""

from __future__ import annotations

from typing import Any

import click

from ._common import Options
from ._complete import service_names
from ._compose import _interruptible, _workflow, project_command
from ._output import emit_json
from ._project import Project
from ._render import status_table

__all__ = ["kill", "pause", "restart", "start", "stop", "unpause"]

_SERVICES = click.argument(
    "services", nargs=-1, metavar="[SERVICE]...", shell_complete=service_names
)
_TIMEOUT = click.option(
    "-t", "--timeout", type=click.FloatRange(min=0), help="Seconds to wait before killing."
)


def _show(opts: Options, status: Any, project: Project) -> None:
    if opts.json:
        return emit_json(status)
    click.echo(status_table(status, project.name))


def _act(opts: Options, project: Project, verb: str, **params: Any) -> None:
    with opts.engine() as engine, _interruptible():
        _show(opts, getattr(_workflow(engine, project), verb)(**params), project)


def _services(services: tuple[str, ...]) -> list[str] | None:
    return list(services) or None


@click.command()
@_SERVICES
@project_command()
def start(opts: Options, project: Project, services: tuple[str, ...]) -> None:
    """Start the project's existing containers (`up` creates them)."""
    _act(opts, project, "start", services=_services(services))


@click.command()
@_SERVICES
@_TIMEOUT
@project_command()
def stop(opts: Options, project: Project, services: tuple[str, ...], timeout: float | None) -> None:
    """Stop the project's containers, keeping them (`down` removes them)."""
    _act(opts, project, "stop", services=_services(services), timeout=timeout)


@click.command()
@_SERVICES
@_TIMEOUT
@project_command()
def restart(
    opts: Options, project: Project, services: tuple[str, ...], timeout: float | None
) -> None:
    """Restart the project's containers."""
    _act(opts, project, "restart", services=_services(services), timeout=timeout)


@click.command()
@_SERVICES
@project_command()
def pause(opts: Options, project: Project, services: tuple[str, ...]) -> None:
    """Pause the project's containers."""
    _act(opts, project, "pause", services=_services(services))


@click.command()
@_SERVICES
@project_command()
def unpause(opts: Options, project: Project, services: tuple[str, ...]) -> None:
    """Unpause the project's containers."""
    _act(opts, project, "unpause", services=_services(services))


@click.command()
@_SERVICES
@click.option("-s", "--signal", default="SIGKILL", show_default=True, help="The signal to send.")
@project_command()
def kill(opts: Options, project: Project, services: tuple[str, ...], signal: str) -> None:
    """Send a signal to the project's containers."""
    _act(opts, project, "kill", signal=signal, services=_services(services))
