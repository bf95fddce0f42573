"""`run` inside the holder: type the machinery, hide it, strip the marks, report the end.

Standard library only, like `_holder.py`. The engine sends a `C` frame: the input to type
(the command escaped, between two marks: see `_script.py`), the tag of the marks and the
echo to show. One run is in flight at a time (a second one waits: typed meanwhile, its
input would land in the first one's output); the holder types it and then:

- hides what the shell echoes of the input and shows the echo of the command in its
  place, as if the user had typed it. Everything else is kept, also what another
  program prints meanwhile (`make` was sent just before): only the copies of the typed
  line go, the terminal's own echo (exactly as typed) and a line editor's (from where
  the line starts, a space and the tag, to the start mark), with the continuation
  prompts of a line typed in several pieces;
- strips every mark (`ESC ] 633 ; dxflow ; TAG ; ... BEL`) from the output, also those of
  runs nobody waits for any more: no client, recording or scrollback holds one;
- at the end mark, queues `F` {exit_code, start, end} for the client: the command's
  output is the scrollback from `start` to `end`.

A run whose client leaves (its timeout) is abandoned: what it hid is shown, and the next
run starts. Hiding is bounded: past `limit` bytes the hidden output is shown as it is.
"""

from __future__ import annotations

import collections
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~1 MiB of RSS, so it is never imported at run time
    from typing import Any

__all__ = ["MARK", "Run", "Runs"]

MARK = b"\x1b]633;dxflow;"
BEL = b"\x07"
LONGEST_MARK = 96  # a mark's body: the tag, S or E and an exit code
HIDE_LIMIT = 64 << 10  # output hidden beyond the input's own echo before giving up
STALE_TAGS = 16
_TAG = re.compile(r"^__DXF[0-9a-f]{1,32}$")
# What a line editor may put between the characters of a line it wraps.
_WRAP = rb"(?:\r\n?|\n| \r|\x1b\[[0-9;?]*[A-Za-z])*"


def _fuzzy(text: bytes) -> re.Pattern[bytes]:
    return re.compile(_WRAP.join(re.escape(text[i : i + 1]) for i in range(len(text))))


def _fuzzy_prefix(text: bytes) -> re.Pattern[bytes]:
    """Matches at the end of the output a start of `text` the rest of which may come."""
    pattern = b""
    for i in range(len(text) - 1, 0, -1):
        pattern = b"(?:" + _WRAP + re.escape(text[i : i + 1]) + pattern + b")?"
    return re.compile(re.escape(text[:1]) + pattern + _WRAP + rb"\Z")


class Run:
    __slots__ = ("client", "continued", "echo", "hidden", "hiding", "input", "limit", "start",
                 "tag", "typed")  # fmt: skip

    def __init__(self, client: Any, tag: str, data: bytes, echo: bytes) -> None:
        self.client = client
        self.tag = tag.encode()
        self.input = data
        self.echo = echo
        self.typed = data.replace(b"\n", b"\r\n")  # the terminal's echo of the input
        self.continued = 0  # continuation prompts (`> `) still to come after that echo
        self.hidden = bytearray()
        self.hiding = False
        self.limit = 2 * len(data) + HIDE_LIMIT
        self.start: int | None = None

    @classmethod
    def parse(cls, client: Any, request: object) -> Run:
        """A run from a `C` frame's JSON; ValueError says what is wrong with it."""
        if not isinstance(request, dict):
            raise ValueError("run: payload must be a JSON object")
        tag, data, echo = request.get("tag"), request.get("input"), request.get("echo")
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise ValueError("run: tag must be __DXF and hex digits")
        if not isinstance(data, str) or not isinstance(echo, str) or not data.isascii():
            raise ValueError("run: input (ASCII) and echo must be strings")
        return cls(client, tag, data.encode(), echo.encode(errors="surrogateescape"))


class Runs:
    """The runs of one session: queued, in flight, and the stale ones' tags."""

    def __init__(self) -> None:
        self.queue: collections.deque[Run] = collections.deque()
        self.current: Run | None = None
        self.stale: collections.deque[bytes] = collections.deque(maxlen=STALE_TAGS)
        self.carry = b""  # a mark cut in two by a read: its head waits for its tail

    def next(self) -> Run | None:
        """The run to type now (none while one is in flight)."""
        if self.current is not None or not self.queue:
            return None
        run = self.current = self.queue.popleft()
        run.hiding = True
        return run

    def abandon(self, client: Any) -> bytes:
        """`client` left: drop its queued runs; its run in flight shows what it hid."""
        self.queue = collections.deque(run for run in self.queue if run.client is not client)
        run = self.current
        if run is None or run.client is not client:
            return b""
        self.current = None
        self.stale.append(run.tag)
        shown = bytes(run.hidden)
        run.hidden.clear()
        run.hiding = False
        return shown

    def close(self) -> bytes:
        """The session ended: every run is over; what was hidden (and held) is shown."""
        shown = self.carry + (self.abandon(self.current.client) if self.current else b"")
        self.queue.clear()
        self.carry = b""
        return shown

    # -- output

    def output(self, data: bytes, end: int) -> tuple[bytes, list[tuple[Run, dict[str, int]]]]:
        """Filter PTY output (`end`: the scrollback's end before it): what to show, and
        the runs that ended in it with their result."""
        if not (self.current or self.stale or self.carry) and MARK[:1] not in data:
            return data, []  # the common case: nothing to look at
        data, self.carry = self.carry + data, b""
        out = bytearray()
        done: list[tuple[Run, dict[str, int]]] = []
        watching = self.current is not None or bool(self.stale)
        position = 0
        while position < len(data):
            at = data.find(MARK, position)
            if at < 0:
                keep = _mark_head(data, position) if watching else len(data)
                self._show(data[position:keep], out)
                self.carry = data[keep:]
                break
            bel = data.find(BEL, at + len(MARK), at + LONGEST_MARK)
            if bel < 0:
                if watching and len(data) - at < LONGEST_MARK:  # the rest is on its way
                    self._show(data[position:at], out)
                    self.carry = data[at:]
                    break
                self._show(data[position : at + len(MARK)], out)  # not one of ours
                position = at + len(MARK)
                continue
            self._show(data[position:at], out)
            self._mark(data[at + len(MARK) : bel], out, end, done)
            position = bel + 1
        if self.current is not None and self.current.hiding:
            self._release(self.current, out)
        return bytes(out), done

    def _show(self, chunk: bytes, out: bytearray) -> None:
        run = self.current
        if run is None or not run.hiding:
            out += chunk
            return
        run.hidden += chunk
        if len(run.hidden) > run.limit:  # not the machinery alone: show it all
            out += run.hidden
            run.hidden.clear()
            run.hiding = False

    def _mark(self, body: bytes, out: bytearray, end: int, done: list[Any]) -> None:
        tag, _, rest = body.partition(b";")
        run = self.current
        if run is None or tag != run.tag:
            if rest.startswith(b"E") and tag in self.stale:
                self.stale.remove(tag)
                if run is not None and run.hiding:  # what came before is another run's
                    out += run.hidden
                    run.hidden.clear()
            return
        if rest == b"S":
            if run.hiding:
                self._discard_echo(run, out)
                out += run.echo
                run.hiding = False
            run.start = end + len(out)
        elif rest.startswith(b"E;") and rest[2:].isdigit():
            start = run.start if run.start is not None else end + len(out)
            done.append((run, {"exit_code": int(rest[2:]), "start": start, "end": end + len(out)}))
            self.current = None

    def _discard_echo(self, run: Run, out: bytearray) -> None:
        """At the start mark: what precedes the line editor's echo is shown, the rest
        (that echo, its continuation prompts) dropped."""
        self._release(run, out)
        key, _ = _patterns()
        if key.search(run.hidden) is None:  # a tail held in case an echo began there (a
            out += run.hidden  # prompt's last space): none did, so it is the shell's
        run.hidden.clear()

    def _release(self, run: Run, out: bytearray) -> None:
        """Show what the shell and other programs print, keep the typed line's copies
        out: the terminal's own echo (exactly as typed, at once while the shell reads
        with the terminal's line editing, or typed ahead while a program runs) and a
        line editor's (from where the line starts: a space and a tag), held until the
        start mark drops it."""
        hidden = run.hidden
        key, partial = _patterns()
        while True:
            while run.continued and hidden[:2] == b"> "[: len(hidden)]:
                if len(hidden) < 2:
                    return  # maybe a prompt: wait for the rest
                del hidden[:2]
                run.continued -= 1
            found = key.search(hidden)
            if found is None:
                tail = partial.search(hidden, max(0, len(hidden) - 512))
                cut = tail.start() if tail else len(hidden)
                out += hidden[:cut]
                del hidden[:cut]
                return
            at = found.start()
            out += hidden[:at]
            del hidden[:at]
            if not hidden.startswith(run.typed):
                return  # the line editor's echo (or the terminal's, still coming)
            del hidden[: len(run.typed)]
            run.continued = run.typed.count(b"\r\n") - 1  # dash prompts each further line


_compiled: tuple[re.Pattern[bytes], re.Pattern[bytes]] | None = None


def _patterns() -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """How every run's input starts (a space and a tag), anywhere and at the very end."""
    global _compiled
    if _compiled is None:  # on first use: the holder starts without compiling them
        _compiled = _fuzzy(b" __DXF"), _fuzzy_prefix(b" __DXF")
    return _compiled


def _mark_head(data: bytes, position: int) -> int:
    """Where a mark may begin in the last bytes of `data` (its end if none may)."""
    at = data.rfind(MARK[:1], max(position, len(data) - len(MARK)))
    if at >= 0 and MARK.startswith(data[at:]):
        return at
    return len(data)
