"""The workflow service: stored Compose projects and their lifecycle operations."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from ..._exceptions import Conflict, InvalidRequest, NotFound
from ..._models import (
    ComposeProject,
    ComposeProjectList,
    ComposeProjectSummary,
    ContainerState,
    ContainerStats,
    EnvExplanation,
    EnvQuery,
    ExecResult,
    LogLine,
    WorkflowCreate,
    WorkflowDown,
    WorkflowEvent,
    WorkflowEventsQuery,
    WorkflowExec,
    WorkflowInfo,
    WorkflowKill,
    WorkflowList,
    WorkflowLogs,
    WorkflowRef,
    WorkflowStats,
    WorkflowStatus,
    WorkflowStop,
    WorkflowUp,
    WorkflowUpdate,
)
from .._compose import LoadedProject, check_build_contexts, is_compose_path, load_project
from .._context import Context
from .._docker import DockerAdapter
from .._groups import task_group
from .._handlers import handles
from .._state import State
from ._files import plan_files, remove_files
from ._orchestrator import Orchestrator, Plan
from ._parsing import loop_first
from ._policy import PolicyRoots, admit, check_exec_user, profile_for, refusal
from ._spec import PROJECT_LABEL, SERVICE_LABEL
from ._status import container_stats
from ._streams import (
    EventBus,
    LineStream,
    RecentKeys,
    docker_event_key,
    event_from_docker,
    log_line,
)

__all__ = ["WorkflowService"]


class WorkflowService:
    def __init__(
        self,
        state: State,
        docker: DockerAdapter,
        policy: PolicyRoots,
        concurrency: int = 16,
        engine_id: str = "",
        files_dir: Path | None = None,
    ) -> None:
        """`engine_id` labels what this engine makes (its owner); `files_dir` (private to
        the engine) holds the secrets and configs made from variables or content."""
        self._state = state
        self._policy = policy
        self._docker = docker
        self._orchestrator = Orchestrator(docker, concurrency, engine_id)
        self._files_dir = files_dir or Path(tempfile.gettempdir()) / f"dxflow-{engine_id}"
        self._loaded: dict[str, tuple[str, LoadedProject]] = {}
        self._bus = EventBus()

    # -- the store ------------------------------------------------------------------------

    @staticmethod
    def _load(spec: WorkflowCreate, master: bool = False) -> LoadedProject:
        """The loaded project; `master`: the spec's author was MASTER.

        Only MASTER's variables may come from the engine's own environment: for anyone
        else ``${HOME}`` is what the caller's `env` and env files say, or unset.
        """
        if not master and isinstance(spec.compose, str) and is_compose_path(spec.compose):
            raise InvalidRequest(
                "compose: only a MASTER key may name a file on the engine host; send the "
                "YAML text or the parsed document (the SDK and CLI read a file on your side)",
                path="compose",
            )
        loaded = load_project(
            spec.name,
            spec.compose,
            env=spec.env,
            env_file=spec.env_file or None,
            profiles=spec.profiles,
            working_dir=spec.working_dir,
            process_env=os.environ if master else {},
        )
        if spec.config_files:  # read on the client side: the loader saw text, not the file
            loaded.project.config_files = list(spec.config_files)
        return loaded

    def _stored(self, name: str) -> tuple[WorkflowCreate, float, bool]:
        """The stored spec, when it was created, and whether MASTER wrote it last."""
        rows = self._state.query(
            "SELECT spec, created_at, by_master FROM workflows WHERE name = ?", (name,)
        )
        if not rows:
            raise NotFound(f"no workflow named {name!r}", workflow=name)
        row = rows[0]
        spec = WorkflowCreate.model_validate_json(row["spec"])
        return spec, row["created_at"], bool(row["by_master"])

    def _spec(self, name: str) -> tuple[WorkflowCreate, float]:
        return self._stored(name)[:2]

    def _project(self, name: str) -> LoadedProject:
        """The loaded project, reloaded only when what it was made from changed.

        A project is interpolated anew against its env files (and, when MASTER wrote it,
        the engine's environment), as Compose does on every command; parsing it again
        every call would make `status()` of a large workflow mostly YAML parsing.
        """
        spec, _, master = self._stored(name)
        return self._cached(spec, master)

    def _cached(self, spec: WorkflowCreate, master: bool) -> LoadedProject:
        key = _fingerprint(spec, master)
        cached = self._loaded.get(spec.name)
        if cached is None or cached[0] != key:
            cached = (key, self._load(spec, master))
            self._loaded[spec.name] = cached
        return cached[1]

    # -- the policy -----------------------------------------------------------------------

    def _profile(self, ctx: Context) -> str:
        return profile_for(ctx.identity, self._policy.default)

    def _admitted(
        self, spec: WorkflowCreate, profile: str, master: bool
    ) -> tuple[str, LoadedProject]:
        """`spec` loaded afresh and its fingerprint, or a 403 (see `_policy.admit`).

        Run in a worker thread: parsing a large project takes seconds of CPU. Under
        privileged an unchanged project is not parsed again; under other profiles it is,
        with the policy guarding every file read, and its host paths are resolved anew.
        """
        cached = self._loaded.get(spec.name)
        if profile == "privileged" and cached is not None:
            with contextlib.suppress(OSError):  # a path the load will report properly
                if cached[0] == _fingerprint(spec, master):
                    return cached
        load = lambda: self._load(spec, master)  # noqa: E731
        loaded = admit(spec.name, profile, self._policy, load, spec.working_dir)
        return _fingerprint(spec, master), loaded  # after the load: its paths are known to be sane

    async def _admit(self, ctx: Context, spec: WorkflowCreate, master: bool) -> LoadedProject:
        """`spec` checked with the CALLER's profile (MASTER: privileged), off the event loop;
        `master`: the spec's author was MASTER (what it may interpolate from)."""
        profile = self._profile(ctx)
        with loop_first():
            key, loaded = await anyio.to_thread.run_sync(self._admitted, spec, profile, master)
        self._loaded[spec.name] = (key, loaded)  # later calls skip the parse
        return loaded

    @staticmethod
    def _info(spec: WorkflowCreate, created: float, project: ComposeProject) -> WorkflowInfo:
        return WorkflowInfo(
            name=spec.name,
            created_at=datetime.fromtimestamp(created, UTC),
            working_dir=project.working_dir,
            services=sorted(project.services),
            profiles=spec.profiles,
        )

    @handles("workflows.create")
    async def create(self, ctx: Context, request: WorkflowCreate) -> WorkflowInfo:
        master = _is_master(ctx)
        loaded = await self._admit(ctx, request, master)  # validates everything before storing
        check_build_contexts(loaded.project)
        created = time.time()
        with self._state.transaction() as db:
            if db.execute("SELECT 1 FROM workflows WHERE name = ?", (request.name,)).fetchone():
                raise Conflict(
                    f"a workflow named {request.name!r} exists already", workflow=request.name
                )
            db.execute(
                "INSERT INTO workflows (name, spec, created_at, by_master) VALUES (?, ?, ?, ?)",
                (request.name, request.model_dump_json(), created, master),
            )
        return self._info(request, created, loaded.project)

    @handles("workflows.list")
    def list(self, ctx: Context, request: None) -> WorkflowList:
        rows = self._state.query("SELECT spec, created_at, by_master FROM workflows ORDER BY name")
        infos = []
        for row in rows:
            spec = WorkflowCreate.model_validate_json(row["spec"])
            project = self._cached(spec, bool(row["by_master"])).project
            infos.append(self._info(spec, row["created_at"], project))
        return WorkflowList(workflows=infos)

    @handles("workflows.projects")
    async def projects(self, ctx: Context, request: None) -> ComposeProjectList:
        """The Compose projects on the Docker Engine: this engine's; MASTER sees every one."""
        master = _is_master(ctx)
        rows = await self._orchestrator.all_containers()
        stored = {r["name"] for r in self._state.query("SELECT name FROM workflows")}
        owners = self._orchestrator.owners
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            labels = row.get("Labels") or {}
            name = labels[PROJECT_LABEL]
            if master or owners.owner(labels, name in stored) == owners.engine_id:
                found.setdefault(name, []).append(row)
        summaries = []
        for name, members in sorted(found.items()):
            labels = members[0].get("Labels") or {}
            services = sorted({(r.get("Labels") or {}).get(SERVICE_LABEL, "?") for r in members})
            status = await self._orchestrator.status(name, services, master)
            files = labels.get("com.docker.compose.project.config_files") or ""
            summaries.append(ComposeProjectSummary(
                name=name, managed=name in stored, state=status.state, services=services,
                working_dir=labels.get("com.docker.compose.project.working_dir"),
                config_files=[f for f in files.split(",") if f],
                owner=owners.owner(labels, name in stored),
            ))  # fmt: skip
        return ComposeProjectList(projects=summaries)

    @handles("workflows.get")
    def get(self, ctx: Context, request: WorkflowRef) -> WorkflowInfo:
        spec, created, master = self._stored(request.name)
        return self._info(spec, created, self._cached(spec, master).project)

    @handles("workflows.config")
    def config(self, ctx: Context, request: WorkflowRef) -> ComposeProject:
        return self._project(request.name).project

    @handles("workflows.remove")
    async def remove(self, ctx: Context, request: WorkflowRef) -> WorkflowInfo:
        info = self.get(ctx, request)
        project = self._project(request.name).project
        await self._orchestrator.down(project, False, lambda e: None, _is_master(ctx))
        await anyio.to_thread.run_sync(remove_files, self._files_dir, project.name)
        self._state.execute("DELETE FROM workflows WHERE name = ?", (request.name,))
        return info

    # -- lifecycle ------------------------------------------------------------------------

    @handles("workflows.status")
    async def status(self, ctx: Context, request: WorkflowRef) -> WorkflowStatus:
        project = self._project(request.name).project
        return await self._orchestrator.status(
            project.name, list(project.services), _is_master(ctx)
        )

    @handles("workflows.up")
    async def up(self, ctx: Context, request: WorkflowUp) -> AsyncIterator[WorkflowEvent]:
        # checked anew with the CALLER's profile: it may differ from the creator's
        spec, _, master = self._stored(request.name)
        loaded = await self._admit(ctx, spec, master)
        project = loaded.project
        unknown = sorted(set(request.services or ()) - set(project.services))
        if unknown:
            raise NotFound(
                f"no service {unknown[0]!r} in workflow {request.name!r}", service=unknown[0]
            )
        only = _with_dependencies(project, request.services)

        async def run(emit: Callable[[WorkflowEvent], None]) -> None:
            hashes = {s: loaded.config_hash(s) for s in project.services}
            files = plan_files(loaded, self._files_dir)
            plan = Plan(
                project, hashes, loaded.order(), emit, build=request.build,
                everyone=_is_master(ctx), files=files.mounts, prepare=files.write,
            )  # fmt: skip
            await self._orchestrator.up(
                plan, only, request.wait, request.remove_orphans, request.timeout
            )

        async for event in _events(run, self._bus.publish):
            yield event

    @handles("workflows.down")
    async def down(self, ctx: Context, request: WorkflowDown) -> AsyncIterator[WorkflowEvent]:
        project = self._project(request.name).project

        async def run(emit: Callable[[WorkflowEvent], None]) -> None:
            await self._orchestrator.down(project, request.volumes, emit, _is_master(ctx))
            await anyio.to_thread.run_sync(remove_files, self._files_dir, project.name)

        async for event in _events(run, self._bus.publish):
            yield event

    async def _each(
        self, ctx: Context, request: WorkflowStop, action: Callable[[Any, str, int], Any]
    ) -> WorkflowStatus:
        project, master = self._project(request.name).project, _is_master(ctx)
        await self._orchestrator.each(project, request.services, action, request.timeout, master)
        return await self._orchestrator.status(project.name, list(project.services), master)

    @handles("workflows.start")
    async def start(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, lambda c, i, _: c.api.start(i))

    @handles("workflows.stop")
    async def stop(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, lambda c, i, grace: c.api.stop(i, timeout=grace))

    @handles("workflows.restart")
    async def restart(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, lambda c, i, grace: c.api.restart(i, timeout=grace))

    @handles("workflows.update")
    async def update(self, ctx: Context, request: WorkflowUpdate) -> WorkflowInfo:
        current, created = self._spec(request.name)
        changes = request.model_dump(exclude={"name"}, exclude_none=True)
        spec = current.model_copy(update=changes)
        master = _is_master(ctx)  # whoever writes the spec decides what it may read
        loaded = await self._admit(ctx, spec, master)  # a bad update changes nothing
        check_build_contexts(loaded.project)
        self._state.execute(
            "UPDATE workflows SET spec = ?, by_master = ? WHERE name = ?",
            (spec.model_dump_json(), master, spec.name),
        )
        return self._info(spec, created, loaded.project)

    @handles("workflows.env")
    def env(self, ctx: Context, request: EnvQuery) -> EnvExplanation:
        value, source = self._project(request.name).explain(request.service, request.variable)
        if source == "process" and not _is_master(ctx):
            # `explain` answers for any name, used or not: the engine's environment (of a
            # MASTER-written workflow) is named as the source, never shown to others.
            value = None
        return EnvExplanation(variable=request.variable, value=value, source=source)

    @handles("workflows.logs")
    async def logs(self, ctx: Context, request: WorkflowLogs) -> AsyncIterator[LogLine]:
        project = self._project(request.name).project
        if request.service is not None and request.service not in project.services:
            raise NotFound(f"no service {request.service!r} in workflow {request.name!r}")
        rows = await self._orchestrator.containers(project.name, _is_master(ctx))
        streams = [
            _log_opener(row, stream, request)
            for row in rows
            if request.service in (None, (row.get("Labels") or {}).get(SERVICE_LABEL))
            for stream in ("stdout", "stderr")
        ]
        shown = {} if request.timestamps else {"time": None}
        lines = (log_line(item) async for item in self._docker.stream(streams))
        if request.follow:
            async for line in lines:
                yield line.model_copy(update=shown)
            return
        # A finished read is put in time order across containers and streams.
        earliest = datetime.min.replace(tzinfo=UTC)
        collected = sorted([line async for line in lines], key=lambda line: line.time or earliest)
        for line in collected:
            yield line.model_copy(update=shown)

    @handles("workflows.events")
    async def events(
        self, ctx: Context, request: WorkflowEventsQuery
    ) -> AsyncIterator[WorkflowEvent]:
        self._spec(request.name)  # NotFound for an unknown workflow
        filters = {"label": [f"{PROJECT_LABEL}={request.name}"], "type": ["container"]}
        since = _docker_time(request.since or datetime.now(UTC))
        seen = RecentKeys()  # also the high-water mark of what was yielded

        def open_events(client: Any) -> Any:
            return client.api.events(filters=filters, decode=True, since=since)

        def replay(client: Any) -> list[Any]:
            until = _docker_time(datetime.now(UTC))
            start = f"{seen.latest / 1e9:.9f}" if seen.latest else since
            return list(client.api.events(filters=filters, decode=True, since=start, until=until))

        send, receive = anyio.create_memory_object_stream[Any](math.inf)

        async def from_docker() -> None:
            async for raw in self._docker.stream([open_events]):
                send.send_nowait(raw)

        owners, master = self._orchestrator.owners, _is_master(ctx)

        def typed(raws: list[Any]) -> Iterator[WorkflowEvent]:
            for raw in raws:
                labels = (raw.get("Actor") or {}).get("Attributes") or {}
                if not master and not owners.owns(labels, request.name):
                    continue  # another engine's or tool's container of the same name
                event = event_from_docker(request.name, raw)
                if event is not None and seen.add(docker_event_key(raw), raw.get("timeNano")):
                    yield event

        # Docker reports what containers did; the engine adds what it does around them
        # (creating, starting, stopping, building, networks), from any up or down.
        async with task_group() as group:
            group.start_soon(from_docker)
            with self._bus.subscribe(request.name, send):
                async for item in receive:
                    if not isinstance(item, WorkflowEvent):
                        for event in typed([item]):
                            yield event
                        continue
                    if item.action in ("done", "error"):
                        # Docker's live feed lags by a few ms: replay what it has recorded so
                        # far, so a reader that stops at `done` has seen every container event.
                        for event in typed(await self._docker.run(replay)):
                            yield event
                    yield item
            group.cancel_scope.cancel()

    @handles("workflows.pause")
    async def pause(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, lambda c, i, _: c.api.pause(i))

    @handles("workflows.unpause")
    async def unpause(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, lambda c, i, _: c.api.unpause(i))

    @handles("workflows.kill")
    async def kill(self, ctx: Context, request: WorkflowKill) -> WorkflowStatus:
        stop = WorkflowStop(name=request.name, services=request.services)
        return await self._each(ctx, stop, lambda c, i, _: c.api.kill(i, signal=request.signal))

    @handles("workflows.exec")
    async def exec(self, ctx: Context, request: WorkflowExec) -> ExecResult:
        await self.check_entry(ctx, request.name, request.user)
        container = await self._running(request.name, request.service, request.index, ctx)

        def run(client: Any) -> ExecResult:
            created = client.api.exec_create(
                container,
                request.cmd,
                user=request.user or "",
                workdir=request.workdir,
                environment=request.env or None,
            )
            output = client.api.exec_start(created["Id"])
            code = client.api.exec_inspect(created["Id"])["ExitCode"]
            return ExecResult(exit_code=code, output=output.decode(errors="replace"))

        with anyio.fail_after(request.timeout):  # None: no deadline
            return await self._docker.run(run)

    async def check_entry(self, ctx: Context, name: str, user: str | None = None) -> None:
        """Refuse a way into `name`'s containers (exec, a container shell) to a caller whose
        profile would refuse to `up` it: a baseline key must not exec into the privileged
        container a MASTER started. Under restricted the user may not be root."""
        profile = self._profile(ctx)
        if profile == "privileged":
            return
        spec, _, master = self._stored(name)
        await self._admit(ctx, spec, master)
        violations = check_exec_user(user, profile)
        if violations:
            raise refusal(name, profile, violations)

    async def running_container(self, name: str, service: str, index: int = 1) -> str:
        """The id of a running replica of `service` (for exec and container shells)."""
        return await self._running(name, service, index)

    async def _running(
        self, name: str, service: str, index: int, ctx: Context | None = None
    ) -> str:
        status = await self.status(ctx or Context(None), WorkflowRef(name=name))
        for candidate in status.services:
            if candidate.name == service:
                for container in candidate.containers:
                    if container.number == index and container.state == "running":
                        return container.id
                raise Conflict(f"service {service!r} of {name!r} has no running replica {index}")
        raise NotFound(f"no service {service!r} in workflow {name!r}", service=service)

    @handles("workflows.stats")
    async def stats(self, ctx: Context, request: WorkflowRef) -> WorkflowStats:
        status = await self.status(ctx, request)
        running = [
            (s.name, c) for s in status.services for c in s.containers if c.state == "running"
        ]
        results: list[ContainerStats] = []

        async def sample(service: str, container: ContainerState) -> None:
            raw = await self._docker.run(lambda c: c.api.stats(container.id, stream=False))
            results.append(container_stats(service, container.name, raw))

        async with task_group() as group:
            for service, container in running:
                group.start_soon(sample, service, container)
        return WorkflowStats(
            name=request.name, containers=sorted(results, key=lambda s: s.container)
        )

    @handles("workflows.stats.watch")
    async def watch_stats(self, ctx: Context, request: WorkflowRef) -> AsyncIterator[WorkflowStats]:
        # Each sample takes Docker about a second (it measures CPU over an interval).
        while True:
            yield await self.stats(ctx, request)


def _docker_time(moment: datetime) -> str:
    """Docker's `since`/`until` with sub-second precision (docker-py would truncate)."""
    return f"{moment.timestamp():.9f}"


def _is_master(ctx: Context) -> bool:
    return ctx.identity is not None and ctx.identity.is_master


def _fingerprint(spec: WorkflowCreate, master: bool) -> str:
    """What a loaded project depends on: its spec, the environment, its env files."""
    files = [Path(f) for f in spec.env_file]
    if spec.working_dir:
        files.append(Path(spec.working_dir) / ".env")
    stamps = [(str(f), f.stat().st_mtime_ns if f.exists() else None) for f in files]
    process = sorted(os.environ.items()) if master else []
    raw = json.dumps([spec.model_dump_json(), master, process, stamps])
    return hashlib.sha256(raw.encode()).hexdigest()


def _log_opener(row: dict[str, Any], stream: str, request: WorkflowLogs) -> Callable[[Any], Any]:
    labels = row.get("Labels") or {}
    tag = (labels.get(SERVICE_LABEL, "?"), row["Names"][0].lstrip("/"), stream)

    tail = request.tail if request.tail is not None else "all"

    def open_logs(client: Any) -> LineStream:
        raw = client.api.logs(
            row["Id"], stdout=stream == "stdout", stderr=stream == "stderr", stream=True,
            follow=request.follow, timestamps=True, tail=tail, since=request.since,
        )  # fmt: skip
        return LineStream(raw, tag)

    return open_logs


def _with_dependencies(project: ComposeProject, services: list[str] | None) -> set[str] | None:
    if services is None:
        return None
    chosen, todo = set(), list(services)
    while todo:
        name = todo.pop()
        if name not in chosen:
            chosen.add(name)
            todo.extend(project.services[name].depends_on)
    return chosen


async def _events(
    run: Callable[[Callable[[WorkflowEvent], None]], Coroutine[Any, Any, None]],
    publish: Callable[[WorkflowEvent], None],
) -> AsyncIterator[WorkflowEvent]:
    """Run `run` in the background and yield the events it emits, in order."""
    send, receive = anyio.create_memory_object_stream[WorkflowEvent](math.inf)

    def emit(event: WorkflowEvent) -> None:
        send.send_nowait(event)
        publish(event)

    async def drive() -> None:
        async with send:
            await run(emit)

    async with task_group() as group:
        group.start_soon(drive)
        async with receive:
            async for event in receive:
                yield event
