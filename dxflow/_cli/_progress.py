"""Workflow events shown like `docker compose up`: one line per container, updated in place.

    ✔ Network demo_default   Created
    ✔ Container demo-db-1    Healthy
    ⠿ Container demo-web-1   Starting

On a terminal the lines are redrawn in place; piped, each change is a plain line of its
own (`Container demo-db-1  Started`); with --json, each event is a JSON line. Build and
pull output scrolls above the lines, prefixed with its service (`web | STEP 2/3 ...`).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click

from ._output import LiveBlock, Prefixer, live_output, paint, use_colour

__all__ = ["EventView", "event_word"]

_WORDS = {
    "creating": "Creating", "created": "Created", "starting": "Starting", "started": "Started",
    "healthy": "Healthy", "unhealthy": "Unhealthy", "exited": "Exited", "died": "Died",
    "oom": "Out of memory", "stopping": "Stopping", "stopped": "Stopped",
    "removing": "Removing", "removed": "Removed", "paused": "Paused", "unpaused": "Unpaused",
    "killed": "Killed",
}  # fmt: skip
_BUSY = {"creating", "starting", "stopping", "removing"}
_BAD = {"unhealthy", "died", "oom", "killed", "error"}


def event_word(action: str, exit_code: int | None = None) -> str:
    """`Exited` for a clean exit, `Exited (3)` otherwise; compose's wording for the rest."""
    word = _WORDS.get(action, action.capitalize())
    if action == "exited" and exit_code:
        return f"{word} ({exit_code})"
    return word


def _mark(action: str, exit_code: int | None, colour: bool) -> str:
    if action in _BAD or (action == "exited" and exit_code):
        return paint("✘", 31, colour)
    if action in _BUSY:
        return paint("⠿", 34, colour)
    return paint("✔", 32, colour)


class EventView:
    """A `progress=` callback for `up` and `down` that draws what it is told."""

    def __init__(self, as_json: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.as_json = as_json
        self.live = live_output(self.stream, as_json)
        self.colour = use_colour(self.stream, as_json)
        self.block = LiveBlock(self.stream, self.live)
        self.prefix = Prefixer(colour=self.colour)
        self.rows: dict[str, tuple[str, str, str, int | None]] = {}
        """key -> (kind, name, action, exit code)"""
        self.services: dict[str, list[str]] = {}
        """service -> the keys of its containers, for events about a whole service"""
        self.width = 0
        """the widest `Container name` expected: lines align from the first one"""

    def __call__(self, event: Any) -> None:
        if self.as_json:
            click.echo(event.model_dump_json())
            return
        action = event.action
        if action in {"build", "pull"}:
            who = event.service or event.workflow
            self.block.note(self.prefix(who, who, event.detail or ""))
        elif action == "error":
            self.block.note(paint(f"error: {event.detail or 'failed'}", 31, self.colour))
        elif action in {"network", "volume"}:
            verb, _, name = (event.detail or "").partition(" ")
            self._row(f"{action}:{name}", action.capitalize(), name or "-", verb or action)
        elif event.container:
            key = f"container:{event.container}"
            keys = self.services.setdefault(event.service or "", [])
            if key not in keys:
                keys.append(key)
            self._row(key, "Container", event.container, action, event.exit_code)
        elif event.service and action != "done":
            for key in self.services.get(event.service) or [f"service:{event.service}"]:
                kind, _, name = key.partition(":")
                self._row(key, kind.capitalize(), name, action, event.exit_code)

    def expect(self, status: Any) -> None:
        """Learn the containers there are: an event about a whole service names them."""
        for service in status.services:
            keys = self.services.setdefault(service.name, [])
            keys += [k for c in service.containers if (k := f"container:{c.name}") not in keys]
            self.width = max(
                [self.width, *(len(f"Container {c.name}") for c in service.containers)]
            )

    def finish(self, status: Any) -> None:
        """A running container no event was about is `Running`, as compose says."""
        for service in [] if self.as_json else status.services:
            for container in service.containers:
                key = f"container:{container.name}"
                if key not in self.rows and container.state == "running":
                    self._row(key, "Container", container.name, "running")

    def _row(
        self, key: str, kind: str, name: str, action: str, exit_code: int | None = None
    ) -> None:
        self.rows[key] = (kind, name, action, exit_code)
        width = max([self.width, *(len(f"{k} {n}") for k, n, _, _ in self.rows.values())])
        if not self.live:
            text = f"{f'{kind} {name}':<{width}}  {event_word(action, exit_code)}"
            return self.block.set(key, text)
        lines = {  # a wider name realigns every line
            each: f" {_mark(a, code, self.colour)} {f'{k} {n}':<{width}}  {event_word(a, code)}"
            for each, (k, n, a, code) in self.rows.items()
        }
        self.block.update(lines)
