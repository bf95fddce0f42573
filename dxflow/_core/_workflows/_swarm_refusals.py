"""What Swarm cannot do with a Compose service, and which services are one-shot jobs.

Each refusal names the key path, the value and what to do instead, so a workflow is
turned away at `create` with everything needed to fix it, and never runs on a cluster
with a key silently dropped (as `docker stack deploy` drops them).
"""

from __future__ import annotations

from ..._models import ComposeProject, PortMapping, Service

__all__ = ["GPU_KIND", "is_job", "refusals", "service_of"]

GPU_KIND = "NVIDIA-GPU"
"""The generic resource nodes advertise their NVIDIA GPUs as (``node-generic-resources``)."""
_GPU_DRIVERS = (None, "nvidia")
_JOB_MODES = ("replicated-job", "global-job")


def service_of(project: ComposeProject, name: str) -> Service:
    service = project.services.get(name)
    if service is None:
        raise KeyError(f"no service {name!r} in project {project.name!r}")
    return service


# -- jobs ----------------------------------------------------------------------------------


def _awaited_to_complete(project: ComposeProject, name: str) -> list[str]:
    """The services that wait for `name` to exit 0 (``service_completed_successfully``)."""
    return [
        other
        for other, service in project.services.items()
        if (dep := service.depends_on.get(name)) is not None
        and dep.condition == "service_completed_successfully"
    ]


def is_job(project: ComposeProject, name: str) -> bool:
    """One-shot: deploy.mode is *-job, or `restart: "no"` given explicitly, or another
    service depends on it with condition service_completed_successfully."""
    service = service_of(project, name)
    return (
        service.deploy.mode in _JOB_MODES
        or service.restart == "no"
        or bool(_awaited_to_complete(project, name))
    )


def _gpu_problems(count: int | str | None, ids: list[str], driver: str | None) -> list[str]:
    """Why a GPU request cannot be a Swarm reservation (empty: it can)."""
    found = []
    if driver not in _GPU_DRIVERS:
        found.append(f"driver {driver!r}")
    if ids:
        found.append(f"device_ids {ids}")
    if not ids and not isinstance(count, int):
        found.append(f"count {count!r}")
    return found


# -- what Swarm cannot do ------------------------------------------------------------------

_OTHER_RUNTIME = "or run this workflow on the docker runtime (one machine)"


def _port_text(port: PortMapping) -> str:
    address = f"[{port.host_ip}]" if port.host_ip and ":" in port.host_ip else port.host_ip
    published = f"{port.published}:" if port.published else ""
    return f"{address + ':' if address else ''}{published}{port.target}/{port.protocol}"


def _port_refusal(path: str, service: Service) -> list[str]:
    bound = [_port_text(p) for p in service.ports if p.host_ip]
    ranges = [_port_text(p) for p in service.ports if p.published and "-" in p.published]
    problems = []
    if bound:
        problems.append(
            f"{bound} bind a host address, and Swarm publishes on every address of every node "
            "(remove the address; a `mode: host` port binds only the node running the task)"
        )
    if ranges:
        problems.append(
            f"{ranges} publish a range of host ports, which Swarm does not pick from "
            "(publish one port, or leave `published` out and Swarm picks one)"
        )
    return [f"{path}.ports: {'; '.join(problems)}"] if problems else []


def _device_refusals(path: str, service: Service) -> list[str]:
    found = []
    for device in service.deploy.reservations.devices:
        if "gpu" not in device.capabilities:
            found.append(f"capabilities {device.capabilities}")
        else:
            found += _gpu_problems(device.count, device.device_ids, device.driver)
    if not found:
        return []
    return [
        f"{path}.deploy.resources.reservations.devices: {', '.join(found)} (`gpus` included): "
        "Swarm reserves only a number of NVIDIA GPUs; give a count "
        f"(`gpus: 1`) and have the nodes advertise their GPUs as the generic resource "
        f"{GPU_KIND} (dockerd's `node-generic-resources`), {_OTHER_RUNTIME}"
    ]


def _job_refusals(project: ComposeProject, path: str, service: Service) -> list[str]:
    """A one-shot must not restart when it succeeds: Swarm would run it again and again."""
    waiting = _awaited_to_complete(project, service.name)
    why = (
        f"services {waiting} wait for it to complete"
        if waiting
        else f"deploy.mode is {service.deploy.mode}"
    )
    policy = service.deploy.restart_policy
    if policy is not None and policy.condition == "any":
        return [
            f"{path}.deploy.restart_policy.condition: 'any' restarts a one-shot service ({why}) "
            "even when it succeeds; use on-failure or none"
        ]
    if policy is None and service.restart in ("always", "unless-stopped"):
        return [
            f"{path}.restart: {service.restart!r} restarts a one-shot service ({why}) even "
            "when it succeeds; use on-failure, on-failure:N or no"
        ]
    return []


def _simple_refusals(path: str, service: Service) -> list[str]:
    found = []
    if service.privileged:
        found.append(
            f"{path}.privileged: true: Swarm services cannot run privileged; add only the "
            f"capabilities needed with cap_add, {_OTHER_RUNTIME}"
        )
    if service.network_mode:
        found.append(
            f"{path}.network_mode: {service.network_mode!r}: Swarm tasks join networks, not "
            "another namespace; use `networks` (the host's own network stack is the external "
            f"network named host: `networks: {{hostnet: {{external: true, name: host}}}}`), "
            f"{_OTHER_RUNTIME}"
        )
    if service.devices:
        found.append(
            f"{path}.devices: {service.devices}: Swarm services cannot map host devices; GPUs "
            f"are reserved with `gpus` or deploy.resources.reservations.devices, "
            f"{_OTHER_RUNTIME}"
        )
    if service.security_opt:
        found.append(
            f"{path}.security_opt: {service.security_opt}: Swarm services take no security "
            f"options; remove them (cap_drop drops capabilities), {_OTHER_RUNTIME}"
        )
    if service.cpu_shares is not None:
        found.append(
            f"{path}.cpu_shares: {service.cpu_shares}: Swarm has no relative CPU weight; "
            "reserve CPUs with deploy.resources.reservations.cpus instead"
        )
    return found


def _network_refusals(path: str, service: Service) -> list[str]:
    return [
        f"{path}.networks.{key}.ipv4_address: {endpoint.ipv4_address!r}: Swarm assigns task "
        "addresses itself (a task may run anywhere, and more than once); remove it and reach "
        "the service by its name"
        for key, endpoint in service.networks.items()
        if endpoint.ipv4_address
    ]


def _endpoint_refusals(path: str, service: Service) -> list[str]:
    ingress = [_port_text(p) for p in service.ports if p.mode == "ingress"]
    if service.deploy.endpoint_mode != "dnsrr" or not ingress:
        return []
    return [
        f"{path}.deploy.endpoint_mode: 'dnsrr' cannot publish ports through the routing mesh "
        f"({ingress}); give those ports `mode: host`, or use endpoint_mode vip"
    ]


def refusals(project: ComposeProject, name: str) -> list[str]:
    """Why this service cannot run on Swarm, one message per key: each names the Compose
    key path (services.<name>.<key>), the value, and what to do instead. Empty: fine."""
    service = service_of(project, name)
    path = f"services.{name}"
    found = _simple_refusals(path, service)
    found += _port_refusal(path, service)
    found += _network_refusals(path, service)
    found += _endpoint_refusals(path, service)
    found += _device_refusals(path, service)
    if is_job(project, name):
        found += _job_refusals(project, path, service)
    return found
