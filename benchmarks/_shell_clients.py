"""Clients and probes of the shell benchmark (a helper, not a benchmark).

* `DxflowTerminal` / `JupyterTerminal`: one WebSocket client of a dxflow session
  (`GET /api/shells/{name}/attach`) or of a Jupyter terminal
  (`/terminals/websocket/{name}`), both with the options of dxflow's SDK (`WS_OPTIONS`).
* `jupyter_request(...)`: one call of Jupyter Server's REST API (create, delete terminals).
* `jupyter_missing()`: why the Jupyter peer cannot run, or None.
* `pty_floor(path)`: `cat` into a bare PTY read by a local loop, the floor of throughput.
* `marker_command()`: a command printing a unique end marker.
* `cpu_seconds(processes)`: the user + system CPU seconds of each process so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import struct
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "DEFLATE",
    "MB",
    "MIB",
    "SHELL",
    "DxflowTerminal",
    "JupyterTerminal",
    "Terminal",
    "cpu_seconds",
    "jupyter_missing",
    "jupyter_request",
    "marker_command",
    "pty_floor",
]

MIB = 1 << 20
MB = 1e6

SHELL = "/bin/sh"
OFFSET = struct.Struct(">Q")
# As dxflow's SDK connects (dxflow/_transports/_ws.py); compression is left at websockets'
# default (permessage-deflate offered), as a browser does.
WS_OPTIONS: dict[str, Any] = {"max_size": 16 << 20, "open_timeout": 30, "ping_interval": 20}
DEFLATE = "deflate"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def marker_command() -> tuple[str, str]:
    """A command printing a unique marker that its own echo does not contain."""
    tag = secrets.token_hex(6)
    return f"printf '%s_%s\\n' DXBENCH {tag}", f"DXBENCH_{tag}"


def pty_floor(path: Path) -> tuple[float, int]:
    """`cat path` into a fresh PTY read by a bare Python loop: (seconds, bytes)."""
    master, slave = os.openpty()
    count = 0
    try:
        start = time.perf_counter()
        with subprocess.Popen(
            ["cat", str(path)], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
        ) as cat:
            os.close(slave)
            slave = -1
            while True:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the writer is gone and everything is read
                    break
                if not chunk:
                    break
                count += len(chunk)
            seconds = time.perf_counter() - start
            cat.wait(timeout=30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return seconds, count


def cpu_seconds(processes: Sequence[psutil.Process]) -> list[float]:
    values = []
    for process in processes:
        try:
            times = process.cpu_times()
            values.append(times.user + times.system)
        except psutil.Error:
            values.append(float("nan"))
    return values


def jupyter_missing() -> str | None:
    import importlib.util

    missing = [
        m
        for m in ("jupyter_server", "jupyter_server_terminals", "terminado")
        if importlib.util.find_spec(m) is None
    ]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not installed (`.venv/bin/pip install jupyter_server "
        "jupyter_server_terminals terminado`): the Jupyter peer is skipped"
    )


def jupyter_request(base: str, token: str, method: str, path: str) -> Any:
    body = b"{}" if method == "POST" else None
    request = urllib.request.Request(  # noqa: S310 - loopback
        base + path,
        data=body,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with NO_PROXY.open(request, timeout=30) as answer:
        data = answer.read()
    return json.loads(data) if data else None


# -- the two clients -----------------------------------------------------------------------


class Terminal:
    """One WebSocket client of a terminal: input as text, output as chunks of bytes/str."""

    label = "?"
    encode: Callable[[str], Any] = staticmethod(lambda text: text)

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.missed = 0

    @property
    def extensions(self) -> str:
        """The negotiated WebSocket extensions, shortly: `deflate` or `none`."""
        header = str(self.ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        return "deflate" if "permessage-deflate" in header else header or "none"

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def output(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)

    async def until(self, needle: str, seconds: float) -> int:
        """Read output until `needle` appears; the number of bytes (characters) read."""
        token = self.encode(needle)
        keep = len(token) - 1
        tail = token[:0]
        count = 0
        async with asyncio.timeout(seconds):
            while True:
                chunk = await self.output()
                count += len(chunk)
                if token in chunk or (keep and token in tail + chunk[:keep]):
                    return count
                if keep:
                    tail = chunk[-keep:] if len(chunk) >= keep else (tail + chunk)[-keep:]

    async def drain(self, quiet: float = 0.1, limit: float = 10.0) -> None:
        """Read until nothing comes for `quiet` seconds (at most `limit` seconds)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.output(), quiet)  # websockets' recv: cancel-safe
            except TimeoutError:
                return

    async def ready(self) -> None:
        """Wait for the shell to answer, then for its prompt to settle."""
        command, marker = marker_command()
        await self.send(command + "\n")
        await self.until(marker, 30)
        await self.drain()


class DxflowTerminal(Terminal):
    """`GET /api/shells/{name}/attach`: binary frames = 8-byte offset + bytes, JSON control."""

    label = "dxflow"
    encode = staticmethod(str.encode)

    def __init__(self, ws: Any, hello: dict[str, Any]) -> None:
        super().__init__(ws)
        self.hello = hello
        self.end = int(hello["end"])

    @classmethod
    async def open(
        cls,
        base: str,
        token: str,
        name: str,
        offset: int | None = None,
        compression: str | None = DEFLATE,
    ) -> DxflowTerminal:
        from websockets.asyncio.client import connect

        query = "" if offset is None else f"?offset={offset}"
        ws = await connect(
            f"{base}/api/shells/{name}/attach{query}",
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=compression,
            **WS_OPTIONS,
        )
        hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if hello.get("type") != "hello":
            await ws.close()
            raise RuntimeError(f"dxflow attach to {name} answered {hello}")
        return cls(ws, hello)

    async def send(self, text: str) -> None:
        await self.ws.send(text.encode())

    async def output(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                (at,) = OFFSET.unpack_from(message)
                data = message[OFFSET.size :]
                self.end = at + len(data)
                return data
            control = json.loads(message)
            kind = control.get("type")
            if kind == "missed":
                self.missed += int(control["to"]) - int(control["from"])
            elif kind in ("exit", "error"):
                raise RuntimeError(f"dxflow session: {control}")


class JupyterTerminal(Terminal):
    """`/terminals/websocket/{name}`: JSON arrays `["stdin", ...]` / `["stdout", ...]`."""

    label = "jupyter"

    @classmethod
    async def open(cls, base: str, token: str, name: str) -> JupyterTerminal:
        from websockets.asyncio.client import connect

        ws = await connect(f"{base}/terminals/websocket/{name}?token={token}", **WS_OPTIONS)
        return cls(ws)

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps(["stdin", text]))

    async def output(self) -> str:
        while True:
            message = json.loads(await self.ws.recv())
            if message[0] == "stdout":
                return str(message[1])
            if message[0] == "disconnect":
                raise RuntimeError("the Jupyter terminal went away")
