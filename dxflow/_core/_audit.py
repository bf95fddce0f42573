"""The audit log: every mutating call, authentication result and permission denial."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .._models import AuditQuery, AuditRecord, AuditRecords
from ._context import Context
from ._handlers import handles
from ._state import State

__all__ = ["AuditLog"]


class AuditLog:
    def __init__(self, state: State) -> None:
        self._state = state

    def record(
        self,
        ctx: Context | None,
        operation: str,
        outcome: str,
        *,
        target: str | None = None,
        identity: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one record. `identity` overrides the caller's (a claimed identity)."""
        who = identity or (ctx.identity.name if ctx and ctx.identity else None)
        self._state.insert(
            "INSERT INTO audit (time, identity, operation, target, outcome, client, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), who, operation, target, outcome, ctx.client if ctx else None, detail),
        )

    @handles("audit.list")
    def list(self, ctx: Context, query: AuditQuery) -> AuditRecords:
        clauses, params = ["1=1"], []
        if query.since is not None:
            since = query.since if query.since.tzinfo else query.since.replace(tzinfo=UTC)
            clauses.append("time >= ?")
            params.append(since.timestamp())
        for column in ("identity", "operation"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        rows = self._state.query(
            f"SELECT * FROM audit WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",  # noqa: S608
            (*params, query.limit),
        )
        return AuditRecords(
            records=[
                AuditRecord(
                    id=row["id"],
                    time=datetime.fromtimestamp(row["time"], UTC),
                    identity=row["identity"],
                    operation=row["operation"],
                    target=row["target"],
                    outcome=row["outcome"],
                    client=row["client"],
                    detail=row["detail"],
                )
                for row in rows
            ]
        )
