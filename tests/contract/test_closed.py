"""A closed engine takes no more calls: each raises EngineClosed, saying what happened
and how to open a new one, on both SDKs and both transports. Closing is idempotent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import dxflow
from dxflow import EngineClosed

from ..conftest import EngineFactory

CLOSED = r"was closed and takes no more calls; open a new one with dxflow\.(Async)?Engine"


def test_every_call_after_close_raises_engine_closed(make_engine: EngineFactory) -> None:
    engine = make_engine()
    shell = engine.shells.create("closing", command="/bin/sh")
    engine.objects.pipe("closing.txt", b"x")
    assert engine.ping().identity == "master" and not engine.closed
    engine.close()
    assert engine.closed
    calls: dict[str, Callable[[], Any]] = {
        "ping": engine.ping,
        "objects.ls": lambda: engine.objects.ls(""),
        "objects.cat": lambda: engine.objects.cat("closing.txt"),
        "objects.pipe": lambda: engine.objects.pipe("closing.txt", b"y"),
        "keys.list": engine.keys.list,
        "a handle's reload": shell.reload,
        "a stream": lambda: next(iter(engine.watch_stats(interval=0.1, count=1))),
        "a channel": lambda: shell.attach().__enter__(),
    }
    for what, call in calls.items():
        with pytest.raises(EngineClosed, match=CLOSED):
            call()
            pytest.fail(f"{what} answered after close")
    engine.close()  # idempotent
    assert engine.closed


def test_with_blocks_close_the_engine(tmp_path: Path) -> None:
    with dxflow.Engine(home=tmp_path / "sync") as engine:
        assert engine.ping().identity == "master"
    assert engine.closed and "closed" in repr(engine)
    with pytest.raises(EngineClosed, match=r"dxflow\.Engine\("):
        engine.objects.ls("")

    async def main() -> None:
        async with dxflow.AsyncEngine(home=tmp_path / "async") as aengine:
            assert (await aengine.ping()).identity == "master"
        assert aengine.closed
        with pytest.raises(EngineClosed, match=r"dxflow\.AsyncEngine\("):
            await aengine.keys.list()
        with pytest.raises(EngineClosed):
            aengine.watch_stats()
        await aengine.aclose()  # idempotent

    anyio.run(main)
