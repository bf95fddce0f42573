"""A ready progress display for `up`, `down`, `put`, `get`, `zip` and `unzip`.

    wf.up(progress=dxflow.Progress())
    engine.objects.put("data/", "runs/42", progress=dxflow.Progress())   # or progress=True

Like tqdm's `auto`, it picks its look from where it runs: in Jupyter an HTML display
updated in place (an IPython display handle: no widget extension needed, and the last
state stays in the saved notebook); on a terminal a line on stderr redrawn with `\\r`
(one line per container for a workflow); piped or in CI, plain lines.

It is called from the engine's thread (blocking SDK) or a transfer's worker thread, so
its state sits behind a lock and it redraws at most ten times a second.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Literal

from ._display import STYLE, human_bytes, human_duration

__all__ = ["Progress", "as_progress"]

Mode = Literal["auto", "notebook", "terminal", "lines"]


def _in_notebook() -> bool:
    """A Jupyter kernel runs this process (IPython already imported: never import it)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class Progress:
    """Shows how an `up`, `down`, `put`, `get`, `zip` or `unzip` goes; pass it as `progress`.

    `mode`: "auto" (the default: Jupyter, else a terminal when `file` is one, else plain
    lines), or one of "notebook", "terminal", "lines". `file` defaults to stderr.
    Used as a context manager (or with `close()`), the last state is drawn at the end.
    """

    def __init__(
        self,
        description: str | None = None,
        *,
        mode: Mode = "auto",
        file: IO[str] | None = None,
        interval: float = 0.1,
    ) -> None:
        self.description = description
        self._file = file
        self._interval = interval
        self._lock = threading.Lock()
        if mode == "auto":
            if _in_notebook():
                mode = "notebook"
            else:
                mode = "terminal" if getattr(self.file, "isatty", lambda: False)() else "lines"
        self.mode: Mode = mode
        self._handle: Any = None
        self._reset()
        if mode == "notebook":
            # Made here, on the caller's thread, so the display lands in the caller's cell.
            self._handle = self._display()

    @property
    def file(self) -> IO[str]:
        return self._file if self._file is not None else sys.stderr

    def _reset(self) -> None:
        self.done = 0
        self.total: int | None = None
        self.containers: dict[str, list[str]] = {}
        """container (or a service without one yet) -> [service, action, detail] of its
        latest event."""
        self.message = ""
        self.finished = False
        self._started = time.monotonic()
        self._drawn = 0.0
        self._lines_drawn = 0
        self._printed_step = -1

    # -- what the SDK calls -------------------------------------------------------------

    def __call__(self, *args: Any) -> None:
        """`(done, total)` from a transfer; a `WorkflowEvent` or an `ObjectProgress`."""
        with self._lock:
            if self.finished:  # a second run through the same display starts over
                self._reset()
                if self.mode == "notebook":
                    self._handle = self._display()
            if len(args) == 2:
                self._transfer(*args)
            elif hasattr(args[0], "workflow"):
                self._event(args[0])
            else:
                self._archive(args[0])

    def _transfer(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        final = total is not None and done >= total
        self._show(final)

    def _event(self, event: Any) -> None:
        if event.action in ("done", "error") and event.container is None:
            self.message = f"{event.workflow}: {event.action}" + (
                f": {event.detail}" if event.detail else ""
            )
            self._show(final=True, line=str(event))
            return
        detail = event.detail or ""
        if event.exit_code is not None:
            detail = f"exit {event.exit_code} {detail}".strip()
        if event.container:
            self.containers.pop(event.service, None)  # its build row, now a container's
            self.containers[event.container] = [event.service or "", event.action, detail]
        elif event.service:  # `healthy`, `build`: every container of the service
            rows = [r for r in self.containers.values() if r[0] == event.service]
            for row in rows or [self.containers.setdefault(event.service, [event.service])]:
                row[1:] = [event.action, detail]
        else:  # the project's network or volume
            self.message = f"{event.action} {detail}".strip()
        self._show(final=False, line=str(event))

    def _archive(self, event: Any) -> None:
        self.done = event.bytes
        self.message = f"{event.action} {event.path}: {event.entries} entries"
        self._show(final=event.action == "done", line=f"{self.message}, {human_bytes(self.done)}")

    def close(self) -> None:
        """Draw the last state and end the display (a newline on a terminal)."""
        with self._lock:
            if not self.finished and (self.done or self.containers or self.message):
                self._show(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it shows ------------------------------------------------------------------

    def bar_text(self) -> str:
        """One line: `[#####     ]  42%  1.2 MiB / 3.0 MiB  5.0 MiB/s  ETA 3 seconds`."""
        elapsed = max(time.monotonic() - self._started, 1e-3)
        rate = self.done / elapsed
        head = f"{self.description}: " if self.description else ""
        if self.message and not self.total:
            return f"{head}{self.message}, {human_bytes(self.done)}"
        if not self.total:
            return f"{head}{human_bytes(self.done)}  {human_bytes(rate)}/s"
        part = min(1.0, self.done / self.total)
        left = (self.total - self.done) / rate if rate > 0 and part < 1 else 0
        eta = f"  ETA {human_duration(left)}" if part < 1 and rate > 0 else ""
        return (f"{head}[{'#' * int(30 * part):<30}] {100 * part:3.0f}%  "
                f"{human_bytes(self.done)} / {human_bytes(self.total)}  "
                f"{human_bytes(rate)}/s{eta}")  # fmt: skip

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(container, service, latest action, detail), one per container, in order of
        appearance."""
        return [(who, service, action, detail)
                for who, (service, action, detail) in self.containers.items()]  # fmt: skip

    def text(self) -> str:
        if not self.containers:
            return self.bar_text()
        width = max(len(who) for who in self.containers)
        lines = [f"{who.ljust(width)}  {action:<10} {detail}".rstrip()
                 for who, _, action, detail in self.rows()]  # fmt: skip
        if self.description:
            lines.insert(0, self.description)
        return "\n".join(lines + ([self.message] if self.message else []))

    def html(self) -> str:
        e = html.escape
        head = f"<b>{e(self.description)}</b>" if self.description else ""
        if self.containers:
            rows = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>"
                           for row in self.rows())  # fmt: skip
            head_row = "".join(f"<th>{h}</th>" for h in ("container", "service", "state", "detail"))
            body = (f'<table class="dxflow"><thead><tr>{head_row}</tr></thead>'
                    f"<tbody>{rows}</tbody></table>")  # fmt: skip
            if self.message:
                body += f"<div>{e(self.message)}</div>"
        elif self.total or self.done or self.message:
            part = min(1.0, self.done / self.total) if self.total else 0.0
            bar = (f'<progress value="{part:.3f}" max="1" style="width:20em"></progress> '
                   if self.total else "")  # fmt: skip
            body = f"<div>{bar}<code>{e(self.bar_text())}</code></div>"
        else:
            body = "<div><i>waiting for the first update…</i></div>"
        return f'<div class="dxflow-progress">{STYLE}{head}{body}</div>'

    # -- where it shows -----------------------------------------------------------------

    def _display(self) -> Any:
        return _ipython_display().display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict[str, str]:
        """HTML, with the terminal's text for frontends that show text only."""
        return {"text/html": self.html(), "text/plain": self.text()}

    def _show(self, final: bool, line: str | None = None) -> None:
        self.finished = final
        if self.mode == "lines":
            self._print_line(final, line)
            return
        now = time.monotonic()
        if not final and now - self._drawn < self._interval:
            return
        self._drawn = now
        if self.mode == "notebook":
            self._handle.update(self._bundle(), raw=True)
        else:
            self._redraw(final)

    def _redraw(self, final: bool) -> None:
        lines = self.text().split("\n")
        up = f"\x1b[{self._lines_drawn - 1}F" if self._lines_drawn > 1 else ""
        body = "\n".join(f"{line}\x1b[K" for line in lines)
        self.file.write(f"{up}\r{body}" + ("\n" if final else ""))
        self.file.flush()
        self._lines_drawn = 0 if final else len(lines)

    def _print_line(self, final: bool, line: str | None) -> None:
        """Plain lines: every workflow event; a transfer at each tenth and at its end."""
        if line is None and not final:
            step = int(10 * self.done / self.total) if self.total else -1
            if step <= self._printed_step:
                return
            self._printed_step = step
        if line is None:
            line = self.bar_text()
        self.file.write(line + "\n")
        self.file.flush()


def _ipython_display() -> Any:
    import importlib

    return importlib.import_module("IPython.display")


def as_progress(progress: Callable[..., object] | bool | None) -> Callable[..., Any] | None:
    """`progress=True` is a new `Progress()`; False is none; anything else as given."""
    if progress is True:
        return Progress()
    return None if progress is False else progress
