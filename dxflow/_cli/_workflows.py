"""`dxflow workflow ...`: Compose projects through the SDK."""

from __future__ import annotations

from typing import Any

import click

from ._common import Options, engine_command, fail
from ._complete import service_names, workflow_names
from ._output import emit_json, table
from ._project import config_of, refresh
from ._render import status_table, workflows_text

__all__ = ["workflow"]


@click.group()
def workflow() -> None:
    """Docker Compose projects run by the engine."""


def _progress(as_json: bool) -> Any:
    def show(event: Any) -> None:
        if as_json:
            click.echo(event.model_dump_json())
            return
        who = event.container or event.service or event.workflow
        extra = f"  {event.detail}" if event.detail else ""
        click.echo(f"{event.time:%H:%M:%S}  {who:<28} {event.action}{extra}")

    return show


def _print_status(status: Any, as_json: bool) -> None:
    if as_json:
        return emit_json(status)
    rows = [
        (
            s.name,
            s.state,
            s.health,
            s.exit_code,
            len(s.containers),
            " ".join(p for c in s.containers for p in c.ports),
        )
        for s in status.services
    ]
    table(rows, ["service", "state", "health", "exit", "containers", "ports"])


_FILE = click.Path(exists=True, dir_okay=False)


def _pairs(env: tuple[str, ...]) -> dict[str, str]:
    if bad := [item for item in env if "=" not in item or item.startswith("=")]:
        fail(f"-e {bad[0]!r} is not KEY=VALUE", 2)
    return dict(item.partition("=")[::2] for item in env)


@workflow.command("scale")
@click.argument("name", shell_complete=workflow_names)
@click.argument("service")
@click.argument("replicas", type=click.IntRange(min=0))
@engine_command
def scale_command(opts: Options, name: str, service: str, replicas: int) -> None:
    """Run REPLICAS of SERVICE (runtime swarm: running tasks are kept)."""
    with opts.engine() as engine:
        status = engine.workflows.get(name).scale(service, replicas)
    if opts.json:
        return emit_json(status)
    click.echo(status_table(status, name))


@workflow.command()
@click.argument("name")
@click.option("-f", "--file", "compose", required=True, type=_FILE)
@click.option("--env-file", multiple=True, type=_FILE)
@click.option("--profile", "profiles", multiple=True, help="Activate a Compose profile.")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE for interpolation.")
@click.option(
    "--working-dir",
    help="Folder on the engine host where relative paths resolve (default: FILE's folder).",
)
@click.option(
    "--exist-ok",
    is_flag=True,
    help="When NAME exists: update it to FILE (nothing changes when identical).",
)
@click.option("--replace", is_flag=True,
              help="When NAME exists: bring it down and create it anew.")  # fmt: skip
@click.option(
    "--runtime",
    type=click.Choice(["docker", "swarm"]),
    help="docker (this machine) or swarm (the Docker Swarm its Docker manages).",
)
@engine_command
def create(opts: Options, name: str, compose: str, env_file: tuple[str, ...],
           profiles: tuple[str, ...], env: tuple[str, ...], working_dir: str | None,
           exist_ok: bool, replace: bool, runtime: str | None) -> None:  # fmt: skip
    """Validate and store the Compose project in FILE as workflow NAME."""
    from .._exceptions import Conflict

    if exist_ok and replace:
        fail("--exist-ok and --replace exclude each other: pick one", 2)
    pairs = _pairs(env)
    again = {k: True for k, v in (("exist_ok", exist_ok), ("replace", replace)) if v}
    with opts.engine() as engine:
        try:
            wf = engine.workflows.create(name, compose, env=pairs,
                                         env_file=list(env_file) or None, profiles=profiles,
                                         working_dir=working_dir, runtime=runtime,
                                         **again)  # fmt: skip
        except Conflict:
            if again:
                raise
            fail(f"workflow {name!r} exists already: --exist-ok updates it to this file, "
                 f"--replace recreates it, or `dxflow workflow update {name} -f FILE`")  # fmt: skip
    if opts.json:
        return emit_json(wf.info)
    click.echo(f"workflow {wf.name} created: services {', '.join(wf.info.services)}")


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@click.option("-f", "--file", "compose", type=_FILE, help="The new compose file.")
@click.option("--env-file", multiple=True, type=_FILE, help="Replace the env files.")
@click.option("--profile", "profiles", multiple=True, help="Replace the active profiles.")
@click.option("-e", "--env", "env", multiple=True, help="Replace the variables (KEY=VALUE).")
@engine_command
def update(opts: Options, name: str, compose: str | None, env_file: tuple[str, ...],
           profiles: tuple[str, ...], env: tuple[str, ...]) -> None:  # fmt: skip
    """Replace parts of the stored workflow NAME; the next `up` recreates what changed.

    Only what is given changes: -f the compose file, -e the variables, --env-file the
    env files, --profile the profiles.
    """
    if not (compose or env_file or profiles or env):
        fail("nothing to update: give -f FILE, -e KEY=VALUE, --env-file or --profile", 2)
    with opts.engine() as engine:
        wf = engine.workflows.get(name)
        before = config_of(wf)
        wf.update(compose, env=_pairs(env) if env else None, env_file=list(env_file) or None,
                  profiles=list(profiles) or None)  # fmt: skip
        wf.reload()
        changed = config_of(wf) != before
    if opts.json:
        return emit_json(wf.info)
    what = "updated: the next `up` recreates what changed" if changed else "unchanged"
    click.echo(f"workflow {name} {what}")


@workflow.command("list")
@engine_command
def list_workflows(opts: Options) -> None:
    """Stored workflows."""
    from ._lean import lean_call

    lean = lean_call(opts, "workflows.list")
    if lean is not None:
        found = lean.workflows
    else:
        with opts.engine() as engine:
            found = [wf.info for wf in engine.workflows.list()]
    click.echo(workflows_text(found, opts.json), nl=False)


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@click.option(
    "--service",
    "services",
    multiple=True,
    shell_complete=service_names,
    help="Only these services (and what they need).",
)
@click.option("--no-wait", is_flag=True, help="Return once started, without waiting for health.")
@click.option("--timeout", type=float, help="Seconds to wait at most.")
@click.option("--build", is_flag=True, help="Build images first (output streamed).")
@click.option("--keep-on-failure", is_flag=True, help="Leave the containers of a failed up.")
@click.option("--no-refresh", is_flag=True,
              help="Run the stored copy even when its compose file was edited since.")  # fmt: skip
@engine_command
def up(opts: Options, name: str, services: tuple[str, ...], no_wait: bool,
       timeout: float | None, build: bool, keep_on_failure: bool,
       no_refresh: bool) -> None:  # fmt: skip
    """Create and start the services of NAME, with live progress.

    When the compose file NAME was stored from is on this machine and was edited since,
    it is stored again first (with a warning), as `dxflow up` does in its folder.
    """
    options: dict[str, Any] = {"keep_on_failure": True} if keep_on_failure else {}
    with opts.engine() as engine:
        wf = engine.workflows.get(name)
        if not no_refresh:
            refresh(wf)
        status = wf.up(services=list(services) or None, wait=not no_wait, timeout=timeout,
                       build=True if build else None, progress=_progress(opts.json),
                       **options)  # fmt: skip
    if not opts.json:
        click.echo()
        _print_status(status, False)


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@click.option("-v", "--volumes", is_flag=True, help="Remove named volumes too.")
@engine_command
def down(opts: Options, name: str, volumes: bool) -> None:
    """Stop and remove the containers and networks of NAME."""
    with opts.engine() as engine:
        engine.workflows.get(name).down(volumes=volumes, progress=_progress(opts.json))


def _simple(verb: str, doc: str) -> None:
    @workflow.command(verb, help=doc)
    @click.argument("name", shell_complete=workflow_names)
    @click.option("--service", "services", multiple=True, shell_complete=service_names,
                  help="Only these services.")  # fmt: skip
    @engine_command
    def command(opts: Options, name: str, services: tuple[str, ...]) -> None:
        with opts.engine() as engine:
            status = getattr(engine.workflows.get(name), verb)(services=list(services) or None)
        _print_status(status, opts.json)


_simple("start", "Start the existing containers of NAME.")
_simple("stop", "Stop the containers of NAME.")
_simple("restart", "Restart the containers of NAME.")
_simple("pause", "Pause the containers of NAME.")
_simple("unpause", "Unpause the containers of NAME.")


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@click.option("--signal", default="SIGKILL", show_default=True)
@click.option("--service", "services", multiple=True, shell_complete=service_names,
              help="Only these services.")  # fmt: skip
@engine_command
def kill(opts: Options, name: str, signal: str, services: tuple[str, ...]) -> None:
    """Send a signal to the containers of NAME."""
    with opts.engine() as engine:
        status = engine.workflows.get(name).kill(signal, services=list(services) or None)
    _print_status(status, opts.json)


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@click.option("--service", shell_complete=service_names, help="Only this service.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=int, help="Only the last N lines of each container.")
@click.option("-t", "--timestamps", is_flag=True)
@engine_command
def logs(opts: Options, name: str, service: str | None, follow: bool, tail: int | None,
         timestamps: bool) -> None:  # fmt: skip
    """Log lines of NAME, tagged with their container."""
    with opts.engine() as engine:
        lines = engine.workflows.get(name).logs(service=service, follow=follow, tail=tail,
                                                timestamps=timestamps)  # fmt: skip
        for line in lines:
            if opts.json:
                click.echo(line.model_dump_json())
                continue
            stamp = f"{line.time:%Y-%m-%dT%H:%M:%S.%f} " if line.time else ""
            click.echo(f"{line.container:<24} | {stamp}{line.line}", err=line.stream == "stderr")


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@engine_command
def events(opts: Options, name: str) -> None:
    """Container events of NAME as they happen (Ctrl-C to stop)."""
    show = _progress(opts.json)
    with opts.engine() as engine:
        for event in engine.workflows.get(name).events():
            show(event)


@workflow.command("stats")
@click.argument("name", shell_complete=workflow_names)
@engine_command
def workflow_stats(opts: Options, name: str) -> None:
    """Per container: CPU, memory against its limit, network, block I/O."""
    from ._output import human_bytes

    with opts.engine() as engine:
        data = engine.workflows.get(name).stats()
    if opts.json:
        return emit_json(data)
    table(
        [(s.container, f"{s.cpu_percent:.1f}%",
          f"{human_bytes(s.memory_usage)} / {human_bytes(s.memory_limit)}",
          f"{human_bytes(s.network_rx)} / {human_bytes(s.network_tx)}",
          f"{human_bytes(s.block_read)} / {human_bytes(s.block_write)}", s.pids)
         for s in data.containers],
        ["container", "cpu", "memory", "net rx/tx", "block r/w", "pids"],
    )  # fmt: skip


@workflow.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name", shell_complete=workflow_names)
@click.argument("service", shell_complete=service_names)
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--index", default=1, show_default=True, help="Which replica.")
@engine_command
def exec_command(opts: Options, name: str, service: str, cmd: tuple[str, ...], index: int) -> None:
    """Run CMD in SERVICE of NAME; print its output and exit with its code."""
    with opts.engine() as engine:
        result = engine.workflows.get(name).exec(service, list(cmd), index=index)
    if opts.json:
        emit_json(result)
    else:
        click.echo(result.output, nl=False)
    raise SystemExit(result.exit_code)


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@engine_command
def ps(opts: Options, name: str) -> None:
    """Per service: state, health, exit code, containers, ports."""
    from ._lean import lean_call

    lean = lean_call(opts, "workflows.status", name=name)
    if lean is not None:
        return _print_status(lean, opts.json)
    with opts.engine() as engine:
        _print_status(engine.workflows.get(name).status(), opts.json)


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@engine_command
def config(opts: Options, name: str) -> None:
    """The normalized, interpolated Compose model of NAME (JSON)."""
    with opts.engine() as engine:
        emit_json(engine.workflows.get(name).config())


@workflow.command()
@click.argument("name", shell_complete=workflow_names)
@engine_command
def remove(opts: Options, name: str) -> None:
    """Bring NAME down and forget it."""
    with opts.engine() as engine:
        engine.workflows.get(name).remove()
    click.echo(f"workflow {name} removed")
