"""The workflow service: stored Compose projects and their lifecycle operations."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from ..._exceptions import Conflict, NotFound
from ..._models import (
    ComposeProject,
    ComposeProjectList,
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
    WorkflowScale,
    WorkflowStats,
    WorkflowStatus,
    WorkflowStop,
    WorkflowTop,
    WorkflowUp,
    WorkflowUpdate,
)
from .._compose import LoadedProject, check_build_contexts
from .._context import Context
from .._docker import DockerAdapter, ExecCommand
from .._groups import task_group
from .._handlers import handles
from .._state import State
from ._files import plan_files, remove_files
from ._loads import Entry, Loads, Row
from ._policy import PolicyRoots, check_exec_user, profile_for, refusal
from ._runtime import Action, Emit, Plan, WorkflowRuntime, runtime
from ._streams import EventBus

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
        runtime_name: str = "docker",
        registry: str = "",
    ) -> None:
        """`engine_id` labels what this engine makes (its owner); `files_dir` (private to
        the engine) holds the secrets and configs made from variables or content;
        `runtime_name` is what runs workflows created without one (see
        `_runtime.RUNTIMES`); `registry`: where the swarm runtime pushes built images."""
        self._state = state
        self._policy = policy
        self._runtime_args = (docker, concurrency, engine_id)
        self._registry = registry
        self._runtimes: dict[str, WorkflowRuntime] = {}
        self.default_runtime = runtime_name
        self._runtime_named(runtime_name)  # an unknown name fails at boot, not at first use
        self._files_dir = files_dir or Path(tempfile.gettempdir()) / f"dxflow-{engine_id}"
        self._loads = Loads(policy)
        self._bus = EventBus()

    def _runtime_named(self, name: str) -> WorkflowRuntime:
        found = self._runtimes.get(name)
        if found is None:
            found = runtime(name, *self._runtime_args, registry=self._registry)
            self._runtimes[name] = found
        return found

    def _runtime_of(self, name: str) -> WorkflowRuntime:
        """What runs the stored workflow `name`."""
        return self._runtime_named(self._row(name).runtime)

    # -- the store ------------------------------------------------------------------------

    def _row(self, name: str) -> Row:
        """The stored workflow `name` (NotFound naming it if none)."""
        rows = self._state.query(f"{_SELECT} WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no workflow named {name!r}", workflow=name)
        return self._as_row(rows[0])

    def _as_row(self, row: Any) -> Row:
        master = bool(row["by_master"])
        # Rows written before profiles were stored: MASTER's are privileged, others' the
        # engine default (what a key of no policy of its own gets).
        profile = row["profile"] or ("privileged" if master else self._policy.default)
        runtime_name = row["runtime"] or "docker"
        return Row(row["name"], row["spec"], row["created_at"], master, profile, runtime_name)

    async def _project(self, name: str, strict: bool = True) -> LoadedProject:
        """The loaded project, reloaded only when what it was made from changed.

        A project is interpolated anew against its env files (and, when MASTER wrote it,
        the engine's environment), as Compose does on every command; parsing it again
        every call would make `status()` of a large workflow mostly YAML parsing. See
        `_loads` for how a reload reads files and what `strict` means.
        """
        return (await self._loads.stored(self._row(name), strict)).loaded

    # -- the policy -----------------------------------------------------------------------

    def _profile(self, ctx: Context) -> str:
        return profile_for(ctx.identity, self._policy.default)

    async def _admit(self, ctx: Context, spec: WorkflowCreate | Row, master: bool) -> Entry:
        """`spec` checked with the CALLER's profile (MASTER: privileged), off the event loop;
        `master`: the spec's author was MASTER (what it may interpolate from)."""
        return await self._loads.admit(spec, self._profile(ctx), master, _is_master(ctx))

    @staticmethod
    def _info(
        spec: WorkflowCreate, created: float, project: ComposeProject, runtime_name: str
    ) -> WorkflowInfo:
        return WorkflowInfo(
            name=spec.name,
            created_at=datetime.fromtimestamp(created, UTC),
            working_dir=project.working_dir,
            services=sorted(project.services),
            profiles=spec.profiles,
            runtime=runtime_name,
        )

    @handles("workflows.create")
    async def create(self, ctx: Context, request: WorkflowCreate) -> WorkflowInfo:
        master, profile = _is_master(ctx), self._profile(ctx)
        spec = _stored_spec(request)
        runtime_name = request.runtime or self.default_runtime
        entry = await self._admit(ctx, spec, master)  # validates everything before storing
        loaded = entry.loaded
        check_build_contexts(loaded.project)
        exists = self._exists(spec.name)
        if exists and request.exist_ok and not request.replace:
            # it stays where it runs: checked by its runtime (another one is a Conflict)
            runtime_name = self._same_runtime(spec.name, request.runtime)
        await self._runtime_named(runtime_name).check(loaded.project, master)
        if exists:
            if request.replace:
                await self._replace(spec.name, master)
            elif request.exist_ok:
                return self._converge_spec(entry, profile)
            else:
                raise Conflict(
                    f"a workflow named {spec.name!r} exists already; pass exist_ok=True to "
                    "update it to this spec (a no-op when identical) or replace=True to bring "
                    "it down and create it anew (CLI: `dxflow up` in the compose file's folder, "
                    f"or `dxflow workflow update {spec.name} -f FILE`)",
                    workflow=spec.name,
                )
        created = time.time()
        with self._state.transaction() as db:
            if db.execute("SELECT 1 FROM workflows WHERE name = ?", (spec.name,)).fetchone():
                raise Conflict(
                    f"a workflow named {spec.name!r} was created meanwhile; pass exist_ok=True "
                    "to update it instead",
                    workflow=spec.name,
                )
            db.execute(
                "INSERT INTO workflows (name, spec, created_at, by_master, profile, runtime) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (spec.name, entry.raw, created, master, profile, runtime_name),
            )
        return self._info(spec, created, loaded.project, runtime_name)

    def _exists(self, name: str) -> bool:
        return bool(self._state.query("SELECT 1 FROM workflows WHERE name = ?", (name,)))

    def _same_runtime(self, name: str, asked: str | None) -> str:
        """The runtime of the stored workflow `name`; Conflict when `asked` is another."""
        current = self._row(name).runtime
        if asked is not None and asked != current:
            raise Conflict(
                f"the workflow {name!r} runs on the {current} runtime, not {asked}; to move "
                "it, bring it down and create it anew with replace=True (CLI: `dxflow down`, "
                f"then `dxflow up --runtime {asked}`)",
                workflow=name,
            )
        return current

    def _converge_spec(self, entry: Entry, profile: str) -> WorkflowInfo:
        """`create(exist_ok=True)` of an existing workflow: store its spec if it differs."""
        spec, master = entry.spec, entry.master
        current = self._row(spec.name)
        if (current.raw, current.master, current.profile) != (entry.raw, master, profile):
            self._state.execute(
                "UPDATE workflows SET spec = ?, by_master = ?, profile = ? WHERE name = ?",
                (entry.raw, master, profile, spec.name),
            )
        return self._info(spec, current.created, entry.loaded.project, current.runtime)

    async def _replace(self, name: str, master: bool) -> None:
        """`create(replace=True)`: the old workflow comes down and is forgotten."""
        old = (await self._project(name, strict=False)).project
        await self._runtime_of(name).down(old, False, self._bus.publish, master)
        await anyio.to_thread.run_sync(remove_files, self._files_dir, old.name)
        self._state.execute("DELETE FROM workflows WHERE name = ?", (name,))

    @handles("workflows.list")
    async def list(self, ctx: Context, request: None) -> WorkflowList:
        infos = []
        for row in self._state.query(f"{_SELECT} ORDER BY name"):
            infos.append(await self._get(self._as_row(row), strict=False))
        return WorkflowList(workflows=infos)

    async def _get(self, row: Row, strict: bool = True) -> WorkflowInfo:
        entry = await self._loads.stored(row, strict)
        return self._info(entry.spec, row.created, entry.loaded.project, row.runtime)

    @handles("workflows.projects")
    async def projects(self, ctx: Context, request: None) -> ComposeProjectList:
        """The Compose projects on the Docker Engine: this engine's; MASTER sees every one."""
        stored = {r["name"] for r in self._state.query("SELECT name FROM workflows")}
        used = {
            r["runtime"] or "docker" for r in self._state.query("SELECT runtime FROM workflows")
        }
        summaries = []
        for name in sorted(used | {self.default_runtime}):
            summaries += await self._runtime_named(name).projects(stored, _is_master(ctx))
        return ComposeProjectList(projects=summaries)

    @handles("workflows.get")
    async def get(self, ctx: Context, request: WorkflowRef) -> WorkflowInfo:
        return await self._get(self._row(request.name))

    @handles("workflows.config")
    async def config(self, ctx: Context, request: WorkflowRef) -> ComposeProject:
        return (await self._project(request.name)).project

    @handles("workflows.remove")
    async def remove(self, ctx: Context, request: WorkflowRef) -> WorkflowInfo:
        row = self._row(request.name)
        entry = await self._loads.stored(row, strict=False)  # a refused file never blocks it
        project = entry.loaded.project
        await self._runtime_named(row.runtime).down(project, False, lambda e: None, _is_master(ctx))
        await anyio.to_thread.run_sync(remove_files, self._files_dir, project.name)
        self._state.execute("DELETE FROM workflows WHERE name = ?", (request.name,))
        self._loads.forget(request.name)
        return self._info(entry.spec, row.created, project, row.runtime)

    # -- lifecycle ------------------------------------------------------------------------

    @handles("workflows.status")
    async def status(self, ctx: Context, request: WorkflowRef) -> WorkflowStatus:
        project = (await self._project(request.name)).project
        running = self._runtime_of(request.name)
        return await running.status(project.name, list(project.services), _is_master(ctx))

    @handles("workflows.up")
    async def up(self, ctx: Context, request: WorkflowUp) -> AsyncIterator[WorkflowEvent]:
        # checked anew with the CALLER's profile: it may differ from the creator's
        row = self._row(request.name)
        loaded = (await self._admit(ctx, row, row.master)).loaded
        project = loaded.project
        unknown = sorted(set(request.services or ()) - set(project.services))
        if unknown:
            raise NotFound(
                f"no service {unknown[0]!r} in workflow {request.name!r}", service=unknown[0]
            )
        only = _with_dependencies(project, request.services)

        async def run(emit: Callable[[WorkflowEvent], None]) -> None:
            plan = self._plan(loaded, emit, _is_master(ctx))
            plan.build, plan.keep_on_failure = request.build, request.keep_on_failure
            await self._runtime_named(row.runtime).up(
                plan, only, request.wait, request.remove_orphans, request.timeout
            )

        async for event in _events(run, self._bus.publish):
            yield event

    def _plan(self, loaded: LoadedProject, emit: Emit, everyone: bool) -> Plan:
        project = loaded.project
        hashes = {s: loaded.config_hash(s) for s in project.services}
        files = plan_files(loaded, self._files_dir)
        return Plan(
            project, hashes, loaded.order(), emit, everyone=everyone, files=files.mounts,
            prepare=files.write,
        )  # fmt: skip

    @handles("workflows.down")
    async def down(self, ctx: Context, request: WorkflowDown) -> AsyncIterator[WorkflowEvent]:
        project = (await self._project(request.name, strict=False)).project

        async def run(emit: Callable[[WorkflowEvent], None]) -> None:
            running = self._runtime_of(request.name)
            await running.down(project, request.volumes, emit, _is_master(ctx))
            await anyio.to_thread.run_sync(remove_files, self._files_dir, project.name)

        async for event in _events(run, self._bus.publish):
            yield event

    async def _each(
        self, ctx: Context, request: WorkflowStop, action: Action, signal: str = "SIGKILL"
    ) -> WorkflowStatus:
        # Stopping never needs what a refused file held: the planted link cannot keep it up.
        strict = action not in ("stop", "kill")
        project, master = (await self._project(request.name, strict)).project, _is_master(ctx)
        services, grace = request.services, request.timeout
        running = self._runtime_of(request.name)
        await running.act(project, action, services, master, grace, signal)
        return await running.status(project.name, list(project.services), master)

    @handles("workflows.scale")
    async def scale(self, ctx: Context, request: WorkflowScale) -> WorkflowStatus:
        row = self._row(request.name)
        loaded = (await self._admit(ctx, row, row.master)).loaded
        project, master = loaded.project, _is_master(ctx)
        if request.service not in project.services:
            raise NotFound(
                f"no service {request.service!r} in workflow {request.name!r}",
                service=request.service,
            )
        plan = self._plan(loaded, self._bus.publish, master)
        running = self._runtime_named(row.runtime)
        await running.scale(plan, request.service, request.replicas)
        return await running.status(project.name, list(project.services), master)

    @handles("workflows.start")
    async def start(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, "start")

    @handles("workflows.stop")
    async def stop(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, "stop")

    @handles("workflows.restart")
    async def restart(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, "restart")

    @handles("workflows.update")
    async def update(self, ctx: Context, request: WorkflowUpdate) -> WorkflowInfo:
        row = self._row(request.name)
        changes = request.model_dump(exclude={"name"}, exclude_none=True)
        current = _stored_spec(WorkflowCreate.model_validate_json(row.raw))
        spec = current.model_copy(update=changes)
        # whoever writes the spec decides what it may read, and under which profile
        master, profile = _is_master(ctx), self._profile(ctx)
        entry = await self._admit(ctx, spec, master)  # a bad update changes nothing
        check_build_contexts(entry.loaded.project)
        self._state.execute(
            "UPDATE workflows SET spec = ?, by_master = ?, profile = ? WHERE name = ?",
            (entry.raw, master, profile, spec.name),
        )
        return self._info(spec, row.created, entry.loaded.project, row.runtime)

    @handles("workflows.env")
    async def env(self, ctx: Context, request: EnvQuery) -> EnvExplanation:
        loaded = await self._project(request.name)
        value, source = loaded.explain(request.service, request.variable)
        if source == "process" and not _is_master(ctx):
            # `explain` answers for any name, used or not: the engine's environment (of a
            # MASTER-written workflow) is named as the source, never shown to others.
            value = None
        return EnvExplanation(variable=request.variable, value=value, source=source)

    @handles("workflows.logs")
    async def logs(self, ctx: Context, request: WorkflowLogs) -> AsyncIterator[LogLine]:
        project = (await self._project(request.name)).project
        if request.service is not None and request.service not in project.services:
            raise NotFound(f"no service {request.service!r} in workflow {request.name!r}")
        shown = {} if request.timestamps else {"time": None}
        lines = self._runtime_of(request.name).logs(
            project.name, request.service, _is_master(ctx), request.follow, request.tail,
            request.since,
        )  # fmt: skip
        async for line in lines:
            yield line.model_copy(update=shown)

    @handles("workflows.events")
    async def events(
        self, ctx: Context, request: WorkflowEventsQuery
    ) -> AsyncIterator[WorkflowEvent]:
        running = self._runtime_of(request.name)  # NotFound for an unknown workflow
        since = request.since or datetime.now(UTC)
        # The runtime reports what containers did; the engine adds what it does around
        # them (creating, starting, stopping, building, networks), from any up or down.
        send, receive = anyio.create_memory_object_stream[WorkflowEvent](math.inf)
        with self._bus.subscribe(request.name, send):
            async for event in running.events(request.name, since, _is_master(ctx), receive):
                yield event

    @handles("workflows.pause")
    async def pause(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, "pause")

    @handles("workflows.unpause")
    async def unpause(self, ctx: Context, request: WorkflowStop) -> WorkflowStatus:
        return await self._each(ctx, request, "unpause")

    @handles("workflows.kill")
    async def kill(self, ctx: Context, request: WorkflowKill) -> WorkflowStatus:
        stop = WorkflowStop(name=request.name, services=request.services)
        return await self._each(ctx, stop, "kill", request.signal)

    @handles("workflows.exec")
    async def exec(self, ctx: Context, request: WorkflowExec) -> ExecResult:
        await self.check_entry(ctx, request.name, request.user)
        container = await self._running(request.name, request.service, request.index, ctx)
        with anyio.fail_after(request.timeout):  # None: no deadline
            return await self._runtime_of(request.name).exec(
                container, request.cmd, request.user, request.workdir, request.env
            )

    async def service_names(self, name: str) -> tuple[str, ...]:
        """The services of the stored workflow `name` (NotFound naming it if none)."""
        return tuple(sorted((await self._project(name)).project.services))

    async def check_entry(self, ctx: Context, name: str, user: str | None = None) -> None:
        """Refuse a way into `name`'s containers (exec, a container shell) to a caller whose
        profile would refuse to `up` it: a baseline key must not exec into the privileged
        container a MASTER started. Under restricted the user may not be root."""
        profile = self._profile(ctx)
        if profile == "privileged":
            return
        row = self._row(name)
        await self._admit(ctx, row, row.master)
        violations = check_exec_user(user, profile)
        if violations:
            raise refusal(name, profile, violations)

    async def shell_command(
        self,
        ctx: Context,
        name: str,
        service: str,
        command: Sequence[str],
        env: Mapping[str, str],
        env_file: str | None = None,
        workdir: str | None = None,
    ) -> ExecCommand:
        """The command line of an interactive shell in `service`'s first running replica,
        if the caller may enter the workflow (see `check_entry`)."""
        await self.check_entry(ctx, name)
        container = await self._running(name, service, 1)
        return self._runtime_of(name).shell_command(container, command, env, env_file, workdir)

    async def _running(
        self, name: str, service: str, index: int, ctx: Context | None = None
    ) -> str:
        status = await self.status(ctx or Context(None), WorkflowRef(name=name))
        for candidate in status.services:
            if candidate.name == service:
                for container in candidate.containers:
                    if container.number == index and container.state == "running":
                        return container.id
                raise Conflict(
                    f"service {service!r} of {name!r} has no running replica {index}; start "
                    "it with up() (CLI: `dxflow workflow up NAME`), or see why it stopped "
                    "with status() and logs()",
                    service=service,
                )
        raise NotFound(f"no service {service!r} in workflow {name!r}", service=service)

    @handles("workflows.stats")
    async def stats(self, ctx: Context, request: WorkflowRef) -> WorkflowStats:
        status = await self.status(ctx, request)
        running = [
            (s.name, c) for s in status.services for c in s.containers if c.state == "running"
        ]
        sampled = await self._runtime_of(request.name).stats(running)
        return WorkflowStats(name=request.name, containers=sampled)

    @handles("workflows.top")
    async def top(self, ctx: Context, request: WorkflowRef) -> WorkflowTop:
        status = await self.status(ctx, request)
        running = [
            (s.name, c) for s in status.services for c in s.containers if c.state == "running"
        ]
        listed = await self._runtime_of(request.name).top(running)
        return WorkflowTop(name=request.name, containers=listed)

    @handles("workflows.stats.watch")
    async def watch_stats(self, ctx: Context, request: WorkflowRef) -> AsyncIterator[WorkflowStats]:
        # Each sample takes Docker about a second (it measures CPU over an interval).
        while True:
            yield await self.stats(ctx, request)


def _is_master(ctx: Context) -> bool:
    return ctx.identity is not None and ctx.identity.is_master


_SELECT = "SELECT name, spec, created_at, by_master, profile, runtime FROM workflows"


def _stored_spec(request: WorkflowCreate) -> WorkflowCreate:
    """The spec of a create request, without how to treat an existing workflow."""
    return request.model_copy(update={"exist_ok": False, "replace": False, "runtime": None})


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
