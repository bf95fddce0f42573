"""httpx transports for dxflow's own clients, with wide socket reads.

httpcore asks the socket for 64 KiB at a time, and each read costs ~0.3 ms of
bookkeeping: downloads then top out near 500 MB/s. Reads of up to 1 MiB double that.
Only the most a single recv may return changes; memory use follows the data.

The wider reads come from a network backend wrapped around the connection pool of these
transports alone: httpcore's classes are left as they are, so no other httpx client in
the user's process changes.
"""

from __future__ import annotations

from typing import Any

import httpcore
import httpx

__all__ = ["WIDE_READ", "wide_blocking_client", "wide_client"]

WIDE_READ = 1 << 20


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max(max_bytes, WIDE_READ), timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._stream.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# `timeout` is httpcore's own parameter in the async twins (ASYNC109 does not apply).
class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._stream.read(max(max_bytes, WIDE_READ), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._stream.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._backend.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._backend.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _widen(transport: Any, wrap: Any) -> None:
    # The pool is httpx's own, made from the same options as ever; only the backend it
    # dials through is wrapped. Should a future httpx name it otherwise, reads simply
    # stay at httpcore's default width.
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None and not isinstance(backend, wrap):
        pool._network_backend = wrap(backend)  # type: ignore[union-attr]


def _transports(client: httpx.Client | httpx.AsyncClient) -> list[Any]:
    # The default transport and those of the proxies httpx took from the environment.
    mounts = getattr(client, "_mounts", {})
    return [getattr(client, "_transport", None), *mounts.values()]


def wide_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """`client`, its connections reading up to 1 MiB at a time."""
    for transport in _transports(client):
        _widen(transport, _AsyncBackend)
    return client


def wide_blocking_client(client: httpx.Client) -> httpx.Client:
    """`client`, its connections reading up to 1 MiB at a time."""
    for transport in _transports(client):
        _widen(transport, _Backend)
    return client
