"""What `fleet.map` gives back: one result per agent, value or error (no I/O here)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._exceptions import DxflowError

__all__ = ["FleetResult", "FleetResults"]

T = TypeVar("T")


@dataclass(frozen=True)
class FleetResult(Generic[T]):
    """What `fn` gave on one agent: its value, or the error it raised."""

    name: str
    value: T | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class FleetResults(builtins.list[FleetResult[T]]):
    """Every agent's result, in name order; partial failure is normal, never hidden."""

    @property
    def ok(self) -> dict[str, T | None]:
        return {r.name: r.value for r in self if r.error is None}

    @property
    def errors(self) -> dict[str, BaseException]:
        return {r.name: r.error for r in self if r.error is not None}

    def raise_for_errors(self) -> None:
        """Raise the first error (naming every agent that failed), if any failed."""
        if self.errors:
            names = ", ".join(self.errors)
            raise DxflowError(f"failed on {len(self.errors)} agent(s): {names}") from next(
                iter(self.errors.values())
            )

    def __repr__(self) -> str:
        return f"<FleetResults ok={len(self.ok)} errors={len(self.errors)}>"
