"""What the Docker adapter answers: small typed records made from Docker's JSON.

They carry what dxflow reads and nothing of docker-py, so code above the adapter
never sees a docker-py object or one of Docker's raw dictionaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Container",
    "DockerEvent",
    "ExecCommand",
    "ExecOutcome",
    "HealthProbe",
    "LogChunk",
    "LogSource",
    "Network",
    "Processes",
    "ResourceUsage",
    "StreamName",
    "Volume",
]


@dataclass(frozen=True)
class Container:
    """A container as Docker lists it."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: str
    """created, running, paused, restarting, exited, dead ..."""
    status: str
    """Docker's words, e.g. "Up 3 minutes (healthy)" or "Exited (1) 2 seconds ago"."""
    ports: tuple[str, ...] = ()
    """Published ports as "ip:public->private/protocol"."""
    addresses: tuple[tuple[str, str], ...] = ()
    """(network, IP address) of each network it is attached to, by network name."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Container:
        ports = sorted(
            f"{p.get('IP', '')}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
            for p in row.get("Ports") or []
            if p.get("PublicPort")
        )
        return cls(
            id=row["Id"],
            name=(row.get("Names") or ["/?"])[0].lstrip("/"),
            labels=row.get("Labels") or {},
            state=row.get("State") or "unknown",
            status=row.get("Status") or "",
            ports=tuple(ports),
            addresses=_addresses(row),
        )


def _addresses(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    networks = (row.get("NetworkSettings") or {}).get("Networks") or {}
    found = []
    for name, endpoint in sorted(networks.items()):
        for key in ("IPAddress", "GlobalIPv6Address"):
            if (endpoint or {}).get(key):
                found.append((name, str(endpoint[key])))
    return tuple(found)


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    labels: Mapping[str, str]
    endpoints: tuple[str, ...] = ()
    """Names of the containers Docker lists as attached (a stale endpoint is not listed)."""

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Network:
        attached = attrs.get("Containers") or {}
        return cls(
            id=attrs.get("Id", ""),
            name=attrs.get("Name", ""),
            labels=attrs.get("Labels") or {},
            endpoints=tuple(sorted(e.get("Name", k[:12]) for k, e in attached.items())),
        )


@dataclass(frozen=True)
class Volume:
    name: str
    labels: Mapping[str, str]

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Volume:
        return cls(name=attrs.get("Name", ""), labels=attrs.get("Labels") or {})


@dataclass(frozen=True)
class DockerEvent:
    """One event of Docker's event stream (containers only, as dxflow asks)."""

    action: str
    actor: str
    """The container's id."""
    attributes: Mapping[str, str]
    """The container's labels, plus `name`, `image` and, for `die`, `exitCode`."""
    time_nano: int | None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> DockerEvent:
        actor = raw.get("Actor") or {}
        nanos = raw.get("timeNano")
        if nanos is None and raw.get("time") is not None:
            nanos = int(raw["time"]) * 1_000_000_000
        return cls(
            action=str(raw.get("Action") or raw.get("status") or ""),
            actor=str(actor.get("ID") or raw.get("id") or ""),
            attributes=actor.get("Attributes") or {},
            time_nano=nanos,
        )

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes an event unique, to drop the live copy of a replayed one."""
        return (self.time_nano, self.actor, self.action)


StreamName = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class LogSource:
    """One container's log; `tag` comes back with every line of it."""

    container: str
    tag: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogChunk:
    """One line (without its newline) of a `LogSource`, and the stream it was written to."""

    source: LogSource
    line: bytes
    stream: StreamName = "stdout"


@dataclass(frozen=True)
class HealthProbe:
    """One run of a container's health check, as Docker keeps it (State.Health.Log)."""

    exit_code: int | None
    output: str

    @classmethod
    def from_log(cls, entry: Mapping[str, Any]) -> HealthProbe:
        code = entry.get("ExitCode")
        return cls(exit_code=code if isinstance(code, int) else None,
                   output=str(entry.get("Output") or "").strip())  # fmt: skip


@dataclass(frozen=True)
class ExecOutcome:
    exit_code: int | None
    output: bytes


@dataclass(frozen=True)
class ExecCommand:
    """A `docker exec` command line for a PTY, and the environment that points the CLI at
    the daemon the adapter talks to (so a shell and its workflow share one daemon)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Processes:
    """A container's process table as `docker top` gives it: column titles and rows."""

    titles: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @classmethod
    def from_top(cls, raw: Mapping[str, Any] | None) -> Processes:
        raw = raw or {}
        rows = tuple(tuple(str(cell) for cell in row) for row in raw.get("Processes") or [])
        return cls(titles=tuple(str(t) for t in raw.get("Titles") or []), rows=rows)


@dataclass(frozen=True)
class ResourceUsage:
    """One sample of a container's resource use (Docker's one-shot stats)."""

    cpu_percent: float
    memory_usage: int
    memory_limit: int
    memory_percent: float
    network_rx: int
    network_tx: int
    block_read: int
    block_write: int
    pids: int | None

    @classmethod
    def from_stats(cls, raw: Mapping[str, Any]) -> ResourceUsage:
        cpu, pre = raw.get("cpu_stats", {}), raw.get("precpu_stats", {})
        used = cpu.get("cpu_usage", {}).get("total_usage", 0)
        cpu_delta = used - pre.get("cpu_usage", {}).get("total_usage", 0)
        system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        cpus = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
        memory = raw.get("memory_stats", {})
        usage = memory.get("usage", 0) - memory.get("stats", {}).get("cache", 0)
        limit = memory.get("limit", 0) or 1
        networks = raw.get("networks") or {}
        blkio = raw.get("blkio_stats", {}).get("io_service_bytes_recursive") or []
        cpu_percent = round(cpu_delta / system_delta * cpus * 100, 2) if system_delta > 0 else 0.0
        return cls(
            cpu_percent=cpu_percent,
            memory_usage=usage,
            memory_limit=limit,
            memory_percent=round(usage / limit * 100, 2),
            network_rx=sum(n.get("rx_bytes", 0) for n in networks.values()),
            network_tx=sum(n.get("tx_bytes", 0) for n in networks.values()),
            block_read=sum(e.get("value", 0) for e in blkio if e.get("op", "").lower() == "read"),
            block_write=sum(e.get("value", 0) for e in blkio if e.get("op", "").lower() == "write"),
            pids=raw.get("pids_stats", {}).get("current"),
        )
