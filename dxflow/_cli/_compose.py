"""`dxflow up`, `down`, `ps`, `logs`, `exec`, `stats`, `top`, `config`, `events`: the
compose workflow in a folder, as `docker compose` has it.

Each command finds the project of the current folder (see `_project`): its compose file,
and its name (the workflow's). `up` and `config` store the file as the workflow first
(created, or updated with a warning when it changed); the others only need the name, so
`-p NAME` works from anywhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from .._exceptions import NotFound
from ._common import Options, engine_command, fail
from ._complete import service_names, workflow_names
from ._output import Prefixer, emit_json, human_bytes, is_terminal, table, table_text, use_colour
from ._progress import EventView
from ._project import Project, find_compose_file, project_name
from ._render import ps_text, status_table

__all__ = ["COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])


# -- the project options every command shares --------------------------------------------


def _default_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """-p's value, else the folder's project name: completion of services needs it early."""
    if value:
        return value
    with contextlib.suppress(click.UsageError, OSError):
        given = ctx.params.get("compose_file")
        path = Path(given).absolute() if given else find_compose_file(Path.cwd())
        if path is not None and path.is_file():
            return project_name(path)
    return None


def project_command(
    need_file: bool = False, optional: bool = False, short_file: bool = True
) -> Callable[[F], F]:
    """Add -f/-p/--env-file/--profile and the engine options; the command receives
    `opts: Options, project: Project` first (None when `optional` and there is none).
    `logs` has no -f for the file: there it means --follow, as in compose."""
    file_flags = ("-f", "--file") if short_file else ("--file",)

    def decorate(function: F) -> F:
        @click.option(
            *file_flags,
            "compose_file",
            envvar="COMPOSE_FILE",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="The compose file (default: compose.yaml here or in a parent).",
        )
        @click.option(
            "-p",
            "--project-name",
            "project",
            envvar="COMPOSE_PROJECT_NAME",
            callback=_default_name,
            shell_complete=workflow_names,
            help="The project (workflow) name (default: the file's name: or folder).",
        )
        @click.option(
            "--env-file",
            "env_files",
            multiple=True,
            metavar="FILE",
            type=click.Path(exists=True, dir_okay=False),
            help="A dotenv file for interpolation (repeatable; default: .env).",
        )
        @click.option("--profile", "profiles", multiple=True, help="Activate a Compose profile.")
        @engine_command
        @functools.wraps(function)
        def wrapper(
            opts: Options,
            compose_file: str | None,
            project: str | None,
            env_files: tuple[str, ...],
            profiles: tuple[str, ...],
            **kwargs: Any,
        ) -> Any:
            name = project if _explicit_name() else None  # else derived from the file
            try:
                found = Project.resolve(compose_file, name, env_files, profiles, need_file)
            except click.UsageError as exc:
                if not (optional and compose_file is None and name is None):
                    fail(exc.message)
                found = None
            with _interruptible():  # Ctrl-C anywhere: exit 130, never a traceback
                return function(opts, found, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate  # fmt: skip


def _explicit_name() -> bool:
    """-p given (or COMPOSE_PROJECT_NAME), not derived: it then names the stored workflow."""
    ctx = click.get_current_context()
    return ctx.get_parameter_source("project") in (
        ParameterSource.COMMANDLINE,
        ParameterSource.ENVIRONMENT,
    )


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C ends a following command quietly, with the shell's code for it (130)."""
    try:
        yield
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)


def _workflow(engine: Any, project: Project) -> Any:
    try:
        return engine.workflows.get(project.name)
    except NotFound:
        fail(f"no workflow named {project.name!r}: `dxflow up` creates it from the compose file")


def _short(container: str, project: str) -> str:
    """`demo-web-1` -> `web-1`, as compose prints containers in its logs."""
    return container.removeprefix(f"{project}-")


# -- up and down --------------------------------------------------------------------------


@click.command()
@click.argument("services", nargs=-1, metavar="[SERVICE]...", shell_complete=service_names)
@click.option("--build", is_flag=True, help="Build images before starting (output streamed).")
@click.option("-d", "--detach", is_flag=True,
              help="Return once started (--wait: healthy), leaving them running.")  # fmt: skip
@click.option("--wait", is_flag=True, help="With -d: wait until every service is healthy.")
@click.option("--keep-on-failure", is_flag=True,
              help="Leave the containers of a failed up as they are, to look at them.")  # fmt: skip
@click.option("--timeout", type=float, help="Seconds to wait for health at most.")
@click.option("--runtime", type=click.Choice(["docker", "swarm"]),
              help="What runs a new workflow: this machine's Docker Engine, or the Docker "
              "Swarm it manages (default: the engine's workflow_runtime).")  # fmt: skip
@project_command(need_file=True)
def up(opts: Options, project: Project, services: tuple[str, ...], build: bool, detach: bool,
       wait: bool, keep_on_failure: bool, timeout: float | None,
       runtime: str | None) -> None:  # fmt: skip
    """Create or update the workflow from the compose file, start it, and follow its logs.

    Like `docker compose up`: the stored workflow is made to match the file first (a
    warning says when it differed), progress shows one line per container, then the
    logs of the services follow with coloured prefixes. Ctrl-C then stops the
    containers (as compose does) and exits 130; `dxflow up -d` leaves them running
    and returns once they started (with --wait, once healthy), printing their status.
    """
    view = EventView(opts.json)
    options: dict[str, Any] = {"keep_on_failure": True} if keep_on_failure else {}
    with opts.engine() as engine:
        workflow = _sync(engine, project, runtime)
        view.expect(workflow.status())
        try:
            status = workflow.up(list(services) or None, wait=not detach or wait,
                                 timeout=timeout, build=True if build else None,
                                 progress=view, **options)  # fmt: skip
        except KeyboardInterrupt:
            _interrupted(workflow, detach, list(services) or None, opts.json)
        view.finish(status)
        if detach:
            if not opts.json:
                click.echo()
                click.echo(status_table(status, project.name))
            return
        _attach(workflow, project, list(services) or None, opts.json)


def _sync(engine: Any, project: Project, runtime: str | None = None) -> Any:
    from ._project import sync

    return sync(engine, project, runtime)


def _interrupted(workflow: Any, detach: bool, services: list[str] | None, as_json: bool) -> None:
    if detach:
        click.echo("\ninterrupted: the containers are left as they are "
                   "(`dxflow ps` shows them, `dxflow down` removes them)", err=True)  # fmt: skip
    else:
        _stop(workflow, services, as_json)
    sys.exit(130)


def _stop(workflow: Any, services: list[str] | None, as_json: bool) -> None:
    click.echo("\nGracefully stopping... (press Ctrl+C again to force)", err=True)
    try:
        status = workflow.stop(services)
    except KeyboardInterrupt:
        sys.exit(130)
    if not as_json:
        for service in status.services:
            for container in service.containers:
                done = "Stopped" if container.state in {"exited", "dead"} else container.state
                click.echo(f"Container {container.name}  {done.capitalize()}")


def _attach(workflow: Any, project: Project, services: list[str] | None, as_json: bool) -> None:
    """Follow the logs of the services until Ctrl-C, which stops them (compose does)."""
    names = [f"{s}-1" for s in services or workflow.info.services]
    if not as_json:
        click.echo(f"Attaching to {', '.join(names)}")
    try:
        _print_logs(workflow, project, services, follow=True, tail=None, since=None,
                    timestamps=False, as_json=as_json, prefix=True, colour=None)  # fmt: skip
    except KeyboardInterrupt:
        _stop(workflow, services, as_json)
        sys.exit(130)


@click.command()
@click.option("-v", "--volumes", is_flag=True, help="Remove named volumes too.")
@project_command()
def down(opts: Options, project: Project, volumes: bool) -> None:
    """Stop and remove the containers and networks of the project (the workflow stays
    stored: `dxflow workflow remove NAME` forgets it)."""
    with opts.engine() as engine:
        try:
            workflow = engine.workflows.get(project.name)
        except NotFound:
            click.echo(f"no workflow named {project.name!r}: nothing to remove", err=True)
            return
        with _interruptible():
            workflow.down(volumes=volumes, progress=EventView(opts.json))


# -- looking at it ------------------------------------------------------------------------


@click.command()
@click.option("--services", "only_services", is_flag=True, help="Only the service names.")
@click.option("-q", "--quiet", is_flag=True, help="Only the container ids.")
@project_command()
def ps(opts: Options, project: Project, only_services: bool, quiet: bool) -> None:
    """The containers of the project: service, state, health, exit code, ports."""
    from ._lean import lean_call

    status: Any = lean_call(opts, "workflows.status", name=project.name)
    if status is None:  # no cached token, https, or not found: the SDK says what is wrong
        with opts.engine() as engine:
            status = _workflow(engine, project).status()
    click.echo(ps_text(status, project.name, opts.json, only_services, quiet), nl=False)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from .._durations import since_datetime

    try:
        return since_datetime(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a time (ISO 8601) nor a duration "
                                 "(10m, 1h30m)") from None  # fmt: skip


@click.command()
@click.argument("services", nargs=-1, metavar="[SERVICE]...", shell_complete=service_names)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--since", callback=_since, help="Only lines since a time or this long ago (10m).")
@click.option("-n", "--tail", type=click.IntRange(min=0), help="Only the last N lines of each.")
@click.option("-t", "--timestamps", is_flag=True, help="Show each line's time.")
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR does the same).")
@click.option("--no-log-prefix", is_flag=True, help="No `web-1 |` in front of the lines.")
@project_command(short_file=False)
def logs(opts: Options, project: Project, services: tuple[str, ...], follow: bool,
         since: Any, tail: int | None, timestamps: bool, no_color: bool,
         no_log_prefix: bool) -> None:  # fmt: skip
    """Log lines of the project's containers, prefixed and coloured by service."""
    with opts.engine() as engine, _interruptible():
        _print_logs(_workflow(engine, project), project, list(services) or None, follow, tail,
                    since, timestamps, opts.json, not no_log_prefix,
                    False if no_color else None)  # fmt: skip


def _print_logs(workflow: Any, project: Project, services: list[str] | None, follow: bool,
                tail: int | None, since: Any, timestamps: bool, as_json: bool, prefix: bool,
                colour: bool | None) -> None:  # fmt: skip
    one = services[0] if services and len(services) == 1 else None  # the engine filters one
    lines = workflow.logs(service=one, follow=follow, tail=tail, since=since,
                          timestamps=timestamps)  # fmt: skip
    known = [f"{s}-1" for s in workflow.info.services]
    tag = Prefixer(known, use_colour(sys.stdout, as_json) if colour is None else colour)
    for line in lines:
        if services and line.service not in services:
            continue
        if as_json:
            click.echo(line.model_dump_json())
            continue
        text = f"{line.time:%Y-%m-%dT%H:%M:%S.%fZ} {line.line}" if timestamps and line.time \
            else line.line  # fmt: skip
        click.echo(tag(_short(line.container, project.name), line.service, text)
                   if prefix else text)  # fmt: skip


@click.command()
@project_command()
def top(opts: Options, project: Project) -> None:
    """The processes running in each container of the project."""
    with opts.engine() as engine:
        found = _workflow(engine, project).top()
    if opts.json:
        return emit_json(found)
    for index, container in enumerate(found.containers):
        if index:
            click.echo()
        click.echo(container.container)
        click.echo(table_text(container.processes, container.titles))


@click.command()
@click.option("--services", "only_services", is_flag=True, help="Only the service names.")
@project_command(need_file=True)
def config(opts: Options, project: Project, only_services: bool) -> None:
    """The compose file as the engine reads it: normalized and interpolated (YAML).

    The file is stored as the project's workflow first (created or updated, as `up`
    does, starting nothing), so this is exactly what the next `up` runs.
    """
    with opts.engine() as engine:
        model = _sync(engine, project).config()
    if only_services:
        return click.echo("\n".join(model.services))
    if opts.json:
        return emit_json(model)
    import yaml

    data = model.model_dump(mode="json", exclude_defaults=True)
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


@click.command()
@project_command()
def events(opts: Options, project: Project) -> None:
    """Container events of the project as they happen (Ctrl-C stops)."""
    with opts.engine() as engine, _interruptible():
        for event in _workflow(engine, project).events():
            if opts.json:
                click.echo(event.model_dump_json())
                continue
            who = event.container or event.service or event.workflow
            extra = f"  {event.detail}" if event.detail else ""
            code = f" ({event.exit_code})" if event.exit_code is not None else ""
            click.echo(f"{event.time:%Y-%m-%dT%H:%M:%S.%fZ} {event.action}{code} {who}{extra}")


# -- exec ---------------------------------------------------------------------------------


@click.command("exec", context_settings={"ignore_unknown_options": True,
                                         "allow_interspersed_args": False})  # fmt: skip
@click.argument("service", shell_complete=service_names)
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "-i", "--interactive", is_flag=True, help="Keep stdin open (the default on a terminal)."
)
@click.option("-t", "--tty", is_flag=True, help="A terminal for CMD (the default on a terminal).")
@click.option("-T", "--no-tty", is_flag=True, help="No terminal: run CMD, print its output.")
@click.option("--index", default=1, show_default=True, type=click.IntRange(min=1),
              help="Which replica.")  # fmt: skip
@click.option("-u", "--user", help="Run as this user (non-interactive only).")
@click.option("-w", "--workdir", help="Run in this folder.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="A variable.")
@project_command()
def exec_command(opts: Options, project: Project, service: str, cmd: tuple[str, ...],
                 interactive: bool, tty: bool, no_tty: bool, index: int, user: str | None,
                 workdir: str | None, env: tuple[str, ...]) -> None:  # fmt: skip
    """Run CMD in a container of SERVICE and exit with its exit code.

    With a terminal (the default when stdin and stdout are one; -it asks for it), CMD gets
    a terminal of its own in a shell session that lasts as long as the command, as with
    `docker compose exec`: keys and Ctrl-C go to it, the window's size follows. -T runs
    CMD without one and prints its output (stdin is not passed).
    """
    variables = dict(item.partition("=")[::2] for item in env)
    asked = (interactive or tty) and not no_tty
    if asked and not os.isatty(0):
        fail("the input device is not a TTY: use -T to run without a terminal")
    # By default a terminal only when both ends are one: `exec web cat f > copy` stays clean.
    terminal = asked or (not no_tty and os.isatty(0) and os.isatty(1))
    with opts.engine() as engine:
        workflow = _workflow(engine, project)
        if terminal:
            if user or index != 1:
                fail("--user and --index need -T (a terminal session runs as the container's "
                     "user in its first replica)")  # fmt: skip
            sys.exit(_exec_terminal(workflow, service, list(cmd), workdir, variables))
        result = workflow.exec(service, list(cmd), index=index, user=user, workdir=workdir,
                               env=variables)  # fmt: skip
    if opts.json:
        emit_json(result)
    else:
        click.echo(result.output, nl=False)
    sys.exit(result.exit_code)


def _exec_terminal(workflow: Any, service: str, cmd: list[str], workdir: str | None,
                   env: dict[str, str]) -> int:  # fmt: skip
    from ._terminal import attach

    size = os.get_terminal_size(0)
    shell = workflow.shell(service, cmd[0], args=cmd[1:], cwd=workdir, env=env or None,
                           rows=min(size.lines, 1000) or 24,
                           cols=min(size.columns, 1000) or 80)  # fmt: skip
    try:
        code = attach(shell, offset=0, quiet=True)
    finally:
        with contextlib.suppress(Exception):  # gone already, or the engine with it
            shell.remove()
    if code is None:
        click.echo("\r\ndetached: the command was ended with its session", err=True)
        return 0
    return code


# -- stats --------------------------------------------------------------------------------


@click.command()
@click.option("--watch", is_flag=True, help="Keep refreshing (in place on a terminal).")
@click.option("--interval", default=2.0, show_default=True,
              help="Seconds between the engine's samples (containers: about 1 s).")  # fmt: skip
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many samples.")
@click.option("--all-interfaces", is_flag=True,
              help="Show the containers' veth* interfaces too (hidden by default).")  # fmt: skip
@click.option("--engine", "host", is_flag=True,
              help="The engine's host even in a project folder.")  # fmt: skip
@project_command(optional=True)
def stats(opts: Options, project: Project | None, watch: bool, interval: float,
          count: int | None, all_interfaces: bool, host: bool) -> None:  # fmt: skip
    """Per container of the project: CPU, memory, network, block I/O (docker compose stats).

    Outside a project folder (no compose file, no -p), or with --engine: the engine's
    host (CPU per core, memory, disks, network per interface).
    """
    with opts.engine() as engine, _interruptible():
        if host or project is None:
            samples = engine.watch_stats(interval=interval, count=count) if watch else \
                iter([engine.stats()])  # fmt: skip
            show: Callable[[Any], None] = functools.partial(_host_stats, all_interfaces, opts.json)
        else:
            workflow = _workflow(engine, project)
            samples = _limit(workflow.watch_stats(), count) if watch else iter([workflow.stats()])
            show = functools.partial(_container_stats, opts.json)
        _refresh(samples, show, watch and not opts.json)


def _limit(samples: Iterator[Any], count: int | None) -> Iterator[Any]:
    for number, sample in enumerate(samples, 1):
        yield sample
        if count is not None and number >= count:
            return


def _refresh(samples: Iterator[Any], show: Callable[[Any], None], watching: bool) -> None:
    """Redraw in place on a terminal (clear, then draw); piped, tables one after another."""
    live = watching and is_terminal()
    for number, sample in enumerate(samples):
        if live:
            click.echo("\x1b[H\x1b[2J", nl=False)
        elif watching and number:
            click.echo()
        show(sample)


def without_veth(data: Any, all_interfaces: bool) -> Any:
    """The host's stats without the veth* ends of container networks (one per container)."""
    if all_interfaces:
        return data
    network = [n for n in data.network if not n.interface.startswith("veth")]
    return data.model_copy(update={"network": network})


def _host_stats(all_interfaces: bool, as_json: bool, data: Any) -> None:
    from ._engine import _print_stats

    _print_stats(without_veth(data, all_interfaces), as_json)


def _container_stats(as_json: bool, data: Any) -> None:
    if as_json:
        return emit_json(data)
    table(
        [(s.container, s.service, f"{s.cpu_percent:.1f}%",
          f"{human_bytes(s.memory_usage)} / {human_bytes(s.memory_limit)}",
          f"{s.memory_percent:.1f}%",
          f"{human_bytes(s.network_rx)} / {human_bytes(s.network_tx)}",
          f"{human_bytes(s.block_read)} / {human_bytes(s.block_write)}", s.pids)
         for s in data.containers],
        ["name", "service", "cpu", "mem usage / limit", "mem", "net i/o", "block i/o", "pids"],
    )  # fmt: skip


@click.command()
@click.argument("counts", nargs=-1, required=True, metavar="SERVICE=N...")
@project_command()
def scale(opts: Options, project: Project, counts: tuple[str, ...]) -> None:
    """Set the number of replicas of services (`dxflow scale web=3 worker=10`).

    Runtime swarm: only the count changes, running tasks are kept. Runtime docker: as
    `docker compose up --scale`, until the next `up` restores the file's count."""
    wanted: list[tuple[str, int]] = []
    for item in counts:
        service, _, number = item.partition("=")
        if not service or not number.isdigit():
            fail(f"{item!r} is not SERVICE=N (for example web=3)", 2)
        wanted.append((service, int(number)))
    with opts.engine() as engine:
        workflow = _workflow(engine, project)
        for service, count in wanted:
            status = workflow.scale(service, count)
    if opts.json:
        return emit_json(status)
    click.echo(status_table(status, project.name))


COMMANDS = (
    up,
    down,
    ps,
    logs,
    exec_command,
    stats,
    top,
    config,
    events,
    scale,
)  # see _cli.COMMANDS
