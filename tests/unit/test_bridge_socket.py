"""The link's own WebSocket (`_bridges._socket`) against the `websockets` library, both ways.

The interop peer is a real `websockets` server or client on loopback, so what is checked
is the RFC 6455 wire, not this module's agreement with itself: message sizes at each
length encoding, masking in each direction, fragments, pings, the close handshake, and
each protocol violation closing with its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from dxflow._core._bridges._carriers import LinkError
from dxflow._core._bridges._socket import (
    FIRST_CAPACITY,
    FrameSocket,
    accept_key,
    dial,
    handshake_error,
)

from ._upgrade import upgrade_server

pytestmark = pytest.mark.anyio
SIZES = [0, 1, 125, 126, 65535, 65536, (256 << 10) + 5, 1 << 20]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def websockets_echo(**options: Any) -> AsyncIterator[str]:
    async def echo(conn: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in conn:
                await conn.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None, **options) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/link"


def test_accept_key_is_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, 1.3


def test_handshake_errors_name_the_missing_header() -> None:
    good = [(b"upgrade", b"websocket"), (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]  # fmt: skip
    assert handshake_error(good) is None
    assert "Upgrade" in (handshake_error(good[1:]) or "")
    assert "Version" in (handshake_error([good[0], good[2]]) or "")
    assert "Key" in (handshake_error([*good[:2], (b"sec-websocket-key", b"short")]) or "")


async def test_client_to_a_websockets_server_every_length_encoding() -> None:
    with anyio.fail_after(20):
        async with websockets_echo(max_size=None) as url:
            conn = await dial(url, {"X-Test": "1"})
            for size in SIZES:
                data = os.urandom(size)
                await conn.send(data)
                assert await conn.recv() == data
            await conn.close()
            with pytest.raises(LinkError) as ended:
                await conn.recv()
            assert ended.value.clean


async def test_a_message_sent_in_parts_is_masked_where_each_part_falls() -> None:
    # a link frame's 5-byte header and its payload go apart: the payload's mask is rotated
    with anyio.fail_after(20):
        async with websockets_echo(max_size=None) as url:
            conn = await dial(url, {})
            for sizes in [(5, 1000), (1, 2, 3, 70000), (0, 7), (4, 4)]:
                parts = [os.urandom(n) for n in sizes]
                await conn.send(*parts[:-1], memoryview(parts[-1]))
                assert await conn.recv() == b"".join(parts)
            await conn.close()


async def test_client_answers_the_servers_pings() -> None:
    # websockets closes a connection whose pings go unanswered within ping_timeout
    with anyio.fail_after(20):
        async with websockets_echo(ping_interval=0.05, ping_timeout=0.2) as url:
            conn = await dial(url, {})
            await asyncio.sleep(0.8)
            await conn.send(b"still here")
            assert await conn.recv() == b"still here"
            await conn.close()


async def test_a_refusal_carries_the_status_and_the_body() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"error": {"code": "permission_denied"}}'
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    with anyio.fail_after(20):
        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(LinkError, match=r"HTTP 403: .*permission_denied"):
                await dial(f"ws://127.0.0.1:{port}/link", {})


async def test_a_wrong_accept_key_is_refused() -> None:
    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n")  # fmt: skip
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    with anyio.fail_after(20):
        server = await asyncio.start_server(wrong, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(LinkError, match="Sec-WebSocket-Accept"):
                await dial(f"ws://127.0.0.1:{port}/link", {})


@contextlib.asynccontextmanager
async def own_server() -> AsyncIterator[tuple[str, asyncio.Queue[FrameSocket]]]:
    sockets: asyncio.Queue[FrameSocket] = asyncio.Queue()
    async with upgrade_server(sockets.put_nowait) as port:
        yield f"ws://127.0.0.1:{port}/link", sockets


async def test_server_with_a_websockets_client_fragments_text_and_close() -> None:
    with anyio.fail_after(20):
        async with own_server() as (url, sockets):
            async with connect(url, compression=None, max_size=None) as client:
                server = await sockets.get()
                for size in SIZES:
                    data = os.urandom(size)
                    await client.send(data)  # masked by the client, unmasked here
                    assert await server.recv() == data
                    await server.send(data)  # unmasked by the server
                    assert await client.recv() == data
                await client.send([b"frag", b"men", b"ted"])  # one message in three frames
                assert await server.recv() == b"fragmented"
                await client.send("text")
                assert await server.receive() == (1, b"text")
                await client.close(1000)
                with pytest.raises(LinkError) as ended:
                    await server.recv()
                assert ended.value.clean
            assert client.close_code == 1000


async def test_an_idle_link_keeps_a_small_buffer_and_bulk_grows_it() -> None:
    # a master holds one socket per agent: calls and heartbeats must not cost a frame's room
    with anyio.fail_after(20):
        async with own_server() as (url, sockets):
            client = await connect(url, compression=None, max_size=None)
            server = await sockets.get()
            for _ in range(50):
                await client.send(os.urandom(300))
                await server.recv()
            assert len(server._buffer) == FIRST_CAPACITY
            big = os.urandom(1 << 20)
            await client.send(big)
            assert await server.recv() == big
            assert len(server._buffer) > 1 << 20
            await client.close()


async def test_server_closes_with_its_code_and_reason() -> None:
    with anyio.fail_after(20):
        async with own_server() as (url, sockets):
            async with connect(url, compression=None) as client:
                server = await sockets.get()
                await server.close(4403, "permission_denied")
                with pytest.raises(ConnectionClosed):
                    await client.recv()
            assert (client.close_code, client.close_reason) == (4403, "permission_denied")


async def test_a_text_message_where_binary_is_expected_ends_the_link() -> None:
    with anyio.fail_after(20):
        async with own_server() as (url, sockets):
            async with connect(url, compression=None) as client:
                server = await sockets.get()
                await client.send("not a frame")
                with pytest.raises(LinkError, match="text message"):
                    await server.recv()
                with pytest.raises(ConnectionClosed):
                    await client.recv()
            assert client.close_code == 1003


async def test_an_oversized_message_closes_with_1009() -> None:
    with anyio.fail_after(20):
        async with own_server() as (url, sockets):
            async with connect(url, compression=None, max_size=None) as client:
                server = await sockets.get()
                await client.send(b"x" * ((1 << 20) + 1))
                with pytest.raises(LinkError, match="over"):
                    await server.recv()
                with pytest.raises(ConnectionClosed):
                    await client.recv()
            assert client.close_code == 1009


def _raw_upgrade(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /link HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1024)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _close_code(sock: socket.socket) -> int:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    assert data[0] == 0x88, data  # FIN + close, unmasked from the server
    code: int = struct.unpack("!H", data[2:4])[0]
    return code


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x82\x03abc", 1002),  # an unmasked frame from a client
        (b"\xc2\x80\x00\x00\x00\x00", 1002),  # RSV1 set: no extension was agreed
        (b"\x80\x80\x00\x00\x00\x00", 1002),  # a continuation with nothing to continue
        (b"\x09\x80\x00\x00\x00\x00", 1002),  # a fragmented ping
    ],
    ids=["unmasked", "rsv1", "stray-continuation", "fragmented-ping"],
)
async def test_protocol_violations_close_with_1002(frame: bytes, code: int) -> None:
    with anyio.fail_after(20):
        async with own_server() as (url, sockets):
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            sock = await asyncio.to_thread(_raw_upgrade, port)
            try:
                server = await sockets.get()
                await asyncio.to_thread(sock.sendall, frame)
                with pytest.raises(LinkError, match="malformed frame"):
                    await server.recv()
                assert await asyncio.to_thread(_close_code, sock) == code
            finally:
                sock.close()
