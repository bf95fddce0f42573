"""The audit log: every mutating call, authentication result and permission denial."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .._models import AuditQuery, AuditRecord, AuditRecords
from ._context import Context
from ._handlers import handles
from ._state import State

__all__ = ["AuditLog"]


_PRUNE_EVERY = 3600.0


class AuditLog:
    def __init__(self, state: State, retention: float = 0) -> None:
        """`retention`: seconds a record is kept (0: for ever); older ones are pruned at
        start-up and then hourly, as records are written."""
        self._state = state
        self._retention = retention
        self._pruned = 0.0
        self.prune()

    def prune(self) -> int:
        """Remove the records older than the retention; return how many went."""
        now = time.time()
        self._pruned = now
        if self._retention <= 0:
            return 0
        return self._state.execute("DELETE FROM audit WHERE time < ?", (now - self._retention,))

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
        if time.time() - self._pruned > _PRUNE_EVERY:
            self.prune()
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
