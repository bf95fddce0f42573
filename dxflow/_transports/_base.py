"""The transport interface: the only I/O seam between the SDK and an engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .._models import Response
from .._operations import Operation

__all__ = ["Transport"]


class Transport(ABC):
    """Carries one operation to an engine and brings back its typed result."""

    @abstractmethod
    async def call(self, op: Operation, params: Mapping[str, Any]) -> Response: ...

    @abstractmethod
    def stream(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Response]: ...

    def can_inline(self, op: Operation) -> bool:
        """True when `call_inline` may run `op` on a blocking caller's thread."""
        return False

    def call_inline(self, op: Operation, params: Mapping[str, Any]) -> Response:
        raise NotImplementedError

    async def aclose(self) -> None:  # noqa: B027 - most transports hold nothing
        pass
