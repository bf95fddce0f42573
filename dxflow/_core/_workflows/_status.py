"""A workflow's status and its containers' stats, from what Docker reports."""

from __future__ import annotations

import re
from typing import Any

from ..._models import ContainerState, ContainerStats, ServiceStatus, WorkflowStatus
from ._spec import HASH_LABEL, NUMBER_LABEL, SERVICE_LABEL

__all__ = ["container_state", "container_stats", "workflow_status"]

_EXITED = re.compile(r"Exited \((-?\d+)\)")


def container_state(row: dict[str, Any]) -> ContainerState:
    labels = row.get("Labels") or {}
    status = row.get("Status") or ""
    health = None
    for word in ("unhealthy", "healthy", "health: starting"):
        if f"({word})" in status:
            health = "starting" if word == "health: starting" else word
            break
    exited = _EXITED.search(status)
    ports = [
        f"{p.get('IP', '')}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
        for p in row.get("Ports") or []
        if p.get("PublicPort")
    ]
    return ContainerState(
        id=row["Id"],
        name=(row.get("Names") or ["/?"])[0].lstrip("/"),
        number=int(labels.get(NUMBER_LABEL, "1")),
        state=row.get("State", "unknown"),
        health=health,
        exit_code=int(exited.group(1)) if exited else None,
        ports=sorted(ports),
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


def workflow_status(name: str, services: list[str], rows: list[dict[str, Any]]) -> WorkflowStatus:
    """Per service and overall: running, partial, exited, stopped, paused or missing."""
    by_service: dict[str, list[ContainerState]] = {s: [] for s in services}
    for row in rows:
        service = (row.get("Labels") or {}).get(SERVICE_LABEL, "?")
        by_service.setdefault(service, []).append(container_state(row))
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
    states = {s.state for s in statuses}
    overall = (
        "missing"
        if states <= {"missing"}
        else "running"
        if states == {"running"}
        else ("stopped" if states <= {"exited", "stopped", "missing"} else "partial")
    )
    return WorkflowStatus(name=name, state=overall, services=statuses)


def container_stats(service: str, name: str, raw: dict[str, Any]) -> ContainerStats:
    cpu, pre = raw.get("cpu_stats", {}), raw.get("precpu_stats", {})
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
    memory = raw.get("memory_stats", {})
    usage = memory.get("usage", 0) - memory.get("stats", {}).get("cache", 0)
    limit = memory.get("limit", 0) or 1
    networks = raw.get("networks") or {}
    blkio = raw.get("blkio_stats", {}).get("io_service_bytes_recursive") or []
    return ContainerStats(
        service=service,
        container=name,
        cpu_percent=round(cpu_delta / system_delta * cpus * 100, 2) if system_delta > 0 else 0.0,
        memory_usage=usage,
        memory_limit=limit,
        memory_percent=round(usage / limit * 100, 2),
        network_rx=sum(n.get("rx_bytes", 0) for n in networks.values()),
        network_tx=sum(n.get("tx_bytes", 0) for n in networks.values()),
        block_read=sum(e.get("value", 0) for e in blkio if e.get("op", "").lower() == "read"),
        block_write=sum(e.get("value", 0) for e in blkio if e.get("op", "").lower() == "write"),
        pids=raw.get("pids_stats", {}).get("current"),
    )
