"""A workflow's status, from the containers Docker lists."""

from __future__ import annotations

import re

from ..._models import ContainerState, ServiceStatus, WorkflowStatus
from .._docker import Container
from ._spec import HASH_LABEL, NUMBER_LABEL, SERVICE_LABEL

__all__ = ["container_state", "overall_state", "workflow_status"]

_EXITED = re.compile(r"Exited \((-?\d+)\)")


def container_state(container: Container) -> ContainerState:
    labels = container.labels
    health = None
    for word in ("unhealthy", "healthy", "health: starting"):
        if f"({word})" in container.status:
            health = "starting" if word == "health: starting" else word
            break
    exited = _EXITED.search(container.status)
    return ContainerState(
        id=container.id,
        name=container.name,
        number=int(labels.get(NUMBER_LABEL, "1")),
        state=container.state,
        health=health,
        exit_code=int(exited.group(1)) if exited else None,
        ports=list(container.ports),
        config_hash=labels.get(HASH_LABEL),
    )


def _service_state(containers: list[ContainerState]) -> str:
    states = {c.state for c in containers}
    if not containers:
        return "missing"
    if states == {"running"}:
        return "running"
    if states == {"paused"}:
        return "paused"
    if states <= {"exited", "dead"}:
        return "exited"
    if states <= {"created"}:
        return "stopped"
    return "partial"


def workflow_status(name: str, services: list[str], found: list[Container]) -> WorkflowStatus:
    """Per service and overall: running, partial, exited, stopped, paused or missing."""
    by_service: dict[str, list[ContainerState]] = {s: [] for s in services}
    for container in found:
        service = container.labels.get(SERVICE_LABEL, "?")
        by_service.setdefault(service, []).append(container_state(container))
    statuses = []
    for service, containers in by_service.items():
        containers.sort(key=lambda c: c.number)
        healths = {c.health for c in containers if c.health}
        codes = [c.exit_code for c in containers if c.exit_code is not None]
        statuses.append(
            ServiceStatus(
                name=service,
                state=_service_state(containers),
                replicas=len(containers),
                health=(
                    "unhealthy"
                    if "unhealthy" in healths
                    else "starting"
                    if "starting" in healths
                    else "healthy"
                    if healths
                    else None
                ),
                exit_code=max(codes, key=abs) if codes else None,
                containers=containers,
            )
        )
    return WorkflowStatus(name=name, state=overall_state(statuses), services=statuses)


def _done(service: ServiceStatus) -> bool:
    """A one-shot that did its job: every container exited with code 0."""
    return service.state == "exited" and all(c.exit_code == 0 for c in service.containers)


def overall_state(services: list[ServiceStatus]) -> str:
    """The project's state, as compose users read it: running when every service runs or,
    being a one-shot, exited 0 (done); stopped when none runs; paused when all that run
    are paused; missing when no container exists; partial otherwise."""
    states = {s.state for s in services}
    if states <= {"missing"}:
        return "missing"
    if "running" in states and all(s.state == "running" or _done(s) for s in services):
        return "running"
    if states <= {"exited", "stopped", "missing"}:
        return "stopped"
    if "paused" in states and all(s.state == "paused" or _done(s) for s in services):
        return "paused"
    return "partial"
