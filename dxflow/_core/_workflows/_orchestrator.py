"""Bringing a Compose project up on the Docker Engine (down is `_teardown`'s).

Services start in waves along ``depends_on``; services of one wave start concurrently
under a limit. Every container, network and volume an ``up`` creates is remembered,
and removed again if that ``up`` fails, so a failed call leaves nothing of its own.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread

from ..._exceptions import ApiError, NotFound, WorkflowFailed
from ..._models import ComposeProject, ContainerState, Service, WorkflowStatus
from .._docker import Container, DockerAdapter
from .._groups import task_group
from ._diagnose import diagnose
from ._files import bind_sources
from ._owners import Owners
from ._runtime import Action, Plan
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

__all__ = ["Orchestrator", "stop_grace"]

_POLL = 0.1
_BUILD_TAIL = 20
"""Lines of the failing build step's output a WorkflowFailed shows."""
# Docker kept the endpoint of a removed container of this name (moby/moby#42119).
_STALE_ENDPOINT = re.compile(r"endpoint with name (\S+) already exists in network (\S+)")


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

    async def containers(self, project: str, everyone: bool = False) -> list[Container]:
        """The project's containers: this engine's, or (`everyone`) whoever made them."""
        found = await self._docker.containers([f"{PROJECT_LABEL}={project}"])
        return [c for c in found if everyone or self.owners.owns(c.labels, project)]

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
        except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
            # Interrupted (Ctrl-C, a cancelled task, a client gone): nothing failed, so
            # nothing is blamed or rolled back; `up` again continues, `down` removes.
            raise
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                error = (
                    await self._timed_out(plan, only, timeout)
                    if isinstance(exc, TimeoutError)
                    else exc
                )
                if not plan.keep_on_failure:
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
                checked = service.health is not None
                found = (
                    (await diagnose(self._docker, service.containers[0].id, checked)).text()
                    if service.containers
                    else "no container"
                )
                state = f"{service.state}, health {service.health}"
                waiting.append(f"{service.name} ({state}): {found}")
        detail = "\n".join(waiting) or "(every service looked ready)"
        return WorkflowFailed(
            f"workflow {plan.project.name!r} did not come up within {timeout:g} s; waiting for "
            f"{detail}",
            timeout=timeout,
        )

    async def _networks_and_volumes(self, plan: Plan) -> None:
        project = plan.project
        for key, net in project.networks.items():
            network = await self._docker.network(net.name)
            if network is not None:  # ours (a network `down` had to leave is reused), or refused
                self.owners.check_resource(
                    plan.everyone, project.name, "network", key, net, network.labels
                )
                continue
            if net.external:
                raise NotFound(f"external network {net.name!r} (networks.{key}) does not exist")
            labels = {**net.labels, PROJECT_LABEL: project.name,
                      "com.docker.compose.network": key, ENGINE_LABEL: self.engine_id}  # fmt: skip
            await self._docker.create_network(
                net.name, labels, driver=net.driver, options=net.driver_opts,
                internal=net.internal, attachable=net.attachable,
            )  # fmt: skip
            plan.created_networks.append(net.name)
            plan.event("network", detail=f"created {net.name}")
        for key, volume in project.volumes.items():
            found = await self._docker.volume(volume.name)
            if found is not None:
                self.owners.check_resource(
                    plan.everyone, project.name, "volume", key, volume, found.labels
                )
                continue
            if volume.external:
                raise NotFound(f"external volume {volume.name!r} (volumes.{key}) does not exist")
            labels = {**volume.labels, PROJECT_LABEL: project.name,
                      "com.docker.compose.volume": key, ENGINE_LABEL: self.engine_id}  # fmt: skip
            await self._docker.create_volume(
                volume.name, labels, driver=volume.driver, options=volume.driver_opts
            )
            plan.created_volumes.append(volume.name)
            plan.event("volume", detail=f"created {volume.name}")

    async def ensure_image(self, plan: Plan, service: Service) -> str:
        """The service's image on this Docker Engine: built when `plan.build` asks for it
        or when it is missing and the service has `build:`; its reference."""
        image = image_of(plan.project, service)
        if plan.build and service.build is not None:
            await self._build(plan, service, image)
        else:
            await self._image(plan, service)
        return image

    async def _image(self, plan: Plan, service: Service) -> None:
        image = image_of(plan.project, service)
        if await self._docker.has_image(image):
            return
        if service.build is None or plan.build is False:
            raise NotFound(
                f"services.{service.name}.image: image {service.image!r} is not on this "
                "engine's Docker Engine, and dxflow never pulls images: give the service a "
                "`build:`, `docker load` a saved copy, or `docker pull` it yourself "
                "(see Working without a registry in the docs)",
                service=service.name,
                image=service.image,
            )
        await self._build(plan, service, image)

    async def _build(self, plan: Plan, service: Service, image: str) -> None:
        """Build `image`, each output line an event; a failure says what the failing step
        printed (Docker's own error gives only its exit code)."""
        build = service.build
        assert build is not None
        plan.event("build", service.name, detail=f"building {image} from {build.context}")
        step: deque[str] = deque(maxlen=_BUILD_TAIL)
        try:
            lines = self._docker.build(
                build.context, image, dockerfile=build.dockerfile, args=build.args,
                target=build.target,
            )  # fmt: skip
            async for line in lines:
                if line.startswith("Step "):
                    step.clear()  # the output of one step at a time is kept
                step.append(line)
                plan.event("build", service.name, detail=line)
        except ApiError as exc:
            output = "\n".join(f"  {line}" for line in step)
            tail = f"; the failing step's last output:\n{output}" if output else ""
            raise WorkflowFailed(
                f"services.{service.name}.build: {exc.message}{tail}",
                service=service.name,
                logs="\n".join(step),
            ) from None
        except (OSError, TypeError) as exc:  # docker-py reading a context gone since create
            raise WorkflowFailed(
                f"services.{service.name}.build.context: cannot read {build.context}: {exc}",
                service=service.name,
            ) from None

    async def _converge(self, plan: Plan, service: Service, existing: list[Container]) -> None:
        await self._await_dependencies(plan, service)
        async with self._slots():
            await self._converge_now(plan, service, existing)

    async def _converge_now(self, plan: Plan, service: Service, existing: list[Container]) -> None:
        want = plan.hashes[service.name]
        if plan.build and service.build is not None:
            await self._build(plan, service, image_of(plan.project, service))
            want = f"{want}+build"  # a forced build recreates the service's containers
        mine = [c for c in existing if c.labels.get(SERVICE_LABEL) == service.name]
        by_number = {int(c.labels.get(NUMBER_LABEL, "0")): c for c in mine}
        replicas = range(1, service.deploy.replicas + 1)
        if any(n not in by_number or by_number[n].labels.get(HASH_LABEL) != want for n in replicas):
            await self._image(plan, service)
        for number in replicas:
            found = by_number.pop(number, None)
            if found is not None and found.labels.get(HASH_LABEL) == want:
                # Unchanged: keep it, but as `docker compose up` does, bring a stopped
                # container back (a finished one-shot job runs again) and unpause.
                if found.state == "paused":
                    await self._docker.unpause(found.id)
                elif found.state != "running":
                    await self._start(plan, service, found.id, found.name)
                continue
            if found is not None:  # changed: recreate
                await self._remove(plan, service.name, found.id, found.name)
            await self._create_and_start(plan, service, number, want)
        for found in by_number.values():  # scaled down
            await self._remove(plan, service.name, found.id, found.name)

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
            created = await self._docker.create_container(name, config)
        except ApiError as exc:
            raise WorkflowFailed(
                f"services.{service.name}: cannot create {name}: {exc.message}",
                service=service.name,
            ) from None
        plan.created_containers.append(created)
        plan.event("created", service.name, container=name)
        if not service.network_mode:
            for key in list(service.networks)[1:]:
                endpoint = endpoint_config(service, name, service.networks[key])
                await self._docker.connect(
                    created, project.networks[key].name, endpoint["Aliases"] or ()
                )
        await self._start(plan, service, created, name)

    async def _start(
        self, plan: Plan, service: Service, container: str, name: str | None = None
    ) -> None:
        plan.event("starting", service.name, container=name)
        try:
            await self._start_clearing(container)
        except ApiError as exc:
            raise WorkflowFailed(
                f"services.{service.name}: cannot start {name or container[:12]}: {exc.message}",
                service=service.name,
            ) from None
        plan.event("started", service.name, container=name)

    async def _start_clearing(self, container: str) -> None:
        """Start a container; where Docker kept a stale endpoint of the same name on one of
        its networks (a removed container's, moby/moby#42119), drop that and start again."""
        try:
            await self._docker.start(container)
        except ApiError as exc:
            stale = _STALE_ENDPOINT.search(exc.message)
            if stale is None:
                raise
            endpoint, network = stale.group(1), stale.group(2).rstrip(".,:")
            with contextlib.suppress(ApiError):
                await self._docker.disconnect(endpoint, network, force=True)
            await self._docker.start(container)

    async def _remove(self, plan: Plan, service: str, container: str, name: str) -> None:
        plan.event("removing", service, container=name)
        await self._docker.remove_container(container)
        plan.event("removed", service, container=name)

    async def _remove_orphans(self, plan: Plan, existing: list[Container]) -> None:
        for found in existing:
            service = found.labels.get(SERVICE_LABEL)
            if service not in plan.project.services:
                await self._remove(plan, service or "?", found.id, found.name)

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
                        found = await diagnose(
                            self._docker, container.id, container.health is not None
                        )
                        raise WorkflowFailed(
                            f"service {service.name!r} {problem}; {found.text()}",
                            service=service.name,
                            exit_code=container.exit_code,
                            logs=found.logs,
                            health=found.health or None,
                        )
                    if container.state == "exited":  # a one-shot that did its job
                        code = container.exit_code
                        plan.event("exited", service.name, container=container.name,
                                   exit_code=code, detail=f"exited {code}")  # fmt: skip
                    done = _ready(container, completed)
                    if not done:
                        pending.append(service.name)
                if service.health == "healthy":
                    plan.event("healthy", service.name)
                if not service.containers:
                    pending.append(service.name)
            if not pending:
                return
            await anyio.sleep(_POLL)

    @staticmethod
    def _problem(container: ContainerState) -> str | None:
        if container.state in ("exited", "dead") and container.exit_code not in (0, None):
            return f"exited with code {container.exit_code}"
        if container.health == "unhealthy":
            return "is unhealthy"
        return None

    async def _rollback(self, plan: Plan) -> None:
        """Remove what this `up` created; each removal is tried whatever the others do."""
        docker = self._docker
        undo: list[Callable[[], Awaitable[None]]] = [
            *(lambda i=i: docker.remove_container(i, volumes=True)
              for i in reversed(plan.created_containers)),
            *(lambda n=n: docker.remove_network(n) for n in plan.created_networks),
            *(lambda v=v: docker.remove_volume(v) for v in plan.created_volumes),
        ]  # fmt: skip
        for action in undo:
            with contextlib.suppress(ApiError):
                await action()

    # -- acting on every container -------------------------------------------------------

    async def act(
        self,
        project: ComposeProject,
        action: Action,
        services: list[str] | None,
        everyone: bool,
        grace: float | None = None,
        signal: str = "SIGKILL",
    ) -> None:
        """Apply `action` to every container of `services`, concurrently."""
        docker = self._docker

        async def one(container: str, service: str) -> None:
            seconds = stop_grace(project, service, grace)
            if action == "stop":
                await docker.stop(container, seconds)
            elif action == "restart":
                await docker.restart(container, seconds)
            elif action == "kill":
                await docker.kill(container, signal)
            else:
                await getattr(docker, action)(container)  # start, pause, unpause

        found = await self.containers(project.name, everyone)
        async with task_group() as group:
            for container in found:
                service = container.labels.get(SERVICE_LABEL, "?")
                if services is None or service in services:
                    group.start_soon(one, container.id, service)
