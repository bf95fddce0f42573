"""The seam between the workflow service and what runs workflows.

The service keeps the policy, ownership of the store and state; a runtime does the
container work: bring a project up and down, report it, run commands in it. Runtimes
are chosen by name, per workflow: "docker" (one Docker Engine, `_docker_runtime`) and
"swarm" (the Docker Swarm that Docker Engine manages, `_swarm_runtime`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..._exceptions import ConfigError
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

if TYPE_CHECKING:
    from .._docker import DockerAdapter, ExecCommand

__all__ = ["RUNTIMES", "Action", "Emit", "Plan", "WorkflowRuntime", "runtime"]

Emit = Callable[[WorkflowEvent], None]
_ONCE = frozenset({"started", "healthy", "exited"})
"""States an `up` observes more than once (each wait polls them): reported once."""
Action = Literal["start", "stop", "restart", "pause", "unpause", "kill"]


@dataclass
class Plan:
    """What one `up` is to do, and what it has created so far (for rollback)."""

    project: ComposeProject
    hashes: dict[str, str]
    waves: list[list[str]]
    emit: Emit
    build: bool | None = None
    """True: build every service that has `build`; False: never build; None: when missing."""
    everyone: bool = False
    """The caller is MASTER: the project's resources are its to manage, whoever made them
    (Compose's rule: a project is its name). Otherwise only this engine's."""
    files: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Per service, the (host path, container path) of its secrets and configs."""
    keep_on_failure: bool = False
    """A failed `up` leaves what it created, for inspection (default: rolled back)."""
    prepare: Callable[[], None] | None = None
    """Blocking work before anything is created (writing secrets and configs)."""
    created_containers: list[str] = field(default_factory=list)
    created_networks: list[str] = field(default_factory=list)
    created_volumes: list[str] = field(default_factory=list)
    reported: set[tuple[Any, ...]] = field(default_factory=set)
    """The states reported so far: each is reported once per call, however often seen."""

    def event(self, action: str, service: str | None = None, **details: Any) -> None:
        if action in _ONCE:
            key = (action, service, details.get("container"))
            if key in self.reported:
                return
            self.reported.add(key)
        self.emit(
            WorkflowEvent(
                time=datetime.now(UTC),
                workflow=self.project.name,
                action=action,
                service=service,
                **details,
            )
        )


class WorkflowRuntime(Protocol):
    """Runs Compose projects. `everyone`: the caller is MASTER and may manage what any
    engine or tool made under the project's name; otherwise only this engine's."""

    async def check(self, project: ComposeProject, everyone: bool) -> None:
        """Refuse (at create and up) a project this runtime cannot run (`everyone`: for
        a MASTER caller), naming the key and why."""
        ...

    async def scale(self, plan: Plan, service: str, replicas: int) -> None:
        """Run `replicas` of `service`; replicas whose spec did not change are kept."""
        ...

    async def status(self, project: str, services: list[str], everyone: bool) -> WorkflowStatus:
        """Per service and overall state of `project`'s containers."""
        ...

    async def projects(self, stored: set[str], everyone: bool) -> list[ComposeProjectSummary]:
        """The Compose projects the runtime holds (`stored`: the workflows of this engine)."""
        ...

    async def up(
        self,
        plan: Plan,
        only: set[str] | None,
        wait: bool,
        remove_orphans: bool,
        within: float | None = None,
    ) -> None:
        """Converge `plan` (`within` seconds: WorkflowFailed after); on failure remove what
        this call created (unless `plan.keep_on_failure`), then raise. A cancelled `up`
        (the caller interrupted or went away) leaves everything as it is."""
        ...

    async def down(
        self, project: ComposeProject, volumes: bool, emit: Emit, everyone: bool
    ) -> None:
        """Remove the project's containers and networks (and `volumes`). What cannot be
        removed for a reason outside the project is reported on `emit`, not raised."""
        ...

    async def act(
        self,
        project: ComposeProject,
        action: Action,
        services: list[str] | None,
        everyone: bool,
        grace: float | None = None,
        signal: str = "SIGKILL",
    ) -> None:
        """Apply `action` to every container of `services` (None: all), concurrently."""
        ...

    def logs(
        self,
        project: str,
        service: str | None,
        everyone: bool,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[LogLine]:
        """Log lines with their times; when not following, in time order."""
        ...

    def events(
        self, project: str, since: datetime, everyone: bool, own: AsyncIterable[WorkflowEvent]
    ) -> AsyncIterator[WorkflowEvent]:
        """The containers' events merged with `own` (the engine's events around them);
        before a `done` or `error` of `own`, every container event recorded so far."""
        ...

    async def stats(self, containers: Sequence[tuple[str, ContainerState]]) -> list[ContainerStats]:
        """One resource sample of each (service, container)."""
        ...

    async def top(self, containers: Sequence[tuple[str, ContainerState]]) -> list[ContainerTop]:
        """The processes of each running (service, container)."""
        ...

    async def exec(
        self,
        container: str,
        cmd: Sequence[str],
        user: str | None,
        workdir: str | None,
        env: Mapping[str, str],
    ) -> ExecResult:
        """Run `cmd` to its end in a running container."""
        ...

    def shell_command(
        self,
        container: str,
        command: Sequence[str],
        env: Mapping[str, str],
        env_file: str | None,
        workdir: str | None,
    ) -> ExecCommand:
        """The command line (and its environment) of an interactive shell in a container,
        for a PTY holder to run."""
        ...


RuntimeFactory = Callable[..., WorkflowRuntime]

RUNTIMES: dict[str, str] = {
    "docker": "dxflow._core._workflows._docker_runtime:DockerRuntime",
    "swarm": "dxflow._core._workflows._swarm_runtime:SwarmRuntime",
}
"""Runtime name -> "module:factory"; a factory takes (docker, concurrency, engine_id,
**options) (options: `registry`)."""


def runtime(
    name: str, docker: DockerAdapter, concurrency: int, engine_id: str, **options: Any
) -> WorkflowRuntime:
    """The runtime registered as `name`."""
    try:
        module, _, attribute = RUNTIMES[name].partition(":")
    except KeyError:
        known = ", ".join(sorted(RUNTIMES))
        raise ConfigError(f"unknown workflow runtime {name!r} (known: {known})") from None
    factory: RuntimeFactory = getattr(importlib.import_module(module), attribute)
    return factory(docker, concurrency, engine_id, **options)
