"""A minimal TCP relay in Python (a helper of benchmarks/bridges.py, not a benchmark).

    python benchmarks/_relay.py TARGET_HOST TARGET_PORT

Listens on a free loopback port (printed on the first line of stdout) and pipes each
connection to the target, bytes both ways, with nothing else: asyncio protocols on uvloop
(as the engine runs), `data_received` straight into the other side's `write`, reading
paused while the other side's buffer is full. Two of them in a row are what any relay
through a master and an agent written in Python costs at the least: the same two extra
processes and hops as a bridge, without framing, multiplexing or HTTP. The process ends
when its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


class _Pipe(asyncio.Protocol):
    def __init__(self) -> None:
        self.peer: _Pipe | None = None
        self.transport: Any = None
        self.early: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.peer.transport is None:
            self.early.append(data)
        else:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()

    def accepted() -> _Pipe:
        near = _Pipe()

        async def connect() -> None:
            try:
                _, far = await loop.create_connection(_Pipe, host, port)
            except OSError:
                near.transport.close()
                return
            near.peer, far.peer = far, near
            for data in near.early:
                far.transport.write(data)
            near.early.clear()

        task = loop.create_task(connect())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return near

    server = await loop.create_server(accepted, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(sys.argv[1], int(sys.argv[2])))
    except ImportError:
        asyncio.run(main(sys.argv[1], int(sys.argv[2])))
