"""What the collections need of an engine: the async engine's I/O primitives.

Collections (keys, workflows, objects, shells) and the fsspec filesystem type against
`AsyncEngineLike`, never against `engine.py`: they cannot reach past these primitives
to a transport, and the engine module imports them without a circle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._models import Response

if TYPE_CHECKING:
    from .._operations import Operation
    from .._transports._base import Download, Progress

__all__ = ["AsyncEngineLike"]

R = TypeVar("R", bound=Response)


class AsyncEngineLike(Protocol):
    url: str | None
    """Where the engine is reached (None in-process)."""

    @property
    def in_process(self) -> bool: ...

    async def _call(self, op: Operation[Any, R], /, **params: Any) -> R: ...

    def _stream(self, op: Operation[Any, R], /, **params: Any) -> AsyncIterator[R]: ...

    def _download(
        self, op: Operation[Any, Any], /, **params: Any
    ) -> AbstractAsyncContextManager[Download]: ...

    async def _upload(self, op: Operation[Any, R], body: Any, /, **params: Any) -> R: ...

    def _channel(
        self, op: Operation[Any, Any], /, **params: Any
    ) -> AbstractAsyncContextManager[Any]: ...

    async def _get_file(
        self, op: Operation[Any, Any], target: Path, progress: Progress, /, **params: Any
    ) -> int: ...

    async def _put_file(
        self, op: Operation[Any, R], source: Path, progress: Progress, /, **params: Any
    ) -> R: ...

    def _clone(self) -> AsyncEngineLike: ...

    def _bridged(self, name: str) -> AsyncEngineLike: ...

    async def aclose(self) -> None: ...
