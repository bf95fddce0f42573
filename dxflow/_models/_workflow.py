"""Models of workflows: requests, status, events."""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from ._base import Request, Response

__all__ = [
    "ComposeProjectList",
    "ComposeProjectSummary",
    "ContainerState",
    "ContainerStats",
    "ContainerTop",
    "EnvExplanation",
    "EnvQuery",
    "ExecResult",
    "LogLine",
    "Runtime",
    "ServiceStatus",
    "TaskState",
    "WorkflowCreate",
    "WorkflowDown",
    "WorkflowEvent",
    "WorkflowEventsQuery",
    "WorkflowExec",
    "WorkflowInfo",
    "WorkflowKill",
    "WorkflowList",
    "WorkflowLogs",
    "WorkflowRef",
    "WorkflowScale",
    "WorkflowStats",
    "WorkflowStatus",
    "WorkflowStop",
    "WorkflowTop",
    "WorkflowUp",
    "WorkflowUpdate",
]

_NAME = r"^[a-z0-9][a-z0-9_-]*$"
WorkflowName = Annotated[str, Field(min_length=1, max_length=63, pattern=_NAME)]
# The compose-spec's own pattern for service names.
ServiceName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9._-]+$")]


class WorkflowRef(Request):
    name: WorkflowName


# Paths name files on the engine host: no NUL bytes, never empty.
Path_ = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
Runtime = Literal["docker", "swarm"]
"""What runs a workflow's containers: one Docker Engine, or the Swarm it manages."""
Profile = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
]


class WorkflowCreate(Request):
    name: WorkflowName
    compose: str | dict[str, Any] = Field(description="compose YAML text, or the parsed document")
    working_dir: Path_ | None = Field(
        None, description="where relative paths resolve (engine host)"
    )
    config_files: list[Path_] = []
    env: dict[str, str] = {}
    env_file: list[Path_] = Field([], description="dotenv files on the engine host")
    profiles: list[Profile] = []
    exist_ok: bool = Field(
        False, description="when it exists: update it to this spec (a no-op when identical)"
    )
    replace: bool = Field(False, description="when it exists: bring it down, create it anew")
    runtime: Runtime | None = Field(
        None,
        description="what runs it: docker (this machine) or swarm (the Docker Swarm this "
        "engine's Docker manages); none: the engine's default (`workflow_runtime`)",
    )


class WorkflowUp(Request):
    name: WorkflowName
    services: list[str] | None = None
    wait: bool = True
    timeout: float | None = Field(None, gt=0, le=86400)
    remove_orphans: bool = True
    build: bool | None = Field(
        None, description="true: rebuild; false: never build; null: when missing"
    )
    keep_on_failure: bool = Field(
        False, description="leave what a failed up created, for inspection (else rolled back)"
    )


class WorkflowDown(Request):
    name: WorkflowName
    volumes: bool = False
    remove_orphans: bool = True


class WorkflowStop(Request):
    name: WorkflowName
    services: list[str] | None = None
    timeout: float | None = Field(None, ge=0, le=3600)


class WorkflowInfo(Response):
    name: str
    created_at: datetime
    working_dir: str
    services: list[str]
    profiles: list[str] = []
    runtime: Runtime = "docker"


class WorkflowList(Response):
    workflows: list[WorkflowInfo]


class ContainerState(Response):
    id: str
    name: str
    number: int
    state: str = Field(description="created, running, paused, restarting, exited, dead")
    health: str | None = Field(None, description="starting, healthy, unhealthy")
    exit_code: int | None = None
    ports: list[str] = Field([], description='"host_ip:host_port->port/proto"')
    config_hash: str | None = None


class TaskState(Response):
    """One Swarm task of a service (runtime swarm): where it runs and how it fares."""

    id: str
    slot: int | None = Field(None, description="the replica it is (none: a global service)")
    node: str | None = Field(None, description="the node's host name")
    node_id: str | None = None
    state: str = Field(description="Swarm's: new, pending, assigned, ..., running, complete, "
                       "failed, shutdown, rejected, orphaned")  # fmt: skip
    desired_state: str
    error: str | None = None
    message: str | None = None
    exit_code: int | None = None
    container: str | None = Field(None, description="the container's id on its node")
    updated_at: datetime | None = None
    rescheduled: bool = Field(
        False, description="it replaced a task of the same slot whose node went down or "
        "that failed"
    )  # fmt: skip


class ServiceStatus(Response):
    name: str
    state: str = Field(description="running, partial, exited, stopped, paused, missing")
    health: str | None = None
    exit_code: int | None = None
    replicas: int
    containers: list[ContainerState]
    desired: int | None = Field(None, description="runtime swarm: the replicas asked for")
    running: int | None = Field(None, description="runtime swarm: the tasks running now")
    tasks: list[TaskState] = Field([], description="runtime swarm: current and recent tasks")


class WorkflowStatus(Response):
    name: str
    state: str = Field(
        description="running (one-shots that exited 0 count as done), partial, stopped, "
        "paused, missing"
    )
    services: list[ServiceStatus]


class WorkflowEvent(Response):
    time: datetime
    workflow: str
    action: Literal[
        "pull",
        "build",
        "creating",
        "created",
        "starting",
        "started",
        "healthy",
        "unhealthy",
        "exited",
        "died",
        "oom",
        "stopping",
        "stopped",
        "removing",
        "removed",
        "paused",
        "unpaused",
        "killed",
        "network",
        "volume",
        "done",
        "error",
        "scaled",
        "updated",
        "rescheduled",
        "node",
    ]
    service: str | None = None
    container: str | None = None
    exit_code: int | None = None
    detail: str | None = None


class WorkflowScale(Request):
    name: WorkflowName
    service: str = Field(min_length=1)
    replicas: int = Field(ge=0, le=10_000)


class WorkflowKill(Request):
    name: WorkflowName
    services: list[str] | None = None
    signal: str = Field("SIGKILL", pattern=r"^(SIG)?[A-Z0-9]+$|^[0-9]+$")


def _split(value: Any) -> Any:
    """A command line given as one string is split as a POSIX shell would (docker-py's
    rule); a list is taken as it is."""
    return shlex.split(value) if isinstance(value, str) else value


class WorkflowExec(Request):
    name: WorkflowName
    service: str = Field(min_length=1)
    cmd: Annotated[list[str], BeforeValidator(_split)] = Field(
        min_length=1, description="argv, or one string split as a shell would"
    )
    index: int = Field(1, ge=1, description="which replica")
    user: str | None = None
    workdir: str | None = None
    env: dict[str, str] = {}
    timeout: float | None = Field(None, gt=0, le=86400)


class ExecResult(Response):
    exit_code: int
    output: str


class ContainerStats(Response):
    service: str
    container: str
    cpu_percent: float
    memory_usage: int
    memory_limit: int
    memory_percent: float
    network_rx: int
    network_tx: int
    block_read: int
    block_write: int
    pids: int | None = None


class WorkflowStats(Response):
    name: str
    containers: list[ContainerStats]


class ContainerTop(Response):
    """The processes of one container, as `docker top` shows them."""

    container: str
    service: str
    titles: list[str]
    processes: list[list[str]]


class WorkflowTop(Response):
    name: str
    containers: list[ContainerTop]


class WorkflowUpdate(Request):
    """Replace parts of a stored workflow; the next `up` recreates what changed."""

    name: WorkflowName
    compose: str | dict[str, Any] | None = None
    working_dir: Path_ | None = None
    config_files: list[Path_] | None = None
    env: dict[str, str] | None = None
    env_file: list[Path_] | None = None
    profiles: list[Profile] | None = None


class WorkflowLogs(Request):
    name: WorkflowName
    service: str | None = None
    follow: bool = False
    tail: int | None = Field(None, ge=0)
    since: datetime | None = None
    timestamps: bool = False


class LogLine(Response):
    service: str
    container: str
    stream: Literal["stdout", "stderr"]
    line: str
    time: datetime | None = None


class WorkflowEventsQuery(Request):
    name: WorkflowName
    since: datetime | None = None


class EnvQuery(Request):
    name: WorkflowName
    service: str = Field(min_length=1)
    variable: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvExplanation(Response):
    variable: str
    value: str | None
    source: str = Field(
        description="env, process, env_file:<path>, service.environment, ... or unset"
    )


class ComposeProjectSummary(Response):
    """A Compose project found on the Docker Engine by its labels."""

    name: str
    managed: bool = Field(description="stored as a dxflow workflow (else made by another tool)")
    state: str
    services: list[str]
    working_dir: str | None = None
    config_files: list[str] = []
    owner: str | None = Field(
        None, description="id of the dxflow engine that made it; null: another tool"
    )


class ComposeProjectList(Response):
    projects: list[ComposeProjectSummary]
