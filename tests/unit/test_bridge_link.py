"""The bridge link: streams multiplexed over one carrier, flow control, heartbeats.

Over in-memory carriers, and a few over a real loopback WebSocket (the link's own
`_socket` on both sides, as master and agent speak it). Behaviour, never timing, is
asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import pytest

from dxflow._core._bridges import _frames
from dxflow._core._bridges._carriers import _MemoryCarrier
from dxflow._core._bridges._link import (
    Carrier,
    Link,
    LinkError,
    Stream,
    StreamReset,
    memory_pair,
    splice,
)
from dxflow._core._bridges._socket import dial

from ._upgrade import upgrade_server

pytestmark = pytest.mark.anyio

OnOpen = Callable[[Stream, dict[str, Any]], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo(stream: Stream, target: dict[str, Any]) -> None:
    await stream.accept()
    while data := await stream.read():
        await stream.write(data)
    await stream.end()


async def read_all(stream: Stream) -> bytes:
    parts = []
    while data := await stream.read():
        parts.append(data)
    return b"".join(parts)


async def exchange(stream: Stream, data: bytes, pieces: int = 1) -> bytes:
    """Writes `data` (in `pieces`) then END while reading the echo back, concurrently."""

    async def send() -> None:
        step = -(-len(data) // pieces) or 1
        for start in range(0, len(data), step):
            await stream.write(data[start : start + step])
            await asyncio.sleep(0)
        await stream.end()

    sender = asyncio.create_task(send())
    got = await read_all(stream)
    await sender
    await stream.aclose()
    return got


async def until(condition: Callable[[], bool]) -> None:
    # Polling: the conditions are the link's internals, which have no events to wait on.
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


@dataclass
class Pair:
    master: Link
    agent: Link
    runs: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def linked(
    on_open: OnOpen | None = echo,
    carriers: tuple[Carrier, Carrier] | None = None,
    master: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
) -> AsyncIterator[Pair]:
    one, two = carriers or memory_pair()
    pair = Pair(
        Link(one, side="master", **(master or {})),
        Link(two, side="agent", on_open=on_open, **(agent or {})),
    )
    pair.runs = [asyncio.create_task(pair.master.run()), asyncio.create_task(pair.agent.run())]
    try:
        yield pair
    finally:
        await pair.master.close()
        await pair.agent.close()
        await asyncio.gather(*pair.runs, return_exceptions=True)


class Raw:
    """The other end of a carrier, driven frame by frame."""

    def __init__(self, carrier: Carrier) -> None:
        self.carrier = carrier

    async def send(self, kind: int, stream_id: int, payload: bytes = b"") -> None:
        await self.carrier.send(_frames.encode(kind, stream_id, payload))

    async def expect(self, kind: int) -> tuple[int, bytes]:
        """Skips frames up to the first of `kind`: (stream id, payload)."""
        while True:
            got, stream_id, payload = _frames.decode(await self.carrier.recv())
            if got == kind:
                return stream_id, bytes(payload)


# -- streams over memory --------------------------------------------------------------------


async def test_open_accept_echo_round_trip() -> None:
    targets: list[dict[str, Any]] = []

    async def on_open(stream: Stream, target: dict[str, Any]) -> None:
        targets.append(target)
        await echo(stream, target)

    with anyio.fail_after(10):
        async with linked(on_open) as pair:
            stream = await pair.master.open({"unix": "/run/engine.sock"})
            assert stream.id == 1
            assert await exchange(stream, b"hello") == b"hello"
            assert targets == [{"unix": "/run/engine.sock"}]
            assert (await pair.master.open({})).id == 3
            await until(lambda: pair.agent.open_streams == 1)
            assert pair.master.open_streams == 1  # the second one, still open


async def test_refused_open_raises_the_reason() -> None:
    async def refuse(stream: Stream, target: dict[str, Any]) -> None:
        raise ConnectionRefusedError(f"connection refused to {target['host']}:9")

    with anyio.fail_after(10):
        async with linked(refuse) as pair:
            with pytest.raises(StreamReset) as caught:
                await pair.master.open({"host": "127.0.0.1"})
            assert caught.value.reason == "connection refused to 127.0.0.1:9"
            assert pair.master.open_streams == 0
        async with linked(None) as pair:
            with pytest.raises(StreamReset, match="this side accepts no streams"):
                await pair.master.open({})

    async def forget(stream: Stream, target: dict[str, Any]) -> None:
        pass

    with anyio.fail_after(10):
        async with linked(forget) as pair:
            with pytest.raises(StreamReset, match="on_open returned without accepting"):
                await pair.master.open({})


async def test_open_times_out_and_the_late_stream_is_reset() -> None:
    late: list[Stream] = []

    async def slow(stream: Stream, target: dict[str, Any]) -> None:
        late.append(stream)
        await asyncio.sleep(3600)

    with anyio.fail_after(10):
        async with linked(slow) as pair:
            with pytest.raises(TimeoutError):
                await pair.master.open({}, timeout=0.05)
            await until(lambda: pair.agent.open_streams == 0)
            with pytest.raises(StreamReset, match="the opener gave up"):
                await late[0].accept()


async def test_fifty_concurrent_streams_arrive_intact() -> None:
    async def one(index: int, master: Link) -> None:
        stream = await master.open({"n": index})
        data = os.urandom(1000 + index * 997)
        assert await exchange(stream, data, pieces=7) == data

    with anyio.fail_after(30):
        async with linked(master={"window": 4096}, agent={"window": 4096}) as pair:
            await asyncio.gather(*(one(i, pair.master) for i in range(50)))
            assert pair.master.open_streams == 0
            await until(lambda: pair.agent.open_streams == 0)


async def test_a_big_stream_does_not_hold_up_another() -> None:
    total = 64 << 20
    received = 0
    halfway = asyncio.Event()

    async def big(stream: Stream) -> None:
        nonlocal received

        async def send() -> None:
            block = bytes(1 << 20)
            for _ in range(total >> 20):
                await stream.write(block)
            await stream.end()

        sender = asyncio.create_task(send())
        while data := await stream.read():
            received += len(data)
            if received >= 4 << 20:
                halfway.set()
        await sender

    with anyio.fail_after(60):
        async with linked(master={"interval": 0.01}, agent={"facts": lambda: {"up": True}}) as p:
            transfer = asyncio.create_task(big(await p.master.open({"big": True})))
            await halfway.wait()
            small = await p.master.open({"small": True})
            assert await exchange(small, b"keystroke") == b"keystroke"
            assert received < total  # the small one went through while the big one flowed
            await transfer
            assert received == total
            assert p.master.peer_facts == {"up": True}


class GatedCarrier:
    """Sends block until the test lets them through; records what went out, in order."""

    def __init__(self, inner: Carrier) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent: list[tuple[int, int]] = []
        self.data_bytes = 0

    async def send(self, *parts: bytes | memoryview) -> None:
        await self.gate.wait()
        data = b"".join(parts)
        kind, stream_id, _ = _frames.decode(data)
        self.sent.append((kind, stream_id))
        if kind == _frames.DATA:
            self.data_bytes += len(data) - _frames.HEADER_SIZE
        await self.inner.send(data)

    async def recv(self) -> bytes:
        return await self.inner.recv()

    async def close(self) -> None:
        await self.inner.close()


async def test_control_frames_go_ahead_of_queued_data() -> None:
    one, two = memory_pair()
    gated = GatedCarrier(one)
    with anyio.fail_after(10):
        async with linked(carriers=(gated, two)) as pair:
            first, second = await pair.master.open({}), await pair.master.open({})
            gated.gate.clear()
            writes = [
                asyncio.create_task(first.write(b"a" * (_frames.MAX_DATA + 1000))),  # 2 frames
                asyncio.create_task(second.write(b"b" * (_frames.MAX_DATA + 1000))),
            ]
            await until(lambda: len(pair.master._turns) == 1)  # the other holds the gate
            await pair.master.send_hello({"name": "after the data"})
            sent_before = len(gated.sent)
            gated.gate.set()
            await asyncio.gather(*writes)
            order = gated.sent[sent_before:]
            hello = order.index((_frames.HELLO, 0))
            assert hello == 1  # behind the one DATA frame on its way, ahead of all the rest
            assert {kind for kind, _ in order[:hello]} == {_frames.DATA}
            assert sum(kind == _frames.DATA for kind, _ in order[hello:]) == 3


async def test_a_reader_that_does_not_read_stalls_only_its_writer() -> None:
    window = 256 << 10
    held: list[Stream] = []

    async def hold(stream: Stream, target: dict[str, Any]) -> None:
        held.append(stream)
        await stream.accept()

    one, two = memory_pair()
    counted = GatedCarrier(one)
    with anyio.fail_after(20):
        async with linked(hold, (counted, two), agent={"window": window}) as pair:
            stream = await pair.master.open({})
            data = os.urandom(4 * window)
            writer = asyncio.create_task(stream.write(data))

            await until(lambda: stream._writer is not None)  # blocked, waiting for credit
            for _ in range(50):
                await asyncio.sleep(0)
            assert not writer.done()
            assert window <= counted.data_bytes <= window + _frames.MAX_DATA
            other = await pair.master.open({})  # the link and other streams go on
            await other.write(b"still flowing")
            assert await held[1].read() == b"still flowing"
            got = b""
            while len(got) < len(data):
                got += await held[0].read()
            await writer
            assert got == data


async def test_aclose_drops_unread_bytes_so_the_writer_can_finish() -> None:
    window = 64 << 10
    done = asyncio.Event()

    async def flood(stream: Stream, target: dict[str, Any]) -> None:
        await stream.accept()
        await stream.write(bytes(8 * window))  # far more than the reader's window
        await stream.end()
        done.set()

    with anyio.fail_after(10):
        async with linked(flood, master={"window": window}) as pair:
            stream = await pair.master.open({})
            assert await stream.read(10) == bytes(10)
            await stream.aclose()
            await done.wait()
            await until(lambda: pair.master.open_streams == pair.agent.open_streams == 0)


async def test_a_peer_that_ignores_credit_is_reset() -> None:
    streams: list[Stream] = []

    async def keep(stream: Stream, target: dict[str, Any]) -> None:
        streams.append(stream)
        await stream.accept()

    raw_side, agent_side = memory_pair()
    raw = Raw(raw_side)
    agent = Link(agent_side, side="agent", on_open=keep, window=1024)
    run = asyncio.create_task(agent.run())
    with anyio.fail_after(10):
        await raw.send(_frames.OPEN, 1, b"{}")
        assert (await raw.expect(_frames.ACCEPT))[0] == 1
        await raw.send(_frames.DATA, 1, bytes(1000))
        await raw.send(_frames.DATA, 1, bytes(100))
        assert await raw.expect(_frames.RESET) == (1, b"flow control violated")
        with pytest.raises(StreamReset, match="flow control violated"):
            await streams[0].read()
        assert agent.open_streams == 0
        assert not agent.closed  # one stream's fault, not the link's
        await raw.send(_frames.OPEN, 3, b"{}")
        assert (await raw.expect(_frames.ACCEPT))[0] == 3
        await agent.close()
        await run


async def test_half_close_lets_the_other_direction_go_on() -> None:
    async def answer(stream: Stream, target: dict[str, Any]) -> None:
        await stream.accept()
        question = await read_all(stream)  # the master's END
        await stream.write(b"answer to " + question)
        await stream.write(b", twice")
        await stream.end()

    with anyio.fail_after(10):
        async with linked(answer) as pair:
            stream = await pair.master.open({})
            await stream.write(b"question")
            await stream.end()
            await stream.end()  # once only
            assert await read_all(stream) == b"answer to question, twice"
            assert await stream.read() == b""
            await stream.aclose()
            assert pair.master.open_streams == 0
            await until(lambda: pair.agent.open_streams == 0)


@pytest.mark.parametrize("resetter", ["master", "agent"])
async def test_reset_from_either_side(resetter: str) -> None:
    agent_streams: list[Stream] = []
    resets: list[str] = []

    async def on_open(stream: Stream, target: dict[str, Any]) -> None:
        agent_streams.append(stream)
        await stream.accept()
        if resetter == "agent":
            await stream.reset("agent says no")
            return
        try:
            await stream.read()
        except StreamReset as exc:
            resets.append(exc.reason)

    with anyio.fail_after(10):
        async with linked(on_open) as pair:
            stream = await pair.master.open({})
            if resetter == "master":
                await stream.reset("master says no")
                await until(lambda: resets == ["master says no"])
                with pytest.raises(StreamReset):
                    await stream.write(b"x")
            else:
                with pytest.raises(StreamReset, match="agent says no"):
                    await stream.read()
                with pytest.raises(StreamReset, match="agent says no"):
                    await stream.write(b"late")
            assert pair.master.open_streams == 0
            await until(lambda: pair.agent.open_streams == 0)


@pytest.mark.parametrize("clean", [False, True])
async def test_the_link_dying_fails_pending_reads_and_writes(clean: bool) -> None:
    held: list[Stream] = []

    async def hold(stream: Stream, target: dict[str, Any]) -> None:
        held.append(stream)
        await stream.accept()
        await asyncio.sleep(3600)

    one, two = memory_pair()
    with anyio.fail_after(10):
        async with linked(hold, (one, two), agent={"window": 1024}) as pair:
            reading = await pair.master.open({})
            writing = await pair.master.open({})
            pending = [
                asyncio.create_task(reading.read()),
                asyncio.create_task(writing.write(bytes(10_000))),  # more than the window
                asyncio.create_task(held[0].read()),
            ]
            await until(lambda: writing._writer is not None and reading._reader is not None)
            if clean:
                await pair.master.close("going away")
            else:
                cast(_MemoryCarrier, one).abort("cable cut")
            for task in pending:
                with pytest.raises(LinkError):
                    await task
            results = await asyncio.gather(*pair.runs, return_exceptions=True)
            if clean:
                assert results == [None, None]  # a clean close: run() returns
            else:
                assert all(isinstance(r, LinkError) and "cable cut" in str(r) for r in results)
            assert pair.master.closed and pair.agent.closed
            assert pair.master.open_streams == pair.agent.open_streams == 0
            with pytest.raises(LinkError):
                await pair.master.open({})


async def test_the_agent_closes_a_link_without_heartbeats() -> None:
    now = [1000.0]
    raw_side, agent_side = memory_pair()
    agent = Link(agent_side, side="agent", interval=0.01, clock=lambda: now[0])
    with anyio.fail_after(10):
        run = asyncio.create_task(agent.run())
        for _ in range(5):
            await asyncio.sleep(0.02)
        assert not agent.closed  # the clock stood still
        await Raw(raw_side).send(_frames.PING, 0, struct.pack("!d", 1.0))
        now[0] += 1.0
        with pytest.raises(LinkError, match="no heartbeat from the master for 1 s"):
            await run


async def test_pings_keep_the_agent_alive_and_bring_facts_and_rtt() -> None:
    load = [0.5]
    with anyio.fail_after(10):
        async with linked(
            master={"interval": 0.01}, agent={"interval": 0.01, "facts": lambda: {"load": load[0]}}
        ) as pair:
            await until(lambda: pair.master.peer_facts == {"load": 0.5})
            assert pair.master.rtt is not None and pair.master.rtt >= 0
            load[0] = 2.5
            await until(lambda: pair.master.peer_facts == {"load": 2.5})
            assert not pair.agent.closed and not pair.master.closed


async def test_hello_reaches_the_peer() -> None:
    with anyio.fail_after(10):
        async with linked() as pair:
            await pair.agent.send_hello({"agent": "a1", "version": 1})
            await until(lambda: pair.master.hello is not None)
            assert pair.master.hello == {"agent": "a1", "version": 1}


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"\x03\x00", "shorter than its 5-byte header"),
        (struct.pack("!BI", 42, 1), "unknown frame type 42"),
        (struct.pack("!BI", _frames.PING, 3) + bytes(8), "PING on stream 3"),
        (struct.pack("!BI", _frames.DATA, 0) + b"x", "DATA on stream 0"),
        (struct.pack("!BI", _frames.CREDIT, 1) + b"xy", "CREDIT payload of 2 bytes"),
        (struct.pack("!BI", _frames.OPEN, 1) + b"[1]", "OPEN payload is not a JSON object"),
        (struct.pack("!BI", _frames.OPEN, 2) + b"{}", "OPEN of stream 2"),
        (struct.pack("!BI", _frames.PING, 0) + b"1", "PING payload of 1 bytes"),
    ],
)
async def test_a_malformed_frame_closes_the_link(frame: bytes, problem: str) -> None:
    raw_side, agent_side = memory_pair()
    agent = Link(agent_side, side="agent", on_open=echo)
    with anyio.fail_after(10):
        run = asyncio.create_task(agent.run())
        await raw_side.send(frame)
        with pytest.raises(LinkError, match=f"malformed frame: .*{problem}"):
            await run
        assert agent.closed


async def test_splice_joins_a_stream_to_a_local_connection() -> None:
    async def local_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # up to EOF: splice passes the half close on
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(local_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def connect_local(stream: Stream, target: dict[str, Any]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", target["port"])
        await stream.accept()
        await splice(stream, reader, writer)

    with anyio.fail_after(10):
        async with server, linked(connect_local) as pair:
            stream = await pair.master.open({"port": port})
            assert await exchange(stream, b"x" * 300_000, pieces=5) == b"X" * 300_000
            await until(lambda: pair.agent.open_streams == 0 and not pair.agent._handlers)
            with pytest.raises(StreamReset, match=r"refused|Connect call failed"):
                await pair.master.open({"port": dead_port()})


@pytest.mark.parametrize("resetter", ["master", "local"])
async def test_splice_ends_both_sides_on_a_reset_or_a_local_error(resetter: str) -> None:
    local_ends: list[bytes] = []
    outcomes: list[BaseException | None] = []

    async def local(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ready")
        if resetter == "local":  # a connection reset, not a close: linger 0 sends RST
            linger = struct.pack("ii", 1, 0)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            writer.transport.abort()
            return
        with contextlib.suppress(ConnectionError):
            local_ends.append(await reader.read())  # b"" once splice gave up on the stream
        writer.close()

    server = await asyncio.start_server(local, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def connect_local(stream: Stream, target: dict[str, Any]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await stream.accept()
        try:
            await splice(stream, reader, writer)
            outcomes.append(None)
        except BaseException as exc:
            outcomes.append(exc)
            raise

    with anyio.fail_after(10):
        async with server, linked(connect_local) as pair:
            stream = await pair.master.open({})
            if resetter == "master":
                assert await stream.read() == b"ready"
                await stream.reset("enough")
                await until(lambda: local_ends == [b""])
            else:
                with pytest.raises(StreamReset):
                    while await stream.read():
                        pass
            await until(lambda: outcomes == [None])  # splice returned, it did not raise
            await until(lambda: pair.agent.open_streams == 0 and not pair.agent._handlers)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- over a real loopback WebSocket ---------------------------------------------------------


@contextlib.asynccontextmanager
async def over_websocket(
    on_open: OnOpen | None = echo, **agent: Any
) -> AsyncIterator[tuple[Link, Link]]:
    masters: asyncio.Queue[Link] = asyncio.Queue()
    runs: list[asyncio.Task[None]] = []

    def serve_master(socket: Any) -> None:
        link = Link(socket, side="master")
        masters.put_nowait(link)

        async def run() -> None:
            with contextlib.suppress(LinkError):
                await link.run()

        runs.append(asyncio.create_task(run()))

    async with upgrade_server(serve_master) as port:
        conn = await dial(f"ws://127.0.0.1:{port}/bridge", {})
        link = Link(conn, side="agent", on_open=on_open, **agent)
        run = asyncio.create_task(link.run())
        master = await masters.get()
        try:
            yield master, link
        finally:
            await master.close()
            with contextlib.suppress(LinkError):
                await run
            await asyncio.gather(*runs)


async def test_websocket_round_trip_refusal_and_facts() -> None:
    async def on_open(stream: Stream, target: dict[str, Any]) -> None:
        if target.get("refuse"):
            raise ConnectionRefusedError("connection refused to 127.0.0.1:9")
        await echo(stream, target)

    with anyio.fail_after(20):
        async with over_websocket(on_open, facts=lambda: {"load": [0.1, 0.2]}) as (master, agent):
            stream = await master.open({"unix": "/x"})
            assert await exchange(stream, b"over the wire") == b"over the wire"
            with pytest.raises(StreamReset, match=r"connection refused to 127\.0\.0\.1:9"):
                await master.open({"refuse": True})
            await agent.send_hello({"agent": "a1"})
            await until(lambda: master.hello == {"agent": "a1"})
            await until(lambda: master.rtt is not None)
            assert master.peer_facts == {"load": [0.1, 0.2]}


async def test_websocket_many_streams_and_a_big_one() -> None:
    async def one(master: Link, size: int) -> None:
        data = os.urandom(size)
        assert await exchange(await master.open({}), data, pieces=3) == data

    with anyio.fail_after(30):
        async with over_websocket() as (master, _agent):
            await asyncio.gather(one(master, 8 << 20), *(one(master, 5000) for _ in range(20)))
            assert master.open_streams == 0


async def test_websocket_agent_run_ends_cleanly_when_the_master_closes() -> None:
    with anyio.fail_after(20):
        async with over_websocket() as (master, agent):
            stream = await master.open({})
            await master.close("bye")
            with pytest.raises(LinkError):
                await stream.read()
            await until(lambda: agent.closed)
