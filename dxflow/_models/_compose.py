"""The normalized Compose model: what a workflow's compose file means once loaded.

Every short syntax is expanded to its long form, every variable is interpolated, and
every alias key is folded into one place (``mem_limit`` and ``cpus`` into
``deploy.limits``, ``scale`` into ``deploy.replicas``, ``gpus`` into
``deploy.reservations.devices``, ``env_file`` into ``environment``), so the orchestrator
reads one shape only. Durations are seconds, sizes are bytes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Response

__all__ = [
    "Build",
    "ComposeProject",
    "Dependency",
    "Deploy",
    "DeployPlacement",
    "DeviceRequest",
    "FileReference",
    "Healthcheck",
    "Limits",
    "Mount",
    "NetworkSpec",
    "PlacementPreference",
    "PortMapping",
    "Reservations",
    "RestartPolicy",
    "Service",
    "ServiceFile",
    "ServiceNetwork",
    "Ulimit",
    "UpdateConfig",
    "VolumeSpec",
]


class Build(Response):
    context: str = Field(description="absolute path of the build context")
    dockerfile: str = "Dockerfile"
    args: dict[str, str | None] = {}
    target: str | None = None


class PortMapping(Response):
    target: int = Field(description="the container port")
    published: str | None = Field(None, description="host port or range; None picks one")
    host_ip: str | None = None
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    mode: Literal["ingress", "host"] = "ingress"
    name: str | None = None
    app_protocol: str | None = None


class Mount(Response):
    type: Literal["bind", "volume", "tmpfs"]
    source: str | None = Field(None, description="host path (bind) or volume key (volume)")
    target: str
    read_only: bool = False
    create_host_path: bool = True
    nocopy: bool = False
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
    selinux: Literal["z", "Z"] | None = Field(
        None, description="bind relabeling: z shared, Z private"
    )


class ServiceNetwork(Response):
    aliases: list[str] = []
    ipv4_address: str | None = None


class Dependency(Response):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = (
        "service_started"
    )
    required: bool = True
    restart: bool = False


class Healthcheck(Response):
    test: list[str] = Field(
        [], description='["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"]; [] keeps the image\'s test'
    )
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    start_interval: float | None = None
    disable: bool = False


class DeviceRequest(Response):
    driver: str | None = None
    count: int | Literal["all"] | None = None
    device_ids: list[str] = []
    capabilities: list[str] = []
    options: dict[str, str] = {}


class Limits(Response):
    cpus: float | None = None
    memory: int | None = None
    pids: int | None = None


class Reservations(Response):
    cpus: float | None = None
    memory: int | None = None
    devices: list[DeviceRequest] = []


class PlacementPreference(Response):
    spread: str = Field(description="a node attribute to spread tasks over (node.labels.zone)")


class DeployPlacement(Response):
    constraints: list[str] = []
    preferences: list[PlacementPreference] = []
    max_replicas_per_node: int | None = None


class UpdateConfig(Response):
    """How Swarm replaces tasks on an update (or a rollback); defaults are Swarm's."""

    parallelism: int = 1
    delay: float = 0.0
    failure_action: Literal["continue", "rollback", "pause"] = "pause"
    monitor: float = 5.0
    max_failure_ratio: float = 0.0
    order: Literal["stop-first", "start-first"] = "stop-first"


class RestartPolicy(Response):
    """``deploy.restart_policy``; an unset field takes Swarm's default."""

    condition: Literal["none", "on-failure", "any"] = "any"
    delay: float | None = None
    max_attempts: int | None = None
    window: float | None = None


class Deploy(Response):
    replicas: int = 1
    limits: Limits = Limits()
    reservations: Reservations = Reservations()
    # What only a cluster runtime (Swarm) honours; the one-machine runtime ignores them.
    mode: Literal["replicated", "global", "replicated-job", "global-job"] = "replicated"
    placement: DeployPlacement = DeployPlacement()
    update_config: UpdateConfig = UpdateConfig()
    rollback_config: UpdateConfig = UpdateConfig()
    restart_policy: RestartPolicy | None = None
    endpoint_mode: Literal["vip", "dnsrr"] = "vip"
    labels: dict[str, str] = Field({}, description="labels of the Swarm service, not containers")


class Ulimit(Response):
    soft: int
    hard: int


class ServiceFile(Response):
    """A secret or config as a service uses it."""

    source: str = Field(description="key in the project's secrets or configs")
    target: str = Field(description="absolute path in the container")
    mode: int | None = None


class Service(Response):
    name: str
    image: str | None = None
    build: Build | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str | None] = {}
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    labels: dict[str, str] = {}
    ports: list[PortMapping] = []
    expose: list[str] = []
    volumes: list[Mount] = []
    networks: dict[str, ServiceNetwork] = {}
    network_mode: str | None = None
    depends_on: dict[str, Dependency] = {}
    healthcheck: Healthcheck | None = None
    restart: str | None = None
    init: bool | None = None
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    tty: bool = False
    stdin_open: bool = False
    cap_add: list[str] = []
    cap_drop: list[str] = []
    privileged: bool = False
    security_opt: list[str] = []
    ulimits: dict[str, Ulimit] = {}
    shm_size: int | None = None
    extra_hosts: list[str] = Field([], description='"host:ip" entries')
    dns: list[str] = []
    devices: list[str] = Field([], description='"host:container[:perms]" entries')
    cpu_shares: int | None = None
    profiles: list[str] = []
    deploy: Deploy = Deploy()
    secrets: list[ServiceFile] = []
    configs: list[ServiceFile] = []


class NetworkSpec(Response):
    name: str = Field(description="the Docker network's name")
    driver: str | None = None
    driver_opts: dict[str, str] = {}
    external: bool = False
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = {}


class VolumeSpec(Response):
    name: str = Field(description="the Docker volume's name")
    driver: str | None = None
    driver_opts: dict[str, str] = {}
    external: bool = False
    labels: dict[str, str] = {}


class FileReference(Response):
    """A secret or config of the project: a file, a variable, or (configs) inline content."""

    name: str
    file: str | None = Field(None, description="absolute path on the engine host")
    environment: str | None = Field(None, description="the variable holding the value")
    content: str | None = Field(None, description="the value itself (configs only)")


class ComposeProject(Response):
    name: str
    working_dir: str
    config_files: list[str] = []
    services: dict[str, Service]
    networks: dict[str, NetworkSpec] = {}
    volumes: dict[str, VolumeSpec] = {}
    secrets: dict[str, FileReference] = {}
    configs: dict[str, FileReference] = {}
