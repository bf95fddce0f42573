"""The fleet's events in one stream: agents' statuses, and their workflows' events.

`bridges.events(workflows=True)` on a master follows, besides each agent's status, the
events of every workflow on its connected agents, each labelled with its agent. The
workflows are asked for as the caller (through the agent's `Forwarder`, with the
caller's identity): the agent shows a caller only what its own rules let it see, and a
caller without WORKFLOW there gets no workflow event from it. The list is read again
every `REFRESH` seconds and whenever an agent comes back, so a workflow created later
joins the stream; a workflow stream cut by a lost link resumes from its last event
(`since`) once the agent is connected again, so nothing the agent's Docker Engine
recorded meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..._models import BridgeEvent, BridgeEventsQuery, BridgeInfo, WorkflowEvent
from ..._wire import ndjson_item
from .._context import Context

if TYPE_CHECKING:
    from ._master import BridgeMaster

__all__ = ["fleet_events"]

log = logging.getLogger("dxflow.bridges")
REFRESH = 5.0
"""Seconds between two readings of each connected agent's workflows."""
BACKLOG = 10_000
"""Events held for a slow reader; past this, statuses still pass and workflow events wait."""


class _Follower:
    """One workflow on one agent: its events stream, resumed after each break."""

    def __init__(self, agent: str, workflow: str, since: datetime) -> None:
        self.agent, self.workflow, self.since = agent, workflow, since
        self.last: tuple[object, ...] | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


async def fleet_events(
    master: BridgeMaster,
    ctx: Context,
    request: BridgeEventsQuery,
    statuses: Callable[[], AsyncIterator[BridgeEvent]],
) -> AsyncIterator[BridgeEvent]:
    """`statuses()` (the agents' status changes) merged with the workflow events of the
    agents it shows connected."""
    queue: asyncio.Queue[BridgeEvent] = asyncio.Queue(BACKLOG)
    followers: dict[tuple[str, str], _Follower] = {}
    start = datetime.now(UTC)
    agents: dict[str, BridgeInfo] = {}

    async def watch_statuses() -> None:
        async for event in statuses():
            await queue.put(event)
            info = next((i for i in master.infos() if i.name == event.agent), None)
            if info is not None:
                agents[info.name] = info
            if event.status == "connected":
                await refresh(event.agent)

    async def refresh(agent: str) -> None:
        for name in await _workflows(master, ctx, agent):
            follower = followers.setdefault((agent, name), _Follower(agent, name, start))
            if not follower.running:
                follower.task = asyncio.create_task(follow(follower))

    async def refresh_all() -> None:
        while True:
            await asyncio.sleep(REFRESH)
            for info in list(agents.values()):
                if master.status(info.name, None) == "connected":
                    await refresh(info.name)

    async def follow(follower: _Follower) -> None:
        labels = agents[follower.agent].labels if follower.agent in agents else {}
        async for event in _workflow_events(master, ctx, follower):
            key = (event.time, event.action, event.container)
            if key == follower.last:
                continue  # resumed from its time: the event that was last is sent again
            follower.since, follower.last = event.time, key
            await queue.put(BridgeEvent(time=event.time, agent=follower.agent,
                                        status="connected", labels=labels,
                                        workflow=event))  # fmt: skip

    tasks = [asyncio.create_task(watch_statuses()), asyncio.create_task(refresh_all())]
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait([getter, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
                tasks[0].result()  # the status stream failed: so does this one
    finally:
        running = tasks + [f.task for f in followers.values() if f.task is not None]
        for task in running:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*running, return_exceptions=True)


async def _workflows(master: BridgeMaster, ctx: Context, agent: str) -> list[str]:
    """The workflows the caller sees on `agent`; none when it may see none (or the
    agent did not answer: the next refresh asks again)."""
    try:
        forwarder = master.forwarder(agent)
        reply = await forwarder.client.get("/api/workflows", headers=await forwarder.headers(ctx))
        if not reply.is_success:
            return []
        return [str(item["name"]) for item in reply.json().get("workflows", [])]
    except Exception as exc:
        log.debug("bridge %s: listing workflows for events failed: %s", agent, exc)
        return []


async def _workflow_events(
    master: BridgeMaster, ctx: Context, follower: _Follower
) -> AsyncIterator[WorkflowEvent]:
    """The events of one workflow on one agent, from `follower.since`, until the stream
    breaks (the link dropped, the workflow was removed): the next refresh resumes it."""
    try:
        forwarder = master.forwarder(follower.agent)
        headers = await forwarder.headers(ctx)
        path = f"/api/workflows/{follower.workflow}/events"
        params = {"since": follower.since.isoformat()}
        async with forwarder.client.stream("GET", path, params=params, headers=headers) as reply:
            if not reply.is_success:
                return
            async for line in reply.aiter_lines():
                item = ndjson_item(line)
                if item is not None:
                    yield WorkflowEvent.model_validate(item)
    except Exception as exc:
        log.debug("bridge %s: events of %s ended: %s", follower.agent, follower.workflow, exc)
