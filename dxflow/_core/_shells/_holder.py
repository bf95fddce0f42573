"""PTY holder: a tiny standalone process that owns one PTY and outlives the engine.

The engine starts one holder per persistent shell session as
``python -I -S /abs/path/_holder.py SPECFILE``. This file and its siblings therefore
import only the standard library (never dxflow) and keep their imports few (idle RSS
stays ~11 MiB): `_holder_wire.py` (frames, limits, ring, recording), `_holder_child.py`
(spec, child on a PTY) and `_holder_clients.py` (connections and their requests). Run as
a script, this file first registers its own folder as a package (``dxflow_holder``), so
the same relative imports work as inside dxflow. The holder runs in
its own session, ignores SIGHUP and SIGPIPE, and keeps running when the engine dies
(even ``kill -9``); a restarted engine reattaches through the socket.

Spec file (JSON, mode 0600, deleted once read)::

    {"name", "dir", "command": [argv...], "env": {...}, "cwd": str|null, "rows", "cols",
     "scrollback": bytes (2 MiB), "record": the object path (shown only),
     "record_fd": an inherited descriptor of the asciicast file|null,
     "idle_timeout": seconds|null, "term": "xterm-256color",
     "user": {"name", "uid", "gid", "home"}|null}

With ``user``, the child switches to that user (groups, gid, uid) before it enters
``cwd`` (default: the user's home) and execs: the holder stays the engine's, the session
is the user's. ``env`` is then the whole environment (the engine builds a clean one).

Files in ``dir``: ``NAME.sock`` (unix socket, 0600, bound before the state file is
written) and ``NAME.json`` (state, 0600, written atomically on every change of state,
size or client count)::

    {"name", "holder_pid", "pid", "command", "cwd", "created", "rows", "cols",
     "state": "running"|"exited"|"failed", "exit_code", "signal", "error", "exited_at",
     "clients"}

Output is kept in a ring buffer of ``scrollback`` bytes, addressed by global offsets; the
wire protocol (frame table) is described in `_holder_wire.py`.

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

import errno
import json
import os
import selectors
import signal
import socket
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~1 MiB of RSS, so it is never imported at run time
    from typing import Any

    from ._holder_clients import Client

if not __package__:  # run as a script (python -I -S): make its folder a package, so
    # the siblings' relative imports work as they do inside dxflow
    import types

    _package = types.ModuleType("dxflow_holder")
    _package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules["dxflow_holder"] = _package
    __package__ = "dxflow_holder"

# After the package exists (above), so these cannot move to the top:
from ._holder_child import Child, _log, _unlink, load_spec  # noqa: E402
from ._holder_clients import Connections  # noqa: E402
from ._holder_runs import Runs  # noqa: E402
from ._holder_wire import (  # noqa: E402
    BATCH_BYTES,
    BATCH_SECONDS,
    DEFAULT_SCROLLBACK,
    DONE,
    EXIT_GRACE,
    INPUT_LIMIT,
    KILL_GRACE,
    READ_CHUNK,
    SMALL_READ,
    WATCH_SECONDS,
    Recorder,
    Ring,
    json_frame,
    take_frames,
)

# Ring, Recorder, take_frames and WATCH_SECONDS stay importable from here (the tests do).
__all__ = ["WATCH_SECONDS", "Holder", "Recorder", "Ring", "main", "take_frames"]


# ---------------------------------------------------------------------------------------
# The holder


class Holder(Connections):
    """Owns the PTY, the ring, the socket and the state file; runs the selector loop.

    Serving the connections (frames, queues, requests) is inherited from `Connections`.
    """

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
        self.runs = Runs()
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
            self._open_recorder(spec.get("record_fd"))
        os.chdir("/")  # never keep a folder busy
        self._write_state()

    def _open_recorder(self, fd: int | None) -> None:
        if fd is None:
            return
        try:
            self.recorder = Recorder(fd, self.cols, self.rows, self.created, self.term)
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
        self._publish(self.runs.close())
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
        data, done = self.runs.output(data, self.ring.end)
        for run, result in done:
            if run.client is not None and not run.client.closed:
                run.client.results.append((result["end"], json_frame(DONE, result)))
        self._publish(data)
        self._next_run()

    def _publish(self, data: bytes) -> None:
        """Output as the session shows it: into the ring, the recording, every client."""
        if not data:
            return
        self.ring.append(data)
        self.last_activity = time.monotonic()
        if self.recorder is not None:
            self.recorder.output(data)
        for client in list(self.clients.values()):
            self._pump(client)

    # -- runs (see _holder_runs.py)

    def _next_run(self) -> None:
        """Type the next run's input once none is in flight (and what came before is out)."""
        if self.runs.current is not None or not self.runs.queue:
            return
        if self.master < 0:
            for run in self.runs.queue:
                run.client.error("the session has exited: run rejected")
                self._pump(run.client)
            self.runs.queue.clear()
            return
        if self.batch:
            self._flush()  # output read before the input is typed is never hidden
            return  # _flush comes back here
        started = self.runs.next()
        if started is not None:
            self.pending_input += started.input
            self._write_pty()

    def _abandon_runs(self, client: Client) -> None:
        self._publish(self.runs.abandon(client))
        self._next_run()

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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
