"""The engine's side of the PTY holder: start a holder, connect to it, speak its frames.

The framing lives in `_holder_wire.py` (stdlib only, so the holder runs standalone with
``python -I -S``); this module re-exports it and adds the asyncio client helpers and the
blocking start-up helpers. See `_holder.py` for the spec and the state file, and
`_holder_wire.py` for the frame table.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from . import _holder
from ._holder_wire import (
    ATTACH,
    DONE,
    ERROR,
    EXIT,
    HEADER,
    INFO,
    INPUT,
    KILL,
    MAX_FRAME,
    MISSED,
    OUTPUT,
    PING,
    PONG,
    QUIT,
    RESIZE,
    RUN,
    frame,
    json_frame,
    output,
    output_frame,
)

__all__ = [
    "ATTACH",
    "DONE",
    "ERROR",
    "EXIT",
    "HOLDER_PATH",
    "INFO",
    "INPUT",
    "KILL",
    "MAX_FRAME",
    "MISSED",
    "OUTPUT",
    "PING",
    "PONG",
    "QUIT",
    "RESIZE",
    "RUN",
    "HolderProcess",
    "connect",
    "frame",
    "json_frame",
    "open_holder",
    "output",
    "output_frame",
    "read_frame",
    "spawn",
    "wait_ready",
]

HOLDER_PATH = Path(_holder.__file__).resolve()
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes including the NUL
_LOG_TAIL = 2000


class HolderProcess(subprocess.Popen[bytes]):
    """The holder's process as started by `spawn` (remembers its log for error messages)."""

    log_path: Path | None = None


async def open_holder(
    socket_path: str | os.PathLike[str],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a holder's unix socket (paths too long for sockaddr_un work too)."""
    path = os.fspath(socket_path)
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return await asyncio.open_unix_connection(path)
    return await asyncio.open_unix_connection(sock=connect(path))


def connect(socket_path: str | os.PathLike[str]) -> socket.socket:
    """A blocking connection to a holder's socket (paths too long for sockaddr_un work too).

    A long path is reached through /proc/self/fd/N/NAME, N being an O_PATH handle on the
    socket's folder.
    """
    path = os.fspath(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            sock.connect(path)
            return sock
        folder = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{folder}/{os.path.basename(path)}")
        finally:
            os.close(folder)
    except BaseException:
        sock.close()
        raise
    return sock


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next frame as (type, payload); raises EOFError when the holder hung up."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as error:
        raise EOFError("the holder closed the connection") from error
    kind, size = HEADER.unpack(header)
    try:
        payload = await reader.readexactly(size) if size else b""
    except asyncio.IncompleteReadError as error:
        raise EOFError(f"the holder closed the connection inside a {kind!r} frame") from error
    return kind, payload


def spawn(
    python: str,
    spec: dict[str, Any],
    spec_path: Path,
    log_path: Path,
    pass_fds: tuple[int, ...] = (),
) -> HolderProcess:
    """Write the spec file (0600) and start a holder in a session of its own.

    The holder reads and deletes the spec. Its stdout and stderr are appended to
    `log_path`. The caller owns the returned process: `wait` for it after ``Q`` (or it
    stays a zombie while the engine lives); if the engine dies first, init adopts it.
    """
    _write_private(spec_path, json.dumps(spec).encode())
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        process = HolderProcess(
            [python, "-I", "-S", str(HOLDER_PATH), str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            close_fds=True,
            pass_fds=pass_fds,
            start_new_session=True,
        )
    finally:
        os.close(log_fd)
    process.log_path = log_path
    return process


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the file may have existed with looser permissions
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def wait_ready(
    state_path: Path, proc: subprocess.Popen[bytes], timeout: float = 5.0
) -> dict[str, Any]:
    """Wait for the holder's state file and return it (its state may be ``"failed"``).

    Raises RuntimeError, with the tail of the holder's log, when the holder exits first
    or is not ready within `timeout` seconds (it is then killed).
    """
    deadline = time.monotonic() + timeout
    while True:
        state = _read_state(state_path)
        if state is not None and state.get("holder_pid") == proc.pid:
            return state
        code = proc.poll()
        if code is not None:
            raise RuntimeError(
                f"the shell holder exited with code {code} before it was ready: {_tail(proc)}"
            )
        if time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the shell holder was not ready after {timeout:g} s: {_tail(proc)}")
        time.sleep(0.005)


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _tail(proc: subprocess.Popen[bytes]) -> str:
    log_path = getattr(proc, "log_path", None)
    if log_path is None:
        return "(no log)"
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL))
            text = log.read().decode(errors="replace").strip()
    except OSError as error:
        return f"(log unreadable: {error})"
    return text or "(log is empty)"
