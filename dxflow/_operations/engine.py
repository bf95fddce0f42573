"""Engine: health, the authenticated ping, host information and stats."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoRequest, Operation

__all__ = ["HEALTH", "INFO", "PING", "STATS", "STATS_WATCH"]

_PLATFORM = Permission.PLATFORM

# fmt: off
HEALTH: Operation[NoRequest, m.Health] = Operation(
    "engine.health", "GET", "/api/health", "Is the engine up?", response=m.Health, public=True)
PING: Operation[NoRequest, m.Pong] = Operation(
    "engine.ping", "GET", "/api/ping", "Authenticated round trip.", response=m.Pong)
INFO: Operation[NoRequest, m.EngineInfo] = Operation(
    "engine.info", "GET", "/api/info",
    "Identity, version, host, CPU, memory, disks, GPUs and Docker.", response=m.EngineInfo,
    permission=_PLATFORM)
STATS: Operation[NoRequest, m.EngineStats] = Operation(
    "engine.stats", "GET", "/api/stats",
    "CPU per core, memory, disk per mount, network per interface.", response=m.EngineStats,
    permission=_PLATFORM)
STATS_WATCH: Operation[m.StatsWatch, m.EngineStats] = Operation(
    "engine.stats.watch", "GET", "/api/stats/watch", "A stream of stats samples (NDJSON).",
    request=m.StatsWatch, response=m.EngineStats, kind="stream", permission=_PLATFORM)
# fmt: on
