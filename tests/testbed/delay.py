"""Delays without netem: a TCP proxy that holds the bytes it forwards.

The machines this runs on have no netem qdisc, so a test that needs a 2 s latency spike
between two hosts puts this proxy in the path: the client connects to the proxy's
`--listen` address, the proxy connects on to `--target`.

Run it as a process (inside a namespace, through `Host.popen`)::

    python -m tests.testbed.delay --listen 10.213.4.1:8000 --target 10.213.4.2:7419 \\
        --control /tmp/dxtbd-xxx/control.sock

and drive it from the test process with `DelayProxy` over the control socket: a unix
socket on the filesystem every namespace shares. One JSON object a line each way
(`{"op": "set_delay", "seconds": 2}` -> `{"ok": true}`).

Semantics, per connection and per direction (client -> target, target -> client):

- One FIFO queue and one writer per direction: bytes keep their order whatever the delay.
- `set_delay(s)`: a chunk read at time t is written at t + s (s as it was at t), and never
  before the chunk ahead of it.
- `spike(s, duration)`: the delay is `s` for chunks read during the next `duration`
  seconds, then back to the `set_delay` value (0 unless set).
- `pause()`: nothing is written (chunks queue up, then TCP pushes back on the sender);
  `resume()` writes what was held, in order.
- `cut()`: aborts every current connection (both sides get a reset); new ones are
  accepted as usual.
- A half close (EOF) is forwarded after the bytes before it; a reset (either side) resets
  the other side at once, dropping what was queued.
- `--listen ADDR:0` picks a free port: `DelayProxy.port` (and `stats()["port"]`) says which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .netns import Host

__all__ = ["DelayProxy"]

CHUNK = 65536
QUEUE = 64
"""Chunks a direction holds before it stops reading (TCP then pushes back)."""


# -- the proxy process -------------------------------------------------------------------


class _State:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.base = 0.0
        self.spike_until = 0.0
        self.spike = 0.0
        self.running = asyncio.Event()
        self.running.set()
        self.connections: set[_Connection] = set()
        self.accepted = 0
        self.forwarded = 0
        self.port = 0

    def delay(self) -> float:
        return self.spike if time.monotonic() < self.spike_until else self.base


class _Connection:
    def __init__(self, state: _State) -> None:
        self.state = state
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.writers.append(client_w)
        try:
            target_r, target_w = await asyncio.open_connection(*self.state.target)
        except OSError:
            client_w.transport.abort()
            return
        self.writers.append(target_w)
        self.tasks = [
            asyncio.create_task(self._direction(client_r, target_w)),
            asyncio.create_task(self._direction(target_r, client_w)),
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks)
        for writer in self.writers:
            writer.close()

    async def _direction(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE)

        async def read() -> None:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:  # a reset: the other side gets one too, at once
                    self.abort()
                    return
                await queue.put((time.monotonic() + self.state.delay(), data))
                if not data:
                    return

        reading = asyncio.create_task(read())
        try:
            release = 0.0
            while True:
                due, data = await queue.get()
                release = max(release, due)
                wait = release - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.state.running.wait()
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(data)
                self.state.forwarded += len(data)
                try:
                    await writer.drain()
                except OSError:  # a side is gone: so is the connection
                    self.abort()
                    return
        finally:
            reading.cancel()

    def abort(self) -> None:
        """Reset both sides (what is queued is lost, as a reset loses it)."""
        for writer in self.writers:
            writer.transport.abort()

    def cut(self) -> None:
        self.abort()
        for task in self.tasks:
            task.cancel()


async def _control(state: _State, line: bytes) -> dict[str, Any]:
    request = json.loads(line)
    op = request.get("op")
    if op == "set_delay":
        state.base = float(request["seconds"])
    elif op == "spike":
        state.spike = float(request["seconds"])
        state.spike_until = time.monotonic() + float(request["duration"])
    elif op == "pause":
        state.running.clear()
    elif op == "resume":
        state.running.set()
    elif op == "cut":
        for connection in list(state.connections):
            connection.cut()
    elif op != "stats":
        return {"ok": False, "error": f"unknown op {op!r}"}
    return {
        "ok": True,
        "delay": state.delay(),
        "paused": not state.running.is_set(),
        "connections": len(state.connections),
        "accepted": state.accepted,
        "forwarded": state.forwarded,
        "port": state.port,
    }


async def serve(listen: tuple[str, int], target: tuple[str, int], control: Path) -> None:
    state = _State(target)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(state)
        state.connections.add(connection)
        state.accepted += 1
        try:
            await connection.run(reader, writer)
        finally:
            state.connections.discard(connection)

    async def on_control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await _control(state, line)
                except (ValueError, KeyError, TypeError) as exc:
                    answer = {"ok": False, "error": repr(exc)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    proxy = await asyncio.start_server(on_client, *listen, reuse_address=True)
    state.port = proxy.sockets[0].getsockname()[1]
    controller = await asyncio.start_unix_server(on_control, str(control))
    async with proxy, controller:
        await asyncio.gather(proxy.serve_forever(), controller.serve_forever())


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed.delay")
    parser.add_argument("--listen", type=_address, required=True, help="ADDR:PORT")
    parser.add_argument("--target", type=_address, required=True, help="ADDR:PORT")
    parser.add_argument("--control", type=Path, required=True, help="unix socket PATH")
    args = parser.parse_args(argv)
    args.control.unlink(missing_ok=True)  # a stale socket of an earlier run
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.target, args.control))


# -- the test process's side -------------------------------------------------------------


class DelayProxy:
    """A delay proxy process and its remote control.

    `DelayProxy(listen_host, listen_port, target_host, target_port).start(host)` runs it
    in `host`'s namespace (`host=None`: in this process's namespace), returns once it
    answers; `stop()` (or the `with` block's end) ends it. Started on a fabric's host, it
    is stopped when the fabric closes too.
    """

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        target_host: str,
        target_port: int,
        *,
        control: Path | None = None,
    ) -> None:
        self.listen = (listen_host, listen_port)
        self.port = listen_port
        """The port it listens on (`listen_port` 0: the one it picked, once started)."""
        self.target = (target_host, target_port)
        self._tmp: str | None = None
        if control is None:  # short: a unix socket's path has at most 107 bytes
            self._tmp = tempfile.mkdtemp(prefix="dxtbd-")
            control = Path(self._tmp) / "control.sock"
        self.control = control
        self.process: subprocess.Popen[Any] | None = None
        self.output = self.control.with_suffix(".out")

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "tests.testbed.delay",
            "--listen", "{}:{}".format(*self.listen),
            "--target", "{}:{}".format(*self.target),
            "--control", str(self.control),
        ]  # fmt: skip

    def start(self, host: Host | None = None, timeout: float = 10) -> DelayProxy:
        from .netns import REPO

        path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        kw: dict[str, Any] = {"cwd": REPO, "env": env, "start_new_session": True}
        with open(self.output, "wb") as out:
            kw.update(stdout=out, stderr=subprocess.STDOUT)
            if host is None:
                self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, **kw)
            else:
                self.process = host.popen(*self.argv(), **kw)
                host.fabric.on_close(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the delay proxy exited: {self.output.read_text()}")
            with contextlib.suppress(OSError):
                self.port = int(self.stats()["port"])
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the delay proxy did not answer within {timeout} s")
            time.sleep(0.02)

    def _call(self, op: str, **params: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.control))
            sock.sendall(json.dumps({"op": op, **params}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("the delay proxy closed its control connection")
                data += chunk
        answer: dict[str, Any] = json.loads(data)
        if not answer.get("ok"):
            raise RuntimeError(f"delay proxy: {answer.get('error')}")
        return answer

    def set_delay(self, seconds: float) -> None:
        self._call("set_delay", seconds=seconds)

    def spike(self, seconds: float, duration: float) -> None:
        self._call("spike", seconds=seconds, duration=duration)

    def pause(self) -> None:
        self._call("pause")

    def resume(self) -> None:
        self._call("resume")

    def cut(self) -> None:
        self._call("cut")

    def stats(self) -> dict[str, Any]:
        """delay, paused, connections (open now), accepted, forwarded (bytes), port."""
        return self._call("stats")

    def stop(self) -> None:
        """End the process and remove its control socket's folder (idempotent)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    main()
