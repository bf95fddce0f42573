"""The key registry: which public keys may authenticate, and with what permissions."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .._exceptions import Conflict, InvalidRequest, NotFound
from .._keypairs import PublicKey, parse_public_key
from .._models import KeyInfo, KeyList, KeyRef, KeyRegister, KeyRotate, KeyUpdate
from .._permissions import Permission
from ._context import Context, Identity
from ._handlers import handles
from ._state import State

__all__ = ["ChangeKind", "KeyChange", "KeyEvents", "KeyRecord", "KeyRegistry"]

log = logging.getLogger("dxflow.engine")


@dataclass(frozen=True)
class KeyRecord:
    identity: str
    public: PublicKey
    permissions: Permission
    created_at: float
    rotated_at: float | None
    run_as: str | None = None
    workflow_policy: str | None = None

    def identity_of(self) -> Identity:
        """The Identity a request authenticated with this key acts as."""
        return Identity(
            self.identity,
            self.permissions,
            self.public.fingerprint,
            run_as=self.run_as,
            workflow_policy=self.workflow_policy,
        )

    @functools.cached_property
    def version(self) -> str:
        """Changes whenever the key is rotated or registered anew: tokens carry it."""
        raw = f"{self.public.fingerprint}|{self.created_at}|{self.rotated_at}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def info(self) -> KeyInfo:
        return KeyInfo(
            identity=self.identity,
            key_type=self.public.key_type,
            fingerprint=self.public.fingerprint,
            permissions=self.permissions.names,
            created_at=datetime.fromtimestamp(self.created_at, UTC),
            rotated_at=datetime.fromtimestamp(self.rotated_at, UTC) if self.rotated_at else None,
            public_key=self.public.pem,
            run_as=self.run_as,
            workflow_policy=self.workflow_policy,
        )


ChangeKind = Literal["unregistered", "rotated", "updated"]


@dataclass(frozen=True)
class KeyChange:
    """What happened to a key, for whatever hangs on it (open channels, share links)."""

    identity: str
    kind: ChangeKind
    after: Identity | None
    """The identity as it now stands (None: unregistered)."""
    by: Context | None = None
    """Who made the change, for the audit records it causes."""


class KeyEvents:
    """The registry's signal: listeners learn of each change once it is committed."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[KeyChange], None]] = []

    def subscribe(self, listener: Callable[[KeyChange], None]) -> None:
        self._listeners.append(listener)

    def emit(self, change: KeyChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # the change is committed: one listener must not undo the rest
                log.exception("a key-change listener failed for %r", change.identity)


def _registered(identity: str) -> str:
    """The Conflict of a second register, with the ways out (none of them kills tokens
    but rotate, which is what a new key means)."""
    return (
        f"identity {identity!r} is registered already; to change its permissions, run-as "
        f"user or workflow policy: `dxflow key update {identity} --permissions ...` "
        f"(engine.keys.update({identity!r}, permissions=...)); to give it a new key: "
        f"`dxflow key rotate {identity} NEW.pub` (engine.keys.rotate)"
    )


def _parse(text: str) -> PublicKey:
    try:
        return parse_public_key(text)
    except ValueError as exc:
        raise InvalidRequest(f"invalid request: public_key: {exc}", field="public_key") from None


class KeyRegistry:
    """Registered keys, cached in memory and reloaded when another process changes them."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}
        self._seen_version: int | None = None
        self.events = KeyEvents()
        """Told of every unregister, rotate and update made through this registry."""

    def _fresh(self) -> dict[str, KeyRecord]:
        # data_version moves when another connection (another engine process on this
        # home) commits, so the cache is exact without reading the table every call.
        version = self._state.query("PRAGMA data_version")[0][0]
        if version != self._seen_version:
            with self._lock:
                rows = self._state.query("SELECT * FROM keys")
                self._records = {row["identity"]: self._row(row) for row in rows}
                self._seen_version = version
        return self._records

    @staticmethod
    def _row(row: object) -> KeyRecord:
        return KeyRecord(
            identity=row["identity"],  # type: ignore[index]
            public=PublicKey(row["public_key"], row["key_type"], row["fingerprint"]),  # type: ignore[index]
            permissions=Permission.parse(row["permissions"]),  # type: ignore[index]
            created_at=row["created_at"],  # type: ignore[index]
            rotated_at=row["rotated_at"],  # type: ignore[index]
            run_as=row["run_as"],  # type: ignore[index]
            workflow_policy=row["workflow_policy"],  # type: ignore[index]
        )

    def get(self, identity: str) -> KeyRecord | None:
        return self._fresh().get(identity)

    def by_fingerprint(self, fingerprint: str) -> KeyRecord | None:
        return next(
            (r for r in self._fresh().values() if r.public.fingerprint == fingerprint), None
        )

    def add(
        self,
        identity: str,
        public: PublicKey,
        permissions: Permission,
        run_as: str | None = None,
        workflow_policy: str | None = None,
    ) -> KeyRecord:
        with self._state.transaction() as db:
            if db.execute("SELECT 1 FROM keys WHERE identity = ?", (identity,)).fetchone():
                raise Conflict(_registered(identity), identity=identity)
            taken = db.execute(
                "SELECT identity FROM keys WHERE fingerprint = ?", (public.fingerprint,)
            ).fetchone()
            if taken:
                raise Conflict(
                    f"this public key is registered already as {taken[0]!r}; to change what "
                    f"it may do: `dxflow key update {taken[0]} --permissions ...` "
                    f"(engine.keys.update({taken[0]!r}, permissions=...))",
                    identity=taken[0],
                )
            db.execute(
                "INSERT INTO keys (identity, key_type, fingerprint, public_key, permissions,"
                " created_at, rotated_at, run_as, workflow_policy)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                (
                    identity,
                    public.key_type,
                    public.fingerprint,
                    public.pem,
                    str(permissions),
                    time.time(),
                    run_as,
                    workflow_policy,
                ),
            )
        self._seen_version = None
        return self._require(identity)

    def _require(self, identity: str) -> KeyRecord:
        record = self.get(identity)
        if record is None:
            raise NotFound(f"no key is registered as {identity!r}", identity=identity)
        return record

    # -- handlers -----------------------------------------------------------------------

    @handles("keys.list")
    def list(self, ctx: Context, request: None) -> KeyList:
        return KeyList(
            keys=[r.info() for r in sorted(self._fresh().values(), key=lambda r: r.identity)]
        )

    @handles("keys.get")
    def get_key(self, ctx: Context, request: KeyRef) -> KeyInfo:
        return self._require(request.identity).info()

    @handles("keys.register")
    def register(self, ctx: Context, request: KeyRegister) -> KeyInfo:
        permissions = Permission.parse(request.permissions)
        public = _parse(request.public_key)
        return self.add(
            request.identity, public, permissions, request.run_as, request.workflow_policy
        ).info()

    @handles("keys.update")
    def update(self, ctx: Context, request: KeyUpdate) -> KeyInfo:
        """Change what a key may do; fields left out keep their value, "" clears one."""
        record = self._require(request.identity)
        changes: dict[str, str | None] = {}
        if request.permissions is not None:
            if ctx.identity is not None and ctx.identity.name == record.identity:
                raise Conflict(
                    f"an identity cannot change its own permissions ({record.identity!r}); "
                    "sign in with another MASTER key to do it"
                )
            changes["permissions"] = str(Permission.parse(request.permissions))
        for field in ("run_as", "workflow_policy"):
            value = getattr(request, field)
            if value is not None:
                changes[field] = value or None
        if changes:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            self._state.execute(
                f"UPDATE keys SET {assignments} WHERE identity = ?",  # noqa: S608 - fixed names
                (*changes.values(), record.identity),
            )
            self._seen_version = None
            self._changed(ctx, record.identity, "updated")
        return self._require(record.identity).info()

    def _changed(self, ctx: Context | None, identity: str, kind: ChangeKind) -> None:
        after = self.get(identity)
        self.events.emit(KeyChange(identity, kind, after.identity_of() if after else None, ctx))

    def drop(self, identity: str) -> None:
        """Unregister a key the engine itself manages (a bridge's), without a caller."""
        self._state.execute("DELETE FROM keys WHERE identity = ?", (identity,))
        self._seen_version = None
        self._changed(None, identity, "unregistered")

    @handles("keys.unregister")
    def unregister(self, ctx: Context, request: KeyRef) -> KeyInfo:
        record = self._require(request.identity)
        self._check_not_self(ctx, record, "unregister")
        self._state.execute("DELETE FROM keys WHERE identity = ?", (record.identity,))
        self._seen_version = None
        self._changed(ctx, record.identity, "unregistered")
        return record.info()

    @handles("keys.rotate")
    def rotate(self, ctx: Context, request: KeyRotate) -> KeyInfo:
        record = self._require(request.identity)
        public = _parse(request.public_key)
        with self._state.transaction() as db:
            taken = db.execute(
                "SELECT identity FROM keys WHERE fingerprint = ? AND identity != ?",
                (public.fingerprint, record.identity),
            ).fetchone()
            if taken:
                raise Conflict(f"this public key is registered already as {taken[0]!r}; rotate "
                               "to a new key pair (dxflow key generate)")  # fmt: skip
            db.execute(
                "UPDATE keys SET key_type = ?, fingerprint = ?, public_key = ?, rotated_at = ?"
                " WHERE identity = ?",
                (public.key_type, public.fingerprint, public.pem, time.time(), record.identity),
            )
        self._seen_version = None
        self._changed(ctx, record.identity, "rotated")
        return self._require(record.identity).info()

    @staticmethod
    def _check_not_self(ctx: Context, record: KeyRecord, verb: str) -> None:
        # A MASTER that unregisters itself locks everyone out of key management.
        if ctx.identity is not None and ctx.identity.name == record.identity:
            raise Conflict(f"an identity cannot {verb} itself ({record.identity!r}); sign in "
                           "with another MASTER key to do it")  # fmt: skip
