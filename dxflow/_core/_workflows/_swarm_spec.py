"""From a normalized Compose service to the Docker Engine API's Swarm ServiceSpec.

Pure data in, pure data out (the JSON body of ``POST /services/create``), like `_spec`
for containers. The spec is complete: every field the engine would otherwise fill with
a default on the first update is spelled out (swarmkit's ``defaults.Service``: restart
policy, update and rollback config, placement, resources, DNS config, stop grace
period), so a spec sent again with only the replica count changed leaves the task
template as it was, and no task is restarted by a scale.

Where `docker stack deploy` (docker/cli ``cli/compose/convert/service.go``) is right, it
is mirrored: the entrypoint is ``ContainerSpec.Command`` and the command ``Args``, extra
hosts are ``"ip host"`` lines, a service joins each network under its own name too, a
secret or config file is owned by root with mode 0444 unless given. Where it is not,
this does better: ``mem_limit``/``cpus`` are resources (the loader folds them into
``deploy``), ``restart`` is the restart policy when ``deploy.restart_policy`` is absent
(``"no"`` makes a one-shot job), ``shm_size`` is a tmpfs at /dev/shm, and what Swarm
cannot honour is refused (`refusals`) instead of dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._models import (
    ComposeProject,
    Healthcheck,
    Mount,
    Service,
    ServiceFile,
    UpdateConfig,
)
from ._spec import ENGINE_LABEL
from ._swarm_refusals import GPU_KIND, is_job, refusals, service_of

__all__ = [
    "CONFIG_HASH_LABEL",
    "STACK_LABEL",
    "is_job",
    "refusals",
    "service_spec",
    "swarm_name",
]

STACK_LABEL = "com.docker.stack.namespace"
"""What `docker stack` tools (and the swarm runtime) find a stack's services by."""
CONFIG_HASH_LABEL = "io.dxflow.config-hash"

_NS = 1_000_000_000
_FILE_MODE = 0o444
"""Compose's (and `docker stack`'s) mode of a secret or config file: any user reads it."""
_SHM_MODE = 0o1777
"""The mode Docker gives its own /dev/shm."""
_SHM = "/dev/shm"  # noqa: S108  (a path in the container, not a host temp file)


def swarm_name(namespace: str, name: str) -> str:
    """The Swarm service of compose service `name` in stack `namespace` (docker stack's)."""
    return f"{namespace}_{name}"


def _ns(seconds: float | None, default: float = 0.0) -> int:
    """Seconds as the API's nanoseconds (Go's time.Duration)."""
    return round((default if seconds is None else seconds) * _NS)


# -- mode, restart, update, placement, resources ------------------------------------------


def _mode(service: Service, job: bool, replicas: int | None) -> dict[str, Any]:
    count = service.deploy.replicas if replicas is None else replicas
    is_global = service.deploy.mode.startswith("global")
    if job:
        # docker/cli runs `replicas` completions, all at once, as `docker stack` does.
        replicated = {"ReplicatedJob": {"MaxConcurrent": count, "TotalCompletions": count}}
        return {"GlobalJob": {}} if is_global else replicated
    return {"Global": {}} if is_global else {"Replicated": {"Replicas": count}}


def _from_restart(restart: str | None, job: bool) -> tuple[str, int]:
    """(condition, max attempts) of Compose's `restart`, for a service without
    ``deploy.restart_policy``: Swarm's default (any) for a service, none for a job."""
    if restart is None:
        return ("none" if job else "any"), 0
    if restart == "no":
        return "none", 0
    if restart in ("always", "unless-stopped"):
        return ("on-failure" if job else "any"), 0  # a job never restarts on success
    _, _, attempts = restart.partition(":")
    return "on-failure", int(attempts or 0)


def _restart_policy(service: Service, job: bool) -> dict[str, Any]:
    policy = service.deploy.restart_policy
    if policy is None:
        condition, attempts = _from_restart(service.restart, job)
        return {"Condition": condition, "Delay": _ns(5), "MaxAttempts": attempts, "Window": 0}
    condition = "on-failure" if job and policy.condition == "any" else policy.condition
    return {
        "Condition": condition,
        "Delay": _ns(policy.delay, 5),  # swarmkit's default delay
        "MaxAttempts": policy.max_attempts or 0,
        "Window": _ns(policy.window),
    }


def _update_config(config: UpdateConfig) -> dict[str, Any]:
    return {
        "Parallelism": config.parallelism,
        "Delay": _ns(config.delay),
        "FailureAction": config.failure_action,
        "Monitor": _ns(config.monitor),
        "MaxFailureRatio": config.max_failure_ratio,
        "Order": config.order,
    }


def _placement(service: Service) -> dict[str, Any]:
    placement = service.deploy.placement
    return {
        "Constraints": list(placement.constraints),
        "Preferences": [{"Spread": {"SpreadDescriptor": p.spread}} for p in placement.preferences],
        "MaxReplicas": placement.max_replicas_per_node or 0,
        "Platforms": [],
    }


def _generic_resources(service: Service) -> list[dict[str, Any]]:
    """GPU requests as generic resources (each node must advertise its GPUs as such)."""
    # Only counts of GPUs get here: `refusals` turned every other device request away.
    return [
        {"DiscreteResourceSpec": {"Kind": GPU_KIND, "Value": device.count}}
        for device in service.deploy.reservations.devices
        if isinstance(device.count, int)
    ]


def _resources(service: Service) -> dict[str, Any]:
    limits, reservations = service.deploy.limits, service.deploy.reservations
    return {
        "Limits": {
            "NanoCPUs": _ns(limits.cpus),
            "MemoryBytes": limits.memory or 0,
            "Pids": limits.pids or 0,
        },
        "Reservations": {
            "NanoCPUs": _ns(reservations.cpus),
            "MemoryBytes": reservations.memory or 0,
            "GenericResources": _generic_resources(service),
        },
    }


# -- the container -------------------------------------------------------------------------


def _volume_source(project: ComposeProject, key: str, namespace: str) -> str:
    """The stack's name of volume `key`: the given or external name, else the namespace's."""
    volume = project.volumes.get(key)
    if volume is None:
        return swarm_name(namespace, key)
    if volume.external or volume.name != f"{project.name}_{key}":
        return volume.name
    return swarm_name(namespace, key)  # the loader's default name, under this stack


def _volume_options(
    project: ComposeProject, mount: Mount, namespace: str, owner: Mapping[str, str]
) -> dict[str, Any]:
    """How a node creates the volume on first use: Swarm has no cluster-wide volumes, so
    its labels and driver travel with every mount (as `docker stack` does)."""
    options: dict[str, Any] = {"NoCopy": mount.nocopy}
    volume = project.volumes.get(mount.source or "")
    if volume is not None and volume.external:
        return options  # made by someone else: never created here
    labels = volume.labels if volume is not None else {}
    options["Labels"] = {**labels, STACK_LABEL: namespace, **owner}
    if volume is not None and (volume.driver or volume.driver_opts):
        options["DriverConfig"] = {
            "Name": volume.driver or "local",
            "Options": dict(volume.driver_opts),
        }
    return options


def _mount(
    project: ComposeProject, mount: Mount, namespace: str, owner: Mapping[str, str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {"Type": mount.type, "Target": mount.target, "ReadOnly": mount.read_only}
    if mount.type == "bind":
        spec["Source"] = mount.source
    elif mount.type == "volume":
        if mount.source:  # else anonymous: a fresh volume per task
            spec["Source"] = _volume_source(project, mount.source, namespace)
        spec["VolumeOptions"] = _volume_options(project, mount, namespace, owner)
    else:
        options = {"SizeBytes": mount.tmpfs_size, "Mode": mount.tmpfs_mode}
        spec["TmpfsOptions"] = {k: v for k, v in options.items() if v is not None}
    return spec


def _mounts(
    project: ComposeProject, service: Service, namespace: str, owner: Mapping[str, str]
) -> list[dict[str, Any]]:
    mounts = [_mount(project, m, namespace, owner) for m in service.volumes]
    # ContainerSpec has no ShmSize; a tmpfs at /dev/shm is what Docker mounts there itself
    # (the daemon leaves /dev/shm alone when the container mounts it).
    if service.shm_size is not None and all(m.target != _SHM for m in service.volumes):
        options = {"SizeBytes": service.shm_size, "Mode": _SHM_MODE}
        mounts.append({"Type": "tmpfs", "Target": _SHM, "ReadOnly": False,
                       "TmpfsOptions": options})  # fmt: skip
    return mounts


def _healthcheck(check: Healthcheck) -> dict[str, Any]:
    if check.disable:
        return {"Test": ["NONE"]}
    spec: dict[str, Any] = {
        "Test": list(check.test),  # [] keeps the image's test, with these timings
        "Interval": _ns(check.interval),
        "Timeout": _ns(check.timeout),
        "Retries": check.retries or 0,
        "StartPeriod": _ns(check.start_period),
    }
    if check.start_interval is not None:  # API 1.44 (Docker 25); older engines drop it
        spec["StartInterval"] = _ns(check.start_interval)
    return spec


def _files(
    used: list[ServiceFile], known: Mapping[str, tuple[str, str]], kind: str, service: str
) -> list[dict[str, Any]]:
    """Secret or config references (`kind` "Secret" or "Config"), sorted like docker
    stack's so that the order of the document never changes the spec."""
    references = []
    for file in used:
        if file.source not in known:
            raise KeyError(f"services.{service}: no Swarm {kind.lower()} for {file.source!r}")
        swarm_id, swarm_name_ = known[file.source]
        mode = _FILE_MODE if file.mode is None else file.mode
        references.append(
            {
                "File": {"Name": file.target, "UID": "0", "GID": "0", "Mode": mode},
                f"{kind}ID": swarm_id,
                f"{kind}Name": swarm_name_,
            }
        )
    return sorted(references, key=lambda r: (r[f"{kind}Name"], r["File"]["Name"]))


def _own(labels: Mapping[str, str]) -> dict[str, str]:
    """A user's labels minus the owner's: a service never names its owner (see labels_for)."""
    return {k: v for k, v in labels.items() if k != ENGINE_LABEL}


def _container_spec(
    project: ComposeProject,
    service: Service,
    namespace: str,
    owner: Mapping[str, str],
    image: str,
    files: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> dict[str, Any]:
    env = [k if v is None else f"{k}={v}" for k, v in service.environment.items()]
    spec: dict[str, Any] = {
        "Image": image,
        "Labels": {**_own(service.labels), STACK_LABEL: namespace, **owner},
        "Command": list(service.entrypoint or []),
        "Args": list(service.command or []),
        "Hostname": service.hostname or "",
        "Env": sorted(env),
        "Dir": service.working_dir or "",
        "User": service.user or "",
        "TTY": service.tty,
        "OpenStdin": service.stdin_open,
        "ReadOnly": False,
        "Mounts": _mounts(project, service, namespace, owner),
        "StopSignal": service.stop_signal or "",
        "StopGracePeriod": _ns(service.stop_grace_period, 10),  # Docker's default
        "Hosts": [_host_line(entry) for entry in service.extra_hosts],
        "DNSConfig": {"Nameservers": list(service.dns)} if service.dns else {},
        "Secrets": files[0],
        "Configs": files[1],
        "Isolation": "default",
        "CapabilityAdd": list(service.cap_add),
        "CapabilityDrop": list(service.cap_drop),
        "Ulimits": [
            {"Name": name, "Soft": limit.soft, "Hard": limit.hard}
            for name, limit in sorted(service.ulimits.items())
        ],
    }
    if service.init is not None:  # unset: the daemon's own default (`"init": true` in it)
        spec["Init"] = service.init
    if service.healthcheck is not None:  # unset: the image's check
        spec["Healthcheck"] = _healthcheck(service.healthcheck)
    return spec


def _host_line(entry: str) -> str:
    """``host:ip`` (the model's) as the ``ip host`` line of /etc/hosts Swarm wants."""
    host, _, address = entry.partition(":")  # a host has no ':'; an IPv6 address may
    return f"{address} {host}"


# -- networks and ports --------------------------------------------------------------------


def _networks(service: Service, networks: Mapping[str, str]) -> list[dict[str, Any]]:
    attached = []
    for key, endpoint in service.networks.items():
        if key not in networks:
            raise KeyError(f"services.{service.name}.networks: no Swarm network for {key!r}")
        aliases = [service.name, *(a for a in endpoint.aliases if a != service.name)]
        attached.append({"Target": networks[key], "Aliases": aliases})
    return sorted(attached, key=lambda n: n["Target"])


def _endpoint(service: Service) -> dict[str, Any]:
    ports = []
    for port in service.ports:
        spec: dict[str, Any] = {
            "Protocol": port.protocol,
            "TargetPort": port.target,
            "PublishMode": port.mode,
        }
        if port.published and port.published.isdigit():  # else Swarm picks one
            spec["PublishedPort"] = int(port.published)
        if port.name:
            spec["Name"] = port.name
        ports.append(spec)
    return {"Mode": service.deploy.endpoint_mode, "Ports": ports}


# -- the spec ------------------------------------------------------------------------------


def service_spec(
    project: ComposeProject,
    name: str,
    *,
    namespace: str,
    labels: Mapping[str, str],
    image: str,
    networks: Mapping[str, str],
    secrets: Mapping[str, tuple[str, str]],
    configs: Mapping[str, tuple[str, str]],
    replicas: int | None = None,
    config_hash: str = "",
) -> dict[str, Any]:
    """The Docker Engine API ServiceSpec (POST /services/create body) of one service.

    `labels` are the owner's (``io.dxflow.*``): they win over the service's own, on the
    service, its containers and the volumes its tasks create. `networks` maps compose
    network keys to Swarm network names, `secrets` and `configs` compose keys to (Swarm
    id, Swarm name). ValueError when `refusals` has anything to say (the runtime refuses
    first); KeyError when a network, secret or config of the service has no mapping.
    """
    service = service_of(project, name)
    refused = refusals(project, name)
    if refused:
        raise ValueError("; ".join(refused))
    job = is_job(project, name)
    owner = dict(labels)
    files = (
        _files(service.secrets, secrets, "Secret", name),
        _files(service.configs, configs, "Config", name),
    )
    spec: dict[str, Any] = {
        "Name": swarm_name(namespace, name),
        "Labels": {
            **_own(service.deploy.labels),
            STACK_LABEL: namespace,
            CONFIG_HASH_LABEL: config_hash,
            **owner,
        },
        "TaskTemplate": {
            "ContainerSpec": _container_spec(project, service, namespace, owner, image, files),
            "Resources": _resources(service),
            "RestartPolicy": _restart_policy(service, job),
            "Placement": _placement(service),
            "Networks": _networks(service, networks),
            "ForceUpdate": 0,
            "Runtime": "container",
        },
        "Mode": _mode(service, job, replicas),
        "EndpointSpec": _endpoint(service),
    }
    if not job:  # swarmkit: "Jobs may not have an update config"
        spec["UpdateConfig"] = _update_config(service.deploy.update_config)
        spec["RollbackConfig"] = _update_config(service.deploy.rollback_config)
    return spec
