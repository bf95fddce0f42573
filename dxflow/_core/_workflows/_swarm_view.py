"""What the swarm runtime reads: a workflow's status from its services' tasks, its logs,
and its events (Swarm keeps no task events: they are the differences between two reads
of the tasks and the nodes, a second apart).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from ..._models import (
    ContainerState,
    LogLine,
    ServiceStatus,
    TaskState,
    WorkflowEvent,
    WorkflowStatus,
)
from .._docker import SwarmApi, SwarmNode, SwarmService, SwarmTask
from .._groups import task_group
from ._spec import SERVICE_LABEL
from ._status import overall_state
from ._streams import _timestamp

__all__ = ["Snapshot", "events", "logs", "snapshot", "workflow_status"]

HASH = "io.dxflow.config-hash"
_ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
_LOST = frozenset({"failed", "rejected", "orphaned"})
_KEPT = 3
"""Ended tasks shown per slot (Swarm keeps five by default): enough to see a restart."""


@dataclass(frozen=True)
class Snapshot:
    """One read of a workflow's services, their tasks and the nodes, by id."""

    services: Mapping[str, SwarmService]
    tasks: Sequence[SwarmTask]
    nodes: Mapping[str, SwarmNode]


async def snapshot(api: SwarmApi, labels: Sequence[str]) -> Snapshot:
    services = {s.id: s for s in await api.services(labels)}
    tasks: list[SwarmTask] = []
    nodes: dict[str, SwarmNode] = {}

    async def read_tasks() -> None:
        if services:
            tasks.extend(await api.tasks({"service": list(services)}))

    async def read_nodes() -> None:
        nodes.update((n.id, n) for n in await api.nodes())

    async with task_group() as group:
        group.start_soon(read_tasks)
        group.start_soon(read_nodes)
    return Snapshot(services, tasks, nodes)


def service_name(service: SwarmService) -> str:
    return service.labels.get(SERVICE_LABEL) or service.name.partition("_")[2]


def desired(service: SwarmService) -> int | None:
    mode = service.spec.get("Mode") or {}
    if "Replicated" in mode:
        return int(mode["Replicated"].get("Replicas") or 0)
    if "ReplicatedJob" in mode:
        return int(mode["ReplicatedJob"].get("TotalCompletions") or 1)
    return None  # global: one per eligible node


def is_job(service: SwarmService) -> bool:
    mode = service.spec.get("Mode") or {}
    return "ReplicatedJob" in mode or "GlobalJob" in mode


def _task_state(task: SwarmTask, nodes: Mapping[str, SwarmNode], rescheduled: bool) -> TaskState:
    node = nodes.get(task.node_id or "")
    return TaskState(
        id=task.id, slot=task.slot, node=node.hostname if node else None, node_id=task.node_id,
        state=task.state, desired_state=task.desired_state, error=task.error,
        message=task.message, exit_code=task.exit_code, container=task.container,
        updated_at=task.updated_at, rescheduled=rescheduled,
    )  # fmt: skip


def _slot_key(task: SwarmTask) -> tuple[str, str]:
    return (task.service_id, str(task.slot) if task.slot is not None else task.node_id or "")


def _shown(tasks: Iterable[SwarmTask], nodes: Mapping[str, SwarmNode]) -> list[TaskState]:
    """Per slot: the current task, whether it replaced a lost one, and a few ended ones."""
    by_slot: dict[tuple[str, str], list[SwarmTask]] = {}
    for task in tasks:
        by_slot.setdefault(_slot_key(task), []).append(task)
    shown = []
    for slot_tasks in by_slot.values():
        slot_tasks.sort(key=lambda t: t.created_at or datetime.min.replace(tzinfo=UTC))
        first = max(0, len(slot_tasks) - _KEPT)
        for index in range(first, len(slot_tasks)):
            task = slot_tasks[index]
            lost = _replaced_lost(task, slot_tasks[:index], nodes)
            shown.append(_task_state(task, nodes, lost))
    return shown


def _replaced_lost(
    task: SwarmTask, earlier: Sequence[SwarmTask], nodes: Mapping[str, SwarmNode]
) -> bool:
    """Swarm made `task` because the one before it in its slot failed or lost its node."""
    if not earlier or task.desired_state not in ("running", "complete", "ready"):
        return False
    before = earlier[-1]
    node = nodes.get(before.node_id or "")
    return before.state in _LOST or (node is not None and node.state != "ready")


def _container(task: SwarmTask, name: str) -> ContainerState:
    state = {"running": "running", "complete": "exited", "failed": "exited"}.get(
        task.state, "created" if task.state not in _ENDED else "exited"
    )
    return ContainerState(
        id=task.container or task.id, name=f"{name}.{task.slot or 1}.{task.id[:12]}",
        number=task.slot or 1, state=state, exit_code=task.exit_code,
        config_hash=None,
    )  # fmt: skip


def _service_status(
    name: str, service: SwarmService | None, tasks: Sequence[SwarmTask],
    nodes: Mapping[str, SwarmNode],
) -> ServiceStatus:  # fmt: skip
    if service is None:
        return ServiceStatus(name=name, state="missing", replicas=0, containers=[])
    want = desired(service)
    current = [t for t in tasks if t.desired_state in ("running", "complete", "ready")]
    running = [t for t in current if t.state == "running"]
    done = [t for t in tasks if t.state == "complete"]
    failed = [t for t in current if t.state in ("failed", "rejected")]
    containers = [_container(t, service.name) for t in current if t.container]
    if is_job(service):
        finished = len(done) >= (want or 1)
        state = "exited" if finished else "running" if running else "partial"
        code = 0 if finished else failed[-1].exit_code if failed else None
    else:
        state = _replicated_state(want, len(running))
        code = None
    return ServiceStatus(
        name=name, state=state, replicas=len(running), containers=containers,
        exit_code=code, desired=want, running=len(running), tasks=_shown(tasks, nodes),
    )  # fmt: skip


def _replicated_state(want: int | None, running: int) -> str:
    if want == 0:
        return "stopped"
    if want is None:
        return "running" if running else "partial"
    if running >= want:
        return "running"
    return "partial"


def workflow_status(name: str, services: list[str], seen: Snapshot) -> WorkflowStatus:
    by_name = {service_name(s): s for s in seen.services.values()}
    tasks: dict[str, list[SwarmTask]] = {}
    for task in seen.tasks:
        tasks.setdefault(task.service_id, []).append(task)
    statuses = []
    for service in sorted(set(services) | set(by_name)):
        found = by_name.get(service)
        own = tasks.get(found.id, []) if found else []
        statuses.append(_service_status(service, found, own, seen.nodes))
    return WorkflowStatus(name=name, state=overall_state(statuses), services=statuses)


# -- logs ---------------------------------------------------------------------------------


def _details(token: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in token.split(","))
    return {key: value for key, _, value in pairs}


def log_line(raw: bytes, names: Mapping[str, str]) -> LogLine | None:
    """A line of `service_logs(details=True, timestamps=True)`: `<time> <details> <text>`."""
    text = raw.decode(errors="replace").rstrip("\r\n")
    stamp, _, rest = text.partition(" ")
    moment = _timestamp(stamp)
    if moment is None:
        return None
    details, _, line = rest.partition(" ")
    found = _details(details)
    service_id = found.get("com.docker.swarm.service.id", "")
    task = found.get("com.docker.swarm.task.id", "")
    return LogLine(
        service=names.get(service_id, service_id[:12]), container=task[:12], stream="stdout",
        line=line, time=moment,
    )  # fmt: skip


async def logs(
    api: SwarmApi, services: Mapping[str, str], follow: bool, tail: int | None,
    since: datetime | None,
) -> AsyncIterator[LogLine]:  # fmt: skip
    """Lines of `services` (id -> compose name); in time order unless following."""
    if not services:
        return
    start = since.timestamp() if since else 0.0
    lines = []
    async for raw in api.service_logs(list(services), follow, tail, start):
        for piece in raw.splitlines():
            line = log_line(piece, services)
            if line is None:
                continue
            if follow:
                yield line
            else:
                lines.append(line)
    lines.sort(key=lambda line: line.time or datetime.min.replace(tzinfo=UTC))
    for line in lines:
        yield line


# -- events -------------------------------------------------------------------------------


def _event(workflow: str, action: str, **details: object) -> WorkflowEvent:
    return WorkflowEvent(time=datetime.now(UTC), workflow=workflow, action=action, **details)


def differences(workflow: str, before: Snapshot, after: Snapshot) -> list[WorkflowEvent]:
    """Events for what changed between two snapshots: tasks started, ended, rescheduled,
    nodes lost or back."""
    out: list[WorkflowEvent] = []
    old = {t.id: t for t in before.tasks}
    names = {s.id: service_name(s) for s in after.services.values()}
    shown = {t.id: t for t in _shown(after.tasks, after.nodes)}
    known = {t.id for t in _shown(before.tasks, before.nodes) if t.rescheduled}
    for task in after.tasks:
        service = names.get(task.service_id)
        view = shown.get(task.id)
        if view is not None and view.rescheduled and task.id not in known:
            out.append(_event(workflow, "rescheduled", service=service, container=task.id[:12],
                              detail=f"slot {task.slot} onto {view.node}"))  # fmt: skip
        previous = old.get(task.id)
        if previous is not None and previous.state == task.state:
            continue
        if task.state == "running":
            out.append(_event(workflow, "started", service=service, container=task.id[:12],
                              detail=view.node if view else None))  # fmt: skip
        elif task.state in ("complete", "failed"):
            action = "exited" if task.state == "complete" else "died"
            out.append(_event(workflow, action, service=service, container=task.id[:12],
                              exit_code=task.exit_code, detail=task.error))  # fmt: skip
    for node in after.nodes.values():
        was = before.nodes.get(node.id)
        if was is not None and was.state != node.state:
            out.append(_event(workflow, "node", detail=f"{node.hostname} {node.state}"))
    return out


async def events(
    api: SwarmApi, workflow: str, labels: Sequence[str], own: AsyncIterable[WorkflowEvent],
    every: float = 1.0,
) -> AsyncIterator[WorkflowEvent]:  # fmt: skip
    """The engine's own events merged with the tasks' and nodes' changes, read `every`
    seconds."""
    send, receive = anyio.create_memory_object_stream[WorkflowEvent](math.inf)

    async def watch() -> None:
        before = await snapshot(api, labels)
        while True:
            await anyio.sleep(every)
            after = await snapshot(api, labels)
            for event in differences(workflow, before, after):
                send.send_nowait(event)
            before = after

    async def relay() -> None:
        async for event in own:
            send.send_nowait(event)

    async with task_group() as group:
        group.start_soon(watch)
        group.start_soon(relay)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            group.cancel_scope.cancel()
