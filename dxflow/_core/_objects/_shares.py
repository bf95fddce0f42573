"""Share links: signed with the engine secret, expiring, revocable, optionally writable.

A link is `/s/<id>.<signature>`. The signature (HMAC-SHA256 under a key derived from the
engine secret) makes links unguessable and unforgeable; the server-side record makes
them revocable and counts their uses. Checking a link never looks at the Host header,
so links work behind any reverse proxy; a remote SDK puts the address it reaches the
engine at in front of `/s/...`.

A link belongs to the identity that made it: only it sees the link's URL (MASTER sees
every link, but never another identity's URL) and only it, or MASTER, revokes it. A link
lives only as long as the key that made it, as it was (unregistering or rotating the key,
or taking OBJECT from it, revokes its links; READ_ONLY revokes its writable ones). A
writable link is a drop box, upload only, unless it was made `readable`. Every creation,
every use and every refused use is audited: a use as the identity `share:<id>`, with the
link's id as target, never its token.

A link's URL is the address of the server that serves this home: the one this core runs
in (`dxflow boot up` sets `base_url` to the address it bound, port 0 included), or, for a
core in a notebook's process, the server another process runs on the same home, as its
runtime file records it. With no server anywhere the link exists but has no URL yet: it
works, and lists with one, once `dxflow boot up` serves the home.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import time
from datetime import UTC, datetime
from typing import Any

from ... import _operations as ops
from ..._config import Home
from ..._exceptions import ApiError, Gone, InvalidRequest, NotFound, PermissionDenied
from ..._models import ObjectInfo, ShareCreate, ShareLink, ShareList, ShareRef, ShareToken
from ..._permissions import Permission, check_permission
from ..._server_runtime import read_runtime
from .._audit import AuditLog
from .._context import Context
from .._handlers import handles
from .._key_registry import KeyChange, KeyRegistry
from .._state import State
from ._blob import Blob
from ._receive import Body
from ._store import ObjectService

__all__ = ["ShareService"]


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ShareService:
    def __init__(
        self,
        state: State,
        store: ObjectService,
        secret: bytes,
        home: Home,
        keys: KeyRegistry,
        audit: AuditLog,
    ) -> None:
        self.base_url: str | None = None
        """Set by the server this core runs in: the address it bound."""
        self._home = home
        self._state = state
        self._store = store
        self._keys = keys
        self._audit = audit
        self._key = hmac.new(secret, b"dxflow-share-links-v1", hashlib.sha256).digest()

    def _sign(self, share_id: str) -> str:
        mac = hmac.new(self._key, share_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")

    def _address(self) -> str | None:
        """Where the server serving this home answers (None: no server runs on it)."""
        if self.base_url:
            return _reachable(self.base_url)
        runtime = read_runtime(self._home)
        return _reachable(str(runtime["url"])) if runtime and runtime.get("url") else None

    def _url(self, share_id: str, address: str | None) -> str | None:
        """The link: the server's address and the `shares.read` path of the table."""
        if address is None:
            return None
        token = f"{share_id}.{self._sign(share_id)}"
        return address + ops.shares.READ.path.replace("{token}", token)

    def _signed(self, token: str) -> bool:
        share_id, _, signature = token.partition(".")
        return hmac.compare_digest(signature.encode(), self._sign(share_id).encode())

    def _info(self, row: Any, ctx: Context | None, address: str | None) -> ShareLink:
        # The URL is the credential: only the identity that made the link sees it.
        mine = ctx is None or (ctx.identity is not None and ctx.identity.name == row["created_by"])
        return ShareLink(
            id=row["id"],
            path=row["path"],
            url=self._url(row["id"], address) if mine else None,
            writable=bool(row["writable"]),
            readable=bool(row["readable"]),
            expires_at=_when(row["expires_at"]),
            max_uses=row["max_uses"],
            uses=row["uses"],
            created_at=_when(row["created_at"]),
            created_by=row["created_by"],
            revoked=bool(row["revoked"]),
        )

    def _row(self, share_id: str) -> Any:
        rows = self._state.query("SELECT * FROM shares WHERE id = ?", (share_id,))
        if not rows:
            raise NotFound(f"no share link {share_id!r}", id=share_id)
        return rows[0]

    def _own(self, ctx: Context, share_id: str) -> Any:
        """The caller's link (any link for MASTER); another's is as unknown as a missing one."""
        row = self._row(share_id)
        if ctx.identity is None or not (
            ctx.identity.is_master or ctx.identity.name == row["created_by"]
        ):
            raise NotFound(f"no share link {share_id!r}", id=share_id)
        return row

    @handles("shares.create")
    def create(self, ctx: Context, request: ShareCreate) -> ShareLink:
        try:
            if request.writable:  # an upload target: it may not exist yet, but never a folder
                self._store.destination(request.path, overwrite=True)
            else:
                self._store.stat(request.path)  # a link itself is refused, never shared
        except ApiError as exc:
            self._audit.record(ctx, "shares.create", f"error:{exc.code}", detail=str(exc))
            raise
        share_id = secrets.token_urlsafe(12)
        now = time.time()
        who = ctx.identity.name if ctx.identity else None
        record = self._keys.get(who) if who else None
        readable = not request.writable or request.readable
        self._state.execute(
            "INSERT INTO shares (id, path, writable, readable, expires_at, max_uses,"
            " created_at, created_by, creator_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (share_id, request.path, int(request.writable), int(readable),
             now + request.expires, request.max_uses, now, who,
             record.version if record else None),
        )  # fmt: skip
        mode = ("rw" if readable else "w") if request.writable else "r"
        self._audit.record(ctx, "shares.create", "ok", target=share_id,
                           detail=f"{mode} {request.path}")  # fmt: skip
        return self._info(self._row(share_id), ctx, self._address())

    @handles("shares.list")
    def list(self, ctx: Context, request: None) -> ShareList:
        if ctx.identity is not None and ctx.identity.is_master:
            rows = self._state.query("SELECT * FROM shares ORDER BY created_at DESC")
        else:
            name = ctx.identity.name if ctx.identity else None
            rows = self._state.query(
                "SELECT * FROM shares WHERE created_by = ? ORDER BY created_at DESC", (name,)
            )
        address = self._address()
        return ShareList(shares=[self._info(row, ctx, address) for row in rows])

    @handles("shares.revoke")
    def revoke(self, ctx: Context, request: ShareRef) -> ShareLink:
        self._own(ctx, request.id)
        self._state.execute("UPDATE shares SET revoked = 1 WHERE id = ?", (request.id,))
        return self._info(self._row(request.id), ctx, self._address())

    def key_changed(self, change: KeyChange) -> None:
        """The key registry's listener: a link dies with the key that made it."""
        after = change.after
        if after is None or change.kind == "rotated":
            writable_only = False
        elif check_permission(after.permissions, Permission.OBJECT, False) is not None:
            writable_only = False  # OBJECT is gone
        elif check_permission(after.permissions, Permission.OBJECT, True) is not None:
            writable_only = True  # READ_ONLY now: it may no longer write through links
        else:
            return
        sql = "SELECT id FROM shares WHERE created_by = ? AND revoked = 0"
        rows = self._state.query(sql + (" AND writable = 1" if writable_only else ""),
                                 (change.identity,))  # fmt: skip
        why = f"the key of {change.identity!r} was {change.kind}"
        for row in rows:
            self._state.execute("UPDATE shares SET revoked = 1 WHERE id = ?", (row["id"],))
            self._audit.record(change.by, "shares.revoke", "ok", target=row["id"], detail=why)

    # -- use: the link is the credential --------------------------------------------------

    def _redeem(self, token: str, write: bool) -> Any:
        """The live record behind `token`, or a clear refusal (its use not yet counted)."""
        if not self._signed(token):
            raise PermissionDenied("this share link is not valid (bad signature)")
        try:
            row = self._row(token.partition(".")[0])
        except NotFound:
            raise Gone("this share link no longer exists") from None
        if row["revoked"]:
            raise Gone("this share link was revoked")
        if row["expires_at"] < time.time():
            raise Gone(f"this share link expired at {_when(row['expires_at']).isoformat()}")
        self._check_creator(row)
        if write and not row["writable"]:
            raise PermissionDenied("this share link is read-only")
        if not write and not row["readable"]:
            raise PermissionDenied(
                "this share link is a drop box: it takes uploads only (a writable link "
                "downloads only when made with readable)"
            )
        if row["max_uses"] is not None and row["uses"] >= row["max_uses"]:
            raise Gone(f"this share link was used up ({row['max_uses']} uses)")
        return row

    def _check_creator(self, row: Any) -> None:
        # The registry is the truth even when the change was made by another engine
        # process on this home (its event never reached this one).
        record = self._keys.get(row["created_by"]) if row["created_by"] else None
        alive = (
            record is not None
            and (row["creator_key"] is None or row["creator_key"] == record.version)
            and check_permission(record.permissions, Permission.OBJECT, bool(row["writable"]))
            is None
        )
        if not alive:
            self._state.execute("UPDATE shares SET revoked = 1 WHERE id = ?", (row["id"],))
            raise Gone("this share link was revoked with the key that made it")

    def _count_use(self, row: Any) -> None:
        # One statement checks and counts, so concurrent uses never exceed the limit.
        used = self._state.execute(
            "UPDATE shares SET uses = uses + 1 "
            "WHERE id = ? AND (max_uses IS NULL OR uses < max_uses)",
            (row["id"],),
        )
        if not used:
            raise Gone(f"this share link was used up ({row['max_uses']} uses)")

    def _used(self, ctx: Context | None, operation: str, token: str, error: Any = None) -> None:
        """Audit one use of a link, or its refusal: as the link, by id, never the token."""
        share_id = token.partition(".")[0][:64]
        who = f"share:{share_id}" if self._signed(token) else None
        if error is None:
            row = self._row(share_id)
            self._audit.record(ctx, operation, "ok", target=share_id, identity=who,
                               detail=f"{row['path']} (a link of {row['created_by']})")  # fmt: skip
        else:
            code = getattr(error, "code", "internal")
            detail = str(error) if isinstance(error, ApiError) else None
            self._audit.record(ctx, operation, f"error:{code}", target=share_id, identity=who,
                               detail=detail)  # fmt: skip

    def _claim(self, ctx: Context | None, token: str, row: Any) -> None:
        try:
            self._count_use(row)
        except ApiError as exc:
            self._used(ctx, "shares.read", token, exc)
            raise
        self._used(ctx, "shares.read", token)

    @handles("shares.read")
    def read(self, ctx: Context, request: ShareToken) -> Blob:
        try:
            row = self._redeem(request.token, write=False)
            target, stat = self._store.stat(row["path"])
            blob = self._store.blob(target, stat, request.start, request.end)
        except Exception as exc:
            self._used(ctx, "shares.read", request.token, exc)
            raise
        # Counted and audited as the bytes go out: a HEAD or a 304 uses nothing up.
        blob.claim = lambda: self._claim(ctx, request.token, row)
        return blob

    @handles("shares.write")
    async def write(self, ctx: Context, request: ShareToken, body: Body) -> ObjectInfo:
        try:
            if request.start is not None or request.end is not None:
                raise InvalidRequest("a share upload takes no range")
            row = self._redeem(request.token, write=True)
            self._count_use(row)
            target = self._store.destination(row["path"], overwrite=True)
            info = await self._store.receive_into(target, body, row["path"], None, None)
        except Exception as exc:
            self._used(ctx, "shares.write", request.token, exc)
            raise
        self._used(ctx, "shares.write", request.token)
        return info


def _reachable(url: str) -> str:
    """`url` with a wildcard host (a server bound to every interface) replaced by this
    machine's name: nobody reaches 0.0.0.0 from elsewhere."""
    for wildcard in ("://0.0.0.0:", "://[::]:"):
        if wildcard in url:
            return url.replace(wildcard, f"://{socket.gethostname()}:", 1)
    return url
