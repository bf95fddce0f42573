"""`engine.workflows` and the `Workflow` handle, async and blocking."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from .._models import (
    ComposeProject,
    ComposeProjectSummary,
    EnvExplanation,
    ExecResult,
    LogLine,
    ServiceStatus,
    WorkflowEvent,
    WorkflowInfo,
    WorkflowStats,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from .engine import AsyncEngine, Engine
    from .shells import AsyncShell, Shell

__all__ = ["AsyncWorkflow", "AsyncWorkflows", "Workflow", "Workflows"]

Compose = str | os.PathLike[str] | Mapping[str, Any]
Progress = Callable[[WorkflowEvent], object] | None


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


class _Handle:
    def __init__(self, info: WorkflowInfo) -> None:
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} services={self.info.services}>"


class AsyncWorkflow(_Handle):
    def __init__(self, engine: AsyncEngine, info: WorkflowInfo) -> None:
        super().__init__(info)
        self._engine = engine

    async def reload(self) -> None:
        self.info = await self._engine._call("workflows.get", name=self.name)

    async def up(
        self,
        services: list[str] | None = None,
        wait: bool = True,
        timeout: float | None = None,
        remove_orphans: bool = True,
        build: bool | None = None,
        progress: Progress = None,
    ) -> WorkflowStatus:
        events = self._engine._stream(
            "workflows.up",
            name=self.name,
            services=services,
            wait=wait,
            timeout=timeout,
            remove_orphans=remove_orphans,
            build=build,
        )
        await _drain(events, progress)
        return await self.status()

    async def down(
        self, volumes: bool = False, remove_orphans: bool = True, progress: Progress = None
    ) -> None:
        events = self._engine._stream(
            "workflows.down", name=self.name, volumes=volumes, remove_orphans=remove_orphans
        )
        await _drain(events, progress)

    async def status(self) -> WorkflowStatus:
        return await self._engine._call("workflows.status", name=self.name)

    async def services(self) -> list[ServiceStatus]:
        return (await self.status()).services

    async def config(self) -> ComposeProject:
        return await self._engine._call("workflows.config", name=self.name)

    async def start(self, services: list[str] | None = None) -> WorkflowStatus:
        return await self._engine._call("workflows.start", name=self.name, services=services)

    async def stop(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return await self._engine._call(
            "workflows.stop", name=self.name, services=services, timeout=timeout
        )

    async def restart(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return await self._engine._call(
            "workflows.restart", name=self.name, services=services, timeout=timeout
        )

    async def pause(self, services: list[str] | None = None) -> WorkflowStatus:
        return await self._engine._call("workflows.pause", name=self.name, services=services)

    async def unpause(self, services: list[str] | None = None) -> WorkflowStatus:
        return await self._engine._call("workflows.unpause", name=self.name, services=services)

    async def kill(
        self, signal: str = "SIGKILL", services: list[str] | None = None
    ) -> WorkflowStatus:
        return await self._engine._call(
            "workflows.kill", name=self.name, signal=signal, services=services
        )

    async def exec(self, service: str, cmd: list[str], **options: Any) -> ExecResult:
        return await self._engine._call(
            "workflows.exec", name=self.name, service=service, cmd=cmd, **options
        )

    async def shell(
        self, service: str, command: str | None = None, name: str | None = None, **options: Any
    ) -> AsyncShell:
        """A persistent shell session inside `service`'s container (`sh` by default)."""
        return await self._engine.shells.create(
            name, command, workflow=self.name, service=service, **options
        )

    async def stats(self) -> WorkflowStats:
        """One sample; `watch_stats()` streams them."""
        return await self._engine._call("workflows.stats", name=self.name)

    def watch_stats(self) -> AsyncIterator[WorkflowStats]:
        """Samples one after another (about one a second), until the iterator is closed."""
        return self._engine._stream("workflows.stats.watch", name=self.name)

    async def update(
        self,
        compose: Compose | None = None,
        env: Mapping[str, str] | None = None,
        env_file: Any = None,
        profiles: Iterable[str] | None = None,
    ) -> None:
        self.info = await self._engine._call(
            "workflows.update", **_update_params(self.name, compose, env, env_file, profiles)
        )

    async def explain_env(self, service: str, variable: str) -> EnvExplanation:
        return await self._engine._call(
            "workflows.env", name=self.name, service=service, variable=variable
        )

    def logs(
        self,
        service: str | None = None,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[LogLine]:
        return self._engine._stream(
            "workflows.logs",
            name=self.name,
            service=service,
            follow=follow,
            tail=tail,
            since=since,
            timestamps=timestamps,
        )

    def events(self, since: datetime | None = None) -> AsyncIterator[WorkflowEvent]:
        return self._engine._stream("workflows.events", name=self.name, since=since)

    async def remove(self) -> None:
        await self._engine._call("workflows.remove", name=self.name)


class Workflow(_Handle):
    def __init__(self, engine: Engine, info: WorkflowInfo) -> None:
        super().__init__(info)
        self._engine = engine

    def reload(self) -> None:
        self.info = self._engine._call("workflows.get", name=self.name)

    def up(
        self,
        services: list[str] | None = None,
        wait: bool = True,
        timeout: float | None = None,
        remove_orphans: bool = True,
        build: bool | None = None,
        progress: Progress = None,
    ) -> WorkflowStatus:
        for event in self._engine._stream(
            "workflows.up",
            name=self.name,
            services=services,
            wait=wait,
            timeout=timeout,
            remove_orphans=remove_orphans,
            build=build,
        ):
            if progress is not None:
                progress(event)
        return self.status()

    def down(
        self, volumes: bool = False, remove_orphans: bool = True, progress: Progress = None
    ) -> None:
        for event in self._engine._stream(
            "workflows.down", name=self.name, volumes=volumes, remove_orphans=remove_orphans
        ):
            if progress is not None:
                progress(event)

    def status(self) -> WorkflowStatus:
        return self._engine._call("workflows.status", name=self.name)

    def services(self) -> list[ServiceStatus]:
        return self.status().services

    def config(self) -> ComposeProject:
        return self._engine._call("workflows.config", name=self.name)

    def start(self, services: list[str] | None = None) -> WorkflowStatus:
        return self._engine._call("workflows.start", name=self.name, services=services)

    def stop(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return self._engine._call(
            "workflows.stop", name=self.name, services=services, timeout=timeout
        )

    def restart(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> WorkflowStatus:
        return self._engine._call(
            "workflows.restart", name=self.name, services=services, timeout=timeout
        )

    def pause(self, services: list[str] | None = None) -> WorkflowStatus:
        return self._engine._call("workflows.pause", name=self.name, services=services)

    def unpause(self, services: list[str] | None = None) -> WorkflowStatus:
        return self._engine._call("workflows.unpause", name=self.name, services=services)

    def kill(self, signal: str = "SIGKILL", services: list[str] | None = None) -> WorkflowStatus:
        return self._engine._call(
            "workflows.kill", name=self.name, signal=signal, services=services
        )

    def exec(self, service: str, cmd: list[str], **options: Any) -> ExecResult:
        return self._engine._call(
            "workflows.exec", name=self.name, service=service, cmd=cmd, **options
        )

    def shell(
        self, service: str, command: str | None = None, name: str | None = None, **options: Any
    ) -> Shell:
        """A persistent shell session inside `service`'s container (`sh` by default)."""
        return self._engine.shells.create(
            name, command, workflow=self.name, service=service, **options
        )

    @overload
    def stats(self, stream: Literal[False] = False) -> WorkflowStats: ...
    @overload
    def stats(self, stream: Literal[True]) -> Iterator[WorkflowStats]: ...
    def stats(self, stream: bool = False) -> WorkflowStats | Iterator[WorkflowStats]:
        """One sample; with stream=True, samples one after another (see `watch_stats`)."""
        if stream:
            return self.watch_stats()
        return self._engine._call("workflows.stats", name=self.name)

    def watch_stats(self) -> Iterator[WorkflowStats]:
        """Samples one after another (about one a second), until the iterator is closed."""
        return self._engine._stream("workflows.stats.watch", name=self.name)

    def update(
        self,
        compose: Compose | None = None,
        env: Mapping[str, str] | None = None,
        env_file: Any = None,
        profiles: Iterable[str] | None = None,
    ) -> None:
        self.info = self._engine._call(
            "workflows.update", **_update_params(self.name, compose, env, env_file, profiles)
        )

    def explain_env(self, service: str, variable: str) -> EnvExplanation:
        return self._engine._call(
            "workflows.env", name=self.name, service=service, variable=variable
        )

    def logs(
        self,
        service: str | None = None,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> Iterator[LogLine]:
        return self._engine._stream(
            "workflows.logs",
            name=self.name,
            service=service,
            follow=follow,
            tail=tail,
            since=since,
            timestamps=timestamps,
        )

    def events(self, since: datetime | None = None) -> Iterator[WorkflowEvent]:
        return self._engine._stream("workflows.events", name=self.name, since=since)

    def remove(self) -> None:
        self._engine._call("workflows.remove", name=self.name)


async def _drain(events: AsyncIterator[WorkflowEvent], progress: Progress) -> None:
    async for event in events:
        if progress is not None:
            progress(event)


class AsyncWorkflows:
    def __init__(self, engine: AsyncEngine) -> None:
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
    ) -> AsyncWorkflow:
        """Store a workflow. `working_dir` is a folder on the ENGINE host where relative
        paths resolve (default: the compose file's folder); keys other than MASTER need it
        inside the engine's storage root or host_paths (see the workflow policy)."""
        params = _create_params(name, compose, env, env_file, profiles)
        if working_dir is not None:
            params["working_dir"] = working_dir
        info = await self._engine._call("workflows.create", **params)
        return AsyncWorkflow(self._engine, info)

    async def get(self, name: str) -> AsyncWorkflow:
        return AsyncWorkflow(self._engine, await self._engine._call("workflows.get", name=name))

    async def projects(self) -> list[ComposeProjectSummary]:
        """The Compose projects this engine made; for MASTER every one on the Docker Engine."""
        return (await self._engine._call("workflows.projects")).projects

    async def list(self) -> list[AsyncWorkflow]:
        found = await self._engine._call("workflows.list")
        return [AsyncWorkflow(self._engine, info) for info in found.workflows]


class Workflows:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        name: str,
        compose: Compose,
        env: Mapping[str, str] | None = None,
        env_file: Any = None,
        profiles: Iterable[str] | None = None,
        *,
        working_dir: str | None = None,
    ) -> Workflow:
        """Store a workflow. `working_dir` is a folder on the ENGINE host where relative
        paths resolve (default: the compose file's folder); keys other than MASTER need it
        inside the engine's storage root or host_paths (see the workflow policy)."""
        params = _create_params(name, compose, env, env_file, profiles)
        if working_dir is not None:
            params["working_dir"] = working_dir
        info = self._engine._call("workflows.create", **params)
        return Workflow(self._engine, info)

    def get(self, name: str) -> Workflow:
        return Workflow(self._engine, self._engine._call("workflows.get", name=name))

    def projects(self) -> list[ComposeProjectSummary]:
        """The Compose projects this engine made; for MASTER every one on the Docker Engine."""
        return self._engine._call("workflows.projects").projects

    def list(self) -> list[Workflow]:
        return [
            Workflow(self._engine, info) for info in self._engine._call("workflows.list").workflows
        ]
