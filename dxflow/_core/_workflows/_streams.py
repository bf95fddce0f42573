"""Logs and events of a workflow's containers, from Docker's streaming endpoints, and
the bus that carries the engine's own events to their readers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio

from ..._models import LogLine, WorkflowEvent
from ._spec import SERVICE_LABEL

__all__ = [
    "EventBus",
    "LineStream",
    "RecentKeys",
    "docker_event_key",
    "event_from_docker",
    "log_line",
]

_ACTIONS = {
    "create": "created", "start": "started", "restart": "started", "oom": "oom",
    "kill": "killed", "stop": "stopped", "destroy": "removed", "pause": "paused",
    "unpause": "unpaused", "health_status: healthy": "healthy",
    "health_status: unhealthy": "unhealthy",
}  # fmt: skip


class LineStream:
    """Whole lines of one container stream, tagged; `close` ends a blocked read."""

    def __init__(self, raw: Any, tag: tuple[str, str, str]) -> None:
        self._raw, self._tag = raw, tag

    def __iter__(self) -> Iterator[tuple[str, str, str, bytes]]:
        pending = b""
        for chunk in self._raw:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield (*self._tag, line)
        if pending:
            yield (*self._tag, pending)

    def close(self) -> None:
        self._raw.close()


def _timestamp(text: str) -> datetime | None:
    stamp, _, fraction = text.rstrip("Z").partition(".")
    try:
        moment = datetime.fromisoformat(f"{stamp}.{(fraction or '0')[:6]:0<6}")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)


def log_line(item: tuple[str, str, str, bytes]) -> LogLine:
    """A line Docker sent with timestamps=True: `<RFC 3339 time> <text>`."""
    service, container, stream, raw = item
    text = raw.decode(errors="replace").rstrip("\r")
    stamp, _, rest = text.partition(" ")
    moment = _timestamp(stamp)
    line = rest if moment is not None else text
    return LogLine(service=service, container=container, stream=stream,
                   line=line, time=moment)  # fmt: skip


def event_from_docker(workflow: str, raw: dict[str, Any]) -> WorkflowEvent | None:
    """A typed event for a Docker container event of this workflow, or None to skip it."""
    action = str(raw.get("Action") or raw.get("status") or "")
    attributes = (raw.get("Actor") or {}).get("Attributes") or {}
    exit_code = None
    if action == "die":
        exit_code = int(attributes.get("exitCode", "0") or 0)
        kind = "exited" if exit_code == 0 else "died"
    elif action in _ACTIONS:
        kind = _ACTIONS[action]
    else:
        return None
    nanos = raw.get("timeNano")
    moment = datetime.fromtimestamp(nanos / 1e9 if nanos else raw.get("time", 0), UTC)
    return WorkflowEvent(
        time=moment, workflow=workflow, action=kind,
        service=attributes.get(SERVICE_LABEL), container=attributes.get("name"),
        exit_code=exit_code,
    )  # fmt: skip


def docker_event_key(raw: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a Docker event unique, to drop the live copy of a replayed one."""
    actor = raw.get("Actor") or {}
    return (raw.get("timeNano"), actor.get("ID") or raw.get("id"), raw.get("Action"))


class RecentKeys:
    """A bounded set: remembers the last `size` keys added, and the latest time seen."""

    def __init__(self, size: int = 4096) -> None:
        self._keys: dict[tuple[Any, ...], None] = {}
        self._size = size
        self.latest = 0

    def add(self, key: tuple[Any, ...], nanos: int | None = None) -> bool:
        """Add `key`; False when it was already there."""
        if key in self._keys:
            return False
        self._keys[key] = None
        self.latest = max(self.latest, nanos or 0)
        if len(self._keys) > self._size:
            del self._keys[next(iter(self._keys))]
        return True


class EventBus:
    """Hands the engine's own workflow events to every `events()` reader of that workflow."""

    # Docker reports these itself; the bus carries only what happens around containers.
    _OWN = frozenset({"creating", "starting", "stopping", "removing", "build", "pull",
                      "network", "volume", "done", "error"})  # fmt: skip

    def __init__(self) -> None:
        self._readers: dict[str, set[Any]] = {}

    def publish(self, event: WorkflowEvent) -> None:
        if event.action not in self._OWN:
            return
        for reader in list(self._readers.get(event.workflow, ())):
            with contextlib.suppress(
                anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                reader.send_nowait(event)

    @contextlib.contextmanager
    def subscribe(self, workflow: str, reader: Any) -> Iterator[None]:
        self._readers.setdefault(workflow, set()).add(reader)
        try:
            yield
        finally:
            self._readers[workflow].discard(reader)
