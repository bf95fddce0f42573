"""`dxflow proxy ...`: expose services of the engine's host over HTTP, WebSocket and TCP.

Bad input is refused with the flag to fix: what the command line can check is checked
here (durations, CIDRs, which flags go together: exit 2), the rest by the engine (exit
1), whose field names are translated back into this command's flags (`_flag_message`).
"""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from .._exceptions import ApiError, DxflowError
from ._common import Options, engine_command, fail
from ._complete import proxy_names
from ._output import emit_json, is_terminal

__all__ = ["proxy"]

F = TypeVar("F", bound=Callable[..., Any])

_BALANCE = click.Choice(["round_robin", "least_conn", "ip_hash"])
_AUTH = click.Choice(["token", "link", "none"])
_RATE_KEY = click.Choice(["client", "identity"])

# A request field (the first part of an error's `field`) -> the flag that sets it.
_FLAGS = {
    "name": "NAME",
    "targets": "TARGET",
    "protocol": "--tcp",
    "verify": "--no-verify",
    "health.path": "--health-path",
    "health.interval": "--health-interval",
    "health.timeout": "--health-timeout",
    "health.healthy": "--health-healthy",
    "health.unhealthy": "--health-unhealthy",
    "health": "--health-*",
    "id": "ID",
}


@click.group()
def proxy() -> None:
    """Proxies: reach services of the engine's host (or a workflow's) over HTTP or TCP.

    An HTTP proxy is served under <engine url>/p/NAME/ (or on a port of its own with
    --port); clients bring a dxflow token (Authorization: Bearer, see `dxflow token`),
    an access link (--auth link, `dxflow proxy link`), or nothing (--auth none).
    """


# -- checks the command line makes itself ------------------------------------------------


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from .._durations import parse_duration

    try:
        seconds = None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds is not None and seconds <= 0:
        raise click.BadParameter("must be more than 0")
    return seconds


def _cidrs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str] | None:
    """CIDRs or addresses; `""` alone empties the list (update)."""
    if value == ("",):
        return []
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise click.BadParameter(
                f"{item!r} is not an address or CIDR (e.g. 10.0.0.0/8, 192.168.1.7, fd00::/8)"
            ) from None
    return list(value) or None


def _flag(field: str) -> str:
    """The flag that sets a request field: `rate_key` -> `--rate-key`."""
    for key in (field, field.split(".")[0]):
        if key in _FLAGS:
            return _FLAGS[key]
    root = field.split(".")[0]
    return "--" + root.replace("_", "-") if root and root != "(body)" else "(request)"


def _flag_message(exc: ApiError) -> str:
    """The engine's refusal with each field named by its flag (`port: ...` -> `--port: ...`)."""
    errors = exc.details.get("errors")
    if isinstance(errors, list) and errors and all(isinstance(e, dict) for e in errors):
        return "; ".join(f"{_flag(str(e.get('field', '')))}: {e.get('message')}" for e in errors)
    field = exc.details.get("field")
    if isinstance(field, str) and field:
        return f"{_flag(field)}: {exc.message.removeprefix(f'{field}: ')}"
    return exc.message


@contextmanager
def _flags(as_json: bool) -> Iterator[None]:
    """A refusal of one field names the flag that sets it (--json: the engine's envelope)."""
    try:
        yield
    except ApiError as exc:
        message = _flag_message(exc)
        if as_json or message == exc.message:
            raise
        fail(message)


def _target(targets: tuple[str, ...], workflow: str | None, service: str | None,
            service_port: int | None, required: bool) -> Any:  # fmt: skip
    """TARGET... or --workflow/--service/--service-port (all three), not both."""
    given = {"--workflow": workflow, "--service": service, "--service-port": service_port}
    named = [flag for flag, value in given.items() if value is not None]
    if targets and named:
        fail(f"TARGET and {named[0]} exclude each other: give addresses or one workflow "
             "service (--workflow W --service S --service-port P)", 2)  # fmt: skip
    if named and len(named) < 3:
        missing = ", ".join(flag for flag in given if flag not in named)
        fail(f"{named[0]} needs {missing} too (a workflow service target is "
             "--workflow W --service S --service-port P)", 2)  # fmt: skip
    if named:
        return {"workflow": workflow, "service": service, "port": service_port}
    if targets:
        return list(targets)
    if required:
        fail("give a TARGET (host:port, http://host:port, unix:/path.sock; several make a "
             "pool) or --workflow W --service S --service-port P", 2)  # fmt: skip
    return None


_HEALTH = ("path", "interval", "timeout", "healthy", "unhealthy")


def _health(options: dict[str, Any]) -> dict[str, Any] | None:
    """The --health-* flags given (None: none was); a path of "" is none (TCP connect)."""
    given = {key: options.pop(f"health_{key}") for key in _HEALTH}
    given = {key: value for key, value in given.items() if value is not None}
    if not given:
        return None
    if given.get("path") == "":
        given["path"] = None
    return given


def _spec(options: dict[str, Any]) -> dict[str, Any]:
    """The SDK's keyword arguments from the shared flags (`health`: only the --health-*
    flags given; the command fills in the rest)."""
    spec = {key: options.pop(key) for key in (
        "balance", "allow", "deny", "auth", "permission", "rate", "burst", "rate_key",
        "max_connections", "timeout", "connect_timeout", "retries")}  # fmt: skip
    spec["health"] = _health(options)
    spec["verify"] = False if options.pop("no_verify") else None
    return spec


def _spec_options(function: F) -> F:
    """The flags create and update share."""
    decorators = [
        click.argument("targets", metavar="[TARGET]...", nargs=-1),
        click.option(
            "--workflow",
            help="Target a workflow service's containers (with --service and --service-port).",
        ),
        click.option("--service", help="The workflow's service."),
        click.option(
            "--service-port",
            type=click.IntRange(1, 65535),
            help="The port the service listens on in its containers.",
        ),
        click.option(
            "--balance",
            type=_BALANCE,
            help="How requests spread over the targets (default round_robin).",
        ),
        click.option(
            "--health-path",
            help='Check each target with GET PATH (2xx/3xx healthy); without it (or with ""), '
            "a TCP connect.",
        ),
        click.option(
            "--health-interval",
            metavar="SECONDS",
            callback=_seconds,
            help="Seconds between health checks (e.g. 5, 1m; default 5).",
        ),
        click.option(
            "--health-timeout",
            metavar="SECONDS",
            callback=_seconds,
            help="Seconds a health check may take (default 2).",
        ),
        click.option(
            "--health-unhealthy",
            metavar="N",
            type=click.IntRange(1, 100),
            help="Failed checks in a row that take a target out (default 3).",
        ),
        click.option(
            "--health-healthy",
            metavar="N",
            type=click.IntRange(1, 100),
            help="Passed checks in a row that bring it back (default 2).",
        ),
        click.option(
            "--allow",
            metavar="CIDR",
            multiple=True,
            callback=_cidrs,
            help='Only clients from this CIDR (repeat for more; "" empties the list).',
        ),
        click.option(
            "--deny",
            metavar="CIDR",
            multiple=True,
            callback=_cidrs,
            help='Refuse clients from this CIDR (deny wins over allow; "" empties the list).',
        ),
        click.option("--auth", type=_AUTH, help="token (default), link, or none (public)."),
        click.option(
            "--permission",
            metavar="PERMISSION",
            help="The permission --auth token asks of a client (default PROXY).",
        ),
        click.option(
            "--rate", metavar="N/UNIT", help='A rate limit, e.g. 100/min ("" removes it).'
        ),
        click.option(
            "--burst",
            type=click.IntRange(min=1),
            help="Requests above the rate a client may make at once.",
        ),
        click.option(
            "--rate-key",
            type=_RATE_KEY,
            help="Count the rate per client address (default) or per identity.",
        ),
        click.option(
            "--max-connections",
            type=click.IntRange(min=0),
            help="Open connections at most, over all clients (0: no cap).",
        ),
        click.option(
            "--timeout",
            metavar="SECONDS",
            callback=_seconds,
            help="Seconds a target may take to answer before a 504 (default 60).",
        ),
        click.option(
            "--connect-timeout",
            metavar="SECONDS",
            callback=_seconds,
            help="Seconds to connect to a target (default 5).",
        ),
        click.option(
            "--no-verify", is_flag=True, help="Do not check https:// targets' certificates."
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            help="Other targets an idempotent request is tried on (default 1).",
        ),
    ]
    for decorate in reversed(decorators):
        function = decorate(function)
    return function


# -- showing -------------------------------------------------------------------------------


def _show(model: Any, as_json: bool) -> None:
    """The model as --json, else as print() shows it (the same text as in Python)."""
    if as_json:
        return emit_json(model)
    click.echo(str(model))


def _created_line(info: Any) -> str:
    where = info.url or "(no URL yet: start the engine's server with `dxflow boot up`)"
    target = f"{info.workflow}/{info.service}:{info.service_port}" if info.workflow else \
        ", ".join(info.targets)  # fmt: skip
    access = {
        "token": f"a token with {info.permission}",
        "link": f"an access link (`dxflow proxy link {info.name}`)",
        "none": "nothing (public)",
    }[info.auth]
    return f"proxy {info.name}: {where} -> {target} (clients need {access})"


# -- commands ------------------------------------------------------------------------------


@proxy.command()
@click.argument("name")
@_spec_options
@click.option("--tcp", is_flag=True, help="Forward raw TCP (needs --port).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="A port of its own (0 picks one); default: the engine's /p/NAME/.")  # fmt: skip
@click.option("--host", help="The address --port listens on (default 127.0.0.1).")
@click.option("--tls", is_flag=True, help="Terminate TLS on --port (the engine's certificate "
              "unless --tls-cert).")  # fmt: skip
@click.option("--tls-cert", metavar="OBJ", help="An object store path of a PEM certificate.")
@click.option("--tls-key", metavar="OBJ", help="An object store path of its PEM key.")
@click.option("--exist-ok", is_flag=True, help="When NAME exists: update it to this spec.")
@engine_command
def create(opts: Options, name: str, targets: tuple[str, ...], workflow: str | None,
           service: str | None, service_port: int | None, tcp: bool, port: int | None,
           host: str | None, tls: bool, tls_cert: str | None, tls_key: str | None,
           exist_ok: bool, **options: Any) -> None:  # fmt: skip
    """Expose TARGET... (or a workflow service) as proxy NAME; it persists across restarts.

    \b
    dxflow proxy create web 127.0.0.1:8888
    dxflow proxy create db 127.0.0.1:6379 --tcp --port 0
    dxflow proxy create app --workflow etl --service web --service-port 80
    """
    from .._exceptions import Conflict

    target = _target(targets, workflow, service, service_port, required=True)
    if tcp and port is None:
        fail("--tcp needs --port (a TCP proxy has a port of its own; 0 picks one)", 2)
    if (tls or tls_cert or tls_key) and port is None:
        fail("--tls needs --port (TLS on the engine's listener is the engine's own)", 2)
    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together", 2)
    spec = _spec(options)
    with opts.engine() as engine, _flags(opts.json):
        try:
            made = engine.proxies.create(name, target, protocol="tcp" if tcp else "http",
                                         port=port, host=host, tls=tls or bool(tls_cert),
                                         tls_cert=tls_cert, tls_key=tls_key, exist_ok=exist_ok,
                                         **spec)  # fmt: skip
        except Conflict as exc:
            if opts.json or exc.details.get("field") != "name":
                raise
            if exist_ok:  # names are one namespace: another key's proxy has it
                fail(f"NAME: a proxy named {name!r} exists and is not yours: pick another name")
            fail(f"proxy {name!r} exists already: --exist-ok updates it to this spec, or "
                 f"`dxflow proxy update {name} ...` changes parts of it")  # fmt: skip
    if opts.json:
        return emit_json(made.info)
    click.echo(_created_line(made.info))
    if made.info.auth == "token" and made.info.protocol == "http" and made.info.url:
        click.echo(f'try: curl -H "Authorization: Bearer $(dxflow token)" {made.info.url}')


@proxy.command("list")
@engine_command
def list_proxies(opts: Options) -> None:
    """Your proxies (MASTER: every one): protocol, URL, targets, access, state."""
    from .._models import ProxyList

    with opts.engine() as engine:
        found = [p.info for p in engine.proxies.list()]
    if opts.json:
        return emit_json(found)
    if not found:
        click.echo("no proxies (`dxflow proxy create NAME TARGET` makes one)")
        return
    click.echo(str(ProxyList(proxies=found)).split("\n", 1)[1])  # the table without its title


@proxy.command()
@click.argument("name", shell_complete=proxy_names)
@engine_command
def show(opts: Options, name: str) -> None:
    """One proxy: its URL, targets and their health, access rules and limits."""
    with opts.engine() as engine:
        _show(engine.proxies.get(name).info, opts.json)


@proxy.command()
@click.argument("name", shell_complete=proxy_names)
@_spec_options
@engine_command
def update(opts: Options, name: str, targets: tuple[str, ...], workflow: str | None,
           service: str | None, service_port: int | None, **options: Any) -> None:  # fmt: skip
    """Change what is given of proxy NAME (TARGET... replaces the targets).

    Open connections finish on the old spec. Its name, protocol, port, host and TLS stay:
    remove and create it to change those.
    """
    target = _target(targets, workflow, service, service_port, required=False)
    spec = _spec(options)
    if target is None and not any(v is not None for v in spec.values()):
        fail("nothing to update: give TARGET... or an option (see `dxflow proxy update "
             "--help`)", 2)  # fmt: skip
    with opts.engine() as engine, _flags(opts.json):
        handle = engine.proxies.get(name)
        if spec["health"] is not None and handle.info.health is not None:
            # The engine replaces a proxy's health check whole: the flags not given keep
            # their values (`--health-timeout 3` alone must not drop the check's path).
            spec["health"] = handle.info.health.model_dump() | spec["health"]
        info = handle.update(target, **spec)
    _show(info, opts.json)


@proxy.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True, shell_complete=proxy_names)
@engine_command
def remove(opts: Options, names: tuple[str, ...]) -> None:
    """Remove proxies: their listeners close and their open connections end.

    With several, the others go on when one fails (exit 1).
    """
    from ._common import cli_message

    removed: list[Any] = []
    with opts.engine() as engine:
        for name in names:
            try:
                handle = engine.proxies.get(name)
                handle.remove()
            except DxflowError as exc:
                click.echo(f"error: {cli_message(exc)}", err=True)
                continue
            removed.append(handle.info)
            if not opts.json:
                click.echo(f"removed {name}")
    if opts.json:
        emit_json(removed)
    if len(removed) < len(names):
        sys.exit(1)


@proxy.command()
@click.argument("name", shell_complete=proxy_names)
@click.option("--watch", is_flag=True, help="Keep refreshing (in place on a terminal).")
@click.option("--interval", default="2", metavar="SECONDS", show_default=True, callback=_seconds,
              help="Seconds between samples with --watch.")  # fmt: skip
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many samples.")
@engine_command
def stats(opts: Options, name: str, watch: bool, interval: float, count: int | None) -> None:
    """Requests, refusals, answers, bytes, connections and latency, per target too."""
    with opts.engine() as engine:
        handle = engine.proxies.get(name)
        if not watch:
            return _show(handle.stats(), opts.json)
        try:
            _watch(_samples(handle, interval, count), opts.json)
        except KeyboardInterrupt:  # Ctrl-C ends a watch: no traceback, the shell's code
            sys.stderr.write("\n")
            sys.exit(130)


def _samples(handle: Any, interval: float, count: int | None) -> Iterator[Any]:
    number = 0
    while True:
        yield handle.stats()
        number += 1
        if count is not None and number >= count:
            return
        time.sleep(interval)


def _watch(samples: Iterator[Any], as_json: bool) -> None:
    """Redraw in place on a terminal (clear, then draw); piped, one after another
    (--json: one JSON document per line)."""
    live = not as_json and is_terminal()
    for number, sample in enumerate(samples):
        if as_json:
            click.echo(sample.model_dump_json())
            continue
        if live:
            click.echo("\x1b[H\x1b[2J", nl=False, color=True)  # live: a terminal
        elif number:
            click.echo()
        click.echo(str(sample))


@proxy.command()
@click.argument("name", shell_complete=proxy_names)
@click.option("--expires", default="1h", metavar="DURATION", show_default=True, callback=_seconds,
              help="How long the link works (e.g. 30m, 1h, 7d).")  # fmt: skip
@engine_command
def link(opts: Options, name: str, expires: float) -> None:
    """An access link to proxy NAME (for --auth link): opening its URL lets a browser in."""
    with opts.engine() as engine, _flags(opts.json):
        made = engine.proxies.get(name).link(expires)
    _show(made, opts.json)


@proxy.command()
@click.argument("name", shell_complete=proxy_names)
@engine_command
def links(opts: Options, name: str) -> None:
    """Proxy NAME's access links."""
    from .._models import ProxyLinkList

    with opts.engine() as engine:
        found = engine.proxies.get(name).links()
    if opts.json:
        return emit_json(found)
    if not found:
        click.echo(f"no access links (`dxflow proxy link {name}` makes one)")
        return
    click.echo(str(ProxyLinkList(links=found)).split("\n", 1)[1])


@proxy.command()
@click.argument("name", shell_complete=proxy_names)
@click.argument("link_id", metavar="ID")
@engine_command
def unlink(opts: Options, name: str, link_id: str) -> None:
    """Revoke access link ID of proxy NAME: requests carrying it are refused at once."""
    with opts.engine() as engine, _flags(opts.json):
        revoked = engine.proxies.get(name).unlink(link_id)
    if opts.json:
        return emit_json(revoked)
    click.echo(f"revoked link {revoked.id} of proxy {name}")
