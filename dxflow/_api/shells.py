"""`engine.shells` and the `Shell` handle, async and blocking; `attach()` channels."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import html
import re
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .. import _operations as ops
from .._display import Listing
from .._exceptions import TimedOut
from .._models import Response, ShellInfo, ShellOutput, ShellResult
from .._operations import Operation
from ._base import Blocking

if TYPE_CHECKING:
    from .._runner import Runner
    from ._protocol import AsyncEngineLike

R = TypeVar("R", bound=Response)

__all__ = ["AsyncChannel", "AsyncShell", "AsyncShells", "Channel", "Shell", "Shells"]

Pattern = str | bytes | re.Pattern[bytes]
_OFFSET = struct.Struct(">Q")
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]|\r")


def _create_params(name: str | None, command: str | None, args: Sequence[str],
                   env: Mapping[str, str] | None, **rest: Any) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "command": command, "args": list(args), "env": dict(env or {}), **rest}


def _bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def _pattern(pattern: Pattern) -> re.Pattern[bytes]:
    """A regular expression over the output's bytes (text is encoded as UTF-8)."""
    if isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(pattern.encode() if isinstance(pattern, str) else pattern)


class AsyncChannel:
    """An attached client: output as it comes, input as you send it.

    `recv()` returns `bytes` (terminal output, with `offset` advanced past them) or a
    control message as a dict: `missed` (bytes that fell out of the scrollback), `exit`
    (with `exit_code`), `error`, `pong`. `hello` is the session as it was on attach.
    """

    def __init__(self, link: Any) -> None:
        self._link = link
        self._messages = link.messages()
        self.hello: dict[str, Any] = {}
        self.offset = 0
        self._next: asyncio.Future[Any] | None = None

    async def _start(self) -> None:
        self.hello = await self._messages.__anext__()
        self.offset = int(self.hello.get("start", 0))

    async def recv(self, timeout: float | None = None) -> bytes | dict[str, Any]:
        """The next output or control message; raises TimedOut after `timeout` seconds.

        A timeout leaves the channel as it was: the message still on its way is the
        next one `recv` returns.
        """
        if self._next is None:
            self._next = asyncio.ensure_future(self._messages.__anext__())
        try:
            message: bytes | dict[str, Any] = await asyncio.wait_for(
                asyncio.shield(self._next), timeout
            )
        except TimeoutError:
            raise TimedOut(f"nothing from the session within {timeout:g} s") from None
        except StopAsyncIteration:
            raise EOFError("the channel is closed") from None
        finally:
            if self._next.done():
                self._next = None
        if isinstance(message, bytes):
            (at,) = _OFFSET.unpack_from(message)
            data = message[_OFFSET.size :]
            self.offset = at + len(data)
            return data
        return message

    async def _close(self) -> None:
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await self._next
        await self._messages.aclose()

    async def send(self, data: str | bytes) -> None:
        await self._link.deliver(_bytes(data))

    async def resize(self, rows: int, cols: int) -> None:
        await self._link.deliver({"type": "resize", "rows": rows, "cols": cols})

    async def ping(self) -> None:
        await self._link.deliver({"type": "ping"})

    def __aiter__(self) -> AsyncIterator[bytes | dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes | dict[str, Any]]:
        while True:
            try:
                yield await self.recv()
            except EOFError:
                return


class _Attached:
    """`async with shell.attach() as channel:` on top of the transport's channel."""

    def __init__(self, opener: Any) -> None:
        self._opener = opener

    async def __aenter__(self) -> AsyncChannel:
        self._channel = AsyncChannel(await self._opener.__aenter__())
        await self._channel._start()
        return self._channel

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._channel._close()
        finally:
            await self._opener.__aexit__(*exc)


class AsyncShell:
    def __init__(self, engine: AsyncEngineLike, info: ShellInfo) -> None:
        self._engine = engine
        self.info = info
        self.offset: int | None = None
        """Where `read` and `expect` go on from (None: the start of the scrollback)."""
        self._unread = b""

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.info.state} pid={self.info.pid}>"

    async def _op(self, op: Operation[Any, R], **params: Any) -> R:
        return await self._engine._call(op, name=self.name, **params)

    async def reload(self) -> ShellInfo:
        self.info = await self._op(ops.shells.GET)
        return self.info

    async def run(self, cmd: str, timeout: float | None = None) -> ShellResult:
        """Type `cmd` at the shell's prompt; its exit code and output once it is done.

        The session is left as if `cmd` had been typed there: its scrollback (what
        `connect`, `screen()` and a notebook show) and bash's history hold the command
        and its output, nothing of what carried it. A second `run` waits for the first.
        """
        return await self._op(ops.shells.RUN, cmd=cmd, timeout=timeout)

    async def send(self, data: str | bytes) -> None:
        self.info = await self._op(ops.shells.SEND, data=_bytes(data))

    async def read(self, timeout: float = 0.0) -> bytes:
        """Output since the last read (waiting up to `timeout` s for some)."""
        if self._unread:
            data, self._unread = self._unread, b""
            return data
        out: ShellOutput = await self._op(ops.shells.READ, offset=self.offset, timeout=timeout)
        self.offset = out.end
        return out.data

    async def expect(self, pattern: Pattern, timeout: float | None = 10.0) -> re.Match[bytes]:
        """Read until `pattern` (a regular expression) matches; what follows stays unread."""
        regex, seen = _pattern(pattern), b""
        try:
            with anyio.fail_after(timeout):
                while (match := regex.search(seen)) is None:
                    seen += await self.read(timeout=1.0)
        except TimeoutError:
            raise TimedOut(
                f"{regex.pattern!r} did not appear within {timeout:g} s; "
                f"last output: {seen[-200:]!r}"
            ) from None
        self._unread = seen[match.end() :]
        return match

    async def resize(self, rows: int, cols: int) -> None:
        self.info = await self._op(ops.shells.RESIZE, rows=rows, cols=cols)

    async def kill(self, signal: str | int = "SIGTERM") -> None:
        self.info = await self._op(ops.shells.KILL, signal=str(signal))

    async def remove(self) -> None:
        self.info = await self._op(ops.shells.REMOVE)

    def attach(self, offset: int | None = None) -> _Attached:
        """A channel on the session (`async with`); `offset` replays from there."""
        return _Attached(self._engine._channel(ops.shells.ATTACH, name=self.name, offset=offset))

    async def screen(self, size: int = 4096) -> str:
        """The session's recent output as plain text (escape sequences removed)."""
        out: ShellOutput = await self._op(ops.shells.READ, offset=None, limit=1 << 20)
        return _plain(out.data[-size:])


class AsyncShells:
    def __init__(self, engine: AsyncEngineLike) -> None:
        self._engine = engine

    async def create(
        self, name: str | None = None, command: str | None = None, args: Sequence[str] = (),
        env: Mapping[str, str] | None = None, cwd: str | None = None, rows: int = 24,
        cols: int = 80, workflow: str | None = None, service: str | None = None,
        record: str | None = None, idle_timeout: float | None = None, *,
        exist_ok: bool = False, replace: bool = False,
    ) -> AsyncShell:  # fmt: skip
        """Start a session. A name in use is a `Conflict`, unless `exist_ok=True` (the
        running session of that name is returned as it is, one that has ended is started
        anew) or `replace=True` (the old one is removed, its program ended, and a new
        one started): re-running a notebook's cell then just works."""
        params = _create_params(name, command, args, env, cwd=cwd, rows=rows, cols=cols,
                                workflow=workflow, service=service, record=record,
                                idle_timeout=idle_timeout, exist_ok=exist_ok,
                                replace=replace)  # fmt: skip
        return AsyncShell(self._engine, await self._engine._call(ops.shells.CREATE, **params))

    async def list(self) -> list[AsyncShell]:
        found = await self._engine._call(ops.shells.LIST)
        return Listing(AsyncShell(self._engine, info) for info in found.shells)  # a table

    async def get(self, name: str) -> AsyncShell:
        return AsyncShell(self._engine, await self._engine._call(ops.shells.GET, name=name))

    async def prune(self) -> builtins.list[ShellInfo]:
        """Remove every session that has exited; the ones removed."""
        return list((await self._engine._call(ops.shells.PRUNE)).shells)


# -- the blocking twins -------------------------------------------------------------------


class Channel:
    """The blocking twin of `AsyncChannel` (a context manager)."""

    def __init__(self, runner: Runner, attached: _Attached) -> None:
        self._runner = runner
        self._attached = attached
        self._channel: AsyncChannel | None = None

    def __enter__(self) -> Channel:
        # A channel lives on the loop from the start: no trial on this thread.
        self._channel = self._runner.run_on_loop(self._attached.__aenter__)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._runner.run_on_loop(self._attached.__aexit__, None, None, None)

    @property
    def _open(self) -> AsyncChannel:
        if self._channel is None:
            raise RuntimeError("use the channel in a `with` block")
        return self._channel

    @property
    def hello(self) -> dict[str, Any]:
        return self._open.hello

    @property
    def offset(self) -> int:
        return self._open.offset

    def recv(self, timeout: float | None = None) -> bytes | dict[str, Any]:
        return self._runner.run_on_loop(self._open.recv, timeout)

    def send(self, data: str | bytes) -> None:
        self._runner.run_on_loop(self._open.send, data)

    def resize(self, rows: int, cols: int) -> None:
        self._runner.run_on_loop(self._open.resize, rows, cols)

    def ping(self) -> None:
        self._runner.run_on_loop(self._open.ping)


class Shell(Blocking[AsyncShell]):
    """The blocking twin of `AsyncShell`. In Jupyter it shows its recent screen."""

    info = property(lambda self: self._async.info)
    name = property(lambda self: self._async.name)
    offset = property(
        lambda self: self._async.offset, lambda self, at: setattr(self._async, "offset", at)
    )

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncShell", "Shell", 1)

    def _repr_html_(self) -> str:
        state = f"{self.name}: {self.info.state}, pid {self.info.pid}"
        return f"<b>{html.escape(state)}</b><pre>{html.escape(self.screen())}</pre>"

    def reload(self) -> ShellInfo:
        return self._run(self._async.reload)

    def run(self, cmd: str, timeout: float | None = None) -> ShellResult:
        return self._run(self._async.run, cmd, timeout)

    def send(self, data: str | bytes) -> None:
        self._run(self._async.send, data)

    def read(self, timeout: float = 0.0) -> bytes:
        return self._run(self._async.read, timeout)

    def expect(self, pattern: Pattern, timeout: float | None = 10.0) -> re.Match[bytes]:
        return self._run(self._async.expect, pattern, timeout)

    def resize(self, rows: int, cols: int) -> None:
        self._run(self._async.resize, rows, cols)

    def kill(self, signal: str | int = "SIGTERM") -> None:
        self._run(self._async.kill, signal)

    def remove(self) -> None:
        self._run(self._async.remove)

    def screen(self, size: int = 4096) -> str:
        return self._run(self._async.screen, size)

    def attach(self, offset: int | None = None) -> Channel:
        return Channel(self._runner, self._async.attach(offset))


class Shells(Blocking[AsyncShells]):
    """The blocking twin of `AsyncShells`."""

    def _wrap(self, shell: AsyncShell) -> Shell:
        return Shell(self._runner, shell)

    def create(
        self, name: str | None = None, command: str | None = None, args: Sequence[str] = (),
        env: Mapping[str, str] | None = None, cwd: str | None = None, rows: int = 24,
        cols: int = 80, workflow: str | None = None, service: str | None = None,
        record: str | None = None, idle_timeout: float | None = None, *,
        exist_ok: bool = False, replace: bool = False,
    ) -> Shell:  # fmt: skip
        return self._wrap(self._run(self._async.create, name, command, args, env, cwd, rows,
                                    cols, workflow, service, record, idle_timeout,
                                    exist_ok=exist_ok, replace=replace))  # fmt: skip

    def list(self) -> list[Shell]:
        return Listing(self._wrap(shell) for shell in self._run(self._async.list))

    def get(self, name: str) -> Shell:
        return self._wrap(self._run(self._async.get, name))

    def prune(self) -> builtins.list[ShellInfo]:
        return self._run(self._async.prune)


def _plain(data: bytes) -> str:
    return _ANSI.sub(b"", data).decode(errors="replace")
