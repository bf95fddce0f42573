"""The PTY holder with real PTYs: offsets, replay, flow control, exits, survival, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import dxflow
from dxflow._core._shells import _holder, _wire
from dxflow._core._shells._wire import (
    ATTACH,
    ERROR,
    EXIT,
    INFO,
    INPUT,
    KILL,
    MISSED,
    OUTPUT,
    PING,
    PONG,
    QUIT,
    RESIZE,
    frame,
    json_frame,
)

T = TypeVar("T")
SH = "/bin/sh"
REPO = Path(dxflow.__file__).resolve().parent.parent
TIMEOUT = 10.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Started:
    """A holder started by a test."""

    def __init__(self, folder: Path, name: str, proc: subprocess.Popen[bytes] | None) -> None:
        self.dir = folder
        self.name = name
        self.proc = proc
        self.state: dict[str, Any] = {}

    @property
    def sock(self) -> Path:
        return self.dir / f"{self.name}.sock"

    @property
    def state_path(self) -> Path:
        return self.dir / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    def read_state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def quit(self) -> None:
        """Q over a blocking socket; returns once the holder hung up."""
        with _wire.connect(self.sock) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendall(json_frame(ATTACH, {"offset": None, "mode": "rw"}) + frame(QUIT))
            while sock.recv(65536):
                pass
        if self.proc is not None:
            self.proc.wait(TIMEOUT)

    def cleanup(self) -> None:
        holder_pid = self.state.get("holder_pid")
        if holder_pid and alive(holder_pid):
            try:
                self.quit()
            except (OSError, subprocess.TimeoutExpired):
                for pid in (holder_pid, self.state.get("pid")):
                    with contextlib.suppress(ProcessLookupError, TypeError):
                        os.kill(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Holders:
    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.started: list[Started] = []
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}

    def spec(self, command: list[str], name: str, **options: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": name,
            "dir": str(self.dir),
            "command": command,
            "env": self.env,
            "cwd": None,
            "rows": 24,
            "cols": 80,
            "scrollback": 2 << 20,
            "record": None,
            "idle_timeout": None,
            "term": "xterm-256color",
        }
        spec.update(options)
        return spec

    def start(self, command: list[str], name: str = "s", **options: Any) -> Started:
        proc = _wire.spawn(
            sys.executable,
            self.spec(command, name, **options),
            self.dir / f"{name}.spec",
            self.dir / f"{name}.log",
            (options["record_fd"],) if "record_fd" in options else (),
        )
        started = Started(self.dir, name, proc)
        self.started.append(started)
        started.state = _wire.wait_ready(started.state_path, proc)
        return started

    def adopt(self, started: Started) -> Started:
        self.started.append(started)
        return started


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[Holders]:
    made = Holders(tmp_path)
    yield made
    for started in made.started:
        started.cleanup()


def sh(script: str) -> list[str]:
    return [SH, "-c", script]


class Conn:
    """An attached client that checks offsets as frames arrive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.info: dict[str, Any] = {}
        self.data = bytearray()
        self.offset = 0  # next expected output offset
        self.first: int | None = None
        self.missed: list[dict[str, int]] = []
        self.errors: list[str] = []
        self.pongs: list[bytes] = []
        self.exit: dict[str, Any] | None = None

    @classmethod
    async def attach(cls, holder: Started, offset: int | None = None, mode: str = "rw") -> Conn:
        reader, writer = await _wire.open_holder(holder.sock)
        conn = cls(reader, writer)
        conn.send_json(ATTACH, {"offset": offset, "mode": mode})
        kind, payload = await conn.read()
        assert kind == INFO, (kind, payload)
        conn.info = json.loads(payload)
        conn.offset = conn.info["start"] if offset is None else offset
        return conn

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        self.writer.write(frame(kind, payload))

    def send_json(self, kind: bytes, value: object) -> None:
        self.writer.write(json_frame(kind, value))

    async def read(self) -> tuple[bytes, bytes]:
        return await asyncio.wait_for(_wire.read_frame(self.reader), TIMEOUT)

    async def step(self) -> None:
        """Read one frame and account for it."""
        kind, payload = await self.read()
        if kind == OUTPUT:
            offset, data = _wire.output(payload)
            assert offset == self.offset, f"offset {offset}, expected {self.offset}"
            if self.first is None:
                self.first = offset
            self.offset += len(data)
            self.data += data
        elif kind == MISSED:
            missed = json.loads(payload)
            assert missed["from"] == self.offset and missed["to"] > missed["from"]
            self.missed.append(missed)
            self.offset = missed["to"]
        elif kind == ERROR:
            self.errors.append(json.loads(payload)["error"])
        elif kind == PONG:
            self.pongs.append(payload)
        elif kind == EXIT:
            self.exit = json.loads(payload)
        else:
            raise AssertionError(f"unexpected frame {kind!r}")

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.step()

    async def expect(self, text: bytes) -> None:
        """Read until `text` appears (searching only the new bytes: output can be big)."""
        searched = 0

        def found() -> bool:
            nonlocal searched
            hit = self.data.find(text, max(0, searched - len(text) + 1)) >= 0
            searched = len(self.data)
            return hit

        await self.until(found)

    async def sync(self) -> None:
        """Ping and wait for the pong: everything sent before it has arrived."""
        count = len(self.pongs)
        self.send(PING, b"sync")
        await self.until(lambda: len(self.pongs) > count)

    async def error(self) -> str:
        count = len(self.errors)
        await self.until(lambda: len(self.errors) > count)
        return self.errors[-1]

    async def eof(self) -> None:
        with pytest.raises(EOFError):
            while True:
                await self.step()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


# ---------------------------------------------------------------------------------------
# Framing and pieces


def test_frames_round_trip() -> None:
    buffer = bytearray(frame(PING, b"x") + _wire.output_frame(7, b"abc") + frame(INPUT, b"pa"))
    frames = _holder.take_frames(buffer)
    assert frames[:2] == [(PING, b"x"), (OUTPUT, (7).to_bytes(8, "big") + b"abc")]
    assert frames[2] == (INPUT, b"pa") and buffer == b""
    assert _wire.output(frames[1][1]) == (7, b"abc")
    partial = bytearray(frame(INPUT, b"hello")[:-2])
    assert _holder.take_frames(partial) == [] and len(partial) == 8
    with pytest.raises(ValueError, match="exceeds the limit"):
        _holder.take_frames(bytearray(b"D" + (2 << 20).to_bytes(4, "big")))


def test_read_frame_raises_eof() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(PONG, b"ok") + b"O\x00\x00")
        reader.feed_eof()
        assert await _wire.read_frame(reader) == (PONG, b"ok")
        with pytest.raises(EOFError):
            await _wire.read_frame(reader)

    run(scenario())


def test_ring_keeps_the_last_bytes() -> None:
    ring = _holder.Ring(10)
    ring.append(b"0123456")
    ring.append(b"789abcd")
    assert (ring.start, ring.end) == (4, 14)
    assert ring.read(4, 100) == b"456789abcd" and ring.read(12, 1) == b"c"
    rng = random.Random(7)
    for capacity in (1, 7, 64):
        ring, everything = _holder.Ring(capacity), b""
        for _ in range(300):
            chunk = rng.randbytes(rng.choice([0, 1, 3, capacity, 2 * capacity + 1]))
            ring.append(chunk)
            everything += chunk
            assert ring.end == len(everything)
            assert ring.start == max(0, len(everything) - capacity)
            offset = rng.randint(ring.start, ring.end)
            limit = rng.randint(1, capacity + 2)
            assert ring.read(offset, limit) == everything[offset : offset + limit]
        assert len(ring.data) == capacity


def test_recorder_carries_split_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rec.cast"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    recorder = _holder.Recorder(fd, 80, 24, time.time(), "xterm-256color")
    recorder.output(b"a\xe2\x82")
    recorder.output(b"\xacb")
    recorder.resize(100, 30)
    recorder.output(b"\xff")
    recorder.close()
    header, *events = (json.loads(line) for line in path.read_text().splitlines())
    assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
    assert header["env"] == {"TERM": "xterm-256color"}
    assert [event[1:] for event in events] == [["o", "a"], ["o", "€b"], ["r", "100x30"], ["o", "�"]]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# ---------------------------------------------------------------------------------------
# Sessions


def test_output_offsets_and_input_round_trip(holders: Holders) -> None:
    holder = holders.start(sh("echo hi; read x; echo got $x"))
    assert holder.state["state"] == "running" and alive(holder.state["pid"])
    assert oct(holder.sock.stat().st_mode & 0o777) == "0o600"
    assert oct(holder.state_path.stat().st_mode & 0o777) == "0o600"
    assert not (holder.dir / "s.spec").exists()  # the holder deleted its spec

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        assert conn.info["start"] == 0 and conn.info["clients"] == 1
        await conn.expect(b"hi\r\n")
        assert conn.first == 0
        conn.send(INPUT, b"abc\n")
        await conn.expect(b"got abc\r\n")
        await conn.until(lambda: conn.exit is not None)
        assert conn.exit == {"exit_code": 0, "signal": None}
        assert bytes(conn.data) == b"hi\r\nabc\r\ngot abc\r\n"  # echo included
        await conn.close()

    run(scenario())
    state = holder.read_state()
    assert state["state"] == "exited" and state["exit_code"] == 0 and state["exited_at"]


def test_reattach_with_offset_gets_exactly_the_missed_bytes(holders: Holders) -> None:
    holder = holders.start(sh("echo one; read x; echo two-$x; read y"))

    async def scenario() -> None:
        first = await Conn.attach(holder)
        await first.expect(b"one\r\n")
        seen = first.offset
        await first.close()
        other = await Conn.attach(holder)
        other.send(INPUT, b"zz\n")
        await other.expect(b"two-zz\r\n")
        again = await Conn.attach(holder, offset=seen)
        assert again.info["end"] == other.offset
        await again.sync()
        assert again.first == seen and again.missed == []
        assert bytes(again.data) == bytes(other.data[seen:])
        for conn in (other, again):
            await conn.close()

    run(scenario())


def test_offsets_outside_a_small_scrollback(holders: Holders) -> None:
    script = "i=0; while [ $i -lt 60 ]; do echo line-$i-abcdefghijklmnopqrstuvwxyz; "
    holder = holders.start(sh(script + "i=$((i+1)); done; echo END; read x"), scrollback=1024)

    async def scenario() -> None:
        watcher = await Conn.attach(holder)
        await watcher.expect(b"END\r\n")
        late = await Conn.attach(holder, offset=0)
        start, end = late.info["start"], late.info["end"]
        assert end - start == 1024 and end == watcher.offset
        await late.sync()
        assert late.missed == [{"from": 0, "to": start}] and late.first == start
        assert bytes(late.data) == bytes(watcher.data[-1024:])
        tail = await Conn.attach(holder)  # offset null: the retained tail, no M
        await tail.sync()
        assert tail.missed == [] and tail.first == start and tail.data == late.data
        for conn in (watcher, late, tail):
            await conn.close()

    run(scenario())


def test_two_clients_see_the_same_output(holders: Holders) -> None:
    holder = holders.start(["cat"])

    async def scenario() -> None:
        one, two = await Conn.attach(holder), await Conn.attach(holder)
        assert two.info["clients"] == 2
        one.send(INPUT, b"hello\n")
        for conn in (one, two):
            await conn.expect(b"hello\r\nhello\r\n")  # the echo, then cat's copy
        assert one.data == two.data
        assert holder.read_state()["clients"] == 2
        await one.close()
        await two.sync()
        wait_until(lambda: holder.read_state()["clients"] == 1)
        await two.close()

    run(scenario())


def test_read_only_clients_cannot_write(holders: Holders) -> None:
    holder = holders.start(["cat"])

    async def scenario() -> None:
        viewer = await Conn.attach(holder, mode="ro")
        viewer.send(INPUT, b"nope\n")
        assert await viewer.error() == "read-only: input rejected"
        viewer.send_json(RESIZE, {"rows": 10, "cols": 10})
        assert await viewer.error() == "read-only: resize rejected"
        viewer.send_json(KILL, {"signal": 9})
        assert await viewer.error() == "read-only: kill rejected"
        viewer.send(QUIT)
        assert await viewer.error() == "read-only: quit rejected"
        writer = await Conn.attach(holder)
        writer.send(INPUT, b"yes\n")
        await viewer.expect(b"yes\r\nyes\r\n")
        assert b"nope" not in viewer.data
        assert holder.read_state()["rows"] == 24
        for conn in (viewer, writer):
            await conn.close()

    run(scenario())


def test_resize_is_validated_and_reaches_the_program(holders: Holders) -> None:
    holder = holders.start(sh("stty size; read x; stty size; read y"))

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        await conn.expect(b"24 80\r\n")
        for bad, key in (
            ({"rows": 0, "cols": 80}, "rows"),
            ({"rows": 24, "cols": 5000}, "cols"),
            ({"rows": "x", "cols": 80}, "rows"),
            ({"rows": 24, "cols": True}, "cols"),
            ({"rows": 24}, "cols"),
        ):
            conn.send_json(RESIZE, bad)
            assert f"resize: {key} must be an integer from 1 to 1000" in await conn.error()
        conn.send(RESIZE, b"not json")
        assert "JSON object" in await conn.error()
        conn.send_json(RESIZE, {"rows": 40, "cols": 120})
        conn.send(INPUT, b"\n")
        await conn.expect(b"40 120\r\n")
        state = holder.read_state()
        assert (state["rows"], state["cols"]) == (40, 120)
        await conn.close()

    run(scenario())


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("missing", 127, "command not found: nosuchcmd-dxflow"),
        ("cwd", 127, "no such directory: /nonexistent-dxflow"),
        ("denied", 126, "permission denied: "),
    ],
)
def test_start_failures_are_reported(
    holders: Holders, tmp_path: Path, kind: str, status: int, message: str
) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    command, cwd = {
        "missing": (["nosuchcmd-dxflow"], None),
        "cwd": ([SH], "/nonexistent-dxflow"),
        "denied": ([str(script)], None),
    }[kind]
    holder = holders.start(command, cwd=cwd)
    state = holder.state
    assert state["state"] == "failed" and state["exit_code"] == status
    assert state["error"].startswith(message) and state["exited_at"]

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        assert conn.info["state"] == "failed"
        await conn.until(lambda: conn.exit is not None)
        assert conn.exit == {"exit_code": status, "signal": None} and conn.data == b""
        await conn.close()

    run(scenario())


@pytest.mark.parametrize("code", [0, 1, 3])
def test_exit_codes_are_recorded(holders: Holders, code: int) -> None:
    holder = holders.start(sh(f"read x; echo bye; exit {code}"))

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        conn.send(INPUT, b"\n")
        await conn.until(lambda: conn.exit is not None)
        assert conn.exit == {"exit_code": code, "signal": None}
        assert bytes(conn.data) == b"\r\nbye\r\n"
        later = await Conn.attach(holder)  # after the exit: scrollback, then X
        assert later.info["state"] == "exited" and later.info["exit_code"] == code
        await later.until(lambda: later.exit is not None)
        assert later.data == conn.data and later.exit == conn.exit
        later.send(INPUT, b"more\n")
        assert "exited" in await later.error()
        for each in (conn, later):
            await each.close()

    run(scenario())
    state = holder.read_state()
    assert (state["state"], state["exit_code"], state["signal"]) == ("exited", code, None)


def test_kill_frame_signals_the_process_group(holders: Holders) -> None:
    holder = holders.start(sh("sleep 60"))

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        conn.send_json(KILL, {"signal": 0})
        assert "kill: signal must be an integer" in await conn.error()
        conn.send_json(KILL, {"signal": int(signal.SIGKILL)})
        await conn.until(lambda: conn.exit is not None)
        assert conn.exit == {"exit_code": None, "signal": signal.SIGKILL}
        await conn.close()

    run(scenario())
    assert holder.read_state()["signal"] == signal.SIGKILL


def test_non_utf8_bytes_pass_through(holders: Holders) -> None:
    holder = holders.start(sh(r"head -c 3 | od -An -tx1; printf '\377\376\n'; read y"))

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        conn.send(INPUT, b"\xff\xfe\n")
        await conn.expect(b"ff fe 0a")
        await conn.until(lambda: b"\xff\xfe\r\n" in conn.data.split(b"ff fe 0a", 1)[1])
        await conn.close()

    run(scenario())


def test_slow_client_does_not_stall_the_others(holders: Holders) -> None:
    # The program writes 20 MiB in steps of 1 MiB, each one asked for by the fast client
    # once it has read the previous one: the fast client is never more than a step behind
    # (the ring holds two), however loaded the machine, so it must see every byte. The
    # slow client reads nothing meanwhile: were the holder waiting for it, the fast
    # client's steps would never come.
    step, steps = 1 << 20, 20
    total = step * steps
    holder = holders.start(
        sh(
            f"i=0; while [ $i -lt {steps} ]; do read x; head -c {step} /dev/zero | tr '\\0' x;"
            ' i=$((i+1)); echo "<$i>"; done; echo DONE; read y'
        )
    )
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(str(holder.sock))
    slow.sendall(json_frame(ATTACH, {"offset": None, "mode": "ro"}))

    async def fast_side() -> Conn:
        fast = await Conn.attach(holder)
        for number in range(1, steps + 1):
            fast.send(INPUT, b"\n")
            await fast.expect(f"<{number}>\r\n".encode())
        await fast.expect(b"DONE\r\n")
        await fast.close()
        return fast

    fast = run(fast_side())
    assert fast.missed == [] and fast.data.count(b"x") == total
    # The slow client resumes: offsets never go backwards, the gap is announced by M.
    slow.settimeout(TIMEOUT)
    buffer, kinds, expected, gaps = bytearray(), [], 0, 0
    while expected < fast.offset:
        received = slow.recv(1 << 20)
        assert received, "the holder hung up on the slow client"
        buffer += received
        for kind, payload in _holder.take_frames(buffer):
            kinds.append(kind)
            if kind == MISSED:
                missed = json.loads(payload)
                assert missed["from"] == expected and missed["to"] > expected
                expected, gaps = missed["to"], gaps + 1
            elif kind == OUTPUT:
                offset, chunk = _wire.output(payload)
                assert offset == expected
                expected += len(chunk)
    slow.close()
    assert kinds[0] == INFO and set(kinds[1:]) <= {OUTPUT, MISSED}
    assert gaps >= 1 and expected == fast.offset


def test_input_backpressure_loses_nothing_and_blocks_no_one(holders: Holders) -> None:
    total = 3_000_000
    holder = holders.start(sh(f"stty raw -echo; echo READY; sleep 0.3; head -c {total} | wc -c"))

    async def scenario() -> None:
        sender = await Conn.attach(holder)
        await sender.expect(b"READY")
        for _ in range(total // 60_000):
            sender.send(INPUT, b"y" * 60_000)
        other = await Conn.attach(holder)
        await other.sync()  # answered while the sender's input waits for the program
        wait_until(lambda: holder.read_state()["clients"] == 2)
        await sender.writer.drain()  # returns once the holder reads the sender again
        await sender.expect(f"{total}".encode())
        for conn in (sender, other):
            await conn.close()

    run(scenario())


ENGINE = """
import json, socket, sys, time
from pathlib import Path
from dxflow._core._shells import _wire
spec = json.loads(sys.argv[1])
folder = Path(spec["dir"])
proc = _wire.spawn(sys.executable, spec, folder / "s.spec", folder / "s.log")
state = _wire.wait_ready(folder / "s.json", proc)
sock = socket.socket(socket.AF_UNIX)
sock.connect(str(folder / "s.sock"))
sock.sendall(_wire.json_frame(_wire.ATTACH, {"offset": None, "mode": "rw"}))
sock.sendall(_wire.frame(_wire.INPUT, b"hello\\n"))
seen = b""
while b"got-hello" not in seen:
    seen += sock.recv(4096)
print(json.dumps(state), flush=True)
time.sleep(600)
"""


def test_holder_survives_its_engine(holders: Holders) -> None:
    spec = holders.spec(sh("read x; echo got-$x; read y"), "s")
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE, json.dumps(spec)], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert engine.stdout is not None
        line = engine.stdout.readline()
    finally:
        engine.kill()  # SIGKILL, with a live connection to the holder
        engine.wait()
    holder = holders.adopt(Started(holders.dir, "s", None))
    holder.state = json.loads(line)
    time.sleep(0.2)
    assert alive(holder.state["holder_pid"]) and alive(holder.state["pid"])

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        assert conn.info["holder_pid"] == holder.state["holder_pid"]
        assert conn.info["pid"] == holder.state["pid"] and conn.info["state"] == "running"
        await conn.expect(b"got-hello\r\n")
        assert conn.first == 0
        await conn.close()

    run(scenario())
    holder.quit()
    wait_until(lambda: not alive(holder.state["holder_pid"]))
    assert not holder.sock.exists() and not holder.state_path.exists()


def test_quit_stops_the_program_and_removes_the_files(holders: Holders) -> None:
    holder = holders.start(sh("read x"))
    child = holder.state["pid"]

    async def scenario() -> None:
        watcher = await Conn.attach(holder)
        quitter = await Conn.attach(holder)
        quitter.send(QUIT)
        await watcher.until(lambda: watcher.exit is not None)
        assert watcher.exit == {"exit_code": None, "signal": signal.SIGHUP}
        await watcher.eof()
        for conn in (watcher, quitter):
            await conn.close()

    run(scenario())
    assert holder.proc is not None and holder.proc.wait(TIMEOUT) == 0
    assert not holder.sock.exists() and not holder.state_path.exists()
    assert not alive(child)


def test_sigterm_to_the_holder_acts_like_quit(holders: Holders) -> None:
    holder = holders.start(sh("read x"))
    assert holder.proc is not None
    holder.proc.terminate()
    assert holder.proc.wait(TIMEOUT) == 0
    assert not holder.sock.exists() and not holder.state_path.exists()
    assert not alive(holder.state["pid"])


def test_holder_quits_when_its_socket_file_is_removed(holders: Holders) -> None:
    holder = holders.start(sh("read x"))
    assert holder.proc is not None
    holder.sock.unlink()  # e.g. its folder was deleted
    assert holder.proc.wait(_holder.WATCH_SECONDS + 3) == 0
    assert not holder.state_path.exists() and not alive(holder.state["pid"])


def test_idle_timeout_terminates_a_session_without_clients(holders: Holders) -> None:
    holder = holders.start(["sleep", "60"], idle_timeout=0.3)

    async def attached_for_a_while() -> None:
        conn = await Conn.attach(holder)
        await asyncio.sleep(0.8)
        assert holder.read_state()["state"] == "running"
        await conn.close()

    run(attached_for_a_while())
    wait_until(lambda: holder.read_state()["state"] == "exited")
    state = holder.read_state()
    assert state["signal"] == signal.SIGHUP and "idle timeout" in state["error"]


def test_protocol_errors_get_clear_messages(holders: Holders) -> None:
    holder = holders.start(["cat"])

    async def first_frame(data: bytes) -> str:
        reader, writer = await _wire.open_holder(holder.sock)
        writer.write(data)
        kind, payload = await _wire.read_frame(reader)
        assert kind == ERROR
        with pytest.raises(EOFError):
            await _wire.read_frame(reader)
        writer.close()
        message: str = json.loads(payload)["error"]
        return message

    async def scenario() -> None:
        assert "first frame must be A" in await first_frame(frame(INPUT, b"x"))
        assert "JSON object" in await first_frame(frame(ATTACH, b"{"))
        assert "offset must be" in await first_frame(json_frame(ATTACH, {"offset": -1}))
        assert "mode must be" in await first_frame(json_frame(ATTACH, {"mode": "rwx"}))
        _, lurker = await _wire.open_holder(holder.sock)  # connected, not attached yet
        lurker.write(ATTACH + b"\x00")  # half a header
        conn = await Conn.attach(holder)
        conn.send(INPUT, b"out\n")  # output while a connection has not attached
        await conn.expect(b"out\r\nout\r\n")
        lurker.close()
        conn.send(b"Z", b"")
        assert "unexpected frame type" in await conn.error()
        conn.send(PING, b"\x00abc")
        await conn.until(lambda: conn.pongs == [b"\x00abc"])
        beyond = await Conn.attach(holder, offset=10**9)
        assert "beyond the end" in await beyond.error()
        conn.writer.write(b"D" + (64 << 20).to_bytes(4, "big"))
        assert "exceeds the limit" in await conn.error()
        await conn.eof()
        await beyond.close()
        await conn.close()

    run(scenario())
    assert holder.read_state()["state"] == "running"


def test_recording_and_long_socket_paths(holders: Holders, tmp_path: Path) -> None:
    holders.dir = tmp_path / ("d" * 60) / ("e" * 60)
    holders.dir.mkdir(parents=True)
    cast = tmp_path / "session.cast"
    fd = os.open(cast, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    command = sh(r"printf 'h\303\251llo\n'; ls /proc/self/fd; read x; echo bye")
    holder = holders.start(command, record="session.cast", record_fd=fd)
    os.close(fd)  # the holder has its own copy, as the engine closes its
    assert len(str(holder.sock)) > 108

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        await conn.expect("héllo\r\n".encode())
        conn.send_json(RESIZE, {"rows": 30, "cols": 100})
        conn.send(INPUT, b"\n")
        await conn.until(lambda: conn.exit is not None)
        await conn.close()

    run(scenario())
    header, *events = (json.loads(line) for line in cast.read_text().splitlines())
    assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
    assert header["env"] == {"TERM": "xterm-256color"} and isinstance(header["timestamp"], int)
    text = "".join(event[2] for event in events if event[1] == "o")
    words = text.split()  # the echoed newline may land before or after the listing
    assert words[0] == "héllo" and words[-1] == "bye" and text.endswith("bye\r\n")
    assert fd > 3 and set(words[1:-1]) == {"0", "1", "2", "3"}  # the recording is not the shell's
    assert ["r", "100x30"] in [event[1:] for event in events]
    times = [event[0] for event in events]
    assert times == sorted(times)


def test_bad_spec_is_reported_with_the_log(tmp_path: Path) -> None:
    proc = _wire.spawn(
        sys.executable, {"name": "x", "dir": str(tmp_path)}, tmp_path / "x.spec", tmp_path / "x.log"
    )
    with pytest.raises(RuntimeError, match="command must be a non-empty list"):
        _wire.wait_ready(tmp_path / "x.json", proc)
    assert proc.wait(TIMEOUT) == 2


def test_idle_holder_rss_is_small(holders: Holders) -> None:
    holder = holders.start(sh("read x"))

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        conn.send(INPUT, b"")
        await conn.sync()
        await conn.close()

    run(scenario())
    time.sleep(0.2)
    status = Path(f"/proc/{holder.state['holder_pid']}/status").read_text()
    rss_kib = int(
        next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]
    )
    print(f"idle holder RSS: {rss_kib / 1024:.1f} MiB")
    assert rss_kib <= 15 * 1024


def test_variables_travel_in_a_pipe_at_fd_3(holders: Holders) -> None:
    """`env_file`: what `docker exec --env-file=/dev/fd/3` reads; never on an argv."""
    big = "B=" + "x" * (100 << 10) + "\n"  # beyond a default pipe's 64 KiB
    holder = holders.start(sh("wc -c </dev/fd/3"), "pipe",
                           env_file="A=secret v\n" + big)  # fmt: skip

    async def scenario() -> None:
        conn = await Conn.attach(holder)
        await conn.until(lambda: conn.exit is not None)
        assert bytes(conn.data).split(b"\r\n")[0].strip() == str(11 + len(big)).encode()
        await conn.close()

    run(scenario())
    assert "secret" not in json.dumps(holder.read_state()["command"])


def test_a_run_as_user_is_checked_in_the_spec(holders: Holders) -> None:
    for user in ({"name": "root", "uid": 0, "gid": 0, "home": "/"}, {"name": "x"}, "nobody"):
        with pytest.raises(RuntimeError, match="user must be"):
            holders.start(sh("true"), "bad", user=user)
