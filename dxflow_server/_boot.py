"""Booting an engine server: a unix socket in the home (always) plus TCP, optionally TLS.

One engine per home: a lock file held for the life of the process makes a second
boot fail with the running pid, and the pid file lets `boot down` find it.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import gc
import json
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dxflow._config import Config, Home, atomic_write
from dxflow._exceptions import ConfigError
from dxflow._limits import MAX_HEAD, Limits
from dxflow._server_runtime import running_pid

if TYPE_CHECKING:
    from ._app import EngineApp

__all__ = ["serve"]

log = logging.getLogger("dxflow.server")


@contextmanager
def _engine_lock(home: Home) -> Iterator[None]:
    handle = open(home.lockfile, "a+")  # noqa: SIM115 - held for the life of the engine
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        pid = running_pid(home)
        who = f"pid {pid}" if pid else "another process"
        raise ConfigError(f"an engine is already running on {home.root} ({who})") from None
    try:
        yield
    finally:
        handle.close()


def _unix_socket(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)  # a stale socket: we hold the engine lock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # born 0600: no window in which others could connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    return sock


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {host}:{port}: the port is in use (another engine or "
                "program); pick another with --port N, or --port 0 for a free one "
                "(DXFLOW_PORT=0 in the environment does the same)"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _plain_file(stream: TextIO) -> bool:
    """Whether `stream` was redirected to a regular file (a daemon's `logs/daemon.out`):
    engine.log, which rotates, holds every record already, and that file never would."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


def _configure_logging(config: Config, limits: Limits, stream: TextIO | None) -> None:
    level = getattr(logging, config.log_level.upper(), logging.INFO)
    # Rotated by size: whatever clients make the engine log, the disk use is bounded
    # by log_max_size x (log_backups + 1).
    handlers: list[logging.Handler] = [
        RotatingFileHandler(
            config.home.log_file, maxBytes=limits.log_max, backupCount=limits.log_backups
        )
    ]
    if stream is not None and not _plain_file(stream):
        handlers.append(logging.StreamHandler(stream))
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("uvicorn.error").setLevel(max(level, logging.WARNING))
    # httpx logs every request at INFO: a master relaying to its agents would write a
    # line per forwarded call (and pay for it); their failures reach the log as ours.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))


def _servers(
    config: Config, limits: Limits, app: EngineApp, tls: tuple[Path, Path] | None
) -> tuple[list[Any], Any]:
    """The unix-socket and TCP servers of `app`, and the app's one lifespan (`_run`)."""
    import uvicorn
    from uvicorn.lifespan.on import LifespanOn

    from ._guard import guarded_protocol

    common: dict[str, Any] = {
        "app": app,
        # slowloris: a deadline per head; and the proxies' requests on their fast path
        "http": guarded_protocol(limits.header_timeout, app.fast_app),
        "timeout_keep_alive": limits.keep_alive,
        "h11_max_incomplete_event_size": MAX_HEAD,  # if h11 is ever chosen instead
        "lifespan": "off",  # each server's: the app's one lifespan is run around both
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        # Terminal output is mostly already-short frames at high rates: deflating each
        # one costs 5x the CPU and a fifth of the throughput (benchmarks/shells.py).
        "ws_per_message_deflate": False,
    }
    secure: dict[str, Any] = (
        {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
    )
    servers = [
        uvicorn.Server(uvicorn.Config(**common)),
        uvicorn.Server(uvicorn.Config(**common, **secure)),
    ]
    for server in servers:
        server.config.load()
        server.lifespan = server.config.lifespan_class(server.config)  # as Server.serve does
    return servers, LifespanOn(servers[0].config)


async def _run(servers: list[Any], lifespan: Any, sockets: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # The core's background work starts before the first request and stops after the last.
    await lifespan.startup()
    if lifespan.should_exit:
        raise ConfigError("the engine's lifespan failed to start (logs/engine.log says why)")
    try:
        for server, sock in zip(servers, sockets, strict=True):
            await server.startup(sockets=[sock])
        await asyncio.gather(*(server.main_loop() for server in servers))
        await asyncio.gather(
            *(
                server.shutdown(sockets=[sock])
                for server, sock in zip(servers, sockets, strict=True)
            )
        )
    finally:
        await lifespan.shutdown()


def serve(config: Config, *, banner: TextIO | None = sys.stderr) -> None:
    """Run the engine server in this process until SIGTERM or SIGINT."""
    home = config.home
    home.ensure()
    with ExitStack() as stack:
        stack.enter_context(_engine_lock(home))
        limits = Limits.of(config)
        _configure_logging(config, limits, banner)
        from dxflow._core import EngineCore

        from ._app import create_app
        from ._tls import tls_files

        tls = tls_files(config) if config.tls else None
        sockets = [_unix_socket(home.socket), _tcp_socket(config.host, config.port)]
        stack.callback(home.socket.unlink, missing_ok=True)
        core = EngineCore(config)
        stack.callback(core.close)
        servers, lifespan = _servers(config, limits, create_app(core), tls)
        if tls:
            # The context uvicorn made from the files: the core's renewal reloads it in
            # place, so the running listener presents a renewed certificate too.
            core.proxies.serve_tls(servers[1].config.ssl)
        scheme = "https" if tls else "http"
        host, port = sockets[1].getsockname()[:2]
        url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"
        # Share links and the URLs of proxies under /p/ name the port bound, not the one
        # asked (0).
        core.shares.base_url = core.proxies.base_url = url
        runtime = {
            "pid": os.getpid(),
            "url": url,
            "socket": str(home.socket),
            "tls": bool(tls),
            "engine_id": core.engine_id,
            "started_at": time.time(),
            "cert": str(tls[0]) if tls else None,
        }
        atomic_write(home.runtime_file, json.dumps(runtime).encode(), mode=0o600)
        atomic_write(home.pidfile, f"{os.getpid()}\n".encode())
        stack.callback(home.runtime_file.unlink, missing_ok=True)
        stack.callback(home.pidfile.unlink, missing_ok=True)
        log.info(
            "engine %s serving %s and unix://%s (pid %d)",
            core.engine_id,
            url,
            home.socket,
            os.getpid(),
        )
        _tune_allocator()
        gc.enable()  # `dxflow boot up` disabled it while the modules loaded
        gc.freeze()  # and what they made lives as long as the server: keep it out of passes
        _loop_runner(_run(servers, lifespan, sockets))
        log.info("engine %s stopped", core.engine_id)


MMAP_THRESHOLD = 8 << 20
TRIM_THRESHOLD = 64 << 20


def _tune_allocator() -> None:
    """Keep the engine's big buffers (a read or a frame of 64 KiB to 1 MiB) on the heap.

    glibc maps every block over its mmap threshold afresh and unmaps it when freed; a
    buffer of the same size that follows one freed is mapped again (the dynamic threshold
    only rises *above* the size freed), so each costs its pages' faults, zeroed by the
    kernel. A bulk transfer allocates several per chunk: measured on a WebSocket sending
    256 KiB messages, 2 s of CPU per GiB before, 0.7 after. The process keeps up to
    TRIM_THRESHOLD of freed heap for reuse. Not glibc (musl, macOS): nothing to do.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    mallopt(m_trim_threshold, TRIM_THRESHOLD)


def _loop_runner(main: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
