"""`dxflow boot up|down|status`: run, stop and inspect the engine server of a home."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from .._config import Config, Home, load_config
from .._exceptions import DxflowError
from .._server_runtime import read_runtime, running_pid
from ._common import fail, handle_errors
from ._output import emit_json, key_values

__all__ = ["boot"]

_READY_TIMEOUT = 30.0


@click.group()
def boot() -> None:
    """Run the engine server of this machine."""


HEALTH_PATH = "/api/health"
"""engine.health's path (a unit test checks it against the operation table, which this
module does not import: the table loads every model, and the polling parent would
compete for the CPU with the engine it waits for)."""


DEFAULT_ALLOW = "WORKFLOW,OBJECT,SHELL,PLATFORM,PROXY"
_NAME = re.compile(r"[^a-z0-9-]+")


def _join(config: Config, join: str, key: str | None, name: str | None, allow: str,
          verify: bool | str) -> None:  # fmt: skip
    """Join the master before serving: a refusal stops the boot, with its reason."""
    import socket

    from .._core._bridges._enroll import attach
    from .._core._bridges._enroll import join as join_master
    from .._permissions import Permission

    agent = name or _NAME.sub("-", socket.gethostname().lower()).strip("-")[:63] or "agent"
    try:
        Permission.parse(allow)
    except ValueError as exc:
        fail(f"--allow: {exc}", 2)
    if join.startswith("dxflow-join:"):
        if key is not None:
            fail("--key goes with --join URL; a token carries its own credential", 2)
        settings = join_master(config.home, join, agent, allow, verify)
    elif join.startswith(("http://", "https://")):
        if key is None:
            fail("--join URL needs --key FILE (a key the master registered with BRIDGE), "
                 "or give a token from `dxflow bridge token` instead", 2)  # fmt: skip
        settings = attach(config.home, join, key, agent, allow, verify)
    else:
        fail("--join takes a token (dxflow-join:...) from `dxflow bridge token` on the "
             "master, or the master's URL (https://HOST:PORT) with --key", 2)  # fmt: skip
    click.echo(f"joined {settings.url} as {settings.name!r} (allows {','.join(settings.allow)})",
               err=True)  # fmt: skip


def _healthy(home: Home) -> bool:
    import socket

    if not home.socket.exists():
        return False
    probe = f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(home.socket))
            sock.sendall(probe.encode())
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _this_boot(out: Path, offset: int) -> str:
    """What this boot wrote to `daemon.out` (from `offset`), not earlier boots' lines."""
    with open(out, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").strip().splitlines()
    lines = [line.removeprefix("error: ") for line in lines if line.strip()][-8:]
    if len(lines) == 1:
        return f"the engine did not start: {lines[0]}"
    return "the engine did not start:\n  " + "\n  ".join(lines or ["(it printed nothing)"])


def _daemonize(config: Config) -> None:
    """Fork the engine off this process and return once it answers on its socket.

    A fork, not a new interpreter: the child already has Python, click and the
    configuration loaded, which is a tenth of a boot saved.
    """
    home = config.home
    home.ensure()
    out = home.logs_dir / "daemon.out"
    with open(out, "ab") as log:
        offset = log.tell()
        pid = os.fork()
        if pid == 0:
            _serve_detached(config, log.fileno())
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            fail(_this_boot(out, offset))
        if running_pid(home) == pid and _healthy(home):
            click.echo(f"engine started (pid {pid}); logs in {home.log_file}")
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGTERM)
    fail(f"the engine did not answer within {_READY_TIMEOUT:.0f} s; see {out}")


def _serve_detached(config: Config, log_fd: int) -> NoReturn:
    """The forked child: a session of its own, output to daemon.out, then the server.
    It never returns into the command that forked it."""
    code = 1
    try:
        os.setsid()
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        _serve(config)
        code = 0
    except DxflowError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(config: Config) -> None:
    import gc

    # Starting creates ~10^5 objects and no garbage: no collection passes while the
    # server's modules load (serve() turns collection back on once they have).
    gc.disable()
    from dxflow_server._boot import serve

    serve(config)


@boot.command()
@click.option("--home", envvar="DXFLOW_HOME", help="Engine home (default ~/.dxflow).")
@click.option("--profile", envvar="DXFLOW_PROFILE", help="Configuration profile.")
@click.option("--host", help="TCP address to listen on [127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="TCP port [7419]; 0 picks a free one.")
@click.option("--tls/--no-tls", default=None, help="Serve https (self-signed unless --cert).")
@click.option("--cert", type=click.Path(dir_okay=False), help="TLS certificate (PEM).")
@click.option("--cert-key", type=click.Path(dir_okay=False), help="TLS private key (PEM).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--daemon", is_flag=True, help="Detach; return once the engine answers.")
@click.option("--join", metavar="TOKEN|URL", envvar="DXFLOW_JOIN",
              help="Join a master as its agent: a token from `dxflow bridge token` on the "
              "master, or the master's URL with --key. Prefer --join-file or DXFLOW_JOIN: "
              "a command line is readable by every user of the host.")  # fmt: skip
@click.option(
    "--join-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Read the join token from this file.",
)
@click.option(
    "--key",
    "join_key",
    type=click.Path(dir_okay=False),
    help="With --join URL: this engine's key on the master (registered with BRIDGE).",
)
@click.option("--name", "join_name", help="This agent's name on the master [host name].")
@click.option(
    "--allow",
    default=DEFAULT_ALLOW,
    show_default=True,
    help="What the master may do here (never MASTER unless listed).",
)
@click.option(
    "--master-ca",
    type=click.Path(exists=True, dir_okay=False),
    help="Trust this CA for the master's https (its <home>/tls/cert.pem).",
)
def up(daemon: bool, join: str | None, join_file: str | None, join_key: str | None,
       join_name: str | None, allow: str, master_ca: str | None,
       **options: Any) -> None:  # fmt: skip
    """Start the engine server: a unix socket in the home, plus TCP.

    
    With --join it is also an agent of a master: it dials out to it (no inbound port
    needed) and re-dials whenever the link breaks; it stays joined across restarts.
    """
    home, profile = options.pop("home"), options.pop("profile")
    if options["cert"] or options["cert_key"]:
        options["tls"] = True
    if join_file is not None and join is not None:
        fail("give --join or --join-file, not both", 2)
    if join_key is not None and join is None and join_file is None:
        fail("--key goes with --join URL (the master's URL)", 2)
    with handle_errors(False):
        config = load_config(home, profile, **options)
        running = running_pid(config.home)
        if running is not None:  # say so before starting anything
            fail(f"an engine is already running on {config.home.root} (pid {running})")
        if join_file is not None:
            join = Path(join_file).read_text().strip()
        if join is not None:
            _join(config, join, join_key, join_name, allow, master_ca or True)
        if daemon:
            return _daemonize(config)
        _serve(config)


@boot.command()
@click.option("--home", envvar="DXFLOW_HOME", help="Engine home (default ~/.dxflow).")
@click.option(
    "--timeout", default=15.0, show_default=True, help="Seconds to wait for a graceful stop."
)
def down(home: str | None, timeout: float) -> None:
    """Stop the engine server gracefully (SIGTERM, then wait)."""
    paths = Home.resolve(home)
    pid = running_pid(paths)
    if pid is None:
        click.echo(f"no engine is running on {paths.root}")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(paths) != pid:
            click.echo(f"engine stopped (pid {pid})")
            return
        time.sleep(0.05)
    fail(f"the engine (pid {pid}) did not stop within {timeout:.0f} s; `kill -9 {pid}` forces it")


@boot.command()
@click.option("--home", envvar="DXFLOW_HOME", help="Engine home (default ~/.dxflow).")
@click.option("--json", "as_json", is_flag=True)
def status(home: str | None, as_json: bool) -> None:
    """Is an engine running on this home, and where does it listen?"""
    paths = Home.resolve(home)
    runtime = read_runtime(paths)
    state = {
        "running": runtime is not None,
        "healthy": runtime is not None and _healthy(paths),
        "home": str(paths.root),
        **(runtime or {}),
    }
    if as_json:
        emit_json(state)
    elif runtime is None:
        click.echo(f"no engine is running on {paths.root}")
    else:
        uptime = time.time() - runtime["started_at"]
        key_values(
            [
                ("state", "running" if state["healthy"] else "not answering"),
                ("pid", runtime["pid"]),
                ("engine", runtime["engine_id"]),
                ("url", runtime["url"]),
                ("socket", runtime["socket"]),
                ("uptime", f"{uptime:.0f} s"),
                ("home", paths.root),
            ]
        )
    if runtime is None:
        sys.exit(3)
