"""The Docker adapter: the only code that imports docker-py (see `_adapter`)."""

from ._adapter import DockerAdapter
from ._swarm import SwarmApi, SwarmNode, SwarmService, SwarmState, SwarmTask
from ._types import (
    Container,
    DockerEvent,
    ExecCommand,
    ExecOutcome,
    HealthProbe,
    LogChunk,
    LogSource,
    Network,
    Processes,
    ResourceUsage,
    Volume,
)

__all__ = [
    "Container",
    "DockerAdapter",
    "DockerEvent",
    "ExecCommand",
    "ExecOutcome",
    "HealthProbe",
    "LogChunk",
    "LogSource",
    "Network",
    "Processes",
    "ResourceUsage",
    "SwarmApi",
    "SwarmNode",
    "SwarmService",
    "SwarmState",
    "SwarmTask",
    "Volume",
]
