"""Every supported Compose key: its path pattern, accepted types and a one-line description.

The loader rejects any key missing from this table (``x-*`` extension keys excepted, at
every level), and the workflows docs print it as the supported-keys table. In a pattern,
``*`` stands for a name chosen by the user (a service, a network, ...) and ``[]`` for
the items of a list. Types name the shapes the document may use; values are then
checked by the normalizers (``integer`` also accepts the string an interpolation gave).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

__all__ = ["KEYS", "UNSUPPORTED", "Key", "children", "lookup", "markdown_table"]


@dataclass(frozen=True)
class Key:
    path: str
    types: tuple[str, ...]
    doc: str


def _k(path: str, types: str, doc: str) -> Key:
    return Key(path, tuple(types.split("|")), doc)


def _update_keys(section: str, what: str, actions: str) -> list[Key]:
    """``deploy.update_config`` and ``deploy.rollback_config`` have the same keys."""
    return [
        _k(section, "mapping", f"Swarm: how a {what} replaces tasks."),
        _k(f"{section}.parallelism", "integer", "Tasks replaced at once (0: all)."),
        _k(f"{section}.delay", "string", "Duration between batches."),
        _k(f"{section}.failure_action", "string", f"On a failed {what}: {actions}."),
        _k(f"{section}.monitor", "string", "Duration a new task is watched for failure."),
        _k(f"{section}.max_failure_ratio", "number|string", "Failures tolerated (0 to 1)."),
        _k(f"{section}.order", "string", "stop-first or start-first."),
    ]


_S = "services.*"
_PORT = f"{_S}.ports[]"
_VOL = f"{_S}.volumes[]"
_RES = f"{_S}.deploy.resources"
_DEV = f"{_RES}.reservations.devices[]"
_GPU = f"{_S}.gpus[]"
_HC = f"{_S}.healthcheck"
_DEP = f"{_S}.deploy"
_PLC = f"{_DEP}.placement"
_UPD = f"{_DEP}.update_config"
_RBK = f"{_DEP}.rollback_config"
_RST = f"{_DEP}.restart_policy"

_TOP = [
    _k("version", "string", "Obsolete: accepted and ignored."),
    _k("name", "string", "Project name; the workflow name given at create wins."),
    _k("services", "mapping", "The services, by name."),
    _k("networks", "mapping", "Networks services attach to, by key."),
    _k("volumes", "mapping", "Named volumes services mount, by key."),
    _k("secrets", "mapping", "Secrets, by key (mounted at /run/secrets/<key>)."),
    _k("configs", "mapping", "Configs, by key (mounted at /<key> or their target)."),
    _k("x-*", "mapping|list|string|number|boolean|null", "Extension: accepted and dropped."),
]
_SERVICE = [
    _k(_S, "mapping", "One service."),
    _k(f"{_S}.image", "string", "Image to run (built under this name when `build` is set)."),
    _k(f"{_S}.build", "string|mapping", "Build context path, or the long form below."),
    _k(f"{_S}.build.context", "string", "Build context, relative to the working dir."),
    _k(f"{_S}.build.dockerfile", "string", "Dockerfile, relative to the context."),
    _k(f"{_S}.build.args", "list|mapping", "Build arguments (`K=V` list or map)."),
    _k(f"{_S}.build.target", "string", "Stage of a multi-stage build."),
    _k(f"{_S}.command", "string|list", "Command (a string is split like a shell would)."),
    _k(f"{_S}.entrypoint", "string|list", "Entrypoint (a string is split like a shell would)."),
    _k(
        f"{_S}.environment", "list|mapping", "Variables (`K=V`/`K` list or map); win over env_file."
    ),
    _k(f"{_S}.env_file", "string|list", "Dotenv file(s) of variables, relative to working dir."),
    _k(f"{_S}.env_file[].path", "string", "Long form: the file."),
    _k(f"{_S}.env_file[].required", "boolean", "Long form: false skips a missing file."),
    _k(f"{_S}.working_dir", "string", "Working directory in the container."),
    _k(f"{_S}.user", "string", "User (and group) to run as."),
    _k(f"{_S}.hostname", "string", "Container hostname."),
    _k(f"{_S}.labels", "list|mapping", "Container labels (`K=V` list or map)."),
    _k(f"{_S}.ports", "list", "Published ports: `[ip:][host:]container[/proto]`, ranges, or long."),
    _k(f"{_PORT}.target", "integer", "Long form: container port."),
    _k(f"{_PORT}.published", "string|integer", "Long form: host port or range."),
    _k(f"{_PORT}.host_ip", "string", "Long form: host address to bind."),
    _k(f"{_PORT}.protocol", "string", "Long form: tcp, udp or sctp."),
    _k(f"{_PORT}.mode", "string", "Long form: ingress or host."),
    _k(f"{_PORT}.name", "string", "Long form: a name for the port."),
    _k(f"{_PORT}.app_protocol", "string", "Long form: application protocol (http, grpc, ...)."),
    _k(f"{_S}.expose", "list", "Container ports exposed to other services only."),
    _k(f"{_S}.volumes", "list", "Mounts: `src:dst[:ro|rw|z|Z]` (path: bind, key: volume) or long."),
    _k(f"{_VOL}.type", "string", "Long form: bind, volume or tmpfs."),
    _k(f"{_VOL}.source", "string", "Long form: host path (bind) or volume key (volume)."),
    _k(f"{_VOL}.target", "string", "Long form: path in the container."),
    _k(f"{_VOL}.read_only", "boolean", "Long form: mount read-only."),
    _k(f"{_VOL}.bind", "mapping", "Long form: bind options."),
    _k(f"{_VOL}.bind.create_host_path", "boolean", "Create a missing host path (default true)."),
    _k(f"{_VOL}.bind.selinux", "string", "SELinux relabel: z (shared) or Z (private)."),
    _k(f"{_VOL}.volume", "mapping", "Long form: volume options."),
    _k(f"{_VOL}.volume.nocopy", "boolean", "Do not copy image data into a new volume."),
    _k(f"{_VOL}.tmpfs", "mapping", "Long form: tmpfs options."),
    _k(f"{_VOL}.tmpfs.size", "string|integer", "tmpfs size in bytes or `64m`."),
    _k(f"{_VOL}.tmpfs.mode", "integer", "tmpfs mode (octal)."),
    _k(f"{_S}.tmpfs", "string|list", "tmpfs mount(s): `path[:size=..,mode=..]`."),
    _k(f"{_S}.networks", "list|mapping", "Networks to join (list, or map with options)."),
    _k(f"{_S}.networks.*", "mapping|null", "One network's options."),
    _k(f"{_S}.networks.*.aliases", "list", "Extra DNS names on that network."),
    _k(f"{_S}.networks.*.ipv4_address", "string", "Static IPv4 address on that network."),
    _k(f"{_S}.network_mode", "string", "bridge, host, none, service:NAME or container:ID."),
    _k(f"{_S}.depends_on", "list|mapping", "Services to start first (list, or map)."),
    _k(f"{_S}.depends_on.*", "mapping", "One dependency."),
    _k(
        f"{_S}.depends_on.*.condition",
        "string",
        "service_started, service_healthy or service_completed_successfully.",
    ),
    _k(f"{_S}.depends_on.*.required", "boolean", "false: a missing dependency is tolerated."),
    _k(f"{_S}.depends_on.*.restart", "boolean", "Restart this service when the dependency is."),
    _k(_HC, "mapping", "Health check."),
    _k(f"{_HC}.test", "string|list", "A shell string, or [CMD, ...] / [CMD-SHELL, s] / [NONE]."),
    _k(f"{_HC}.interval", "string", "Duration between checks (`1m30s`, `10s`, `100ms`)."),
    _k(f"{_HC}.timeout", "string", "Duration before a check counts as failed."),
    _k(f"{_HC}.retries", "integer", "Consecutive failures before unhealthy."),
    _k(f"{_HC}.start_period", "string", "Duration during which failures do not count."),
    _k(f"{_HC}.start_interval", "string", "Duration between checks during the start period."),
    _k(f"{_HC}.disable", "boolean", "true disables the image's health check."),
    _k(f"{_S}.restart", "string", "no, always, on-failure[:N] or unless-stopped."),
    _k(f"{_S}.init", "boolean", "Run an init process as PID 1."),
    _k(f"{_S}.stop_signal", "string", "Signal that stops the container."),
    _k(f"{_S}.stop_grace_period", "string", "Duration to wait before killing on stop."),
    _k(f"{_S}.tty", "boolean", "Allocate a TTY."),
    _k(f"{_S}.stdin_open", "boolean", "Keep stdin open."),
    _k(f"{_S}.cap_add", "list", "Kernel capabilities to add."),
    _k(f"{_S}.cap_drop", "list", "Kernel capabilities to drop."),
    _k(f"{_S}.privileged", "boolean", "Run privileged."),
    _k(f"{_S}.security_opt", "list", "Security options (`no-new-privileges:true`, ...)."),
    _k(f"{_S}.ulimits", "mapping", "Resource limits by name."),
    _k(f"{_S}.ulimits.*", "integer|mapping", "A limit: one number (soft = hard) or soft/hard."),
    _k(f"{_S}.ulimits.*.soft", "integer", "Soft limit."),
    _k(f"{_S}.ulimits.*.hard", "integer", "Hard limit."),
    _k(f"{_S}.shm_size", "string|integer", "Size of /dev/shm in bytes or `64m`."),
    _k(f"{_S}.extra_hosts", "list|mapping", "Extra /etc/hosts entries (`host:ip`, `host=ip`)."),
    _k(f"{_S}.dns", "string|list", "DNS servers."),
    _k(f"{_S}.devices", "list", "Host devices: `host[:container[:perms]]`."),
    _k(_DEP, "mapping", "Replicas, resources and (on a cluster) scheduling."),
    _k(f"{_DEP}.replicas", "integer", "Number of containers."),
    _k(f"{_DEP}.mode", "string", "Swarm: replicated, global, replicated-job or global-job."),
    _k(f"{_DEP}.endpoint_mode", "string", "Swarm: how clients find the service, vip or dnsrr."),
    _k(f"{_DEP}.labels", "list|mapping", "Swarm: labels of the service (not its containers)."),
    _k(_PLC, "mapping", "Swarm: where tasks may run."),
    _k(f"{_PLC}.constraints", "list", "Node constraints (`node.role == worker`, ...)."),
    _k(f"{_PLC}.preferences", "list", "Spread preferences."),
    _k(f"{_PLC}.preferences[].spread", "string", "Node attribute to spread over."),
    _k(f"{_PLC}.max_replicas_per_node", "integer", "At most this many tasks on one node."),
    *_update_keys(_UPD, "update", "continue, rollback or pause"),
    *_update_keys(_RBK, "rollback", "continue or pause"),
    _k(_RST, "mapping", "Swarm: when tasks restart (wins over `restart`)."),
    _k(f"{_RST}.condition", "string", "none, on-failure or any."),
    _k(f"{_RST}.delay", "string", "Duration between restart attempts."),
    _k(f"{_RST}.max_attempts", "integer", "Restarts before giving up (0: no limit)."),
    _k(f"{_RST}.window", "string", "Duration over which a restart counts as failed."),
    _k(_RES, "mapping", "Resource limits and reservations."),
    _k(f"{_RES}.limits", "mapping", "Resource limits."),
    _k(f"{_RES}.limits.cpus", "number|string", "CPU limit (e.g. 0.5)."),
    _k(f"{_RES}.limits.memory", "string|integer", "Memory limit in bytes or `512m`."),
    _k(f"{_RES}.limits.pids", "integer", "Process count limit."),
    _k(f"{_RES}.reservations", "mapping", "Resource reservations."),
    _k(f"{_RES}.reservations.cpus", "number|string", "CPU reservation."),
    _k(f"{_RES}.reservations.memory", "string|integer", "Memory reservation (soft limit)."),
    _k(f"{_RES}.reservations.devices", "list", "Device requests (GPUs)."),
    _k(f"{_DEV}.driver", "string", "Device driver (e.g. nvidia)."),
    _k(f"{_DEV}.count", "integer|string", "Number of devices, or `all`."),
    _k(f"{_DEV}.device_ids", "list", "Device ids (instead of count)."),
    _k(f"{_DEV}.capabilities", "list", "Capabilities, e.g. [gpu]."),
    _k(f"{_DEV}.options", "mapping", "Driver options."),
    _k(f"{_S}.gpus", "string|integer|list", "GPUs: `all`, a count, or device requests."),
    _k(f"{_GPU}.driver", "string", "Device driver."),
    _k(f"{_GPU}.count", "integer|string", "Number of GPUs, or `all`."),
    _k(f"{_GPU}.device_ids", "list", "GPU ids (instead of count)."),
    _k(f"{_GPU}.capabilities", "list", "Capabilities (default [gpu])."),
    _k(f"{_GPU}.options", "mapping", "Driver options."),
    _k(f"{_S}.mem_limit", "string|integer", "Memory limit (same as deploy limits memory)."),
    _k(f"{_S}.cpus", "number|string", "CPU limit (same as deploy limits cpus)."),
    _k(f"{_S}.cpu_shares", "integer", "Relative CPU weight."),
    _k(f"{_S}.profiles", "list", "Profiles that enable this service."),
    _k(f"{_S}.scale", "integer", "Number of containers (same as deploy.replicas)."),
    _k(f"{_S}.secrets", "list", "Secrets to mount: a key, or the long form."),
    _k(f"{_S}.secrets[].source", "string", "Long form: secret key."),
    _k(f"{_S}.secrets[].target", "string", "Long form: path (default /run/secrets/<key>)."),
    _k(f"{_S}.secrets[].mode", "integer", "Long form: file mode (octal)."),
    _k(f"{_S}.configs", "list", "Configs to mount: a key, or the long form."),
    _k(f"{_S}.configs[].source", "string", "Long form: config key."),
    _k(f"{_S}.configs[].target", "string", "Long form: path (default /<key>)."),
    _k(f"{_S}.configs[].mode", "integer", "Long form: file mode (octal)."),
]
_RESOURCES = [
    _k("networks.*", "mapping|null", "One network."),
    _k("networks.*.driver", "string", "Network driver (default bridge)."),
    _k("networks.*.driver_opts", "mapping", "Driver options."),
    _k("networks.*.external", "boolean", "Created outside the project; never created/removed."),
    _k("networks.*.internal", "boolean", "No outside connectivity."),
    _k("networks.*.attachable", "boolean", "Standalone containers may attach."),
    _k("networks.*.labels", "list|mapping", "Network labels."),
    _k("networks.*.name", "string", "Docker name (default <project>_<key>)."),
    _k("volumes.*", "mapping|null", "One named volume."),
    _k("volumes.*.driver", "string", "Volume driver (default local)."),
    _k("volumes.*.driver_opts", "mapping", "Driver options."),
    _k("volumes.*.external", "boolean", "Created outside the project; never created/removed."),
    _k("volumes.*.labels", "list|mapping", "Volume labels."),
    _k("volumes.*.name", "string", "Docker name (default <project>_<key>)."),
    _k("secrets.*", "mapping", "One secret."),
    _k("secrets.*.file", "string", "The file holding it, relative to the working dir."),
    _k("secrets.*.environment", "string", "Or the variable holding it."),
    _k("configs.*", "mapping", "One config."),
    _k("configs.*.file", "string", "The file holding it, relative to the working dir."),
    _k("configs.*.environment", "string", "Or the variable holding it."),
    _k("configs.*.content", "string", "Or the content itself."),
]

KEYS: tuple[Key, ...] = (*_TOP, *_SERVICE, *_RESOURCES)

_SWARM = "external {} live in Docker Swarm; use `file`, `environment`{}"
UNSUPPORTED: dict[str, str] = {
    "secrets.*.external": _SWARM.format("secrets", ""),
    "configs.*.external": _SWARM.format("configs", " or `content`"),
    "secrets.*.content": "a secret comes from `file` or `environment` (`content` is for configs)",
}


@cache
def _by_path() -> dict[str, Key]:
    return {key.path: key for key in KEYS}


@cache
def children(pattern: str) -> dict[str, Key]:
    """The keys directly under `pattern`, by their last segment (``*`` for any name).

    The children of list items are under ``pattern + "[]"``.
    """
    prefix = f"{pattern}." if pattern else ""
    found: dict[str, Key] = {}
    for key in KEYS:
        rest = key.path.removeprefix(prefix)
        if key.path.startswith(prefix) and "." not in rest and "[" not in rest:
            found[rest] = key
    return found


def lookup(path: str) -> Key | None:
    return _by_path().get(path)


def markdown_table() -> str:
    """The supported-keys table of the workflows docs."""
    rows = ["| key | type | description |", "| --- | --- | --- |"]
    for key in KEYS:
        rows.append(f"| `{key.path}` | {' or '.join(key.types)} | {key.doc} |")
    return "\n".join(rows)
