"""Engine commands: ping, info, stats, whoami, token, audit."""

from __future__ import annotations

import time
from typing import Any

import click

from .._durations import parse_duration
from ._common import Options, check_since, engine_command
from ._lean import lean_call
from ._output import emit_json, human_bytes, key_values, table
from ._render import ping_text, whoami_text

__all__ = ["audit", "info", "ping", "stats", "token", "whoami"]


def _lifetime(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return int(parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@engine_command
def ping(opts: Options) -> None:
    """Authenticated round trip to the engine."""
    pong: Any = lean_call(opts, "engine.ping")
    if pong is not None:  # timed again, without the first call's imports and file reads
        started = time.perf_counter()
        pong = lean_call(opts, "engine.ping") or pong
        elapsed = (time.perf_counter() - started) * 1000
    else:
        with opts.engine() as engine:
            started = time.perf_counter()
            pong = engine.ping()
            elapsed = (time.perf_counter() - started) * 1000
    click.echo(ping_text(pong, elapsed, opts.json), nl=False)


@click.command()
@engine_command
def info(opts: Options) -> None:
    """Identity, version, host, CPU, memory, disks, GPUs and Docker."""
    with opts.engine() as engine:
        data = engine.info()
    if opts.json:
        return emit_json(data)
    docker = data.docker
    key_values(
        [
            ("engine", data.engine_id),
            ("name", data.name),
            ("version", data.version),
            ("started", data.started_at),
            ("home", data.home),
            ("os", f"{data.host.os} ({data.host.arch}, kernel {data.host.kernel})"),
            ("python", data.host.python),
            ("cpu", f"{data.cpu.count} x {data.cpu.model or 'unknown'}"),
            (
                "memory",
                f"{human_bytes(data.memory.available)} free of {human_bytes(data.memory.total)}",
            ),
            (
                "docker",
                f"{docker.version} (API {docker.api_version})"
                if docker.available
                else f"unavailable: {docker.error}",
            ),
            ("gpus", ", ".join(f"{g.index}: {g.name}" for g in data.gpus) or "none"),
        ]
    )
    click.echo()
    table(
        [
            (d.mount, d.device, d.fstype, human_bytes(d.total), human_bytes(d.free))
            for d in data.disks
        ],
        ["mount", "device", "fs", "size", "free"],
    )


def _print_stats(data: object, as_json: bool) -> None:
    from .._models import EngineStats

    assert isinstance(data, EngineStats)
    if as_json:
        return emit_json(data)
    cores = " ".join(f"{p:.0f}%" for p in data.cpu.per_core)
    mem = data.memory
    key_values(
        [
            ("time", data.time),
            (
                "cpu",
                f"{data.cpu.percent:.1f}%  per core: {cores}  load: "
                + " ".join(f"{v:.2f}" for v in data.cpu.load_average),
            ),
            (
                "memory",
                f"{human_bytes(mem.used)} used of {human_bytes(mem.total)} ({mem.percent:.0f}%)",
            ),
        ]
    )
    click.echo()
    table(
        [
            (d.mount, human_bytes(d.used), human_bytes(d.total), f"{d.percent:.0f}%")
            for d in data.disks
        ],
        ["mount", "used", "size", "use"],
    )
    click.echo()
    table(
        [
            (
                n.interface,
                human_bytes(n.bytes_recv),
                human_bytes(n.bytes_sent),
                n.errors_in + n.errors_out,
            )
            for n in data.network
        ],
        ["interface", "received", "sent", "errors"],
    )


@click.command()
@click.option("--watch", is_flag=True, help="Keep printing samples.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between samples.")
@click.option("--count", type=int, help="Stop after this many samples.")
@engine_command
def stats(opts: Options, watch: bool, interval: float, count: int | None) -> None:
    """CPU per core, memory, disk per mount, network per interface."""
    with opts.engine() as engine:
        if not watch:
            return _print_stats(engine.stats(), opts.json)
        for sample in engine.watch_stats(interval=interval, count=count):
            _print_stats(sample, opts.json)
            if not opts.json:
                click.echo("-" * 40)


@click.command()
@engine_command
def whoami(opts: Options) -> None:
    """The identity and permissions the engine sees."""
    me: Any = lean_call(opts, "auth.whoami")
    if me is None:
        with opts.engine() as engine:
            me = engine.whoami()
    click.echo(whoami_text(me, opts.json), nl=False)


@click.command()
@click.option(
    "--lifetime",
    default="1h",
    show_default=True,
    callback=_lifetime,
    help="How long the token lives (1m to 24h).",
)
@engine_command
def token(opts: Options, lifetime: int) -> None:
    """Print a bearer token for curl and other HTTP clients."""
    with opts.engine() as engine:
        issued = engine.token(lifetime=lifetime)
    if opts.json:
        return emit_json(issued)
    click.echo(issued.token)


@click.group()
def audit() -> None:
    """The audit log (MASTER only)."""


@audit.command("list")
@click.option(
    "--since", callback=check_since, help="A time (ISO 8601) or how long ago (e.g. 1h, 2d)."
)
@click.option("--identity", help="Only this identity.")
@click.option("--operation", help="Only this operation (e.g. keys.register).")
@click.option("--limit", default=100, show_default=True)
@engine_command
def audit_list(
    opts: Options, since: str | None, identity: str | None, operation: str | None, limit: int
) -> None:
    """Audit records, newest first."""
    with opts.engine() as engine:
        records = engine.audit(since=since, identity=identity, operation=operation, limit=limit)
    if opts.json:
        return emit_json(records)
    table(
        [
            (r.time, r.identity, r.operation, r.target, r.outcome, r.client, r.detail)
            for r in records
        ],
        ["time", "identity", "operation", "target", "outcome", "client", "detail"],
    )
