"""Models of the engine's own operations: health, ping, info, stats."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ._base import Request, Response

__all__ = [
    "AgentStats",
    "CpuInfo",
    "CpuStats",
    "DiskInfo",
    "DiskStats",
    "DockerInfo",
    "EngineInfo",
    "EngineStats",
    "GpuInfo",
    "Health",
    "HostInfo",
    "MemoryInfo",
    "MemoryStats",
    "NetworkStats",
    "Pong",
    "StatsWatch",
]


class Health(Response):
    status: str = "ok"
    version: str


class Pong(Response):
    engine_id: str
    identity: str
    time: datetime


class HostInfo(Response):
    hostname: str
    os: str
    kernel: str
    arch: str
    python: str


class CpuInfo(Response):
    count: int
    physical: int | None = None
    model: str | None = None


class MemoryInfo(Response):
    total: int
    available: int


class DiskInfo(Response):
    mount: str
    device: str
    fstype: str
    total: int
    used: int
    free: int


class GpuInfo(Response):
    index: int
    name: str
    uuid: str | None = None
    memory_total: int | None = None
    driver: str | None = None


class DockerInfo(Response):
    available: bool
    version: str | None = None
    api_version: str | None = None
    error: str | None = None


class EngineInfo(Response):
    engine_id: str
    name: str
    version: str
    started_at: datetime
    home: str
    host: HostInfo
    cpu: CpuInfo
    memory: MemoryInfo
    disks: list[DiskInfo]
    gpus: list[GpuInfo]
    docker: DockerInfo


class CpuStats(Response):
    percent: float
    per_core: list[float]
    load_average: tuple[float, float, float]


class MemoryStats(Response):
    total: int
    used: int
    available: int
    percent: float
    swap_total: int
    swap_used: int


class DiskStats(Response):
    mount: str
    total: int
    used: int
    free: int
    percent: float


class NetworkStats(Response):
    interface: str
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errors_in: int
    errors_out: int


class AgentStats(Response):
    """An agent of this engine (a master), from its last heartbeat."""

    name: str
    status: str
    labels: dict[str, str] = {}
    last_seen: datetime | None = None
    rtt: float | None = None
    cpus: int | None = None
    load: float | None = None
    memory: int | None = None
    memory_available: int | None = None
    gpus: int = 0


class EngineStats(Response):
    time: datetime
    cpu: CpuStats
    memory: MemoryStats
    disks: list[DiskStats]
    network: list[NetworkStats]
    agents: list[AgentStats] = []
    """A master's agents, each labelled by its name (empty on other engines)."""


class StatsWatch(Request):
    interval: float = Field(1.0, ge=0.1, le=3600, description="seconds between samples")
    count: int | None = Field(None, ge=1, description="stop after this many samples")
