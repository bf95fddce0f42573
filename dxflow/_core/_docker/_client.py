"""The connection under the Docker adapter: one docker-py client, worker threads, errors.

Blocking SDK calls run in worker threads under one limiter; every docker-py or
requests error is translated here, once, into the dxflow exception tree.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from ..._exceptions import (
    ApiError,
    Conflict,
    DockerUnavailable,
    InternalError,
    InvalidRequest,
    NotFound,
)
from .._groups import task_group

__all__ = ["DEFAULT_HOST", "DockerConnection"]

T = TypeVar("T")
DEFAULT_HOST = "unix:///var/run/docker.sock"


class _Failure:
    def __init__(self, error: Exception) -> None:
        self.error = error


async def _in_thread(function: Callable[..., Any], *args: Any) -> None:
    await anyio.to_thread.run_sync(functools.partial(function, *args), abandon_on_cancel=True)


def _api_error(exc: Any) -> ApiError:
    """Docker answered with an error: keep its words, map its status onto our tree."""
    status = getattr(exc.response, "status_code", None)
    text = str(getattr(exc, "explanation", None) or exc)
    kind: type[ApiError] = {400: InvalidRequest, 404: NotFound, 409: Conflict}.get(
        status or 0, DockerUnavailable if status == 503 else InternalError
    )
    return kind(f"Docker: {text}", docker_status=status)


class DockerConnection:
    """A lazily opened docker-py client at `base_url` (None: Docker's environment)."""

    def __init__(self, base_url: str | None = None, concurrency: int = 32) -> None:
        self._base_url = base_url
        self._client: Any = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._concurrency = concurrency

    @property
    def host(self) -> str:
        """The daemon's address, as the docker CLI's DOCKER_HOST would name it."""
        return self._base_url or os.environ.get("DOCKER_HOST") or DEFAULT_HOST

    def _connect(self) -> Any:
        if self._client is None:
            import docker
            import docker.errors

            try:
                if self._base_url:
                    self._client = docker.DockerClient(base_url=self._base_url, timeout=30)
                else:
                    self._client = docker.from_env(timeout=30)
            except docker.errors.DockerException as exc:
                raise self._unavailable(exc) from None
        return self._client

    def _unavailable(self, exc: Exception) -> DockerUnavailable:
        where = self.host
        text = str(exc)
        if "FileNotFoundError" in text or "No such file" in text:
            text = "no socket there (is dockerd running?)"
        elif "PermissionError" in text or "Permission denied" in text:
            text = "permission denied (is this user in the docker group?)"
        return DockerUnavailable(f"Docker Engine is not reachable at {where}: {text}", docker=where)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking docker-py call in a worker thread, translating its errors."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        call = functools.partial(self._guarded, function, *args)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def _guarded(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(self._connect(), *args)
        except Exception as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: Exception) -> Exception:
        """The dxflow error for a Docker SDK error (others pass through unchanged)."""
        import docker.errors
        import requests.exceptions

        if isinstance(exc, docker.errors.APIError):
            return _api_error(exc)
        if isinstance(exc, docker.errors.BuildError):
            return InvalidRequest(f"Docker build failed: {exc.msg}")
        if isinstance(exc, docker.errors.DockerException | requests.exceptions.ConnectionError):
            return self._unavailable(exc)
        return exc

    async def _stream(
        self, streams: list[Callable[[Any], Any]], limit: int = 256
    ) -> AsyncGenerator[Any]:
        """Merge blocking Docker streams (logs, events) into one async iterator.

        Each stream is read by a worker thread; leaving the iterator closes them all,
        which ends the threads' blocking reads.
        """
        send, receive = anyio.create_memory_object_stream[Any](limit)
        opened: list[Any] = []
        closed = threading.Event()

        def pump(open_stream: Callable[[Any], Any], out: Any) -> None:
            with out:
                try:
                    source = self._guarded(open_stream)
                    opened.append(source)
                    if closed.is_set():
                        return
                    for item in source:
                        anyio.from_thread.run(out.send, item)
                except Exception as exc:
                    if not closed.is_set():
                        anyio.from_thread.run(out.send, _Failure(self._translate(exc)))

        async with task_group() as group:
            for open_stream in streams:
                group.start_soon(_in_thread, pump, open_stream, send.clone())
            send.close()
            try:
                async with receive:
                    async for item in receive:
                        if isinstance(item, _Failure):
                            raise item.error
                        yield item
            finally:
                closed.set()
                for source in opened:
                    with contextlib.suppress(Exception):
                        source.close()
                group.cancel_scope.cancel()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
