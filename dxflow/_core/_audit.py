"""The audit log: every mutating call, authentication result and permission denial."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .._models import AuditQuery, AuditRecord, AuditRecords
from ._context import Context
from ._handlers import handles
from ._state import State

__all__ = ["AuditLog"]

_PRUNE_BATCH = 5000


class AuditLog:
    def __init__(self, state: State, retention: float = 0) -> None:
        """`retention`: seconds a record is kept (0: for ever). Older ones are pruned by
        the core's background work (`prune`, at start and then hourly), not by writes."""
        self._state = state
        self._retention = retention

    def prune(self) -> int:
        """Remove the records older than the retention; return how many went."""
        if self._retention <= 0:
            return 0
        cutoff, removed = time.time() - self._retention, 0
        while True:  # in batches: calls that write records wait for one batch at most
            gone = self._state.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? LIMIT ?)",
                (cutoff, _PRUNE_BATCH),
            )
            removed += gone
            if gone < _PRUNE_BATCH:
                return removed

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
