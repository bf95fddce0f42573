"""Composable permissions, and the one function that decides whether they allow a call."""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["DEFAULT_PERMISSIONS", "Permission", "check_permission"]


class Permission(enum.Flag):
    """What a key may do. Combine with ``|``; READ_ONLY and MASTER are modifiers."""

    SHELL = enum.auto()
    OBJECT = enum.auto()
    WORKFLOW = enum.auto()
    PROXY = enum.auto()
    BRIDGE = enum.auto()
    PLATFORM = enum.auto()
    READ_ONLY = enum.auto()
    MASTER = enum.auto()

    @classmethod
    def parse(cls, value: str | Iterable[str] | Permission) -> Permission:
        """Read ``"SHELL,OBJECT"`` or ``["shell", "object"]`` into a Permission."""
        if isinstance(value, Permission):
            return value
        names = value.split(",") if isinstance(value, str) else list(value)
        result = cls(0)
        for raw in names:
            name = raw.strip().upper().replace("-", "_")
            if not name or name == "NONE":  # NONE is how an empty set prints
                continue
            try:
                result |= cls[name]
            except KeyError:
                known = ", ".join(p.name for p in cls if p.name)
                raise ValueError(f"unknown permission {raw.strip()!r} (known: {known})") from None
        return result

    @property
    def names(self) -> list[str]:
        return [p.name for p in Permission if p in self and p.name]

    def __str__(self) -> str:
        return ",".join(self.names) or "NONE"


DEFAULT_PERMISSIONS = (
    Permission.PROXY
    | Permission.BRIDGE
    | Permission.SHELL
    | Permission.OBJECT
    | Permission.PLATFORM
    | Permission.WORKFLOW
)


def check_permission(
    granted: Permission, required: Permission | None, mutating: bool
) -> str | None:
    """Return None when `granted` allows the call, else the name of what is missing.

    `required` None means any authenticated identity may call. READ_ONLY blocks every
    mutating call, whatever else is granted (a READ_ONLY MASTER is an auditor: it reads
    keys and the audit log but changes nothing); otherwise MASTER allows all.
    """
    if mutating and Permission.READ_ONLY in granted:
        return "write access (the key is READ_ONLY)"
    if Permission.MASTER in granted:
        return None
    if required is not None and required not in granted:
        return str(required)
    return None
