"""Shell sessions outlive the engine: kill -9 it, boot again, reattach."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import dxflow
from dxflow import _operations as ops

from .conftest import boot
from .conftest import dxflow as run


def _wait_gone(pid: int) -> None:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def test_sessions_survive_kill_9_of_the_engine(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = boot(home)
    with dxflow.Engine(first.url, key=first.master_key) as engine:
        shell = engine.shells.create("survivor", command="/bin/sh")
        assert shell.run("echo before-the-crash; cd /tmp").exit_code == 0
        pid, before = shell.info.pid, engine._call(ops.shells.READ, name="survivor")
        with shell.attach() as channel:  # a client attached while the engine dies
            channel.send("sleep 0.5; echo while-the-engine-was-$((1 - 1))down\n")
            echoed = b""
            while b"sleep 0.5" not in echoed:  # the holder has the input
                message = channel.recv(timeout=5)
                echoed += message if isinstance(message, bytes) else b""
            os.kill(first.pid, signal.SIGKILL)
            _wait_gone(first.pid)
    second = boot(home)  # a new engine process on the same home
    assert second.pid != first.pid
    try:
        with dxflow.Engine(second.url, key=second.master_key) as engine:
            shell = engine.shells.get("survivor")
            assert (shell.info.state, shell.info.pid) == ("running", pid)
            shell.expect("while-the-engine-was-0down")  # output made while no engine ran
            after = engine._call(ops.shells.READ, name="survivor")
            assert after.data.startswith(before.data)  # the scrollback is intact
            assert shell.run("pwd").output == "/tmp\n"  # the same shell, state and all
            with shell.attach(offset=before.end) as channel:  # exactly what it missed
                replay = b""
                while len(replay) < after.end - before.end:
                    message = channel.recv(timeout=5)
                    if isinstance(message, bytes):
                        replay += message
                assert replay[: after.end - before.end] == after.data[before.end :]
            shell.remove()
            assert engine.shells.list() == []
    finally:
        run("boot", "down", "--home", home, check=False)


def test_recording_to_the_object_store_and_the_audit_trail(tmp_path: Path) -> None:
    with dxflow.Engine(home=tmp_path / "home") as engine:
        shell = engine.shells.create("rec", command="/bin/sh", record="casts/rec.cast")
        shell.run("echo recorded-line")
        with shell.attach():
            pass
        shell.kill("SIGKILL")
        shell.remove()
        lines = engine.objects.cat("casts/rec.cast").decode().splitlines()
        header = json.loads(lines[0])
        assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
        events = [json.loads(line) for line in lines[1:]]
        assert all(kind == "o" for _, kind, _ in events)
        assert "recorded-line" in "".join(text for _, _, text in events)
        assert [e[0] for e in events] == sorted(e[0] for e in events)
        done = [(r.operation, r.outcome) for r in reversed(engine.audit(operation=None))]
        shell_ops = [d for d in done if d[0].startswith("shells.")]
        for expected in [("shells.create", "ok"), ("shells.run", "ok"),
                         ("shells.attach", "opened"), ("shells.attach", "closed"),
                         ("shells.kill", "ok"), ("shells.remove", "ok")]:  # fmt: skip
            assert expected in shell_ops, shell_ops
