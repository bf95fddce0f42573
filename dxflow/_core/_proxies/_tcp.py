"""The TCP data plane: a port of its own, bytes spliced both ways, optional TLS.

Each connection is admitted by the dispatcher (allow/deny, rate, connection cap), then
joined to a target picked by the pool (the next one when a connect fails). The bytes
go through asyncio protocols: the transport reads up to 256 KiB at a time and hands the
chunk straight to the other side's transport (no copy in between, no task per chunk);
when one side's send buffer fills up, the other side stops reading until it drains, so
memory per connection stays bounded whatever the speeds. A half-close is passed on
(EOF one way, the other still flows); when both ways are done both ends are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from functools import partial
from typing import Any

from ._contract import Admission, Client, LiveProxyLike, Refused, RegistryLike, TargetLike
from ._unix import connect_unix

__all__ = ["serve_tcp"]

log = logging.getLogger("dxflow.engine")

HIGH_WATER = 1 << 20
"""Bytes buffered toward one side before the other side stops being read."""


class _Side(asyncio.Protocol):
    """One end of a spliced connection: what it receives goes to its peer's transport."""

    def __init__(self, link: _Link, outbound: bool) -> None:
        self.link = link
        self.outbound = outbound
        """True for the target's side (its bytes go to the client: bytes_out)."""
        self.transport: Any = None
        self.peer: _Side | None = None
        self.carried = 0
        """Bytes it received and passed on."""
        self.early: list[bytes] = []
        """What arrived before the peer was joined (a loop may deliver data although
        reading was paused in connection_made: uvloop does)."""
        self.eof = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            self.early.append(data)
            self.transport.pause_reading()
            return
        if peer.transport is None or peer.transport.is_closing():
            return
        peer.transport.write(data)
        self.carried += len(data)  # the proxy's counters read it (see `Stats.flows`)

    def joined(self, peer: _Side) -> None:
        """Its peer is there: what came early goes first, then reading resumes."""
        self.peer = peer
        early, self.early = self.early, []
        for data in early:
            self.data_received(data)
        if self.eof:
            self.eof_received()
        elif not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None:
            return True  # passed on once joined
        if peer.transport is not None and not peer.transport.is_closing():
            if peer.eof or not peer.transport.can_write_eof():
                peer.transport.close()
            else:
                peer.transport.write_eof()  # half-close: the other way still flows
        return not peer.eof  # both ways done: close; else half-open

    # Backpressure: my send buffer is full, so stop reading what would go into it.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            with contextlib.suppress(RuntimeError):  # closing meanwhile
                self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if exc is None:
                peer.transport.close()  # what this side sent is flushed first, then the end
            else:
                peer.transport.abort()  # a reset: passed on as one


class _Link:
    """One client connection and what it is joined to."""

    def __init__(self, live: LiveProxyLike, registry: RegistryLike) -> None:
        self.live = live
        self.registry = registry
        self.client = _Side(self, outbound=False)
        self.target_side: _Side | None = None

    # The bytes as they flow, read by the proxy's counters while the connection is open
    # (no call per chunk on the hot path); added to them once it closes.
    @property
    def bytes_in(self) -> int:
        return self.client.carried

    @property
    def bytes_out(self) -> int:
        return self.target_side.carried if self.target_side is not None else 0

    async def run(self) -> None:
        transport = self.client.transport
        transport.pause_reading()  # nothing is read before a target is joined
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else "unix"
        try:
            admission = await self.registry.admit(self.live, Client(ip=ip, http=False))
        except Refused:
            transport.abort()  # TCP has no way to say why; the refusal is counted and audited
            return
        stats = self.live.stats
        stats.request()
        stats.opened()
        flows = getattr(stats, "flows", None)
        if flows is not None:
            flows.add(self)
        try:
            await self._joined(ip, admission)
        finally:
            if flows is not None:
                flows.discard(self)
            stats.transferred(self.bytes_in, self.bytes_out)
            stats.closed()
            admission.release()

    async def _joined(self, ip: str, admission: Admission) -> None:
        joined = await self._connect(ip)
        if joined is None:
            self.client.transport.abort()
            return
        target, started = joined
        sides = {self.client.lost, self.target_side.lost}  # type: ignore[union-attr]
        try:
            await asyncio.wait(sides, return_when=asyncio.FIRST_COMPLETED)
            # One side is gone; the other closes once what it was sent is flushed (a
            # peer that stopped reading has `timeout` seconds to take it).
            _, pending = await asyncio.wait(sides, timeout=self.live.timeout)
            if pending:
                self.close()
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            self.live.pool.end(target, ok=True, latency=started, bytes_in=self.bytes_in,
                               bytes_out=self.bytes_out)  # fmt: skip

    async def _connect(self, ip: str) -> tuple[TargetLike, float] | None:
        """Join a target: the pool's pick, the next on a failed connect; None: none left."""
        loop = asyncio.get_running_loop()
        tried: set[TargetLike] = set()
        while True:
            target = self.live.pool.pick(ip, frozenset(tried))
            if target is None:
                log.info("proxy %s: no target could take a connection from %s",
                         self.live.name, ip)  # fmt: skip
                refuse = getattr(self.live.stats, "refuse", None)
                if refuse is not None:
                    refuse("unavailable")
                return None
            tried.add(target)
            up = target.upstream
            side = _Side(self, outbound=True)
            made = partial(_same, side)
            self.live.pool.begin(target)
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.live.connect_timeout):
                    if up.opener is not None:  # an agent's, over its bridge
                        await loop.create_connection(made, sock=await up.opener())
                    elif up.scheme == "unix":
                        await loop.create_connection(made, sock=await connect_unix(up))
                    else:
                        assert up.host is not None and up.port is not None
                        await loop.create_connection(made, up.host, up.port)
            except (OSError, TimeoutError) as exc:
                self.live.pool.end(target, ok=False)
                failed = getattr(self.live.pool, "failed", None)
                if failed is not None:
                    failed(target, _why(up.label, exc))
                continue
            self.target_side = side
            side.joined(self.client)
            self.client.joined(side)
            return target, time.monotonic() - started

    def close(self) -> None:
        for side in (self.client, self.target_side):
            if side is not None and side.transport is not None:
                side.transport.abort()


def _same(side: _Side) -> _Side:
    return side


def _why(label: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"target {label} did not accept the connection in time"
    if isinstance(exc, ConnectionRefusedError):
        return f"target {label} refused the connection"
    return f"target {label}: {getattr(exc, 'strerror', None) or exc}"


async def serve_tcp(
    sock: socket.socket, live: LiveProxyLike, registry: RegistryLike,
    ssl_context: ssl.SSLContext | None,
) -> None:  # fmt: skip
    """Serve `sock` until cancelled, then close it and end every connection it holds."""
    loop = asyncio.get_running_loop()
    links: set[asyncio.Task[None]] = set()
    open_links: set[_Link] = set()

    def accepted() -> asyncio.Protocol:
        link = _Link(live, registry)
        original = link.client.connection_made

        def made(transport: Any) -> None:
            original(transport)
            open_links.add(link)
            task = loop.create_task(link.run(), name=f"dxflow proxy {live.name} connection")
            links.add(task)

            def done(task: asyncio.Task[None]) -> None:
                links.discard(task)
                open_links.discard(link)

            task.add_done_callback(done)

        link.client.connection_made = made  # type: ignore[method-assign]
        return link.client

    server = await loop.create_server(accepted, sock=sock, ssl=ssl_context, backlog=1024)
    try:
        await asyncio.Future()  # until cancelled
    finally:
        server.close()
        for link in list(open_links):
            link.close()
        for task in list(links):
            task.cancel()
        if links:
            await asyncio.wait(links, timeout=5)
