"""The lifecycle with real parts: holder processes reaped, a served app's lifespan starting
and stopping the background work, and `dxflow boot up` pruning the audit on its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow.models import ShellCreate
from dxflow_server import create_app

from .conftest import boot
from .conftest import dxflow as run

WAIT = 30.0  # generous: the machine may be busy


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g} s: {what}")
        time.sleep(0.02)


def _process_state(pid: int) -> str | None:
    """The state letter of `pid` (Z: a zombie), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_holders_that_exited_are_reaped(core: EngineCore) -> None:
    ctx = core.local_context()

    async def main() -> None:
        async with core.lifecycle.running():
            info = await core.shells.create(ctx, ShellCreate(command="sleep", args=["600"]))
            state = json.loads(
                (core.config.home.run_dir / "shells" / f"{info.name}.json").read_text()
            )
            holder = int(state["holder_pid"])
            os.kill(holder, signal.SIGTERM)  # the holder quits; only its parent can collect it
            await asyncio.to_thread(
                wait_for, lambda: _process_state(holder) == "Z", "the holder's exit"
            )
            core.lifecycle.trigger("shells.reap")
            await asyncio.to_thread(wait_for, lambda: _process_state(holder) is None, "the reaping")
            assert core.shells.reap() == 0  # collected once, by the job

    asyncio.run(main())


def _serve(app: object, sock: socket.socket) -> tuple[object, threading.Thread]:
    import uvicorn

    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return server, thread


def test_the_servers_lifespan_starts_and_stops_the_background_work(core: EngineCore) -> None:
    events: list[str] = []

    async def probe() -> None:
        events.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            events.append("cancelled")

    core.lifecycle.task("probe", probe)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server, thread = _serve(create_app(core), sock)
    wait_for(lambda: events == ["started"], "the lifespan's start")
    wait_for(lambda: core.lifecycle.jobs["audit.prune"].runs >= 1, "a housekeeping run")
    assert core.lifecycle.active
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(WAIT)
    assert not thread.is_alive()
    assert events == ["started", "cancelled"] and not core.lifecycle.active


def test_a_booted_engine_prunes_its_audit_with_no_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    core = EngineCore(load_config(home))  # the home exists before the boot...
    long_ago = time.time() - 100 * 86400  # ...with a record past the 90-day retention
    core.audit.record(None, "keys.register", "ok", target="ancient")
    core.state.execute("UPDATE audit SET time = ? WHERE target = 'ancient'", (long_ago,))
    core.close()

    def ancient() -> int:
        db = sqlite3.connect(core.config.home.state_db)
        try:
            return int(
                db.execute("SELECT COUNT(*) FROM audit WHERE target = 'ancient'").fetchone()[0]
            )
        finally:
            db.close()

    assert ancient() == 1
    engine = boot(home)
    try:
        wait_for(lambda: ancient() == 0, "the pruning at start")
    finally:
        stopped = run("boot", "down", "--home", home)
    assert f"engine stopped (pid {engine.pid})" in stopped.stdout
    log = core.config.home.log_file.read_text()
    assert "stopped" in log and "did not stop" not in log and "Traceback" not in log
