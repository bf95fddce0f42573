"""PTY holder: a tiny standalone process that owns one PTY and outlives the engine.

The engine starts one holder per persistent shell session as
``python -I -S /abs/path/_holder.py SPECFILE``. This file therefore imports only the
standard library (never dxflow) and keeps its imports few (idle RSS stays ~11 MiB). The
holder runs in its own session, ignores SIGHUP and SIGPIPE, and keeps running when the
engine dies (even ``kill -9``); a restarted engine reattaches through the socket.

Spec file (JSON, mode 0600, deleted once read)::

    {"name", "dir", "command": [argv...], "env": {...}, "cwd": str|null, "rows", "cols",
     "scrollback": bytes (2 MiB), "record": asciicast path|null,
     "idle_timeout": seconds|null, "term": "xterm-256color"}

Files in ``dir``: ``NAME.sock`` (unix socket, 0600, bound before the state file is
written) and ``NAME.json`` (state, 0600, written atomically on every change of state,
size or client count)::

    {"name", "holder_pid", "pid", "command", "cwd", "created", "rows", "cols",
     "state": "running"|"exited"|"failed", "exit_code", "signal", "error", "exited_at",
     "clients"}

Output is kept in a ring buffer of ``scrollback`` bytes. Every output byte has a global
offset (0 = the first byte ever); the ring retains the offsets ``[start, end)``.

Wire protocol (both directions): frame = 1 byte type + 4-byte big-endian payload length +
payload.

==== ============== ===========================================================
type direction      payload and meaning
==== ============== ===========================================================
A    client→holder  attach, must come first: JSON ``{"offset": int|null|"end", "mode":
                    "rw"|"ro"}``. Reply: ``I``, then the replay (offset null: the
                    whole ring; offset >= start: exactly the bytes from offset;
                    offset < start: ``M`` then the bytes from start), then live
                    output; ``X`` once the session has exited and the client is
                    caught up.
D    client→holder  input bytes, written to the PTY as they are (any bytes).
                    Rejected with ``E`` for ``ro`` clients.
R    client→holder  resize JSON ``{"rows": int, "cols": int}`` (1..1000 each):
                    TIOCSWINSZ + SIGWINCH to the child's process group. The latest
                    resize wins, whichever client sent it.
K    client→holder  JSON ``{"signal": int}`` sent to the child's process group
                    (falls back to the child itself).
P    both           ping; the holder answers ``P`` (pong) with the same payload.
Q    client→holder  quit: SIGHUP the child (SIGKILL after 2 s), remove the socket
                    and state files, close every connection, exit.
I    holder→client  info JSON: the state dict plus ``"start"`` and ``"end"``.
O    holder→client  output: 8-byte big-endian offset of the first byte + the bytes.
M    holder→client  missed JSON ``{"from": offset, "to": start}``: those bytes fell
                    out of the ring; output resumes at ``to``.
X    holder→client  exit JSON ``{"exit_code": int|null, "signal": int|null}``.
E    holder→client  error JSON ``{"error": str}``; the connection stays open except
                    for protocol violations (bad or missing ``A``, oversized frame).
==== ============== ===========================================================

``ro`` clients may only ping: ``D``, ``R``, ``K`` and ``Q`` are answered with ``E``.
SIGTERM to the holder behaves like ``Q``; so does removing (or replacing) its socket file,
noticed within 5 s: a holder nobody can reach any more does not linger.

Flow control: the PTY is read in chunks of up to 64 KiB; output is batched for at most
2 ms or 64 KiB, but a small read (a keystroke echo) is sent at once. Clients pull from
the ring: each one has an outgoing queue of at most ~1 MiB, refilled from the ring as
the socket drains, so a slow client never blocks the PTY or the other clients; when it
falls further behind than the ring holds, it gets ``M`` and resumes at the ring's start.
Input goes the other way with backpressure: while more than 1 MiB of input waits for the
program, the holder stops reading the connections that sent it (other connections can
still send ``K`` or ``Q``); nothing is dropped.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import errno
import fcntl
import itertools
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~1 MiB of RSS, so it is never imported at run time
    from typing import Any, BinaryIO, NoReturn, TypeGuard

__all__ = [
    "ATTACH",
    "ERROR",
    "EXIT",
    "HEADER",
    "INFO",
    "INPUT",
    "KILL",
    "MAX_FRAME",
    "MISSED",
    "OUTPUT",
    "PING",
    "PONG",
    "QUIT",
    "RESIZE",
    "Recorder",
    "Ring",
    "frame",
    "json_frame",
    "output",
    "output_frame",
    "output_header",
    "take_frames",
]

# Frame types, client -> holder.
ATTACH = b"A"
INPUT = b"D"
RESIZE = b"R"
KILL = b"K"
PING = b"P"
QUIT = b"Q"
# Frame types, holder -> client.
INFO = b"I"
OUTPUT = b"O"
MISSED = b"M"
EXIT = b"X"
ERROR = b"E"
PONG = b"P"

HEADER = struct.Struct(">cI")
OFFSET = struct.Struct(">Q")
MAX_FRAME = 1 << 20  # largest frame a client may send
READ_CHUNK = 64 << 10  # one read of the PTY
BATCH_BYTES = 64 << 10  # largest output batch (and O frame)
BATCH_SECONDS = 0.002  # longest an output batch waits for more bytes
SMALL_READ = 1024  # a wake-up that read less than this is sent at once
QUEUE_LIMIT = 1 << 20  # a client's outgoing queue is refilled only below this
SEND_PARTS = 64  # buffers per sendmsg
INPUT_LIMIT = 1 << 20  # beyond this much input waiting for the PTY, senders are paused
CONTROL_LIMIT = 4 << 20  # a client that lets this much pile up (pongs, errors) is dropped
EXIT_GRACE = 0.2  # after the child exits, wait this long for the PTY's last bytes
KILL_GRACE = 2.0  # SIGHUP, then SIGKILL after this long
WATCH_SECONDS = 5.0  # how often the holder checks that its socket file is still there
MAX_SIZE = 1000  # largest rows / cols
DEFAULT_SCROLLBACK = 2 << 20


# ---------------------------------------------------------------------------------------
# Framing (shared with the engine through _wire.py)


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame: type byte, 4-byte big-endian payload length, payload."""
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: bytes, value: object) -> bytes:
    """A frame whose payload is compact JSON."""
    return frame(kind, json.dumps(value, separators=(",", ":")).encode())


def output_header(offset: int, size: int) -> bytes:
    """The first 13 bytes of an ``O`` frame carrying `size` bytes from `offset`."""
    return HEADER.pack(OUTPUT, OFFSET.size + size) + OFFSET.pack(offset)


def output_frame(offset: int, data: bytes | bytearray) -> bytes:
    """An ``O`` frame: 8-byte big-endian offset of the first byte, then the bytes."""
    return output_header(offset, len(data)) + data


def output(payload: bytes) -> tuple[int, bytes]:
    """Split an ``O`` payload into (offset of the first byte, bytes)."""
    if len(payload) < OFFSET.size:
        raise ValueError(f"an O frame needs at least {OFFSET.size} bytes, got {len(payload)}")
    return OFFSET.unpack_from(payload)[0], payload[OFFSET.size :]


def take_frames(buffer: bytearray, limit: int = MAX_FRAME) -> list[tuple[bytes, bytes]]:
    """Remove and return the complete frames at the front of `buffer`.

    Raises ValueError when a frame announces a payload larger than `limit`.
    """
    frames: list[tuple[bytes, bytes]] = []
    position = 0
    while len(buffer) - position >= HEADER.size:
        kind, size = HEADER.unpack_from(buffer, position)
        if size > limit:
            raise ValueError(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        end = position + HEADER.size + size
        if len(buffer) < end:
            break
        frames.append((kind, bytes(buffer[position + HEADER.size : end])))
        position = end
    del buffer[:position]
    return frames


# ---------------------------------------------------------------------------------------
# Scrollback and recording


class Ring:
    """The last `capacity` output bytes, addressed by global offsets [start, end).

    The buffer grows up to `capacity`, then is overwritten in place (the byte at offset
    `o` lives at index ``o % capacity``): no reallocation, no copy of old bytes.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.data = bytearray()
        self.end = 0

    @property
    def start(self) -> int:
        return max(0, self.end - self.capacity)

    def append(self, chunk: bytes) -> None:
        if len(self.data) < self.capacity:
            if self.end + len(chunk) <= self.capacity:
                self.data += chunk
                self.end += len(chunk)
                return
            self.data += bytes(self.capacity - len(self.data))  # full size from now on
        view = memoryview(chunk)
        if len(view) > self.capacity:  # only the tail survives
            self.end += len(view) - self.capacity
            view = view[-self.capacity :]
        position = self.end % self.capacity
        first = min(len(view), self.capacity - position)
        self.data[position : position + first] = view[:first]
        self.data[: len(view) - first] = view[first:]
        self.end += len(view)

    def read(self, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes from `offset` (start <= offset <= end)."""
        size = min(limit, self.end - offset)
        position = offset % self.capacity
        first = min(size, self.capacity - position)
        with memoryview(self.data) as view:
            if first == size:
                return bytes(view[position : position + size])
            return b"".join((view[position:], view[: size - first]))


class Recorder:
    """Appends the session to an asciicast v2 file, one flushed line per event."""

    def __init__(self, path: str, cols: int, rows: int, created: float, term: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.file: BinaryIO = os.fdopen(fd, "ab")
        self.began = time.monotonic() - max(0.0, time.time() - created)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if self.file.tell() == 0:
            header = {
                "version": 2,
                "width": cols,
                "height": rows,
                "timestamp": int(created),
                "env": {"TERM": term},
            }
            self._line(header)

    def output(self, data: bytes) -> None:
        text = self.decoder.decode(data)  # an incomplete UTF-8 tail waits for the next batch
        if text:
            self._event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def close(self) -> None:
        text = self.decoder.decode(b"", True)
        if text:
            self._event("o", text)
        self.file.close()

    def _event(self, kind: str, text: str) -> None:
        self._line([round(time.monotonic() - self.began, 6), kind, text])

    def _line(self, value: object) -> None:
        self.file.write(json.dumps(value, ensure_ascii=False).encode() + b"\n")
        self.file.flush()


# ---------------------------------------------------------------------------------------
# Spec and child process


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} holder[{os.getpid()}] {message}\n")
    sys.stderr.flush()


def load_spec(path: str) -> dict[str, Any]:
    """Read, delete and validate the spec file; raises ValueError with a clear message."""
    try:
        with open(path, "rb") as file:
            spec = json.load(file)
    finally:
        _unlink(path)
    if not isinstance(spec, dict):
        raise ValueError("the spec must be a JSON object")
    name, folder, command = spec.get("name"), spec.get("dir"), spec.get("command")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid name: {name!r}")
    if not isinstance(folder, str) or not folder:
        raise ValueError(f"invalid dir: {folder!r}")
    if not isinstance(command, list) or not command:
        raise ValueError("command must be a non-empty list of strings")
    if not all(isinstance(arg, str) for arg in command):
        raise ValueError("command must be a non-empty list of strings")
    _check_spec_types(spec)
    spec["dir"] = os.path.abspath(folder)
    if spec.get("record"):
        spec["record"] = os.path.abspath(spec["record"])
    return spec


def _check_spec_types(spec: dict[str, Any]) -> None:
    env = spec.get("env")
    if env is not None and not (
        isinstance(env, dict) and all(isinstance(v, str) for v in [*env, *env.values()])
    ):
        raise ValueError("env must be an object of strings")
    for key in ("rows", "cols"):
        value = spec.get(key)
        if value is not None and (not _is_int(value) or not 1 <= value <= MAX_SIZE):
            raise ValueError(f"{key} must be an integer from 1 to {MAX_SIZE}, got {value!r}")
    scrollback = spec.get("scrollback")
    if scrollback is not None and (not _is_int(scrollback) or scrollback < 1):
        raise ValueError(f"scrollback must be a positive integer, got {scrollback!r}")
    timeout = spec.get("idle_timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ValueError(f"idle_timeout must be a positive number or null, got {timeout!r}")
    for key in ("cwd", "record", "term"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ValueError(f"{key} must be a string or null")


def _failure(stage: str, target: str, error: OSError) -> tuple[int, str]:
    """Exit code and message for a child that could not enter its folder or exec."""
    code = error.errno
    denied = code in (errno.EACCES, errno.EPERM)
    if stage == "cwd":
        messages = {
            errno.ENOENT: "no such directory",
            errno.ENOTDIR: "not a directory",
        }
        text = "permission denied" if denied else messages.get(code or 0)
    else:
        messages = {errno.ENOENT: "command not found", errno.ENOEXEC: "exec format error"}
        text = "permission denied" if denied else messages.get(code or 0)
    if text is None:
        text = f"cannot {'enter' if stage == 'cwd' else 'run'} ({error.strerror})"
    status = 126 if denied or code == errno.ENOEXEC else 127
    return status, f"{text}: {target}"


# Signals the holder changes or may inherit as ignored (an engine started with `nohup` or
# `&`); the session must get them back at their defaults.
_RESET_SIGNALS = (
    "SIGHUP",
    "SIGPIPE",
    "SIGCHLD",
    "SIGTERM",
    "SIGINT",
    "SIGQUIT",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGXFSZ",
)


def _default_signals() -> None:
    signal.set_wakeup_fd(-1)
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _winsize(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


class Child:
    """The session's process, forked on a fresh PTY."""

    def __init__(self, spec: dict[str, Any], rows: int, cols: int) -> None:
        self.command: list[str] = spec["command"]
        self.cwd: str | None = spec.get("cwd")
        self.env: dict[str, str] = dict(spec.get("env") or os.environ)
        self.env["TERM"] = spec.get("term") or "xterm-256color"
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, _winsize(rows, cols))
        attributes = termios.tcgetattr(slave)
        attributes[0] |= getattr(
            termios, "IUTF8", 0o40000
        )  # line editing erases whole UTF-8 characters
        termios.tcsetattr(slave, termios.TCSANOW, attributes)
        report_r, report_w = os.pipe()  # close-on-exec: EOF means exec succeeded
        self.pid = os.fork()
        if self.pid == 0:
            self._exec(slave, report_r, report_w)
        os.close(slave)
        os.close(report_w)
        self.failure = self._read_report(report_r)
        os.set_blocking(self.master, False)

    def _exec(self, slave: int, report_r: int, report_w: int) -> NoReturn:
        status, message = 127, "cannot start"
        try:
            os.close(self.master)
            os.close(report_r)
            _default_signals()
            os.login_tty(slave)  # new session, controlling terminal, stdin/out/err
            stage, target = "cwd", self.cwd or ""
            try:
                if self.cwd:
                    os.chdir(self.cwd)
                stage, target = "exec", self.command[0]
                os.execvpe(self.command[0], self.command, self.env)  # noqa: S606
            except OSError as error:
                status, message = _failure(stage, target, error)
        except BaseException as error:
            message = f"cannot start: {error}"
        finally:
            try:
                os.write(report_w, f"{status}\n{message}".encode())
            finally:
                os._exit(status)

    @staticmethod
    def _read_report(fd: int) -> tuple[int, str] | None:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        os.close(fd)
        if not chunks:
            return None
        status, _, message = b"".join(chunks).decode(errors="replace").partition("\n")
        return int(status), message

    def signal(self, number: int) -> None:
        """Send `number` to the child's process group, or to the child alone."""
        try:
            os.killpg(self.pid, number)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)


# ---------------------------------------------------------------------------------------
# Clients


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


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------
# The holder


class Holder:
    """Owns the PTY, the ring, the socket and the state file; runs the selector loop."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["name"]
        self.dir: str = spec["dir"]
        self.command: list[str] = spec["command"]
        self.cwd: str | None = spec.get("cwd")
        self.rows: int = int(spec.get("rows") or 24)
        self.cols: int = int(spec.get("cols") or 80)
        self.term: str = spec.get("term") or "xterm-256color"
        timeout = spec.get("idle_timeout")
        self.idle_timeout: float | None = None if timeout is None else float(timeout)
        self.ring = Ring(int(spec.get("scrollback") or DEFAULT_SCROLLBACK))
        self.sock_path = os.path.join(self.dir, f"{self.name}.sock")
        self.state_path = os.path.join(self.dir, f"{self.name}.json")
        self.created = time.time()
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, Client] = {}
        self.state = "running"
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.error: str | None = None
        self.exited_at: float | None = None
        self.batch: list[bytes] = []
        self.batch_size = 0
        self.batch_deadline: float | None = None
        self.pending_input = bytearray()
        self.master = -1
        self.reaped = False
        self.exit_deadline: float | None = None
        self.kill_deadline: float | None = None
        self.last_activity = time.monotonic()
        self.quitting = False
        self.watch_deadline = time.monotonic() + WATCH_SECONDS
        self.recorder: Recorder | None = None
        self._install_signals()
        self.listener = self._listen()
        self.child = Child(spec, self.rows, self.cols)
        self._start(spec)

    # -- start-up

    def _install_signals(self) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # Handlers must exist for the wake-up fd to carry the signal numbers.
        signal.signal(signal.SIGCHLD, lambda _number, _frame: None)
        signal.signal(signal.SIGTERM, lambda _number, _frame: None)
        self.wakeup, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        self.selector.register(self.wakeup, selectors.EVENT_READ, self._on_signal)

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _unlink(self.sock_path)  # a stale socket of an earlier holder
        mask = os.umask(0o177)
        try:
            if len(os.fsencode(self.sock_path)) < 100:
                listener.bind(self.sock_path)
            else:  # too long for sockaddr_un: bind relative to the folder
                here = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.chdir(self.dir)
                    listener.bind(os.path.basename(self.sock_path))
                finally:
                    os.fchdir(here)
                    os.close(here)
        finally:
            os.umask(mask)
        os.chmod(self.sock_path, 0o600)
        self.sock_id = _file_id(self.sock_path)
        listener.listen(64)
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ, self._on_accept)
        return listener

    def _start(self, spec: dict[str, Any]) -> None:
        if self.child.failure is not None:
            self.exit_code, self.error = self.child.failure
            os.waitpid(self.child.pid, 0)
            os.close(self.child.master)
            self.reaped = True
            self.state = "failed"
            self.exited_at = time.time()
        else:
            self.master = self.child.master
            self.selector.register(self.master, selectors.EVENT_READ, self._on_master)
            self._open_recorder(spec.get("record"))
        os.chdir("/")  # never keep a folder busy
        self._write_state()

    def _open_recorder(self, path: str | None) -> None:
        if not path:
            return
        try:
            self.recorder = Recorder(path, self.cols, self.rows, self.created, self.term)
        except OSError as error:
            _log(f"recording disabled: {error}")

    # -- state

    @property
    def finished(self) -> bool:
        return self.state != "running"

    def attached(self) -> int:
        return sum(1 for client in self.clients.values() if client.attached)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "holder_pid": os.getpid(),
            "pid": self.child.pid,
            "command": self.command,
            "cwd": self.cwd,
            "created": self.created,
            "rows": self.rows,
            "cols": self.cols,
            "state": self.state,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "error": self.error,
            "exited_at": self.exited_at,
            "clients": self.attached(),
        }

    def _write_state(self) -> None:
        if self.quitting:
            return
        data = json.dumps(self.snapshot()).encode()
        temporary = f"{self.state_path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, self.state_path)

    # -- main loop

    def run(self) -> None:
        while not self.quitting:
            for key, events in self.selector.select(self._timeout()):
                key.data(key, events)
                if self.quitting:
                    break
            self._tick()

    def _timeout(self) -> float | None:
        deadlines = [
            self.batch_deadline,
            self.exit_deadline,
            self.kill_deadline,
            self.watch_deadline,
        ]
        if self._idle_watch():
            deadlines.append(self.last_activity + (self.idle_timeout or 0.0))
        pending = [deadline for deadline in deadlines if deadline is not None]
        if not pending:
            return None
        return max(0.0, min(pending) - time.monotonic())

    def _tick(self) -> None:
        now = time.monotonic()
        if self.batch_deadline is not None and now >= self.batch_deadline:
            self._flush()
        if self.master < 0 and not self.reaped:
            self._reap()
        exit_due = self.exit_deadline is not None and now >= self.exit_deadline
        if self.reaped and not self.finished and (self.master < 0 or exit_due):
            self._finish()
        if self._idle_watch() and now - self.last_activity >= (self.idle_timeout or 0.0):
            _log(f"idle for {self.idle_timeout} s: terminating the session")
            self.error = (
                f"idle timeout: terminated after {self.idle_timeout:g} s without clients or output"
            )
            self._terminate()
        if self.kill_deadline is not None and now >= self.kill_deadline and not self.reaped:
            self.child.signal(signal.SIGKILL)
            self.kill_deadline = None
        if now >= self.watch_deadline:
            self.watch_deadline = now + WATCH_SECONDS
            self._check_socket()

    def _check_socket(self) -> None:
        """Quit when the socket file is gone or replaced: nobody can reach us any more."""
        if _file_id(self.sock_path) != self.sock_id:
            _log(f"{self.sock_path} was removed or replaced: quitting")
            self.quitting = True

    def _idle_watch(self) -> bool:
        return (
            self.idle_timeout is not None
            and not self.finished
            and self.kill_deadline is None
            and not self.reaped
            and self.attached() == 0
        )

    # -- signals and the child's end

    def _on_signal(self, key: selectors.SelectorKey, events: int) -> None:
        received = bytearray()
        try:
            while chunk := os.read(self.wakeup, 512):
                received += chunk
        except BlockingIOError:
            pass
        if signal.SIGTERM in received:
            _log("SIGTERM: quitting")
            self.quitting = True
        self._reap()

    def _reap(self) -> None:
        if self.reaped:
            return
        try:
            pid, status = os.waitpid(self.child.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.child.pid, 0
        if pid == 0:
            return
        self.reaped = True
        code = os.waitstatus_to_exitcode(status)
        if code >= 0:
            self.exit_code = code
        else:
            self.signal = -code
        self.exit_deadline = time.monotonic() + EXIT_GRACE  # let the PTY deliver its tail

    def _finish(self) -> None:
        """The child is gone: drain the PTY, record the exit, tell every client."""
        while self.master >= 0 and self._read_pty():
            pass
        self._close_pty()
        self._flush()
        self.state = "exited"
        self.exited_at = time.time()
        self.exit_deadline = self.kill_deadline = None
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self._write_state()
        for client in list(self.clients.values()):
            self._pump(client)

    def _terminate(self) -> None:
        """SIGHUP the child's process group now, SIGKILL in KILL_GRACE seconds."""
        self.child.signal(signal.SIGHUP)
        self.kill_deadline = time.monotonic() + KILL_GRACE

    # -- PTY

    def _on_master(self, key: selectors.SelectorKey, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._write_pty()
        if events & selectors.EVENT_READ and self.master >= 0:
            self._read_pty()

    def _read_pty(self) -> int:
        """Read what the PTY has (up to a batch); returns the number of bytes read."""
        got = 0
        while self.batch_size < BATCH_BYTES:
            try:
                chunk = os.read(self.master, READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as error:  # EIO: every slave descriptor is closed
                if error.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                self._close_pty()
                break
            self.batch.append(chunk)
            self.batch_size += len(chunk)
            got += len(chunk)
        if not self.batch:
            return got
        if self.batch_size >= BATCH_BYTES or got < SMALL_READ or self.master < 0:
            self._flush()
        elif self.batch_deadline is None:
            self.batch_deadline = time.monotonic() + BATCH_SECONDS
        return got

    def _close_pty(self) -> None:
        if self.master < 0:
            return
        self.selector.unregister(self.master)
        os.close(self.master)
        self.master = -1
        self.pending_input.clear()
        self._resume_senders()

    def _resume_senders(self) -> None:
        for client in list(self.clients.values()):
            if client.paused:
                client.paused = False
                self._watch(client)

    def _flush(self) -> None:
        """Move the batch into the ring, the recording and every client's queue."""
        self.batch_deadline = None
        if not self.batch:
            return
        data = self.batch[0] if len(self.batch) == 1 else b"".join(self.batch)
        self.batch.clear()
        self.batch_size = 0
        self.ring.append(data)
        self.last_activity = time.monotonic()
        if self.recorder is not None:
            self.recorder.output(data)
        for client in list(self.clients.values()):
            self._pump(client)

    def _write_pty(self) -> None:
        while self.pending_input and self.master >= 0:
            try:
                written = os.write(self.master, self.pending_input)
            except BlockingIOError:
                break
            except OSError:
                self.pending_input.clear()
                break
            del self.pending_input[:written]
        if len(self.pending_input) < INPUT_LIMIT:
            self._resume_senders()
        if self.master >= 0:
            wanted = selectors.EVENT_READ
            if self.pending_input:
                wanted |= selectors.EVENT_WRITE
            if self.selector.get_key(self.master).events != wanted:
                self.selector.modify(self.master, wanted, self._on_master)

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
        handlers = {INPUT: self._input, RESIZE: self._resize, KILL: self._kill, QUIT: self._quit}
        handler = handlers.get(kind)
        if handler is None:
            client.error(f"unexpected frame type {kind!r}")
        elif not client.writer:
            names = {INPUT: "input", RESIZE: "resize", KILL: "kill", QUIT: "quit"}
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
        info.update(start=self.ring.start, end=self.ring.end)
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

    # -- shut-down

    def shutdown(self) -> None:
        """Stop the child, say goodbye to the clients, remove the files."""
        self.quitting = True
        if not self.reaped:
            self._stop_child()
        if not self.finished:
            self._finish()  # drains the PTY and queues X for every client
        for client in list(self.clients.values()):
            self._send(client)
            self._drop(client)
        if self.recorder is not None:
            self.recorder.close()
        self.listener.close()
        if _file_id(self.sock_path) == self.sock_id:
            _unlink(self.sock_path)
        state = _read_json(self.state_path)
        if isinstance(state, dict) and state.get("holder_pid") == os.getpid():
            _unlink(self.state_path)  # not a newer holder's of the same name

    def _stop_child(self) -> None:
        self.child.signal(signal.SIGHUP)
        deadline = time.monotonic() + KILL_GRACE
        while not self.reaped:
            if time.monotonic() >= deadline:
                self.child.signal(signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.01)
            self._reap()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: _holder.py SPECFILE\n")
        return 2
    if os.getsid(0) != os.getpid():
        os.setsid()
    try:
        spec = load_spec(argv[1])
    except (OSError, ValueError) as error:
        _log(f"bad spec {argv[1]}: {error}")
        return 2
    try:
        holder = Holder(spec)
    except Exception:
        _log(f"cannot start:\n{_traceback()}")
        _unlink(os.path.join(spec["dir"], f"{spec['name']}.sock"))
        return 1
    _log(f"serving {spec['name']!r}: pid {holder.child.pid}, state {holder.state}")
    status = 0
    try:
        holder.run()
    except BaseException:
        _log(f"crashed:\n{_traceback()}")
        status = 1
    try:
        holder.shutdown()
    except BaseException:
        _log(f"shut-down failed:\n{_traceback()}")
        status = 1
    _log("quit")
    return status


def _traceback() -> str:
    import traceback  # only on failure: it is heavy

    return traceback.format_exc()


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _read_json(path: str) -> object:
    try:
        with open(path, "rb") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
