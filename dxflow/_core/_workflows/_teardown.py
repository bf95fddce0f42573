"""Bringing a Compose project down on the Docker Engine.

Containers go first (concurrently), then networks, then volumes when asked. Docker may
hold a network's endpoints for a moment after their containers are gone, and Docker
20.10 can keep a stale one for good (moby/moby#42119; only a dockerd restart clears it).
So a network is retried with backoff for a while; one that stays busy is left in place
and reported by name with what to do, everything else is still removed, and a later
`down` or `up` of the workflow works (`up` reuses the network).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from ..._exceptions import ApiError, Conflict, NotFound
from ..._models import ComposeProject
from .._compose import waves
from .._docker import Container, DockerAdapter
from .._groups import task_group
from ._owners import Owners
from ._runtime import Emit, Plan
from ._spec import SERVICE_LABEL

__all__ = ["Teardown", "stop_waves"]

log = logging.getLogger("dxflow.engine")

NETWORK_WAIT = 15.0
"""Seconds `down` waits for a network's endpoints to detach before leaving it."""


def stop_waves(project: ComposeProject, found: list[Container]) -> list[list[Container]]:
    """`found` grouped in the order to stop them: the reverse of the start-up waves along
    depends_on; containers of services the project no longer has (orphans) first."""
    graph = {name: list(s.depends_on) for name, s in project.services.items()}
    try:
        order = list(reversed(waves(graph)))
    except ValueError:  # a cycle cannot be stored; should one appear, stop all at once
        order = [sorted(graph)]
    orphans = [c for c in found if c.labels.get(SERVICE_LABEL) not in graph]
    groups = [orphans] if orphans else []
    for wave in order:
        members = set(wave)
        group = [c for c in found if c.labels.get(SERVICE_LABEL) in members]
        if group:
            groups.append(group)
    return groups


class Teardown:
    def __init__(
        self,
        docker: DockerAdapter,
        owners: Owners,
        containers: Callable[[str, bool], Awaitable[list[Container]]],
        grace: Callable[[ComposeProject, str], int],
    ) -> None:
        self._docker = docker
        self._owners = owners
        self._containers = containers
        self._grace = grace
        self.network_wait = NETWORK_WAIT

    async def down(
        self, project: ComposeProject, volumes: bool, emit: Emit, everyone: bool = False
    ) -> None:
        plan = Plan(project, {}, [], emit, everyone=everyone)
        found = await self._containers(project.name, everyone)
        # As compose does: dependents stop before what they depend on (a wave at a time,
        # its services concurrently), so none sees its dependency vanish while it runs.
        for wave in stop_waves(project, found):
            async with task_group() as group:
                for container in wave:
                    group.start_soon(self._stop_and_remove, plan, container)
        removed = [c.name for c in found]
        left = []
        for net in project.networks.values():
            if not net.external and await self._may_remove(plan, "network", net.name):
                problem = await self._remove_network(plan, net.name, removed)
                if problem is not None:
                    left.append(problem)
                    log.warning("workflow %s: %s", project.name, problem)
                    plan.event("network", detail=problem)
        if volumes:
            for volume in project.volumes.values():
                if not volume.external and await self._may_remove(plan, "volume", volume.name):
                    try:
                        await self._docker.remove_volume(volume.name)
                        plan.event("volume", detail=f"removed {volume.name}")
                    except NotFound:
                        pass
        plan.event("done", detail="; ".join(left) or None)

    async def _may_remove(self, plan: Plan, kind: str, name: str) -> bool:
        """`down` removes a network or volume only if it is this engine's (or MASTER asks)."""
        if plan.everyone:
            return True
        try:
            found = await (
                self._docker.inspect_network(name)
                if kind == "network"
                else self._docker.inspect_volume(name)
            )
        except NotFound:
            return False
        return self._owners.owns_resource(found.labels, plan.project.name, False)

    async def _remove_network(self, plan: Plan, name: str, removed: list[str]) -> str | None:
        """Remove a network, waiting out endpoints that are still detaching; None when it
        is gone, else why it was left in place and what to do about it."""
        deadline = anyio.current_time() + self.network_wait
        delay, cleared = 0.05, False
        while True:
            try:
                await self._docker.remove_network(name)
            except NotFound:
                return None
            except ApiError as exc:
                if "active endpoints" not in exc.message:
                    raise Conflict(
                        f"cannot remove network {name}: {exc.message}; remove what holds it, "
                        "then run down again"
                    ) from None
            else:
                plan.event("network", detail=f"removed {name}")
                return None
            if delay == 0.05:
                plan.event("network", detail=f"waiting for the endpoints of {name} to detach")
            if anyio.current_time() >= deadline:
                if cleared:
                    return await self._left(name)
                # Endpoints Docker kept of the containers just removed: drop them, once.
                cleared = True
                for endpoint in removed:
                    try:
                        await self._docker.disconnect(endpoint, name, force=True)
                    except ApiError:
                        continue
                continue
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _left(self, name: str) -> str | None:
        try:
            network = await self._docker.inspect_network(name)
        except NotFound:
            return None
        if network.endpoints:
            attached = ", ".join(network.endpoints)
            return (
                f"network {name} left in place: containers outside the workflow are attached "
                f"to it ({attached}); disconnect them (docker network disconnect {name} "
                "CONTAINER) and run down again (up reuses the network meanwhile)"
            )
        return (
            f"network {name} left in place: Docker keeps a stale endpoint on it although "
            "no container is attached (moby/moby#42119); restarting dockerd clears it, then "
            "run down again (up reuses the network meanwhile)"
        )

    async def _stop_and_remove(self, plan: Plan, container: Container) -> None:
        service = container.labels.get(SERVICE_LABEL, "?")
        if container.state == "running":
            plan.event("stopping", service, container=container.name)
            await self._docker.stop(container.id, self._grace(plan.project, service))
            plan.event("stopped", service, container=container.name)
        plan.event("removing", service, container=container.name)
        await self._docker.remove_container(container.id)
        plan.event("removed", service, container=container.name)
