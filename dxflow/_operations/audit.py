"""Audit: the log of who changed what, newest first (MASTER only)."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import Operation

__all__ = ["LIST"]

_MASTER = Permission.MASTER

# fmt: off
LIST: Operation[m.AuditQuery, m.AuditRecords] = Operation(
    "audit.list", "GET", "/api/audit", "Audit records, newest first.", request=m.AuditQuery,
    response=m.AuditRecords, permission=_MASTER)
# fmt: on
