"""`dxflow bridge ...` and `dxflow fleet run`: a master's agents, one or all at once.

On the master: `bridge token` prints a join token; on each agent, `dxflow boot up
--join TOKEN` joins (see `_boot`). `fleet run` runs one dxflow command against every
agent through the master (`--url` of the master with `/api/bridges/NAME` appended),
each agent's output under its name, and exits 1 when any agent failed.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import click

from ._common import Options, engine_command, fail
from ._output import emit_json, key_values, table

__all__ = ["bridge", "fleet"]


def _labels(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in ",".join(value).split(","):
        if not item.strip():
            continue
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"{item!r} must be key=value (e.g. gpu=true)")
        labels[key.strip()] = val.strip()
    return labels


def _ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


@click.group()
def bridge() -> None:
    """Bridges: agent engines joined to this one (their master).

    \b
    On the master:  dxflow bridge token --labels gpu=true
    On an agent:    dxflow boot up --join TOKEN --allow WORKFLOW,OBJECT,SHELL
    Then:           dxflow bridge list; dxflow fleet run -- ping
    """


@bridge.command()
@click.option("--expires", default="1h", show_default=True, help="How long it may be used.")
@click.option("--uses", type=click.IntRange(1), default=1, show_default=True,
              help="How many agents may join with it.")  # fmt: skip
@click.option("--labels", "-l", multiple=True, callback=_labels,
              help="Labels of the agents that join with it: gpu=true,site=lab.")  # fmt: skip
@click.option("--master-url", help="The URL agents dial (default: the one the server bound).")
@engine_command
def token(opts: Options, expires: str, uses: int, labels: dict[str, str],
          master_url: str | None) -> None:  # fmt: skip
    """Print a join token (MASTER): an agent joins with `dxflow boot up --join TOKEN`."""
    from .._durations import parse_duration

    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    with opts.engine() as engine:
        made = engine.bridges.token(seconds, uses, labels, master_url)
    if opts.json:
        return emit_json(made)
    click.echo(made.token)
    click.echo(f"# for {uses} agent(s), until {made.expires_at:%Y-%m-%d %H:%M} UTC; master "
               f"{made.url} ({made.fingerprint})", err=True)  # fmt: skip


@bridge.command("list")
@click.option("--labels", "-l", multiple=True, callback=_labels, help="Only these: gpu=true.")
@engine_command
def list_bridges(opts: Options, labels: dict[str, str]) -> None:
    """The agents: status, last seen, round trip, labels, CPUs, memory, GPUs, load."""
    with opts.engine() as engine:
        found = [b.info for b in engine.bridges.list(labels or None)]
    if opts.json:
        return emit_json(found)
    if not found:
        click.echo("no agents (`dxflow bridge token` makes a join token)")
        return
    rows = [(b.name, b.status, _ago(b.last_seen),
             f"{b.rtt * 1000:.1f} ms" if b.rtt is not None else "-",
             ",".join(f"{k}={v}" for k, v in b.labels.items()) or "-",
             b.facts.cpus or "-", f"{(b.facts.memory or 0) / 2**30:.1f}G", b.facts.gpus,
             b.facts.load if b.facts.load is not None else "-") for b in found]  # fmt: skip
    table(rows, ["NAME", "STATUS", "SEEN", "RTT", "LABELS", "CPUS", "MEM", "GPUS", "LOAD"])


@bridge.command()
@click.argument("name")
@engine_command
def show(opts: Options, name: str) -> None:
    """One agent, in full."""
    with opts.engine() as engine:
        info = engine.bridges.get(name).info
    if opts.json:
        return emit_json(info)
    key_values([
        ("name", info.name), ("status", info.status), ("engine", info.engine_id or "-"),
        ("last seen", _ago(info.last_seen)), ("address", info.address or "-"),
        ("rtt", f"{info.rtt * 1000:.2f} ms" if info.rtt is not None else "-"),
        ("labels", ",".join(f"{k}={v}" for k, v in info.labels.items()) or "-"),
        ("allows", ",".join(info.allow) or "-"), ("drained", info.drained),
        ("joined", f"{info.joined_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("host", f"{info.facts.hostname or '-'}: {info.facts.cpus or '-'} CPUs, "
                 f"{(info.facts.memory or 0) / 2**30:.1f} GiB, {info.facts.gpus} GPUs, "
                 f"load {info.facts.load}"),
    ])  # fmt: skip


@bridge.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@engine_command
def remove(opts: Options, names: tuple[str, ...]) -> None:
    """Forget agents (MASTER): their keys leave, links close; nothing on them stops."""
    from .._exceptions import DxflowError

    failed = False
    with opts.engine() as engine:
        for name in names:
            try:
                engine.bridges.get(name).remove()
                click.echo(f"removed {name}")
            except DxflowError as exc:
                click.echo(f"error: {name}: {exc.message}", err=True)
                failed = True
    if failed:
        sys.exit(1)


@bridge.command()
@click.argument("name")
@engine_command
def drain(opts: Options, name: str) -> None:
    """Place nothing new on agent NAME (MASTER); what runs there keeps running."""
    with opts.engine() as engine:
        info = engine.bridges.get(name).drain()
    click.echo(f"{info.name} drained") if not opts.json else emit_json(info)


@bridge.command()
@click.option("--labels", "-l", multiple=True, callback=_labels, help="Only agents with these.")
@click.option("--workflows", "-w", is_flag=True, help="Also the agents' workflow events.")
@engine_command
def events(opts: Options, labels: dict[str, str], workflows: bool) -> None:
    """Each agent's status, then every change as it happens; with --workflows, the
    events of the workflows on the agents too, each under its agent (Ctrl-C stops)."""
    from ._compose import _interruptible

    with opts.engine() as engine, _interruptible():
        for event in engine.bridges.events(labels, workflows=workflows):
            if opts.json:
                click.echo(event.model_dump_json())
                continue
            stamp, flow = f"{event.time:%Y-%m-%dT%H:%M:%S.%fZ}", event.workflow
            if flow is None:
                was = f" (was {event.previous})" if event.previous else ""
                click.echo(f"{stamp} {event.agent} {event.status}{was}")
                continue
            who = flow.container or flow.service or ""
            code = f" ({flow.exit_code})" if flow.exit_code is not None else ""
            click.echo(f"{stamp} {event.agent} {flow.workflow} {flow.action}{code} {who}".rstrip())


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--labels", "-l", multiple=True, callback=_labels, help="Only agents with these.")
@click.option("--concurrency", "-c", type=click.IntRange(1), default=16, show_default=True)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@engine_command
def fleet(opts: Options, labels: dict[str, str], concurrency: int,
          command: tuple[str, ...]) -> None:  # fmt: skip
    """Run a dxflow COMMAND on every agent, through this master.

    \b
    dxflow fleet -l gpu=true -- ps
    dxflow fleet -- workflow list
    """
    if command and command[0] == "run":  # `dxflow fleet run -- ...` reads as English too
        command = command[1:]
    if not command:
        fail("give a command after --, e.g. dxflow fleet run -- ping", 2)
    with opts.engine() as engine:
        names = [b.name for b in engine.bridges.list(labels or None)]
    if not names:
        fail("no agents match" + (f" {labels}" if labels else ""))
    env = _master_env(opts)

    def one(name: str) -> tuple[str, int, str]:
        argv = [sys.executable, "-m", "dxflow", *command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False,
                              env={**env, "DXFLOW_BRIDGE": name})  # fmt: skip
        return name, done.returncode, (done.stdout + done.stderr).rstrip()

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, names))
    failed = 0
    for name, code, output in results:
        for line in output.splitlines() or [""]:
            click.echo(f"{name} | {line}")
        failed += code != 0
    if failed:
        click.echo(f"error: failed on {failed} of {len(results)} agent(s)", err=True)
        sys.exit(1)


def _master_env(opts: Options) -> dict[str, str]:
    """The environment that names this master to the per-agent commands (the key by
    its path: secrets never go on a command line)."""
    import os

    env = dict(os.environ)
    for name, value in (("DXFLOW_URL", opts.url), ("DXFLOW_KEY", opts.key),
                        ("DXFLOW_HOME", opts.home)):  # fmt: skip
        if value:
            env[name] = value
    if opts.verify is False:
        env["DXFLOW_INSECURE"] = "1"
    elif isinstance(opts.verify, str):
        env["DXFLOW_CA_CERT"] = opts.verify
    return env
