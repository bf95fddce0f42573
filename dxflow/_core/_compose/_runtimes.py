"""What each Compose key becomes under each workflow runtime: the docs' runtime table.

Keyed by the paths of `_supported.KEYS`; a key not listed means the same on both
runtimes. The swarm column describes `_workflows._swarm_spec` (the ServiceSpec it
writes) and `_workflows._swarm_refusals` (what it turns away, with the fix).
"""

from __future__ import annotations

from ._supported import KEYS

__all__ = ["RUNTIME_NOTES", "runtime_table"]

SAME = ("applied", "same as docker")
"""The notes of a key with the same meaning on both runtimes."""
_IGNORED = "ignored (a cluster key)"
_REFUSED = "refused (the message names the fix)"

_S = "services.*"
_DEP = f"{_S}.deploy"
_RES = f"{_DEP}.resources"

RUNTIME_NOTES: dict[str, tuple[str, str]] = {
    "version": ("ignored (obsolete)", "ignored (obsolete)"),
    "x-*": ("dropped", "dropped"),
    "name": ("the workflow name wins", "the workflow name wins; it is the stack name"),
    "networks": ("bridge networks on the engine", "swarm-scoped networks (overlay)"),
    "volumes": (
        "volumes created before the containers",
        "created by each node on first use, with the volume's driver and labels",
    ),
    "secrets": ("files bound read-only", "Swarm secrets"),
    "configs": ("files bound read-only", "Swarm configs"),
    f"{_S}.image": ("applied", "applied (a built image is pushed under another name first)"),
    f"{_S}.build": (
        "built on the engine",
        "built, then pushed so every node can pull it (no `image` needed)",
    ),
    f"{_S}.command": ("container Cmd", "ContainerSpec.Args"),
    f"{_S}.entrypoint": ("container Entrypoint", "ContainerSpec.Command"),
    f"{_S}.environment": ("applied", "applied, sorted"),
    f"{_S}.hostname": ("applied", "applied to every task"),
    f"{_S}.labels": ("container labels", "container labels (not the service's)"),
    f"{_S}.ports": (
        "published on the engine's addresses",
        "EndpointSpec ports; a host address or a published range: " + _REFUSED,
    ),
    f"{_S}.ports[].host_ip": ("binds that address", _REFUSED),
    f"{_S}.ports[].mode": (
        "ignored (one machine)",
        "ingress: the routing mesh, every node; host: the node running the task",
    ),
    f"{_S}.ports[].app_protocol": ("ignored (informative)", "ignored (informative)"),
    f"{_S}.ports[].name": ("ignored (informative)", "the port's name in the spec"),
    f"{_S}.expose": (
        "exposed ports",
        "no effect (every port is open to the service's networks)",
    ),
    f"{_S}.volumes": (
        "mounts",
        "mounts; a bind's host path must exist on the node running the task",
    ),
    f"{_S}.volumes[].bind.create_host_path": (
        "a missing host path becomes a folder",
        "never: Swarm refuses a missing bind source",
    ),
    f"{_S}.volumes[].bind.selinux": ("not applied", "not applied"),
    f"{_S}.networks.*.aliases": ("applied", "applied (the service name is one too)"),
    f"{_S}.networks.*.ipv4_address": ("applied", _REFUSED),
    f"{_S}.network_mode": ("applied", _REFUSED),
    f"{_S}.depends_on": (
        "start order and conditions",
        "creation order and conditions (Swarm itself has no start order)",
    ),
    f"{_S}.depends_on.*.condition": (
        "waited for before starting",
        "waited for before creating; service_completed_successfully makes the dependency a job",
    ),
    f"{_S}.depends_on.*.restart": ("not applied", "not applied"),
    f"{_S}.healthcheck": ("applied", "applied (durations in ns)"),
    f"{_S}.healthcheck.start_interval": ("applied", "applied on Docker 25+ (API 1.44)"),
    f"{_S}.restart": (
        "container restart policy",
        'restart policy unless deploy.restart_policy is set: "no" makes a job, always '
        "and unless-stopped restart on any exit, on-failure:N on failure N times; unset: "
        "Swarm restarts a service on any exit, a job never",
    ),
    f"{_S}.stop_grace_period": ("applied (default 10 s)", "applied (default 10 s)"),
    f"{_S}.cap_add": ("applied", "applied (API 1.41+)"),
    f"{_S}.cap_drop": ("applied", "applied (API 1.41+)"),
    f"{_S}.privileged": ("applied", _REFUSED),
    f"{_S}.security_opt": ("applied", _REFUSED),
    f"{_S}.ulimits": ("applied", "applied (API 1.41+)"),
    f"{_S}.shm_size": ("applied", "a tmpfs of that size at /dev/shm"),
    f"{_S}.extra_hosts": ("applied", "applied (as `ip host` lines)"),
    f"{_S}.devices": ("applied", _REFUSED + "; GPUs are reservations"),
    f"{_S}.cpu_shares": ("applied", _REFUSED + ": reserve CPUs instead"),
    f"{_S}.mem_limit": ("memory limit", "Resources.Limits.MemoryBytes"),
    f"{_S}.cpus": ("CPU limit", "Resources.Limits.NanoCPUs"),
    f"{_S}.scale": ("number of containers", "number of tasks"),
    f"{_S}.gpus": (
        "device requests",
        "a count of the generic resource NVIDIA-GPU; `all`, ids or another driver: refused",
    ),
    _DEP: ("replicas and resources", "the service's mode, resources and scheduling"),
    f"{_DEP}.replicas": ("number of containers", "number of tasks (of completions for a job)"),
    f"{_DEP}.mode": (
        _IGNORED,
        "Replicated, Global, ReplicatedJob (replicas completions) or GlobalJob",
    ),
    f"{_DEP}.endpoint_mode": (_IGNORED, "EndpointSpec.Mode; dnsrr with ingress ports: refused"),
    f"{_DEP}.labels": (_IGNORED, "service labels (the engine's win)"),
    f"{_DEP}.placement": (_IGNORED, "Placement"),
    f"{_DEP}.update_config": (_IGNORED, "UpdateConfig (none for a job: Swarm forbids it)"),
    f"{_DEP}.rollback_config": (_IGNORED, "RollbackConfig (none for a job)"),
    f"{_DEP}.restart_policy": (
        _IGNORED,
        "RestartPolicy, winning over `restart`; condition any on a job: refused",
    ),
    f"{_RES}.limits.pids": ("applied", "Resources.Limits.Pids"),
    f"{_RES}.reservations.memory": ("soft limit", "reserved: tasks go to nodes that have it"),
    f"{_RES}.reservations.cpus": ("ignored (one machine)", "reserved: tasks go where it is free"),
    f"{_RES}.reservations.devices": ("device requests", "as `gpus`"),
    f"{_S}.secrets": ("files bound read-only", "Swarm secret references (mode 0444 by default)"),
    f"{_S}.configs": ("files bound read-only", "Swarm config references (mode 0444 by default)"),
}


def _inherited(path: str) -> tuple[str, str] | None:
    """The notes of the nearest listed parent, for keys that only refine it."""
    while "." in path:
        path = path.rpartition(".")[0].removesuffix("[]")
        if path in RUNTIME_NOTES:
            return RUNTIME_NOTES[path]
    return None


def _notes(path: str) -> tuple[str, str]:
    if path in RUNTIME_NOTES:
        return RUNTIME_NOTES[path]
    parent = _inherited(path)
    # Only the cluster-only sections pass their notes down: under them, every key is so.
    if parent is not None and parent[0] == _IGNORED:
        return parent
    return SAME


def runtime_table() -> str:
    """The markdown table of every supported key under each runtime (docs/swarm.md)."""
    rows = ["| key | docker (one machine) | swarm |", "| --- | --- | --- |"]
    for key in KEYS:
        docker, swarm = _notes(key.path)
        rows.append(f"| `{key.path}` | {docker} | {swarm} |")
    return "\n".join(rows)
