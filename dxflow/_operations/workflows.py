"""Workflows: stored Compose projects, their lifecycle, logs, events and stats."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoRequest, Operation

__all__ = [
    "CONFIG",
    "CREATE",
    "DOWN",
    "ENV",
    "EVENTS",
    "EXEC",
    "GET",
    "KILL",
    "LIST",
    "LOGS",
    "PAUSE",
    "PROJECTS",
    "REMOVE",
    "RESTART",
    "SCALE",
    "START",
    "STATS",
    "STATS_WATCH",
    "STATUS",
    "STOP",
    "TOP",
    "UNPAUSE",
    "UP",
    "UPDATE",
]

_WORKFLOW = Permission.WORKFLOW

# fmt: off
CREATE: Operation[m.WorkflowCreate, m.WorkflowInfo] = Operation(
    "workflows.create", "POST", "/api/workflows",
    "Validate, interpolate and store a Compose project (no containers yet).",
    request=m.WorkflowCreate, response=m.WorkflowInfo, permission=_WORKFLOW, mutating=True,
    idempotent=False, target="name")
LIST: Operation[NoRequest, m.WorkflowList] = Operation(
    "workflows.list", "GET", "/api/workflows", "Stored workflows.", response=m.WorkflowList,
    permission=_WORKFLOW)
PROJECTS: Operation[NoRequest, m.ComposeProjectList] = Operation(
    "workflows.projects", "GET", "/api/compose-projects",
    "This engine's Compose projects; for MASTER, every one on the Docker Engine.",
    response=m.ComposeProjectList, permission=_WORKFLOW)
GET: Operation[m.WorkflowRef, m.WorkflowInfo] = Operation(
    "workflows.get", "GET", "/api/workflows/{name}", "One workflow.", request=m.WorkflowRef,
    response=m.WorkflowInfo, permission=_WORKFLOW)
CONFIG: Operation[m.WorkflowRef, m.ComposeProject] = Operation(
    "workflows.config", "GET", "/api/workflows/{name}/config",
    "The normalized, interpolated Compose model.", request=m.WorkflowRef, response=m.ComposeProject,
    permission=_WORKFLOW)
STATUS: Operation[m.WorkflowRef, m.WorkflowStatus] = Operation(
    "workflows.status", "GET", "/api/workflows/{name}/status",
    "Per service: state, health, exit code, containers, published ports.", request=m.WorkflowRef,
    response=m.WorkflowStatus, permission=_WORKFLOW)
UP: Operation[m.WorkflowUp, m.WorkflowEvent] = Operation(
    "workflows.up", "POST", "/api/workflows/{name}/up",
    "Create and start services along depends_on; a stream of progress events.",
    request=m.WorkflowUp, response=m.WorkflowEvent, kind="stream", permission=_WORKFLOW,
    mutating=True, idempotent=False, target="name")
DOWN: Operation[m.WorkflowDown, m.WorkflowEvent] = Operation(
    "workflows.down", "POST", "/api/workflows/{name}/down",
    "Stop and remove containers and networks (volumes on request); events.", request=m.WorkflowDown,
    response=m.WorkflowEvent, kind="stream", permission=_WORKFLOW, mutating=True, idempotent=False,
    target="name")
START: Operation[m.WorkflowStop, m.WorkflowStatus] = Operation(
    "workflows.start", "POST", "/api/workflows/{name}/start", "Start existing containers.",
    request=m.WorkflowStop, response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True,
    target="name")
STOP: Operation[m.WorkflowStop, m.WorkflowStatus] = Operation(
    "workflows.stop", "POST", "/api/workflows/{name}/stop",
    "Stop containers (SIGTERM, then SIGKILL after the timeout).", request=m.WorkflowStop,
    response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True, target="name")
RESTART: Operation[m.WorkflowStop, m.WorkflowStatus] = Operation(
    "workflows.restart", "POST", "/api/workflows/{name}/restart", "Restart containers.",
    request=m.WorkflowStop, response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True,
    target="name")
SCALE: Operation[m.WorkflowScale, m.WorkflowStatus] = Operation(
    "workflows.scale", "POST", "/api/workflows/{name}/scale",
    "Set a service's replicas; tasks whose spec did not change are kept.",
    request=m.WorkflowScale, response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True,
    target="name")
UPDATE: Operation[m.WorkflowUpdate, m.WorkflowInfo] = Operation(
    "workflows.update", "PUT", "/api/workflows/{name}",
    "Replace parts of a stored workflow; the next up recreates what changed.",
    request=m.WorkflowUpdate, response=m.WorkflowInfo, permission=_WORKFLOW, mutating=True,
    target="name")
ENV: Operation[m.EnvQuery, m.EnvExplanation] = Operation(
    "workflows.env", "GET", "/api/workflows/{name}/env",
    "Where a service's variable gets its value.", request=m.EnvQuery, response=m.EnvExplanation,
    permission=_WORKFLOW)
LOGS: Operation[m.WorkflowLogs, m.LogLine] = Operation(
    "workflows.logs", "GET", "/api/workflows/{name}/logs",
    "Log lines tagged with service and stream (NDJSON; follow to keep reading).",
    request=m.WorkflowLogs, response=m.LogLine, kind="stream", permission=_WORKFLOW)
EVENTS: Operation[m.WorkflowEventsQuery, m.WorkflowEvent] = Operation(
    "workflows.events", "GET", "/api/workflows/{name}/events",
    "Typed container events of the workflow as they happen (NDJSON).",
    request=m.WorkflowEventsQuery, response=m.WorkflowEvent, kind="stream", permission=_WORKFLOW)
PAUSE: Operation[m.WorkflowStop, m.WorkflowStatus] = Operation(
    "workflows.pause", "POST", "/api/workflows/{name}/pause", "Pause containers.",
    request=m.WorkflowStop, response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True,
    target="name")
UNPAUSE: Operation[m.WorkflowStop, m.WorkflowStatus] = Operation(
    "workflows.unpause", "POST", "/api/workflows/{name}/unpause", "Unpause containers.",
    request=m.WorkflowStop, response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True,
    target="name")
KILL: Operation[m.WorkflowKill, m.WorkflowStatus] = Operation(
    "workflows.kill", "POST", "/api/workflows/{name}/kill", "Send a signal to containers.",
    request=m.WorkflowKill, response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True,
    target="name")
EXEC: Operation[m.WorkflowExec, m.ExecResult] = Operation(
    "workflows.exec", "POST", "/api/workflows/{name}/exec",
    "Run a command in a service's container; its exit code and output.", request=m.WorkflowExec,
    response=m.ExecResult, permission=_WORKFLOW, mutating=True, idempotent=False, target="name")
STATS: Operation[m.WorkflowRef, m.WorkflowStats] = Operation(
    "workflows.stats", "GET", "/api/workflows/{name}/stats",
    "Per container: CPU, memory against its limit, network, block I/O.", request=m.WorkflowRef,
    response=m.WorkflowStats, permission=_WORKFLOW)
STATS_WATCH: Operation[m.WorkflowRef, m.WorkflowStats] = Operation(
    "workflows.stats.watch", "GET", "/api/workflows/{name}/stats/watch",
    "Stats samples, one after another (NDJSON).", request=m.WorkflowRef, response=m.WorkflowStats,
    kind="stream", permission=_WORKFLOW)
TOP: Operation[m.WorkflowRef, m.WorkflowTop] = Operation(
    "workflows.top", "GET", "/api/workflows/{name}/top",
    "Per running container: its processes, as `docker top` lists them.", request=m.WorkflowRef,
    response=m.WorkflowTop, permission=_WORKFLOW)
REMOVE: Operation[m.WorkflowRef, m.WorkflowInfo] = Operation(
    "workflows.remove", "DELETE", "/api/workflows/{name}", "Bring the workflow down and forget it.",
    request=m.WorkflowRef, response=m.WorkflowInfo, permission=_WORKFLOW, mutating=True,
    target="name")
# fmt: on
