"""Active health checks: an HTTP GET of `health.path` (2xx or 3xx: healthy) or a TCP
connect, of every target at once, each within `health.timeout` seconds."""

from __future__ import annotations

import asyncio
import ssl

import anyio

from ..._models import ProxyHealth
from ._contract import Upstream
from ._live import LiveProxy
from ._pool import Target
from ._unix import connect_unix

__all__ = ["check_pool", "check_target", "client_context"]

_READ_LIMIT = 8192


def client_context(verify: bool) -> ssl.SSLContext:
    """How the engine speaks TLS to an `https://` target."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _open(up: Upstream, verify: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if up.opener is not None:  # an agent's, over its bridge
        return await asyncio.open_connection(sock=await up.opener())
    if up.scheme == "unix":
        return await asyncio.open_connection(sock=await connect_unix(up))
    context = client_context(verify) if up.scheme == "https" else None
    name = (up.server_name or up.host) if context is not None else None
    return await asyncio.open_connection(up.host, up.port, ssl=context, server_hostname=name)


async def check_target(up: Upstream, health: ProxyHealth, verify: bool, tcp: bool) -> str | None:
    """None when healthy, else why not."""
    writer = None
    try:
        with anyio.fail_after(health.timeout):
            reader, writer = await _open(up, verify)
            if health.path is None or tcp:
                return None
            host = up.server_name or up.host or "localhost"
            writer.write(
                f"GET {up.base}{health.path} HTTP/1.1\r\nHost: {host}\r\n"
                "User-Agent: dxflow-health\r\nConnection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
    except TimeoutError:
        return f"no answer within {health.timeout:g} s"
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    parts = line[:_READ_LIMIT].decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return f"not an HTTP answer: {line[:80]!r}"
    status = int(parts[1])
    return None if 200 <= status < 400 else f"GET {health.path} answered {status}"


async def _check(live: LiveProxy, target: Target, health: ProxyHealth) -> None:
    error = await check_target(target.upstream, health, live.verify, live.protocol == "tcp")
    target.checked(error is None, health.healthy, health.unhealthy, error)


async def check_pool(live: LiveProxy) -> None:
    """One round of checks of every target of `live`."""
    health = live.spec.health
    if health is None:
        return
    async with anyio.create_task_group() as group:
        for target in list(live.pool.targets):
            group.start_soon(_check, live, target, health)
