"""What the collections need of an engine: the async engine's I/O primitives.

Collections (keys, workflows, objects, shells) and the fsspec filesystem type against
`AsyncEngineLike`, never against `engine.py`: they cannot reach past these primitives
to a transport, and the engine module imports them without a circle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._operations import Operation
    from .._transports._base import Download, Progress

__all__ = ["AsyncEngineLike"]


class AsyncEngineLike(Protocol):
    url: str | None
    """Where the engine is reached (None in-process)."""

    @property
    def in_process(self) -> bool: ...

    async def _call(self, operation: str | Operation, /, **params: Any) -> Any: ...

    def _stream(self, operation: str | Operation, /, **params: Any) -> AsyncIterator[Any]: ...

    def _download(
        self, operation: str | Operation, /, **params: Any
    ) -> AbstractAsyncContextManager[Download]: ...

    async def _upload(self, operation: str | Operation, body: Any, /, **params: Any) -> Any: ...

    def _channel(
        self, operation: str | Operation, /, **params: Any
    ) -> AbstractAsyncContextManager[Any]: ...

    async def _get_file(
        self, operation: str | Operation, target: Path, progress: Progress, /, **params: Any
    ) -> int: ...

    async def _put_file(
        self, operation: str | Operation, source: Path, progress: Progress, /, **params: Any
    ) -> Any: ...

    def _clone(self) -> AsyncEngineLike: ...

    async def aclose(self) -> None: ...
