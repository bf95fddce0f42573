"""Workflow service targets: which workflows exist, and where their containers are now.

A proxy to `workflow/service:port` forwards to each running container of that service,
at its address on the workflow's network(s) (the engine's host reaches a bridge
network's addresses directly). Only containers this engine owns count. The runner
resolves them again every RESOLVE_EVERY seconds and when every target failed, so a
recreated or rescheduled container is followed.
"""

from __future__ import annotations

import ipaddress

from ..._exceptions import NotFound
from .._docker import Container, DockerAdapter
from .._workflows import WorkflowService
from .._workflows._owners import Owners
from .._workflows._spec import PROJECT_LABEL, SERVICE_LABEL
from ._contract import Upstream

__all__ = ["RESOLVE_EVERY", "Workloads"]

RESOLVE_EVERY = 10.0
"""Seconds between two resolutions of a workflow service's containers."""


class Workloads:
    def __init__(self, workflows: WorkflowService, docker: DockerAdapter, engine_id: str) -> None:
        self._workflows = workflows
        self._docker = docker
        self._owners = Owners(engine_id)

    async def check(self, workflow: str, service: str) -> None:
        """NotFound naming the workflow or the service when either does not exist."""
        try:
            names = await self._workflows.service_names(workflow)
        except NotFound:
            raise NotFound(
                f"workflow: no workflow named {workflow!r} on this engine (see "
                "`dxflow workflow list`)", field="workflow", workflow=workflow,
            ) from None  # fmt: skip
        if service not in names:
            raise NotFound(
                f"service: workflow {workflow!r} has no service {service!r} (its services: "
                f"{', '.join(names) or 'none'})", field="service", service=service,
            )  # fmt: skip

    async def resolve(
        self, workflow: str, service: str, port: int, protocol: str
    ) -> list[Upstream]:
        """The running containers of the service, one upstream each (none: none runs)."""
        found = await self._docker.containers(
            [f"{PROJECT_LABEL}={workflow}", f"{SERVICE_LABEL}={service}"]
        )
        scheme = "tcp" if protocol == "tcp" else "http"
        upstreams = []
        for container in sorted(found, key=lambda c: c.name):
            address = _address(container)
            if container.state != "running" or address is None:
                continue
            if not self._owners.owns(container.labels, workflow):
                continue
            upstreams.append(Upstream(
                label=f"{workflow}/{service}#{container.name}:{port}", scheme=scheme,  # type: ignore[arg-type]
                host=address, port=port,
            ))  # fmt: skip
        return upstreams


def _address(container: Container) -> str | None:
    """Its first IPv4 address (by network name), else its first IPv6 one."""
    addresses = [ip for _, ip in container.addresses]
    for ip in addresses:
        if ipaddress.ip_address(ip).version == 4:
            return ip
    return addresses[0] if addresses else None
