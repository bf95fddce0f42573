"""The blocking twin's runner: an in-process call that never waits nor writes runs on
the caller's thread; everything else runs, from the start, on the loop thread."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from dxflow import Engine, EngineClosed, NotFound
from dxflow._models import Pong, WhoAmI
from dxflow._operations import Operation
from dxflow._runner import NeedsLoop, Runner, in_trial
from dxflow._transports import Transport


class RecordingTransport(Transport):
    """Answers ping/whoami; records which thread and which path served each call."""

    in_process = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []
        self.closed = 0

    def _answer(self, op: Operation, how: str) -> Any:
        self.calls.append((op.name, how, threading.current_thread() is threading.main_thread()))
        if op.name == "keys.unregister":
            raise NotFound("no such key")
        if op.name == "auth.whoami":
            return WhoAmI(engine_id="dxf-test", identity="master", permissions=["MASTER"])
        return Pong(engine_id="dxf-test", identity="master", time="2026-01-01T00:00:00Z")  # type: ignore[arg-type]

    async def call(self, op: Operation, params: Mapping[str, Any]) -> Any:
        return self._answer(op, "call")

    async def stream(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Any]:
        yield self._answer(op, "stream")

    @asynccontextmanager
    async def download(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Any]:
        raise NotImplementedError
        yield

    async def upload(self, op: Operation, params: Mapping[str, Any], body: Any) -> Any:
        raise NotImplementedError

    def can_inline(self, op: Operation) -> bool:
        return op.name != "auth.whoami"  # as if its handler awaited

    def call_inline(self, op: Operation, params: Mapping[str, Any]) -> Any:
        return self._answer(op, "inline")

    async def aclose(self) -> None:
        self.closed += 1


def test_reads_that_never_wait_run_inline_and_the_rest_on_the_loop() -> None:
    transport = RecordingTransport()
    engine = Engine(transport=transport)
    assert engine.ping().engine_id == "dxf-test"
    assert engine.whoami().identity == "master"  # not inline-able: the loop
    with pytest.raises(NotFound):  # a mutating operation: never in a trial
        engine.keys.unregister("nobody")
    assert [s.identity for s in engine.watch_stats(count=1)] == ["master"]
    assert transport.calls == [
        ("engine.ping", "inline", True),
        ("auth.whoami", "call", False),
        ("keys.unregister", "call", False),
        ("engine.stats.watch", "stream", False),
    ]
    engine.close()
    engine.close()
    assert transport.closed == 1  # closing twice closes once
    with pytest.raises(EngineClosed, match="open a new one"):
        engine.ping()
    assert len(transport.calls) == 4  # the closed engine reached nothing


def test_the_trial_outcomes() -> None:
    runner = Runner(inline=True)
    threads: list[bool] = []

    async def value() -> int:
        threads.append(in_trial())
        return 42

    async def needs_the_loop() -> str:
        threads.append(in_trial())
        if in_trial():
            raise NeedsLoop
        await anyio.lowlevel.checkpoint()
        return "looped"

    async def suspends() -> str:
        threads.append(in_trial())
        await anyio.lowlevel.checkpoint()  # no loop in the trial: a RuntimeError, then the loop
        return "slept"

    async def fails() -> None:
        raise NotFound("gone")

    assert runner.run(value) == 42 and threads == [True]
    threads.clear()
    assert runner.run(needs_the_loop) == "looped" and threads == [True, False]
    threads.clear()
    assert runner.run(suspends) == "slept" and threads == [True, False]
    with pytest.raises(NotFound):
        runner.run(fails)  # a dxflow error in the trial is the answer
    assert not in_trial()
    runner.close()
    with pytest.raises(EngineClosed):
        runner.run(needs_the_loop)


class FailingClose(RecordingTransport):
    async def aclose(self) -> None:
        raise ConnectionResetError("the engine went away while closing")


def test_a_close_that_fails_does_not_hide_what_ended_the_block() -> None:
    """Ctrl-C (or an error) ends a `with Engine()` block; its close failing because of
    it must not replace that exit (the CLI would say `error:` and exit 1, not 130)."""
    with pytest.raises(SystemExit) as ended, Engine(transport=FailingClose()):
        raise SystemExit(130)
    assert ended.value.code == 130
    with pytest.raises(ConnectionResetError), Engine(transport=FailingClose()):
        pass  # a clean block: a failing close is the error to see


def test_an_async_close_that_fails_does_not_hide_what_ended_the_block() -> None:
    from dxflow import AsyncEngine

    async def main() -> None:
        with pytest.raises(KeyError):
            async with AsyncEngine(transport=FailingClose()):
                raise KeyError("the block's own error")

    anyio.run(main)
