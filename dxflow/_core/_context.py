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
    run_as: str | None = None
    """The OS user this identity's host shells run as (None: the engine's default)."""
    workflow_policy: str | None = None
    """The workflow policy profile for this identity (None: the engine's default)."""

    @property
    def is_master(self) -> bool:
        return Permission.MASTER in self.permissions


@dataclass(frozen=True)
class Context:
    """What the dispatcher knows about one call besides its request."""

    identity: Identity | None
    client: str | None = None
    """The client address (``host:port``, ``unix`` or ``local``), for audit and rate limits."""
