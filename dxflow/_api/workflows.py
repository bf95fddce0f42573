"""`engine.workflows` and the `Workflow` handle, async and blocking."""

from __future__ import annotations

import os
import shlex
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .. import _operations as ops
from .._display import Listing, html_of
from .._exceptions import EngineUnavailable, NotFound
from .._models import (
    ComposeProject,
    ComposeProjectSummary,
    EnvExplanation,
    ExecResult,
    Response,
    ServiceStatus,
    WorkflowEvent,
    WorkflowInfo,
    WorkflowStats,
    WorkflowStatus,
    WorkflowTop,
)
from .._operations import Operation
from .._progress import as_progress
from ._base import Blocking
from ._logs import AsyncLogs, Logs
from .shells import AsyncShell, AsyncShells, Shell

if TYPE_CHECKING:
    from ._protocol import AsyncEngineLike

R = TypeVar("R", bound=Response)

__all__ = ["AsyncWorkflow", "AsyncWorkflows", "Workflow", "Workflows"]

Compose = str | os.PathLike[str] | Mapping[str, Any]
Progress = Callable[[WorkflowEvent], object] | bool | None
"""A callable given each event, True for a ready display (`dxflow.Progress()`), or None."""
Command = str | list[str]


def _argv(cmd: Command) -> list[str]:
    """A command line as one string is split as a POSIX shell would (docker-py's rule)."""
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _create_params(
    name: str,
    compose: Compose,
    env: Mapping[str, str] | None,
    env_file: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    profiles: Iterable[str] | None,
) -> dict[str, Any]:
    """Read a compose file on this side; its folder is where relative paths resolve."""
    params: dict[str, Any] = {
        "name": name,
        "env": dict(env or {}),
        "profiles": list(profiles or []),
    }
    if isinstance(compose, Mapping):
        params["compose"] = dict(compose)
    elif isinstance(compose, os.PathLike) or ("\n" not in compose and Path(compose).is_file()):
        path = Path(compose).expanduser().absolute()
        params.update(
            compose=path.read_text(), working_dir=str(path.parent), config_files=[str(path)]
        )
    else:
        params["compose"] = compose
    if env_file is not None:
        files = [env_file] if isinstance(env_file, str | os.PathLike) else list(env_file)
        params["env_file"] = [str(Path(f).expanduser().absolute()) for f in files]
    return params


def _update_params(
    name: str,
    compose: Compose | None,
    env: Mapping[str, str] | None,
    env_file: Any,
    profiles: Iterable[str] | None,
) -> dict[str, Any]:
    """Only what is given changes; a compose path is read here, as in create."""
    params: dict[str, Any] = {"name": name}
    if compose is not None:
        full = _create_params(name, compose, env, env_file, profiles)
        params.update({k: full[k] for k in ("compose", "working_dir", "config_files") if k in full})
    if env is not None:
        params["env"] = dict(env)
    if env_file is not None:
        params["env_file"] = _create_params(name, {}, None, env_file, None)["env_file"]
    if profiles is not None:
        params["profiles"] = list(profiles)
    return params


class AsyncWorkflow:
    def __init__(self, engine: AsyncEngineLike, info: WorkflowInfo) -> None:
        self._engine = engine
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} services={self.info.services}>"

    def _repr_html_(self) -> str | None:
        return html_of(self.info)

    async def _op(self, op: Operation[Any, R], **params: Any) -> R:
        return await self._engine._call(op, name=self.name, **params)

    async def reload(self) -> None:
        self.info = await self._op(ops.workflows.GET)

    async def up(
        self,
        services: list[str] | None = None,
        wait: bool = True,
        timeout: float | None = None,
        remove_orphans: bool = True,
        build: bool | None = None,
        progress: Progress = None,
        keep_on_failure: bool = False,
    ) -> WorkflowStatus:
        """Create and start the services along `depends_on` (`services`: these and what they
        depend on); with `wait`, until they run and are healthy, one-shots done.

        A failure raises WorkflowFailed (with the failing health check's output and the
        service's last log lines) and removes what this call created, unless
        `keep_on_failure`. An interrupt (KeyboardInterrupt, a cancelled task) leaves
        everything as it is: `up` again continues, `down` removes it. `progress` gets each
        event, build output lines included (action "build").
        """
        progress = as_progress(progress)
        events = self._engine._stream(ops.workflows.UP, name=self.name, services=services,
                                      wait=wait, timeout=timeout, remove_orphans=remove_orphans,
                                      build=build, keep_on_failure=keep_on_failure)  # fmt: skip
        await _drain(events, progress)
        return await self.status()

    async def down(
        self, volumes: bool = False, remove_orphans: bool = True, progress: Progress = None
    ) -> None:
        progress = as_progress(progress)
        events = self._engine._stream(ops.workflows.DOWN, name=self.name, volumes=volumes,
                                      remove_orphans=remove_orphans)  # fmt: skip
        await _drain(events, progress)

    async def status(self) -> WorkflowStatus:
        return await self._op(ops.workflows.STATUS)

    async def services(self) -> list[ServiceStatus]:
        return (await self.status()).services

    async def config(self) -> ComposeProject:
        return await self._op(ops.workflows.CONFIG)

    async def start(self, services: list[str] | None = None) -> WorkflowStatus:
        return await self._op(ops.workflows.START, services=services)

    async def stop(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return await self._op(ops.workflows.STOP, services=services, timeout=timeout)

    async def restart(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return await self._op(ops.workflows.RESTART, services=services, timeout=timeout)

    async def scale(self, service: str, replicas: int) -> WorkflowStatus:
        """Run `replicas` of `service`. Runtime swarm: only the count changes, running
        tasks are kept, until the service's spec changes. Runtime docker: as `docker
        compose up --scale`, until the next `up` restores the file's count."""
        return await self._op(ops.workflows.SCALE, service=service, replicas=replicas)

    async def pause(self, services: list[str] | None = None) -> WorkflowStatus:
        return await self._op(ops.workflows.PAUSE, services=services)

    async def unpause(self, services: list[str] | None = None) -> WorkflowStatus:
        return await self._op(ops.workflows.UNPAUSE, services=services)

    async def kill(
        self, signal: str = "SIGKILL", services: list[str] | None = None
    ) -> WorkflowStatus:
        return await self._op(ops.workflows.KILL, signal=signal, services=services)

    async def exec(self, service: str, cmd: Command, **options: Any) -> ExecResult:
        """Run `cmd` (argv, or one string split as a shell would) in `service`'s container
        to its end; options: index, user, workdir, env, timeout."""
        return await self._op(ops.workflows.EXEC, service=service, cmd=_argv(cmd), **options)

    async def top(self) -> WorkflowTop:
        """The processes of each running container, as `docker top` lists them."""
        return await self._op(ops.workflows.TOP)

    async def shell(
        self, service: str, command: str | None = None, name: str | None = None, **options: Any
    ) -> AsyncShell:
        """A persistent shell session inside `service`'s container (`sh` by default)."""
        return await AsyncShells(self._engine).create(
            name, command, workflow=self.name, service=service, **options
        )

    @overload
    async def stats(self, stream: Literal[False] = False) -> WorkflowStats: ...
    @overload
    async def stats(self, stream: Literal[True]) -> AsyncIterator[WorkflowStats]: ...
    async def stats(self, stream: bool = False) -> WorkflowStats | AsyncIterator[WorkflowStats]:
        """One sample; with stream=True, samples one after another (see `watch_stats`)."""
        if stream:
            return self.watch_stats()
        return await self._op(ops.workflows.STATS)

    def watch_stats(self) -> AsyncIterator[WorkflowStats]:
        """Samples one after another (about one a second), until the iterator is closed."""
        return self._engine._stream(ops.workflows.STATS_WATCH, name=self.name)

    async def update(
        self,
        compose: Compose | None = None,
        env: Mapping[str, str] | None = None,
        env_file: Any = None,
        profiles: Iterable[str] | None = None,
    ) -> WorkflowInfo:
        """Replace what is given of the stored workflow; the next `up` recreates what
        changed. The new info (also in `info`)."""
        params = _update_params(self.name, compose, env, env_file, profiles)
        self.info = await self._engine._call(ops.workflows.UPDATE, **params)
        return self.info

    async def explain_env(self, service: str, variable: str) -> EnvExplanation:
        return await self._op(ops.workflows.ENV, service=service, variable=variable)

    def logs(
        self,
        service: str | None = None,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncLogs:
        """Log lines: `async for` them, or `await` them for a list that shows in Jupyter."""
        lines = self._engine._stream(ops.workflows.LOGS, name=self.name, service=service,
                                     follow=follow, tail=tail, since=since,
                                     timestamps=timestamps)  # fmt: skip
        return AsyncLogs(lines, follow, f"workflow {self.name}")

    def events(self, since: datetime | None = None) -> AsyncIterator[WorkflowEvent]:
        return self._engine._stream(ops.workflows.EVENTS, name=self.name, since=since)

    async def remove(self) -> None:
        await self._op(ops.workflows.REMOVE)


async def _drain(events: AsyncIterator[WorkflowEvent], progress: Callable[..., Any] | None) -> None:
    async for event in events:
        if progress is not None:
            progress(event)


class AsyncWorkflows:
    def __init__(self, engine: AsyncEngineLike) -> None:
        self._engine = engine

    async def create(
        self,
        name: str,
        compose: Compose,
        env: Mapping[str, str] | None = None,
        env_file: Any = None,
        profiles: Iterable[str] | None = None,
        *,
        working_dir: str | None = None,
        exist_ok: bool = False,
        replace: bool = False,
        placement: Mapping[str, Any] | None = None,
        runtime: str | None = None,
    ) -> AsyncWorkflow:
        """Store a workflow. `working_dir` is a folder on the ENGINE host where relative
        paths resolve (default: the compose file's folder); keys other than MASTER need it
        inside the engine's storage root or host_paths (see the workflow policy).

        A workflow of that name exists already: Conflict; with `exist_ok` it is updated to
        this spec (nothing changes when it is the same), with `replace` it is brought down
        and created anew.

        `runtime`: what runs it, "docker" (this machine's Docker Engine) or "swarm" (the
        Docker Swarm it manages: the same Compose file over a cluster, plus `scale()`);
        default: the engine's `workflow_runtime`.

        `placement` (on a master, with BRIDGE): create it on an agent instead, chosen by
        `{"labels": {...}, "strategy": "least_loaded"|"spread"|"pack", "cpus": 2,
        "memory": 8 << 30, "gpus": 1}`; the handle is the agent's, and `get(name)` on the
        master finds it there later."""
        if placement is not None:
            chosen = await self._engine._call(ops.bridges.PLACE, workflow=name, **placement)
            remote = self._engine._bridged(chosen.agent)
            return await AsyncWorkflows(remote).create(
                name, compose, env, env_file, profiles, working_dir=working_dir,
                exist_ok=exist_ok, replace=replace, runtime=runtime,
            )  # fmt: skip
        params = _create_params(name, compose, env, env_file, profiles)
        if working_dir is not None:
            params["working_dir"] = working_dir
        if exist_ok:
            params["exist_ok"] = True
        if replace:
            params["replace"] = True
        if runtime is not None:
            params["runtime"] = runtime
        info = await self._engine._call(ops.workflows.CREATE, **params)
        return AsyncWorkflow(self._engine, info)

    async def get(self, name: str) -> AsyncWorkflow:
        """The workflow `name`: this engine's, or (on a master) the one it placed on an
        agent."""
        try:
            info = await self._engine._call(ops.workflows.GET, name=name)
        except NotFound as missing:
            try:
                placed = await self._engine._call(ops.bridges.PLACEMENT, workflow=name)
            except (NotFound, EngineUnavailable):
                raise missing from None
            return await AsyncWorkflows(self._engine._bridged(placed.agent)).get(name)
        return AsyncWorkflow(self._engine, info)

    async def projects(self) -> list[ComposeProjectSummary]:
        """The Compose projects this engine made; for MASTER every one on the Docker Engine."""
        return Listing((await self._engine._call(ops.workflows.PROJECTS)).projects)  # a table

    async def list(self) -> list[AsyncWorkflow]:
        found = await self._engine._call(ops.workflows.LIST)
        return Listing(AsyncWorkflow(self._engine, info) for info in found.workflows)  # a table


# -- the blocking twins -------------------------------------------------------------------


class Workflow(Blocking[AsyncWorkflow]):
    """The blocking twin of `AsyncWorkflow`."""

    info = property(lambda self: self._async.info)
    name = property(lambda self: self._async.name)

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncWorkflow", "Workflow", 1)

    def _repr_html_(self) -> str | None:
        return html_of(self.info)

    def reload(self) -> None:
        self._run(self._async.reload)

    def up(
        self,
        services: list[str] | None = None,
        wait: bool = True,
        timeout: float | None = None,
        remove_orphans: bool = True,
        build: bool | None = None,
        progress: Progress = None,
        keep_on_failure: bool = False,
    ) -> WorkflowStatus:
        """See `AsyncWorkflow.up`; Ctrl-C (a notebook's "interrupt kernel") raises
        KeyboardInterrupt and leaves the containers as they are."""
        return self._run(self._async.up, services, wait, timeout, remove_orphans, build,
                         as_progress(progress), keep_on_failure)  # fmt: skip

    def down(
        self, volumes: bool = False, remove_orphans: bool = True, progress: Progress = None
    ) -> None:
        self._run(self._async.down, volumes, remove_orphans, as_progress(progress))

    def status(self) -> WorkflowStatus:
        return self._run(self._async.status)

    def services(self) -> list[ServiceStatus]:
        return self._run(self._async.services)

    def config(self) -> ComposeProject:
        return self._run(self._async.config)

    def start(self, services: list[str] | None = None) -> WorkflowStatus:
        return self._run(self._async.start, services)

    def stop(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return self._run(self._async.stop, services, timeout)

    def restart(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return self._run(self._async.restart, services, timeout)

    def scale(self, service: str, replicas: int) -> WorkflowStatus:
        """See `AsyncWorkflow.scale`."""
        return self._run(self._async.scale, service, replicas)

    def pause(self, services: list[str] | None = None) -> WorkflowStatus:
        return self._run(self._async.pause, services)

    def unpause(self, services: list[str] | None = None) -> WorkflowStatus:
        return self._run(self._async.unpause, services)

    def kill(self, signal: str = "SIGKILL", services: list[str] | None = None) -> WorkflowStatus:
        return self._run(self._async.kill, signal, services)

    def exec(self, service: str, cmd: Command, **options: Any) -> ExecResult:
        """See `AsyncWorkflow.exec`: `cmd` may be one string (split as a shell would)."""
        return self._run(self._async.exec, service, cmd, **options)

    def top(self) -> WorkflowTop:
        """The processes of each running container, as `docker top` lists them."""
        return self._run(self._async.top)

    def shell(
        self, service: str, command: str | None = None, name: str | None = None, **options: Any
    ) -> Shell:
        """A persistent shell session inside `service`'s container (`sh` by default)."""
        return Shell(self._runner, self._run(self._async.shell, service, command, name, **options))

    @overload
    def stats(self, stream: Literal[False] = False) -> WorkflowStats: ...
    @overload
    def stats(self, stream: Literal[True]) -> Iterator[WorkflowStats]: ...
    def stats(self, stream: bool = False) -> WorkflowStats | Iterator[WorkflowStats]:
        """One sample; with stream=True, samples one after another (see `watch_stats`)."""
        return self.watch_stats() if stream else self._run(self._async.stats)

    def watch_stats(self) -> Iterator[WorkflowStats]:
        """Samples one after another (about one a second), until the iterator is closed."""
        return self._runner.iterate(self._async.watch_stats())

    def update(
        self,
        compose: Compose | None = None,
        env: Mapping[str, str] | None = None,
        env_file: Any = None,
        profiles: Iterable[str] | None = None,
    ) -> WorkflowInfo:
        """See `AsyncWorkflow.update`: the new info."""
        return self._run(self._async.update, compose, env, env_file, profiles)

    def explain_env(self, service: str, variable: str) -> EnvExplanation:
        return self._run(self._async.explain_env, service, variable)

    def logs(
        self,
        service: str | None = None,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> Logs:
        """Log lines: iterate them; in Jupyter they show as `docker compose logs` prints them."""
        lines = self._runner.iterate(self._async.logs(service, follow, tail, since, timestamps))
        return Logs(lines, follow, f"workflow {self.name}")

    def events(self, since: datetime | None = None) -> Iterator[WorkflowEvent]:
        return self._runner.iterate(self._async.events(since))

    def remove(self) -> None:
        self._run(self._async.remove)


class Workflows(Blocking[AsyncWorkflows]):
    """The blocking twin of `AsyncWorkflows`."""

    def _wrap(self, workflow: AsyncWorkflow) -> Workflow:
        return Workflow(self._runner, workflow)

    def create(
        self,
        name: str,
        compose: Compose,
        env: Mapping[str, str] | None = None,
        env_file: Any = None,
        profiles: Iterable[str] | None = None,
        *,
        working_dir: str | None = None,
        exist_ok: bool = False,
        replace: bool = False,
        placement: Mapping[str, Any] | None = None,
        runtime: str | None = None,
    ) -> Workflow:
        """See `AsyncWorkflows.create` (`exist_ok`: update an existing one to this spec;
        `replace`: bring it down and create it anew; `placement`: on an agent;
        `runtime`: "docker" or "swarm")."""
        create = self._async.create
        return self._wrap(self._run(create, name, compose, env, env_file, profiles,
                                    working_dir=working_dir, exist_ok=exist_ok,
                                    replace=replace, placement=placement,
                                    runtime=runtime))  # fmt: skip

    def get(self, name: str) -> Workflow:
        return self._wrap(self._run(self._async.get, name))

    def projects(self) -> list[ComposeProjectSummary]:
        """The Compose projects this engine made; for MASTER every one on the Docker Engine."""
        return self._run(self._async.projects)

    def list(self) -> list[Workflow]:
        return Listing(self._wrap(workflow) for workflow in self._run(self._async.list))
