"""This terminal on a shell session: the attach loop of `dxflow shell connect` (and of
any command that gives the user a session's terminal, as `dxflow exec -it` does).

stdin goes to the session in the main thread (raw mode while stdin is a terminal), the
session's output comes to stdout in a thread of its own; the window size follows; the
detach keys (docker's syntax: `ctrl-]`, `ctrl-p,ctrl-q`, `q`) leave the session running.
The terminal is restored whatever happens (an error, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Any

import click

from .._exceptions import EngineUnavailable

__all__ = ["DEFAULT_DETACH_KEYS", "attach", "describe_keys", "ending", "parse_detach_keys"]

DEFAULT_DETACH_KEYS = "ctrl-]"
_CONTROL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """`ctrl-p,ctrl-q` -> b"\\x10\\x11"; ValueError names what is wrong (docker's syntax:
    keys separated by commas, each a single character or `ctrl-` and a-z, @, [, \\, ], ^
    or _)."""
    keys = bytearray()
    for key in text.split(","):
        name = key.strip()
        if name.lower().startswith("ctrl-") and len(name) == 6:
            char = name[5].lower()
            if "a" <= char <= "z":
                keys.append(ord(char) - ord("a") + 1)
                continue
            if char in _CONTROL:
                keys.append(_CONTROL[char])
                continue
        elif len(name) == 1 and name.isascii() and name.isprintable():
            keys.append(ord(name))
            continue
        raise ValueError(
            f"{name!r} is not a detach key: give a character, or ctrl- and one of a-z, "
            "@, [, \\, ], ^, _ (several separated by commas: ctrl-p,ctrl-q)"
        )
    return bytes(keys)


def describe_keys(text: str) -> str:
    """`ctrl-p,ctrl-q` -> `Ctrl-P Ctrl-Q`: how the keys are written in a hint."""
    names = []
    for key in text.split(","):
        name = key.strip()
        names.append(f"Ctrl-{name[5:].upper()}" if name.lower().startswith("ctrl-") else name)
    return " ".join(names)


def _signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(number).name
    return f"signal {number}"


def ending(values: dict[str, Any]) -> str:
    """How a session ended: `exited with code 3`, `was killed by SIGKILL`."""
    if values.get("exit_code") is not None:
        return f"exited with code {values['exit_code']}"
    if values.get("signal"):
        return f"was killed by {_signal_name(values['signal'])}"
    return "exited"


def attach(
    shell: Any, *, detach_keys: str = DEFAULT_DETACH_KEYS, offset: int | None = None,
    quiet: bool = False,
) -> int | None:  # fmt: skip
    """Connect this terminal to `shell` (a blocking `Shell`) until the user detaches or
    the session ends: the session's exit code (128 + N for a signal N), or None when
    detached. `offset` replays the output from there (default: all that is held);
    `quiet` leaves out the notes (how to detach, detached, how it ended).

    Raises ValueError for bad `detach_keys` and EngineUnavailable when the connection
    is lost.
    """
    keys = parse_detach_keys(detach_keys)
    name = shell.name
    if not quiet and os.isatty(0):
        click.echo(f"attached to {name}; detach with {describe_keys(detach_keys)}", err=True)
    with shell.attach(offset) as channel:
        session = _Session(channel, keys, describe_keys(detach_keys))
        session.run()
    session.join()
    return session.outcome(name, quiet)


def _notice(text: str) -> None:
    """A note between the session's output (the terminal may be raw: \\r\\n)."""
    sys.stderr.write(f"\r\n[{text}]\r\n")
    sys.stderr.flush()


def _hang_up(number: int, frame: object) -> None:
    raise SystemExit(128 + number)  # unwinds through the `finally` that restores the terminal


class _DetachKeys:
    """Finds the detach sequence in what is typed; keys of a sequence that breaks off
    are sent after all (as docker does)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(what to send, whether the sequence was completed)."""
        out = bytearray()
        for byte in data:
            while True:
                if byte == self.keys[self.matched]:
                    self.matched += 1
                    if self.matched == len(self.keys):
                        self.matched = 0
                        return bytes(out), True
                    break
                if not self.matched:
                    out.append(byte)
                    break
                out += self.keys[: self.matched]  # broken off: those keys were typed
                self.matched = 0
        return bytes(out), False


class _Session:
    """stdin -> channel in the main thread; channel -> stdout in a thread of its own."""

    def __init__(self, channel: Any, keys: bytes, keys_name: str) -> None:
        self.channel = channel
        self.detach = _DetachKeys(keys)
        self.keys_name = keys_name
        self.writable = channel.hello.get("mode", "rw") == "rw"
        self.ended: dict[str, Any] | None = None
        """The message that ended the connection (`exit`), or a `lost` one of ours."""
        self.detached = False
        self.fresh_line = True
        self._resized = False
        self._wake, self._waker = os.pipe()
        os.set_blocking(self._waker, False)
        self._receiver = threading.Thread(target=self._receive, name="shell-output", daemon=True)

    def run(self) -> None:
        with self._terminal():
            if not self.writable:
                _notice(f"read-only: you watch, your keys are not sent ({self.keys_name} detaches)")
            self._resize()
            self._receiver.start()
            self._pump_input()

    def join(self) -> None:
        """Once the channel is closed: the receiving thread ends (on EOF)."""
        self._receiver.join(timeout=10)
        if not self._receiver.is_alive():
            os.close(self._wake)
            os.close(self._waker)

    def outcome(self, name: str, quiet: bool) -> int | None:
        if not self.fresh_line:
            click.echo(err=True)  # the prompt, or a partial line, stays on its own line
        if self.detached:
            if not quiet:
                click.echo(f"detached from {name} (the session keeps running)", err=True)
            return None
        ended = self.ended or {"type": "lost"}
        if ended["type"] != "exit":
            raise EngineUnavailable(
                f"lost the connection to shell {name!r}: {ended.get('error', 'closed')}"
            )
        if not quiet:
            why = self.channel.hello.get("error")  # a program that could not start, say
            click.echo(f"[{name} {ending(ended)}{f': {why}' if why else ''}]", err=True)
        code = ended.get("exit_code")
        return int(code) if code is not None else 128 + int(ended.get("signal") or 0)

    @contextlib.contextmanager
    def _terminal(self) -> Iterator[None]:
        """Raw mode while connected (when stdin is a terminal), restored whatever happens."""
        saved = termios.tcgetattr(0) if os.isatty(0) else None
        handlers: dict[signal.Signals, Any] = {}
        try:
            handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._on_resize)
            for number in (signal.SIGTERM, signal.SIGHUP):
                handlers[number] = signal.signal(number, _hang_up)
            if saved is not None:
                tty.setraw(0, termios.TCSANOW)  # TCSANOW: keys typed ahead are kept
            yield
        finally:
            if saved is not None:
                with contextlib.suppress(termios.error):  # the terminal may be gone (SIGHUP)
                    termios.tcsetattr(0, termios.TCSADRAIN, saved)
            for number, handler in handlers.items():
                signal.signal(number, handler)

    def _pump_input(self) -> None:
        while self.ended is None:
            ready, _, _ = select.select([0, self._wake], [], [])
            if self._wake in ready:
                os.read(self._wake, 512)
                if self._resized:
                    self._resized = False
                    self._resize()
                continue
            data = os.read(0, 1 << 16)
            typed, detach = self.detach.feed(data)
            if typed and self.writable:
                self.channel.send(typed)
            if detach or not data:
                self.detached = True
                return

    def _on_resize(self, number: int, frame: object) -> None:  # SIGWINCH
        self._resized = True
        self._wake_up()

    def _wake_up(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._waker, b"!")

    def _resize(self) -> None:
        """Send this terminal's size (a pipe has none: nothing is sent)."""
        if not self.writable:
            return
        for fd in (1, 0):
            try:
                size = os.get_terminal_size(fd)
            except OSError:
                continue
            if size.lines > 0 and size.columns > 0:
                self.channel.resize(min(size.lines, 1000), min(size.columns, 1000))
            return

    def _receive(self) -> None:
        try:
            while self.ended is None:
                message = self.channel.recv()
                if isinstance(message, bytes):
                    self._output(message)
                else:
                    self._control(message)
        except EOFError:
            self.ended = self.ended or {"type": "lost", "error": "the engine closed it"}
        except BaseException as exc:  # handed to the main thread, which reports it
            self.ended = {"type": "lost", "error": getattr(exc, "message", None) or repr(exc)}
        finally:
            self._wake_up()

    def _output(self, data: bytes) -> None:
        if data:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            self.fresh_line = data.endswith(b"\n")

    def _control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "exit":
            self.ended = message
        elif kind == "missed":
            lost = int(message.get("to", 0)) - int(message.get("from", 0))
            _notice(f"... {lost} bytes of scrollback were lost ...")
        elif kind == "error":
            _notice(f"error: {message.get('error', 'unknown')}")
