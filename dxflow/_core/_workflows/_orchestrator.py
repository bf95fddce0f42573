"""Bringing a Compose project up and down on the Docker Engine.

Services start in waves along ``depends_on``; services of one wave start concurrently
under a limit. Every container, network and volume an ``up`` creates is remembered,
and removed again if that ``up`` fails, so a failed call leaves nothing of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread

from ..._exceptions import ApiError, Conflict, NotFound, WorkflowFailed
from ..._models import (
    ComposeProject,
    ContainerState,
    Service,
    WorkflowEvent,
    WorkflowStatus,
)
from .._docker import DockerAdapter
from .._groups import task_group
from ._files import bind_sources
from ._owners import Owners
from ._spec import (
    ENGINE_LABEL,
    HASH_LABEL,
    NUMBER_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    container_config,
    container_name,
    endpoint_config,
    image_of,
)
from ._status import workflow_status

__all__ = ["Orchestrator", "Plan"]

Emit = Callable[[WorkflowEvent], None]
_POLL = 0.1


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
    prepare: Callable[[], None] | None = None
    """Blocking work before anything is created (writing secrets and configs)."""
    created_containers: list[str] = field(default_factory=list)
    created_networks: list[str] = field(default_factory=list)
    created_volumes: list[str] = field(default_factory=list)

    def event(self, action: str, service: str | None = None, **details: Any) -> None:
        self.emit(
            WorkflowEvent(
                time=datetime.now(UTC),
                workflow=self.project.name,
                action=action,
                service=service,
                **details,
            )
        )


def _ready(container: ContainerState, completed: bool = False) -> bool:
    """Done, for `up`: a job has exited (its code is judged apart), or, unless the
    dependency asked for completion, the container runs and is healthy if checked."""
    if container.state == "exited":
        return True
    return not completed and container.state == "running" and container.health in (None, "healthy")


def stop_grace(project: ComposeProject, service: str, given: float | None = None) -> int:
    """Seconds between SIGTERM and SIGKILL: the caller's, the service's, or Docker's 10."""
    if given is not None:
        return int(given)
    known = project.services.get(service)
    grace = known.stop_grace_period if known is not None else None
    return int(grace) if grace is not None else 10


class Orchestrator:
    def __init__(self, docker: DockerAdapter, concurrency: int = 16, engine_id: str = "") -> None:
        self._docker = docker
        self._concurrency = concurrency
        self._limiter: anyio.CapacityLimiter | None = None
        self.engine_id = engine_id
        """This engine's id: the owner label of what it creates."""
        self.owners = Owners(engine_id)

    def _slots(self) -> anyio.CapacityLimiter:
        """How many services converge at once (config `workflow_concurrency`)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        return self._limiter

    # -- observation ----------------------------------------------------------------------

    async def containers(self, project: str, everyone: bool = False) -> list[dict[str, Any]]:
        """The project's containers: this engine's, or (`everyone`) whoever made them."""
        label = f"{PROJECT_LABEL}={project}"
        rows: list[dict[str, Any]] = await self._docker.run(
            lambda c: c.api.containers(all=True, filters={"label": label})
        )
        return [r for r in rows if everyone or self.owners.owns(r.get("Labels") or {}, project)]

    async def all_containers(self) -> list[dict[str, Any]]:
        """Every container of every Compose project on the engine, whoever made it."""
        return await self._docker.run(
            lambda c: c.api.containers(all=True, filters={"label": PROJECT_LABEL})
        )

    async def status(
        self, name: str, services: list[str], everyone: bool = False
    ) -> WorkflowStatus:
        rows = await self.containers(name, everyone)
        return workflow_status(name, services, rows)

    # -- up -------------------------------------------------------------------------------

    async def up(
        self,
        plan: Plan,
        only: set[str] | None,
        wait: bool,
        remove_orphans: bool,
        timeout: float | None = None,
    ) -> None:
        try:
            with anyio.fail_after(timeout):
                await self._up(plan, only, wait, remove_orphans)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                error = (
                    await self._timed_out(plan, only, timeout)
                    if isinstance(exc, TimeoutError)
                    else exc
                )
                await self._rollback(plan)
            raise error from None
        plan.event("done")

    async def _up(
        self, plan: Plan, only: set[str] | None, wait: bool, remove_orphans: bool
    ) -> None:
        existing = self.owners.check_project(
            plan.everyone, plan.project.name, await self.containers(plan.project.name, True)
        )
        await self._networks_and_volumes(plan)
        if plan.prepare is not None:
            await anyio.to_thread.run_sync(plan.prepare)
        for wave in plan.waves:
            chosen = [s for s in wave if only is None or s in only]
            async with task_group() as group:
                for service in chosen:
                    group.start_soon(self._converge, plan, plan.project.services[service], existing)
        if remove_orphans:
            await self._remove_orphans(plan, existing)
        if wait:
            await self._wait_ready(plan, only)

    async def _timed_out(
        self, plan: Plan, only: set[str] | None, timeout: float | None
    ) -> WorkflowFailed:
        """Say what was not ready when time ran out, with its logs, before rolling back."""
        names = [s for s in plan.project.services if only is None or s in only]
        status = await self.status(plan.project.name, names, plan.everyone)
        waiting = []
        for service in status.services:
            ready = service.containers and all(_ready(c) for c in service.containers)
            if not ready:
                logs = await self._tail(service.containers[0].id) if service.containers else ""
                waiting.append(
                    f"{service.name} ({service.state}, health {service.health}):\n{logs}"
                )
        detail = "\n".join(waiting) or "(every service looked ready)"
        return WorkflowFailed(
            f"workflow {plan.project.name!r} did not come up within {timeout:g} s; waiting for "
            f"{detail}",
            timeout=timeout,
        )

    async def _networks_and_volumes(self, plan: Plan) -> None:
        project = plan.project
        for key, net in project.networks.items():
            found = await self._docker.run(
                lambda c, n=net.name: [x for x in c.networks.list(names=[n]) if x.name == n]
            )
            if found:
                self.owners.check_resource(
                    plan.everyone, project.name, "network", key, net, found[0]
                )
                continue
            if net.external:
                raise NotFound(f"external network {net.name!r} (networks.{key}) does not exist")
            labels = {
                **net.labels,
                PROJECT_LABEL: project.name,
                "com.docker.compose.network": key,
                ENGINE_LABEL: self.engine_id,
            }
            await self._docker.run(
                lambda c, n=net, tags=labels: c.networks.create(
                    n.name,
                    driver=n.driver or "bridge",
                    options=n.driver_opts or None,
                    internal=n.internal,
                    attachable=n.attachable,
                    labels=tags,
                )
            )
            plan.created_networks.append(net.name)
            plan.event("network", detail=f"created {net.name}")
        for key, volume in project.volumes.items():
            found = await self._docker.run(
                lambda c, n=volume.name: [
                    v for v in c.volumes.list(filters={"name": n}) if v.name == n
                ]
            )
            if found:
                self.owners.check_resource(
                    plan.everyone, project.name, "volume", key, volume, found[0]
                )
                continue
            if volume.external:
                raise NotFound(f"external volume {volume.name!r} (volumes.{key}) does not exist")
            labels = {
                **volume.labels,
                PROJECT_LABEL: project.name,
                "com.docker.compose.volume": key,
                ENGINE_LABEL: self.engine_id,
            }
            await self._docker.run(
                lambda c, v=volume, tags=labels: c.volumes.create(
                    v.name,
                    driver=v.driver or "local",
                    driver_opts=v.driver_opts or None,
                    labels=tags,
                )
            )
            plan.created_volumes.append(volume.name)
            plan.event("volume", detail=f"created {volume.name}")

    async def _image(self, plan: Plan, service: Service) -> None:
        image = image_of(plan.project, service)
        try:
            await self._docker.run(lambda c: c.api.inspect_image(image))
            return
        except NotFound:
            if service.build is None or plan.build is False:
                raise NotFound(
                    f"services.{service.name}.image: image {service.image!r} is not available on "
                    "this engine (build it, or load it with `docker load`)",
                    service=service.name,
                    image=service.image,
                ) from None
        await self._build(plan, service, image)

    async def _build(self, plan: Plan, service: Service, image: str) -> None:
        build = service.build
        assert build is not None
        plan.event("build", service.name, detail=f"building {image} from {build.context}")
        try:
            await self._docker.run(
                lambda c: c.images.build(
                    path=build.context,
                    dockerfile=build.dockerfile,
                    buildargs=build.args or None,
                    target=build.target,
                    tag=image,
                    rm=True,
                    forcerm=True,  # a failed step leaves no container behind either
                )
            )
        except ApiError as exc:
            raise WorkflowFailed(
                f"services.{service.name}.build: {exc.message}", service=service.name
            ) from None
        except (OSError, TypeError) as exc:  # docker-py reading a context gone since create
            raise WorkflowFailed(
                f"services.{service.name}.build.context: cannot read {build.context}: {exc}",
                service=service.name,
            ) from None

    async def _converge(self, plan: Plan, service: Service, existing: list[dict[str, Any]]) -> None:
        await self._await_dependencies(plan, service)
        async with self._slots():
            await self._converge_now(plan, service, existing)

    async def _converge_now(
        self, plan: Plan, service: Service, existing: list[dict[str, Any]]
    ) -> None:
        want = plan.hashes[service.name]
        if plan.build and service.build is not None:
            await self._build(plan, service, image_of(plan.project, service))
            want = f"{want}+build"  # a forced build recreates the service's containers
        mine = [r for r in existing if (r.get("Labels") or {}).get(SERVICE_LABEL) == service.name]
        by_number = {int((r.get("Labels") or {}).get(NUMBER_LABEL, "0")): r for r in mine}
        if any(
            by_number.get(n, {}).get("Labels", {}).get(HASH_LABEL) != want
            for n in range(1, service.deploy.replicas + 1)
        ):
            await self._image(plan, service)
        for number in range(1, service.deploy.replicas + 1):
            row = by_number.pop(number, None)
            if row is not None and (row.get("Labels") or {}).get(HASH_LABEL) == want:
                # Unchanged: keep it, but as `docker compose up` does, bring a stopped
                # container back (a finished one-shot job runs again) and unpause.
                name = row["Names"][0].lstrip("/")
                if row.get("State") == "paused":
                    await self._docker.run(lambda c, i=row["Id"]: c.api.unpause(i))
                elif row.get("State") != "running":
                    await self._start(plan, service, row["Id"], name)
                continue
            if row is not None:  # changed: recreate
                await self._remove(plan, service.name, row["Id"], row["Names"][0].lstrip("/"))
            await self._create_and_start(plan, service, number, want)
        for row in by_number.values():  # scaled down
            await self._remove(plan, service.name, row["Id"], row["Names"][0].lstrip("/"))

    async def _create_and_start(
        self, plan: Plan, service: Service, number: int, config_hash: str
    ) -> None:
        project = plan.project
        name = container_name(project.name, service.name, number)
        await anyio.to_thread.run_sync(bind_sources, service)
        files = plan.files.get(service.name, [])
        config = container_config(project, service, number, config_hash, self.engine_id, files)
        plan.event("creating", service.name, container=name)
        try:
            created = await self._docker.run(
                lambda c: c.api.create_container_from_config(config, name)
            )
        except ApiError as exc:
            raise WorkflowFailed(
                f"services.{service.name}: cannot create {name}: {exc.message}",
                service=service.name,
            ) from None
        plan.created_containers.append(created["Id"])
        plan.event("created", service.name, container=name)
        if not service.network_mode:
            for key in list(service.networks)[1:]:
                network = project.networks[key].name
                endpoint = endpoint_config(service, name, service.networks[key])
                await self._docker.run(
                    lambda c, n=network, e=endpoint: c.api.connect_container_to_network(
                        created["Id"], n, aliases=e["Aliases"]
                    )
                )
        await self._start(plan, service, created["Id"], name)

    async def _start(
        self, plan: Plan, service: Service, container: str, name: str | None = None
    ) -> None:
        plan.event("starting", service.name, container=name)
        try:
            await self._docker.run(lambda c: c.api.start(container))
        except ApiError as exc:
            raise WorkflowFailed(
                f"services.{service.name}: cannot start {name or container[:12]}: {exc.message}",
                service=service.name,
            ) from None
        plan.event("started", service.name, container=name)

    async def _remove(self, plan: Plan, service: str, container: str, name: str) -> None:
        plan.event("removing", service, container=name)
        await self._docker.run(lambda c: c.api.remove_container(container, force=True))
        plan.event("removed", service, container=name)

    async def _remove_orphans(self, plan: Plan, existing: list[dict[str, Any]]) -> None:
        for row in existing:
            service = (row.get("Labels") or {}).get(SERVICE_LABEL)
            if service not in plan.project.services:
                await self._remove(plan, service or "?", row["Id"], row["Names"][0].lstrip("/"))

    async def _await_dependencies(self, plan: Plan, service: Service) -> None:
        for dependency, rule in service.depends_on.items():
            if rule.condition == "service_started":
                continue
            await self._wait_ready(
                plan, {dependency}, completed=rule.condition == "service_completed_successfully"
            )

    async def _wait_ready(self, plan: Plan, only: set[str] | None, completed: bool = False) -> None:
        names = [s for s in plan.project.services if only is None or s in only]
        while True:
            status = await self.status(plan.project.name, names, plan.everyone)
            pending = []
            for service in status.services:
                if service.name not in names:
                    continue
                for container in service.containers:
                    problem = self._problem(container)
                    if problem:
                        logs = await self._tail(container.id)
                        raise WorkflowFailed(
                            f"service {service.name!r} {problem}; last log lines:\n{logs}",
                            service=service.name,
                            exit_code=container.exit_code,
                            logs=logs,
                        )
                    done = _ready(container, completed)
                    if not done:
                        pending.append(service.name)
                if not service.containers:
                    pending.append(service.name)
            if not pending:
                for service in status.services:
                    if service.health == "healthy":
                        plan.event("healthy", service.name)
                return
            await anyio.sleep(_POLL)

    @staticmethod
    def _problem(container: ContainerState) -> str | None:
        if container.state in ("exited", "dead") and container.exit_code not in (0, None):
            return f"exited with code {container.exit_code}"
        if container.health == "unhealthy":
            return "is unhealthy"
        return None

    async def _tail(self, container: str, lines: int = 20) -> str:
        try:
            raw = await self._docker.run(lambda c: c.api.logs(container, tail=lines))
        except ApiError:
            return "(no logs)"
        return raw.decode(errors="replace").rstrip() if isinstance(raw, bytes) else str(raw)

    async def _rollback(self, plan: Plan) -> None:
        """Remove what this `up` created; each removal is tried whatever the others do."""
        undo: list[Callable[[Any], Any]] = [
            *(lambda c, i=i: c.api.remove_container(i, force=True, v=True)
              for i in reversed(plan.created_containers)),
            *(lambda c, n=n: c.api.remove_network(n) for n in plan.created_networks),
            *(lambda c, v=v: c.api.remove_volume(v, force=True) for v in plan.created_volumes),
        ]  # fmt: skip
        for action in undo:
            with contextlib.suppress(ApiError):
                await self._docker.run(action)

    # -- down and friends -----------------------------------------------------------------

    async def down(
        self, project: ComposeProject, volumes: bool, emit: Emit, everyone: bool = False
    ) -> None:
        plan = Plan(project, {}, [], emit, everyone=everyone)
        rows = await self.containers(project.name, everyone)
        async with task_group() as group:
            for row in rows:
                service = (row.get("Labels") or {}).get(SERVICE_LABEL, "?")
                group.start_soon(self._stop_and_remove, plan, service, row)
        for net in project.networks.values():
            if not net.external and await self._may_remove(plan, "network", net.name):
                await self._remove_network(plan, net.name)
        if volumes:
            for volume in project.volumes.values():
                if not volume.external and await self._may_remove(plan, "volume", volume.name):
                    try:
                        await self._docker.run(
                            lambda c, v=volume.name: c.api.remove_volume(v, force=True)
                        )
                        plan.event("volume", detail=f"removed {volume.name}")
                    except NotFound:
                        pass
        plan.event("done")

    async def _may_remove(self, plan: Plan, kind: str, name: str) -> bool:
        """`down` removes a network or volume only if it is this engine's (or MASTER asks)."""
        if plan.everyone:
            return True
        try:
            attrs = await self._docker.run(
                lambda c: (
                    c.api.inspect_network(name) if kind == "network" else c.api.inspect_volume(name)
                )
            )
        except NotFound:
            return False
        return self.owners.owns_resource(attrs.get("Labels") or {}, plan.project.name, False)

    async def _remove_network(self, plan: Plan, name: str) -> None:
        # Docker may still hold endpoints of containers removed a moment ago
        # (moby/moby#42119): retry briefly before calling it a failure.
        for attempt in range(20):
            try:
                await self._docker.run(lambda c: c.api.remove_network(name))
            except NotFound:
                return
            except ApiError as exc:
                if "active endpoints" not in exc.message or attempt == 19:
                    raise Conflict(f"cannot remove network {name}: {exc.message}") from None
                await anyio.sleep(0.25)
            else:
                plan.event("network", detail=f"removed {name}")
                return

    async def _stop_and_remove(self, plan: Plan, service: str, row: dict[str, Any]) -> None:
        name = row["Names"][0].lstrip("/")
        if row.get("State") == "running":
            plan.event("stopping", service, container=name)
            grace = stop_grace(plan.project, service)
            await self._docker.run(lambda c: c.api.stop(row["Id"], timeout=grace))
            plan.event("stopped", service, container=name)
        await self._remove(plan, service, row["Id"], name)

    async def each(
        self,
        project: ComposeProject,
        services: list[str] | None,
        action: Callable[[Any, str, int], Any],
        grace: float | None = None,
        everyone: bool = False,
    ) -> None:
        """Apply a blocking Docker action to every container of `services`, concurrently.

        The action gets the client, the container id and its stop grace period.
        """
        rows = await self.containers(project.name, everyone)
        async with task_group() as group:
            for row in rows:
                service = (row.get("Labels") or {}).get(SERVICE_LABEL, "?")
                if services is None or service in services:
                    seconds = stop_grace(project, service, grace)
                    group.start_soon(self._docker.run, action, row["Id"], seconds)
