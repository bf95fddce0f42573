"""From a normalized Compose service to the Docker Engine API's container definition.

Pure data in, pure data out (the JSON body of ``POST /containers/create``), so every
key's translation is unit-tested without a Docker Engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import ComposeProject, DeviceRequest, Mount, PortMapping, Service
from ..._version import __version__

__all__ = [
    "ENGINE_LABEL",
    "PROJECT_LABEL",
    "SERVICE_LABEL",
    "container_config",
    "container_name",
    "labels_for",
]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
HASH_LABEL = "com.docker.compose.config-hash"
ONEOFF_LABEL = "com.docker.compose.oneoff"
WORKFLOW_LABEL = "io.dxflow.workflow"
ENGINE_LABEL = "io.dxflow.engine"
"""The id of the engine that made a container, network or volume: its owner."""
COMPOSE_VERSION_LABEL = "com.docker.compose.version"
"""Set by `docker compose` on what it makes; dxflow never set it (tells them apart)."""
_NS = 1_000_000_000


def container_name(project: str, service: str, number: int) -> str:
    return f"{project}-{service}-{number}"


def image_of(project: ComposeProject, service: Service) -> str:
    """The image a service runs: its `image`, or the tag compose gives a built one."""
    return service.image or f"{project.name}-{service.name}"


def labels_for(
    project: ComposeProject, service: Service, number: int, config_hash: str, engine: str = ""
) -> dict[str, str]:
    """The standard compose labels, so compose tools see dxflow's containers and back,
    and the owning engine's id.

    The engine's labels come last, so they win over the service's own (the policy refuses
    them to keys other than MASTER, but ownership must hold whoever wrote the spec): a
    service's `io.dxflow.engine` never makes a container another engine's, or nobody's.
    """
    owner = {ENGINE_LABEL: engine} if engine else {}
    own = {k: v for k, v in service.labels.items() if k != ENGINE_LABEL}
    return {
        **own,
        PROJECT_LABEL: project.name,
        SERVICE_LABEL: service.name,
        NUMBER_LABEL: str(number),
        ONEOFF_LABEL: "False",
        HASH_LABEL: config_hash,
        "com.docker.compose.project.working_dir": project.working_dir,
        "com.docker.compose.project.config_files": ",".join(project.config_files),
        WORKFLOW_LABEL: project.name,
        "io.dxflow.version": __version__,
        **owner,
    }


def _port_key(port: PortMapping) -> str:
    return f"{port.target}/{port.protocol}"


def _port_bindings(ports: list[PortMapping]) -> dict[str, list[dict[str, str]]]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        bindings.setdefault(_port_key(port), []).append(
            {"HostIp": port.host_ip or "", "HostPort": port.published or ""}
        )
    return bindings


def _exposed(service: Service) -> dict[str, dict[str, Any]]:
    exposed: dict[str, dict[str, Any]] = {_port_key(p): {} for p in service.ports}
    for entry in service.expose:
        port, _, protocol = entry.partition("/")
        exposed[f"{port}/{protocol or 'tcp'}"] = {}
    return exposed


def _mount(project: ComposeProject, mount: Mount) -> dict[str, Any]:
    spec: dict[str, Any] = {"Type": mount.type, "Target": mount.target, "ReadOnly": mount.read_only}
    if mount.type == "volume":
        volume = project.volumes.get(mount.source or "")
        spec["Source"] = volume.name if volume else mount.source  # None: anonymous
        if mount.nocopy:
            spec["VolumeOptions"] = {"NoCopy": True}
    elif mount.type == "bind":
        spec["Source"] = mount.source
    else:
        options = {"SizeBytes": mount.tmpfs_size, "Mode": mount.tmpfs_mode}
        spec["TmpfsOptions"] = {k: v for k, v in options.items() if v is not None}
    return spec


def _device_request(device: DeviceRequest) -> dict[str, Any]:
    count = -1 if device.count == "all" else device.count
    if count is None and not device.device_ids:
        count = -1  # compose: a reservation without count or ids means every device
    return {
        "Driver": device.driver or "",
        "Count": count or 0,
        "DeviceIDs": device.device_ids or None,
        "Capabilities": [device.capabilities] if device.capabilities else [],
        "Options": device.options,
    }


def _devices(entries: list[str]) -> list[dict[str, str]]:
    devices = []
    for entry in entries:
        host, _, rest = entry.partition(":")
        container, _, permissions = rest.partition(":")
        devices.append(
            {
                "PathOnHost": host,
                "PathInContainer": container or host,
                "CgroupPermissions": permissions or "rwm",
            }
        )
    return devices


def _restart(policy: str | None) -> dict[str, Any]:
    if not policy or policy == "no":
        return {"Name": "no"}
    name, _, retries = policy.partition(":")
    return {"Name": name, "MaximumRetryCount": int(retries or 0)}


def _healthcheck(service: Service) -> dict[str, Any] | None:
    check = service.healthcheck
    if check is None:
        return None
    if check.disable:
        return {"Test": ["NONE"]}
    spec: dict[str, Any] = {"Test": check.test}
    durations = {
        "Interval": check.interval,
        "Timeout": check.timeout,
        "StartPeriod": check.start_period,
        "StartInterval": check.start_interval,
    }
    for key, value in durations.items():
        if value is not None:
            spec[key] = int(value * _NS)
    if check.retries is not None:
        spec["Retries"] = check.retries
    return spec


def _host_config(project: ComposeProject, service: Service, network: str | None) -> dict[str, Any]:
    limits, reservations = service.deploy.limits, service.deploy.reservations
    host: dict[str, Any] = {
        "PortBindings": _port_bindings(service.ports),
        "Mounts": [_mount(project, m) for m in service.volumes],
        "NetworkMode": service.network_mode or network or "none",
        "RestartPolicy": _restart(service.restart),
        "Init": service.init,
        "CapAdd": service.cap_add or None,
        "CapDrop": service.cap_drop or None,
        "Privileged": service.privileged,
        "SecurityOpt": service.security_opt or None,
        "Ulimits": [{"Name": k, "Soft": v.soft, "Hard": v.hard} for k, v in service.ulimits.items()]
        or None,
        "ShmSize": service.shm_size,
        "ExtraHosts": service.extra_hosts or None,
        "Dns": service.dns or None,
        "Devices": _devices(service.devices) or None,
        "NanoCpus": int(limits.cpus * _NS) if limits.cpus else None,
        "Memory": limits.memory,
        "PidsLimit": limits.pids,
        "MemoryReservation": reservations.memory,
        "CpuShares": service.cpu_shares,
        "DeviceRequests": [_device_request(d) for d in reservations.devices] or None,
    }
    return {key: value for key, value in host.items() if value is not None}


def _file_mounts(files: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"Type": "bind", "Source": s, "Target": t, "ReadOnly": True} for s, t in files]


def container_config(
    project: ComposeProject,
    service: Service,
    number: int,
    config_hash: str,
    engine: str = "",
    files: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for replica `number` of `service`.

    `engine` is the owner's id (a label); `files` are the (host path, container path)
    of the service's secrets and configs, bound read-only. Only the first network is
    attached at create (older Docker APIs take one); the orchestrator connects the
    others before the container starts.
    """
    networks = list(service.networks)
    first = project.networks[networks[0]].name if networks and not service.network_mode else None
    name = container_name(project.name, service.name, number)
    config: dict[str, Any] = {
        "Image": image_of(project, service),
        "Cmd": service.command,
        "Entrypoint": service.entrypoint,
        "Env": [k if v is None else f"{k}={v}" for k, v in service.environment.items()],
        "WorkingDir": service.working_dir,
        "User": service.user,
        "Hostname": service.hostname,
        "Labels": labels_for(project, service, number, config_hash, engine),
        "ExposedPorts": _exposed(service) or None,
        "Tty": service.tty,
        "OpenStdin": service.stdin_open,
        "StopSignal": service.stop_signal,
        "StopTimeout": int(service.stop_grace_period)
        if service.stop_grace_period is not None
        else None,
        "Healthcheck": _healthcheck(service),
        "HostConfig": _host_config(project, service, first),
    }
    if files:
        config["HostConfig"]["Mounts"] = [*config["HostConfig"]["Mounts"], *_file_mounts(files)]
    if first is not None:
        endpoint = service.networks[networks[0]]
        config["NetworkingConfig"] = {
            "EndpointsConfig": {first: endpoint_config(service, name, endpoint)}
        }
    return {key: value for key, value in config.items() if value is not None}


def endpoint_config(service: Service, container: str, endpoint: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"Aliases": [service.name, container, *endpoint.aliases]}
    if endpoint.ipv4_address:
        spec["IPAMConfig"] = {"IPv4Address": endpoint.ipv4_address}
    return spec
