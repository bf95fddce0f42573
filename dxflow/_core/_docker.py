"""The one adapter to the Docker Engine: blocking SDK calls run in worker threads.

Only this module imports `docker`; its exceptions are translated here and never leave.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from .._exceptions import EngineUnavailable
from .._models import DockerInfo

__all__ = ["DockerAdapter"]

T = TypeVar("T")


class DockerAdapter:
    def __init__(self, base_url: str | None = None, concurrency: int = 32) -> None:
        self._base_url = base_url
        self._client: Any = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._concurrency = concurrency

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
                raise EngineUnavailable(f"Docker Engine is not reachable: {exc}") from None
        return self._client

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking Docker call in a worker thread, translating its errors."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        call = functools.partial(self._guarded, function, *args)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def _guarded(self, function: Callable[..., T], *args: Any) -> T:
        import docker.errors
        import requests.exceptions

        try:
            return function(self._connect(), *args)
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
            raise EngineUnavailable(f"Docker Engine is not reachable: {exc}") from None

    async def info(self) -> DockerInfo:
        try:
            with anyio.fail_after(5):
                version = await self.run(lambda client: client.version())
        except EngineUnavailable as exc:
            return DockerInfo(available=False, error=exc.message)
        except TimeoutError:
            return DockerInfo(available=False, error="Docker Engine did not answer within 5 s")
        return DockerInfo(
            available=True, version=version.get("Version"), api_version=version.get("ApiVersion")
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
