"""One connection to a session's holder, and the few conversations the engine has on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ..._exceptions import Conflict, EngineUnavailable
from ..._models import ShellOutput
from . import _wire as wire

__all__ = ["HolderLink"]

_CONTROL = {wire.MISSED: "missed", wire.EXIT: "exit", wire.ERROR: "error", wire.PONG: "pong"}


T = TypeVar("T")


class HolderLink:
    """A holder connection after its `A`/`I` handshake: `hello` is the session's state."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: dict[str, Any],
        mode: str = "rw",
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.hello = hello
        self.mode = mode

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, socket: Path, offset: int | None, mode: str = "rw", quiet: bool = False
    ) -> AsyncIterator[HolderLink]:
        try:
            reader, writer = await wire.open_holder(socket)
        except OSError as exc:
            raise EngineUnavailable(f"the session's holder does not answer: {exc}") from None
        try:
            start = "end" if quiet else offset  # "end": no replay of the scrollback
            writer.write(wire.json_frame(wire.ATTACH, {"offset": start, "mode": mode}))
            kind, payload = await wire.read_frame(reader)
            if kind != wire.INFO:
                raise EngineUnavailable(f"the session's holder answered {kind!r} to attach")
            yield cls(reader, writer, json.loads(payload), mode)
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    # -- the channel face: what a WebSocket (or an in-process caller) exchanges ---------
    #
    # Out: `bytes` are terminal output (an 8-byte big-endian offset, then the bytes);
    # dicts are control messages (hello, missed, exit, error, pong). In: `bytes` are
    # input; dicts ask for a resize, a ping or a signal.

    async def messages(self) -> AsyncIterator[bytes | dict[str, Any]]:
        yield {"type": "hello", "mode": self.mode, **self.hello}
        while True:
            try:
                kind, payload = await self.recv()
            except EOFError:
                return
            if kind == wire.OUTPUT:
                yield payload
            elif kind in _CONTROL:
                yield {"type": _CONTROL[kind], **_details(payload)}

    async def deliver(self, message: bytes | dict[str, Any]) -> None:
        if isinstance(message, bytes):
            await self.send(wire.INPUT, message)
            return
        kind = message.get("type")
        if kind == "ping":
            await self.send(wire.PING, b"")
        elif self.mode != "rw":
            await self._refuse(f"read-only: {kind} rejected")
        elif kind == "resize":
            await self.send_json(wire.RESIZE, {k: message.get(k) for k in ("rows", "cols")})
        elif kind == "kill":
            await self.send_json(wire.KILL, {"signal": message.get("signal", 15)})
        else:
            await self._refuse(f"unknown message type {kind!r} (resize, ping, kill)")

    async def _refuse(self, why: str) -> None:
        # Through the holder and back as an `error` message: the refusal then reaches
        # the client in order, whatever carries the channel (a WebSocket, or nothing).
        await self.send_json(wire.PING, {"type": "error", "error": why})

    async def send(self, kind: bytes, payload: bytes) -> None:
        self.writer.write(wire.frame(kind, payload))
        await self.writer.drain()

    async def send_json(self, kind: bytes, value: object) -> None:
        await self.send(kind, json.dumps(value).encode())

    async def recv(self) -> tuple[bytes, bytes]:
        return await wire.read_frame(self.reader)

    async def ping(self) -> None:
        """Round trip: every frame sent before has been handled when this returns."""
        token = os.urandom(8)
        await self.send(wire.PING, token)
        while True:
            kind, payload = await self.recv()
            if kind == wire.ERROR:
                raise Conflict(json.loads(payload).get("error", "the session refused"))
            if kind == wire.PONG and payload == token:
                return

    async def require_running(self, name: str) -> None:
        if self.hello.get("state") != "running":
            code = self.hello.get("exit_code")
            raise Conflict(f"shell {name!r} has exited (exit code {code}); read what it printed "
                           "with its output/history, or create it again (replace=True)",
                           name=name)  # fmt: skip

    async def wait_closed(self) -> None:
        with contextlib.suppress(EOFError):
            while True:
                await self.recv()

    async def collect(self, offset: int | None, patience: float, limit: int) -> ShellOutput:
        """The output from `offset` that the holder has, waiting up to `patience` s for some."""
        end = int(self.hello["end"])
        first = max(offset if offset is not None else 0, int(self.hello["start"]))
        missed = max(first - offset, 0) if offset is not None else 0
        data = bytearray()
        exited = self.hello.get("state") != "running"
        wait = patience if first >= end and not exited else None
        with anyio.move_on_after(wait if wait is not None else 30):
            while len(data) < limit:
                if first + len(data) >= end and wait is None:
                    break
                kind, payload = await self.recv()
                if kind == wire.OUTPUT:
                    at, chunk = wire.output(payload)
                    data += chunk[max(first + len(data) - at, 0) :]
                    end = max(end, at + len(chunk))
                    wait = None  # something came: return what is there now
                elif kind == wire.MISSED:
                    gap = json.loads(payload)
                    missed += gap["to"] - max(first, gap["from"])
                    first = gap["to"]
                elif kind == wire.EXIT:
                    exited = True
                    break
        state = self.hello if not exited else {**self.hello, "state": "exited"}
        return ShellOutput(
            offset=first, data=bytes(data[:limit]), end=first + len(data[:limit]),
            missed=missed, state=state["state"], exit_code=state.get("exit_code"),
        )  # fmt: skip

    async def run(self, request: dict[str, str]) -> tuple[int, bytes] | None:
        """Hand a run to the holder (`C`); its exit code and output, or None when the
        session ended first."""
        await self.send_json(wire.RUN, request)
        first, seen = int(self.hello["end"]), bytearray()  # attached at the end: live output
        while True:
            kind, payload = await self.recv()
            if kind == wire.OUTPUT:
                at, chunk = wire.output(payload)
                if at != first + len(seen):  # fell out of the scrollback meanwhile
                    first, seen = at, bytearray()
                seen += chunk
            elif kind == wire.DONE:
                done = json.loads(payload)
                body = seen[max(done["start"] - first, 0) : max(done["end"] - first, 0)]
                return int(done["exit_code"]), bytes(body)
            elif kind == wire.ERROR:
                raise Conflict(json.loads(payload).get("error", "the session refused"))
            elif kind == wire.EXIT:
                return None

    async def scan(self, check: Callable[[bytes], T | None]) -> AsyncIterator[T]:
        """Output from now on, until `check(everything so far)` finds what it looks for."""
        seen = bytearray()
        while True:
            kind, payload = await self.recv()
            if kind == wire.OUTPUT:
                seen += wire.output(payload)[1]
                found = check(bytes(seen))
                if found is not None:
                    yield found
                    return
            elif kind == wire.EXIT:
                return


def _details(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload) if payload else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
