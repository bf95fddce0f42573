"""Who is calling, and from where."""

from __future__ import annotations

from dataclasses import dataclass

from .._permissions import Permission

__all__ = ["Context", "Identity"]


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: a registered key, or the engine's own MASTER identity."""

    name: str
    permissions: Permission
    fingerprint: str | None = None


@dataclass(frozen=True)
class Context:
    """What the dispatcher knows about one call besides its request."""

    identity: Identity | None
    client: str | None = None
    """The client address (``host:port``, ``unix`` or ``local``), for audit and rate limits."""
