"""Logs and events of a workflow's containers, from Docker's streaming endpoints, and
the bus that carries the engine's own events to their readers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio

from ..._models import LogLine, WorkflowEvent
from .._docker import DockerEvent, LogChunk
from ._spec import SERVICE_LABEL

__all__ = ["EventBus", "RecentKeys", "event_from_docker", "log_line"]

_ACTIONS = {
    "create": "created", "start": "started", "restart": "started", "oom": "oom",
    "kill": "killed", "stop": "stopped", "destroy": "removed", "pause": "paused",
    "unpause": "unpaused", "health_status: healthy": "healthy",
    "health_status: unhealthy": "unhealthy",
}  # fmt: skip


def _timestamp(text: str) -> datetime | None:
    stamp, _, fraction = text.rstrip("Z").partition(".")
    try:
        moment = datetime.fromisoformat(f"{stamp}.{(fraction or '0')[:6]:0<6}")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)


def log_line(chunk: LogChunk) -> LogLine:
    """A line Docker sent with timestamps=True: `<RFC 3339 time> <text>`; the source's tag
    is (service, container)."""
    service, container = chunk.source.tag
    text = chunk.line.decode(errors="replace").rstrip("\r")
    stamp, _, rest = text.partition(" ")
    moment = _timestamp(stamp)
    line = rest if moment is not None else text
    return LogLine(service=service, container=container, stream=chunk.stream,
                   line=line, time=moment)  # fmt: skip


def event_from_docker(workflow: str, raw: DockerEvent) -> WorkflowEvent | None:
    """A typed event for a Docker container event of this workflow, or None to skip it."""
    action, attributes = raw.action, raw.attributes
    exit_code = None
    if action == "die":
        exit_code = int(attributes.get("exitCode", "0") or 0)
        kind = "exited" if exit_code == 0 else "died"
    elif action in _ACTIONS:
        kind = _ACTIONS[action]
    else:
        return None
    moment = datetime.fromtimestamp((raw.time_nano or 0) / 1e9, UTC)
    return WorkflowEvent(
        time=moment, workflow=workflow, action=kind,
        service=attributes.get(SERVICE_LABEL), container=attributes.get("name"),
        exit_code=exit_code,
    )  # fmt: skip


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
