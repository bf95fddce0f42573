"""The PTY holder's connections: accept them, read their frames, serve their requests.

Standard library only, like `_holder.py` (which makes this folder a package when it runs
standalone). `Connections` is a base class of `_holder.Holder`, which owns the PTY,
the ring, the child and the state file; see `_holder_wire.py` for the frames.
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import json
import selectors
import signal
import socket
import termios
import time

from ._holder_child import _is_int, _log, _winsize
from ._holder_runs import Run
from ._holder_wire import (
    ATTACH,
    BATCH_BYTES,
    CONTROL_LIMIT,
    ERROR,
    EXIT,
    INFO,
    INPUT,
    INPUT_LIMIT,
    KILL,
    MAX_SIZE,
    MISSED,
    PING,
    PONG,
    QUEUE_LIMIT,
    QUIT,
    READ_CHUNK,
    RESIZE,
    RUN,
    SEND_PARTS,
    frame,
    json_frame,
    output_header,
    take_frames,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~1 MiB of RSS, so it is never imported at run time
    from typing import Any

    from ._holder_child import Child
    from ._holder_runs import Runs
    from ._holder_wire import Recorder, Ring

__all__ = ["Client", "Connections"]


class Client:
    """One connection: its input buffer, outgoing queue and next output offset."""

    __slots__ = (
        "attached",
        "closed",
        "events",
        "exit_sent",
        "inbox",
        "next",
        "outbox",
        "paused",
        "queued",
        "results",
        "sock",
        "writer",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.outbox: collections.deque[bytes | memoryview] = collections.deque()
        self.queued = 0  # bytes in the outbox
        self.attached = False
        self.writer = False
        self.closed = False
        self.exit_sent = False
        self.paused = False  # not read while the PTY has too much input waiting
        self.events = 0  # what the selector watches for (0: not registered)
        self.next = 0  # offset of the first output byte not yet queued
        self.results: list[tuple[int, bytes]] = []  # F frames, each once output reaches its end

    def queue(self, *parts: bytes) -> None:
        self.outbox.extend(parts)
        self.queued += sum(map(len, parts))

    def error(self, message: str) -> None:
        self.queue(json_frame(ERROR, {"error": message}))

    def sent(self, count: int) -> None:
        """Forget the first `count` bytes of the outbox (the socket took them)."""
        self.queued -= count
        outbox = self.outbox
        while count:
            head = outbox[0]
            if len(head) > count:
                outbox[0] = memoryview(head)[count:]
                return
            count -= len(head)
            outbox.popleft()


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Connections:
    """The client side of the holder: connections, their queues and their requests."""

    if TYPE_CHECKING:  # owned by `Holder`, which derives from this class
        listener: socket.socket
        selector: selectors.BaseSelector
        clients: dict[int, Client]
        ring: Ring
        child: Child
        recorder: Recorder | None
        runs: Runs
        master: int
        pending_input: bytearray
        rows: int
        cols: int
        exit_code: int | None
        signal: int | None
        reaped: bool
        quitting: bool
        last_activity: float

        @property
        def finished(self) -> bool: ...
        def snapshot(self) -> dict[str, Any]: ...
        def _write_state(self) -> None: ...
        def _write_pty(self) -> None: ...
        def _next_run(self) -> None: ...
        def _abandon_runs(self, client: Client) -> None: ...

    # -- clients

    def _on_accept(self, key: selectors.SelectorKey, events: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE and friends: keep serving the others
                _log(f"accept failed: {error}")
                return
            sock.setblocking(False)
            client = Client(sock)
            self.clients[sock.fileno()] = client
            self._watch(client)

    def _on_client(self, key: selectors.SelectorKey, events: int) -> None:
        client = self.clients.get(key.fd)
        if client is None:
            return
        if events & selectors.EVENT_READ:
            self._receive(client)
        if events & selectors.EVENT_WRITE and not client.closed:
            self._pump(client)

    def _receive(self, client: Client) -> None:
        try:
            data = client.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbox += data
        try:
            frames = take_frames(client.inbox)
        except ValueError as error:
            self._reject(client, str(error))
            return
        for kind, payload in frames:
            self._handle(client, kind, payload)
            if client.closed or self.quitting:
                return
        if client.queued > CONTROL_LIMIT:
            self._drop(client)  # floods us with requests but never reads the answers
            return
        sent_input = any(kind == INPUT for kind, _ in frames)
        client.paused = sent_input and len(self.pending_input) >= INPUT_LIMIT
        self._pump(client)

    def _reject(self, client: Client, message: str) -> None:
        """Protocol violation: best-effort error frame, then close."""
        client.error(message)
        self._send(client)
        self._drop(client)

    def _drop(self, client: Client) -> None:
        if client.closed:
            return
        client.closed = True
        if client.events:
            self.selector.unregister(client.sock)
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()
        self._abandon_runs(client)
        if client.attached:
            self.last_activity = time.monotonic()
            self._write_state()

    def _pump(self, client: Client) -> None:
        """Refill the client's queue from the ring and send what the socket takes."""
        while not client.closed:
            self._fill(client)
            self._send(client)
            if client.queued or not client.attached or client.next >= self.ring.end:
                break

    def _fill(self, client: Client) -> None:
        if not client.attached:
            return
        ring = self.ring
        while client.queued < QUEUE_LIMIT and client.next < ring.end:
            if client.next < ring.start:
                client.queue(json_frame(MISSED, {"from": client.next, "to": ring.start}))
                client.next = ring.start
            chunk = ring.read(client.next, BATCH_BYTES)
            client.queue(output_header(client.next, len(chunk)), chunk)
            client.next += len(chunk)
        while client.results and client.next >= client.results[0][0]:
            client.queue(client.results.pop(0)[1])
        if self.finished and client.next >= ring.end and not client.exit_sent:
            client.queue(json_frame(EXIT, {"exit_code": self.exit_code, "signal": self.signal}))
            client.exit_sent = True

    def _send(self, client: Client) -> None:
        while client.outbox and not client.closed:
            parts = list(itertools.islice(client.outbox, SEND_PARTS))
            try:
                sent = client.sock.sendmsg(parts)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            client.sent(sent)
        if not client.closed:
            self._watch(client)

    def _watch(self, client: Client) -> None:
        """Watch for input unless paused, for writability while the queue is not empty."""
        wanted = 0 if client.paused else selectors.EVENT_READ
        if client.outbox:
            wanted |= selectors.EVENT_WRITE
        if wanted == client.events:
            return
        if not client.events:
            self.selector.register(client.sock, wanted, self._on_client)
        elif not wanted:
            self.selector.unregister(client.sock)
        else:
            self.selector.modify(client.sock, wanted, self._on_client)
        client.events = wanted

    # -- requests

    def _handle(self, client: Client, kind: bytes, payload: bytes) -> None:
        if not client.attached:
            if kind != ATTACH:
                self._reject(client, f"the first frame must be A (attach), got {kind!r}")
            else:
                self._attach(client, payload)
            return
        if kind == PING:
            client.queue(frame(PONG, payload))
            return
        handlers = {INPUT: self._input, RESIZE: self._resize, KILL: self._kill, QUIT: self._quit,
                    RUN: self._run}  # fmt: skip
        handler = handlers.get(kind)
        if handler is None:
            client.error(f"unexpected frame type {kind!r}")
        elif not client.writer:
            names = {INPUT: "input", RESIZE: "resize", KILL: "kill", QUIT: "quit", RUN: "run"}
            client.error(f"read-only: {names[kind]} rejected")
        else:
            handler(client, payload)

    def _attach(self, client: Client, payload: bytes) -> None:
        request = _json_object(payload)
        if request is None:
            self._reject(client, "attach: payload must be a JSON object")
            return
        offset, mode = request.get("offset"), request.get("mode", "rw")
        if offset not in (None, "end") and (not _is_int(offset) or offset < 0):
            self._reject(
                client, f"attach: offset must be null, 'end' or an integer >= 0, got {offset!r}"
            )
            return
        if mode not in ("rw", "ro"):
            self._reject(client, f"attach: mode must be 'rw' or 'ro', got {mode!r}")
            return
        client.attached = True
        client.writer = mode == "rw"
        self._write_state()
        info = self.snapshot()
        info.update(start=self.ring.start, end=self.ring.end, runs=1)
        client.queue(json_frame(INFO, info))
        if offset is None:
            client.next = self.ring.start
        elif offset == "end":  # no replay: a client that only acts (input, resize, kill)
            client.next = self.ring.end
        elif offset > self.ring.end:
            client.error(f"attach: offset {offset} is beyond the end of the output ({info['end']})")
            client.next = self.ring.end
        else:
            client.next = offset  # below the ring's start: _fill sends M first

    def _input(self, client: Client, payload: bytes) -> None:
        if self.master < 0:
            client.error("the session has exited: input rejected")
        else:
            self.pending_input += payload
            self._write_pty()

    def _run(self, client: Client, payload: bytes) -> None:
        if self.master < 0:
            client.error("the session has exited: run rejected")
            return
        try:
            run = Run.parse(client, _json_object(payload))
        except ValueError as error:
            client.error(str(error))
            return
        self.runs.queue.append(run)
        self._next_run()

    def _resize(self, client: Client, payload: bytes) -> None:
        request = _json_object(payload)
        if request is None:
            client.error("resize: payload must be a JSON object")
            return
        for key in ("rows", "cols"):
            value = request.get(key)
            if not _is_int(value) or not 1 <= value <= MAX_SIZE:
                client.error(
                    f"resize: {key} must be an integer from 1 to {MAX_SIZE}, got {value!r}"
                )
                return
        if self.master < 0:
            client.error("the session has exited: resize rejected")
            return
        self.rows, self.cols = request["rows"], request["cols"]
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, _winsize(self.rows, self.cols))
        self.child.signal(signal.SIGWINCH)
        if self.recorder is not None:
            self.recorder.resize(self.cols, self.rows)
        self._write_state()

    def _kill(self, client: Client, payload: bytes) -> None:
        request = _json_object(payload)
        number = None if request is None else request.get("signal")
        if not _is_int(number) or not 1 <= number < signal.NSIG:
            client.error(f"kill: signal must be an integer from 1 to {signal.NSIG - 1}")
        elif self.reaped:
            client.error("the session has exited: kill rejected")
        else:
            self.child.signal(number)

    def _quit(self, client: Client, payload: bytes) -> None:
        self.quitting = True
