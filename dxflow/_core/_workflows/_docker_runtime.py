"""The "docker" workflow runtime: Compose projects on one Docker Engine.

Up and down are the orchestrator's and the teardown's; this module adds what reads a
running project (status, logs, events, stats) and what runs commands in it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import anyio

from ..._exceptions import Conflict, NotFound
from ..._models import (
    ComposeProject,
    ComposeProjectSummary,
    ContainerState,
    ContainerStats,
    ContainerTop,
    ExecResult,
    LogLine,
    WorkflowEvent,
    WorkflowStatus,
)
from .._docker import DockerAdapter, DockerEvent, ExecCommand, LogSource
from .._groups import task_group
from ._orchestrator import Orchestrator, stop_grace
from ._runtime import Action, Emit, Plan, WorkflowRuntime
from ._spec import PROJECT_LABEL, SERVICE_LABEL
from ._streams import RecentKeys, event_from_docker, log_line
from ._teardown import Teardown

__all__ = ["DockerRuntime"]


class DockerRuntime:
    """A `WorkflowRuntime` on the Docker Engine the adapter reaches."""

    def __init__(
        self, docker: DockerAdapter, concurrency: int = 16, engine_id: str = "", **_: Any
    ) -> None:
        self._docker = docker
        self._orchestrator = Orchestrator(docker, concurrency, engine_id)
        self.owners = self._orchestrator.owners
        self.teardown = Teardown(docker, self.owners, self._orchestrator.containers, stop_grace)

    # -- lifecycle ------------------------------------------------------------------------

    async def up(
        self,
        plan: Plan,
        only: set[str] | None,
        wait: bool,
        remove_orphans: bool,
        within: float | None = None,
    ) -> None:
        await self._orchestrator.up(plan, only, wait, remove_orphans, within)

    async def down(
        self, project: ComposeProject, volumes: bool, emit: Emit, everyone: bool
    ) -> None:
        await self.teardown.down(project, volumes, emit, everyone)

    async def check(self, project: ComposeProject, everyone: bool) -> None:
        """Everything the loader accepts runs on one Docker Engine."""

    async def scale(self, plan: Plan, service: str, replicas: int) -> None:
        """As `docker compose up --scale`: until the next `up`, which restores the file's
        count. The config hash is the file's, so the running replicas are kept."""
        chosen = plan.project.services[service]
        deploy = chosen.deploy.model_copy(update={"replicas": replicas})
        services = {**plan.project.services, service: chosen.model_copy(update={"deploy": deploy})}
        plan.project = plan.project.model_copy(update={"services": services})
        await self._orchestrator.up(plan, {service}, True, False)
        plan.event("scaled", service, detail=f"{replicas} replicas")

    async def act(
        self,
        project: ComposeProject,
        action: Action,
        services: list[str] | None,
        everyone: bool,
        grace: float | None = None,
        signal: str = "SIGKILL",
    ) -> None:
        await self._orchestrator.act(project, action, services, everyone, grace, signal)

    # -- observation ----------------------------------------------------------------------

    async def status(self, project: str, services: list[str], everyone: bool) -> WorkflowStatus:
        return await self._orchestrator.status(project, services, everyone)

    async def projects(self, stored: set[str], everyone: bool) -> list[ComposeProjectSummary]:
        owners = self.owners
        found: dict[str, list[Any]] = {}
        for container in await self._docker.containers([PROJECT_LABEL]):
            name = container.labels[PROJECT_LABEL]
            if everyone or owners.owner(container.labels, name in stored) == owners.engine_id:
                found.setdefault(name, []).append(container)
        summaries = []
        for name, members in sorted(found.items()):
            labels = members[0].labels
            services = sorted({c.labels.get(SERVICE_LABEL, "?") for c in members})
            status = await self.status(name, services, everyone)
            files = labels.get("com.docker.compose.project.config_files") or ""
            summaries.append(ComposeProjectSummary(
                name=name, managed=name in stored, state=status.state, services=services,
                working_dir=labels.get("com.docker.compose.project.working_dir"),
                config_files=[f for f in files.split(",") if f],
                owner=owners.owner(labels, name in stored),
            ))  # fmt: skip
        return summaries

    async def logs(
        self,
        project: str,
        service: str | None,
        everyone: bool,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[LogLine]:
        found = await self._orchestrator.containers(project, everyone)
        sources = [
            LogSource(c.id, (c.labels.get(SERVICE_LABEL, "?"), c.name))
            for c in found
            if service in (None, c.labels.get(SERVICE_LABEL))
        ]
        chunks = self._docker.logs(sources, follow=follow, tail=tail, since=since)
        if follow:
            async for chunk in chunks:
                yield log_line(chunk)
            return
        # A finished read is put in time order: Docker stamps each line as it reads it from
        # a container's stdout or stderr pipe, so the streams interleave as they were written.
        earliest = datetime.min.replace(tzinfo=UTC)
        lines = [log_line(chunk) async for chunk in chunks]
        for line in sorted(lines, key=lambda line: line.time or earliest):
            yield line

    async def events(
        self, project: str, since: datetime, everyone: bool, own: AsyncIterable[WorkflowEvent]
    ) -> AsyncIterator[WorkflowEvent]:
        labels = [f"{PROJECT_LABEL}={project}"]
        start = since.timestamp()
        seen = RecentKeys()  # also the high-water mark of what was yielded
        send, receive = anyio.create_memory_object_stream[DockerEvent | WorkflowEvent](math.inf)

        async def from_docker() -> None:
            async for event in self._docker.events(labels, start):
                send.send_nowait(event)

        async def from_engine() -> None:
            async for event in own:
                send.send_nowait(event)

        def typed(raws: Iterable[DockerEvent]) -> Iterator[WorkflowEvent]:
            for raw in raws:
                if not everyone and not self.owners.owns(raw.attributes, project):
                    continue  # another engine's or tool's container of the same name
                event = event_from_docker(project, raw)
                if event is not None and seen.add(raw.key, raw.time_nano):
                    yield event

        # Docker's events are deduplicated as they are read, not as they arrive: a live
        # copy still queued behind a `done` is dropped once the replay has yielded it.
        async with task_group() as group:
            group.start_soon(from_docker)
            group.start_soon(from_engine)
            async for item in receive:
                if isinstance(item, DockerEvent):
                    for event in typed([item]):
                        yield event
                    continue
                if item.action in ("done", "error"):
                    # Docker's live feed lags by a few ms: replay what it has recorded so
                    # far, so a reader that stops at `done` has seen every container event.
                    until = datetime.now(UTC).timestamp()
                    since_seen = seen.latest / 1e9 if seen.latest else start
                    for event in typed(
                        await self._docker.recorded_events(labels, since_seen, until)
                    ):
                        yield event
                yield item
            group.cancel_scope.cancel()

    async def stats(self, containers: Sequence[tuple[str, ContainerState]]) -> list[ContainerStats]:
        results: list[ContainerStats] = []

        async def sample(service: str, container: ContainerState) -> None:
            usage = await self._docker.stats(container.id)
            results.append(
                ContainerStats(service=service, container=container.name, **asdict(usage))
            )

        async with task_group() as group:
            for service, container in containers:
                group.start_soon(sample, service, container)
        return sorted(results, key=lambda s: s.container)

    async def top(self, containers: Sequence[tuple[str, ContainerState]]) -> list[ContainerTop]:
        results: list[ContainerTop] = []

        async def sample(service: str, container: ContainerState) -> None:
            try:
                table = await self._docker.top(container.id)
            except (NotFound, Conflict):
                return  # it stopped (or went) between the listing and the question
            results.append(ContainerTop(
                container=container.name, service=service, titles=list(table.titles),
                processes=[list(row) for row in table.rows],
            ))  # fmt: skip

        async with task_group() as group:
            for service, container in containers:
                group.start_soon(sample, service, container)
        return sorted(results, key=lambda t: t.container)

    # -- commands -------------------------------------------------------------------------

    async def exec(
        self,
        container: str,
        cmd: Sequence[str],
        user: str | None,
        workdir: str | None,
        env: Mapping[str, str],
    ) -> ExecResult:
        outcome = await self._docker.exec(container, cmd, user=user, workdir=workdir, env=env)
        output = outcome.output.decode(errors="replace")
        code = -1 if outcome.exit_code is None else outcome.exit_code  # never None once it ended
        return ExecResult(exit_code=code, output=output)

    def shell_command(
        self,
        container: str,
        command: Sequence[str],
        env: Mapping[str, str],
        env_file: str | None,
        workdir: str | None,
    ) -> ExecCommand:
        return self._docker.exec_command(container, command, env, env_file, workdir)


def _conforms(runtime: DockerRuntime) -> WorkflowRuntime:
    return runtime  # mypy proves here that DockerRuntime is a WorkflowRuntime
