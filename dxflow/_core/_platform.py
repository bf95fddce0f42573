"""The engine's own operations: health, ping, info and stats of the host."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
import psutil

from .._models import (
    AgentStats,
    CpuInfo,
    CpuStats,
    DiskInfo,
    DiskStats,
    EngineInfo,
    EngineStats,
    GpuInfo,
    Health,
    HostInfo,
    MemoryInfo,
    MemoryStats,
    NetworkStats,
    Pong,
    StatsWatch,
)
from .._version import __version__
from ._context import Context
from ._docker import DockerAdapter
from ._handlers import handles

__all__ = ["PlatformService"]

_PSEUDO_FS = {"squashfs", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs", "nsfs", "tracefs"}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _disks() -> Iterator[tuple[Any, Any]]:
    """Real mounts (one per device) with their usage."""
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _PSEUDO_FS or part.device in seen:
            continue
        seen.add(part.device)
        try:
            yield part, psutil.disk_usage(part.mountpoint)
        except OSError:
            continue


async def _gpus() -> list[GpuInfo]:
    if shutil.which("nvidia-smi") is None:
        return []
    query = "index,name,uuid,memory.total,driver_version"
    try:
        with anyio.fail_after(5):
            done = await anyio.run_process(
                ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                check=False,
            )
    except (OSError, TimeoutError):
        return []
    gpus = []
    for line in done.stdout.decode().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 5 and fields[0].isdigit():
            memory = int(float(fields[3]) * 2**20) if fields[3].replace(".", "").isdigit() else None
            gpus.append(
                GpuInfo(
                    index=int(fields[0]),
                    name=fields[1],
                    uuid=fields[2],
                    memory_total=memory,
                    driver=fields[4],
                )
            )
    return gpus


def _sample() -> EngineStats:
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    disks = [
        DiskStats(
            mount=part.mountpoint,
            total=usage.total,
            used=usage.used,
            free=usage.free,
            percent=usage.percent,
        )
        for part, usage in _disks()
    ]
    network = [
        NetworkStats(
            interface=name,
            bytes_sent=c.bytes_sent,
            bytes_recv=c.bytes_recv,
            packets_sent=c.packets_sent,
            packets_recv=c.packets_recv,
            errors_in=c.errin,
            errors_out=c.errout,
        )
        for name, c in sorted(psutil.net_io_counters(pernic=True).items())
    ]
    per_core = psutil.cpu_percent(percpu=True)
    return EngineStats(
        time=datetime.now(UTC),
        cpu=CpuStats(
            percent=sum(per_core) / max(len(per_core), 1),
            per_core=per_core,
            load_average=os.getloadavg(),
        ),
        memory=MemoryStats(
            total=memory.total,
            used=memory.used,
            available=memory.available,
            percent=memory.percent,
            swap_total=swap.total,
            swap_used=swap.used,
        ),
        disks=disks,
        network=network,
    )


class PlatformService:
    def __init__(self, engine_id: str, home: str, docker: DockerAdapter) -> None:
        self.engine_id = engine_id
        self._home = home
        self._docker = docker
        self._started = datetime.now(UTC)
        psutil.cpu_percent(percpu=True)  # the first reading primes the counters

    @handles("engine.health")
    def health(self, ctx: Context, request: None) -> Health:
        return Health(version=__version__)

    @handles("engine.ping")
    def ping(self, ctx: Context, request: None) -> Pong:
        assert ctx.identity is not None
        return Pong(engine_id=self.engine_id, identity=ctx.identity.name, time=datetime.now(UTC))

    @handles("engine.info")
    async def info(self, ctx: Context, request: None) -> EngineInfo:
        def host() -> tuple[list[DiskInfo], MemoryInfo]:
            disks = [
                DiskInfo(
                    mount=part.mountpoint,
                    device=part.device,
                    fstype=part.fstype,
                    total=usage.total,
                    used=usage.used,
                    free=usage.free,
                )
                for part, usage in _disks()
            ]
            memory = psutil.virtual_memory()
            return disks, MemoryInfo(total=memory.total, available=memory.available)

        disks, memory = await anyio.to_thread.run_sync(host)
        uname = platform.uname()
        return EngineInfo(
            engine_id=self.engine_id,
            name=socket.gethostname(),
            version=__version__,
            started_at=self._started,
            home=self._home,
            host=HostInfo(
                hostname=uname.node,
                os=f"{uname.system} {_os_release()}".strip(),
                kernel=uname.release,
                arch=uname.machine,
                python=sys.version.split()[0],
            ),
            cpu=CpuInfo(
                count=psutil.cpu_count() or 1,
                physical=psutil.cpu_count(logical=False),
                model=_cpu_model(),
            ),
            memory=memory,
            disks=disks,
            gpus=await _gpus(),
            docker=await self._docker.info(),
        )

    agents: Callable[[], list[AgentStats]] = staticmethod(list)
    """This engine's agents, when it is a master (set by the engine)."""

    async def _sample(self) -> EngineStats:
        sample = await anyio.to_thread.run_sync(_sample)
        agents = self.agents()
        return sample.model_copy(update={"agents": agents}) if agents else sample

    @handles("engine.stats")
    async def stats(self, ctx: Context, request: None) -> EngineStats:
        return await self._sample()

    @handles("engine.stats.watch")
    async def watch(self, ctx: Context, request: StatsWatch) -> AsyncIterator[EngineStats]:
        sent = 0
        while request.count is None or sent < request.count:
            started = time.monotonic()
            yield await self._sample()
            sent += 1
            if request.count is None or sent < request.count:
                await anyio.sleep(max(0.0, request.interval - (time.monotonic() - started)))


def _os_release() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        return ""
