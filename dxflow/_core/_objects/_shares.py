"""Share links: signed with the engine secret, expiring, revocable, optionally writable.

A link is `/s/<id>.<signature>`. The signature (HMAC-SHA256 under a key derived from the
engine secret) makes links unguessable and unforgeable; the server-side record makes
them revocable and counts their uses. Checking a link never looks at the Host header,
so links work behind any reverse proxy; a remote SDK puts the address it reaches the
engine at in front of `/s/...`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from ..._exceptions import Gone, InvalidRequest, NotFound, PermissionDenied
from ..._models import ObjectInfo, ShareCreate, ShareLink, ShareList, ShareRef, ShareToken
from .._context import Context
from .._handlers import handles
from .._state import State
from ._blob import Blob
from ._receive import Body
from ._store import ObjectService

__all__ = ["ShareService"]


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ShareService:
    def __init__(self, state: State, store: ObjectService, secret: bytes, base_url: str) -> None:
        self.base_url = base_url
        self._state = state
        self._store = store
        self._key = hmac.new(secret, b"dxflow-share-links-v1", hashlib.sha256).digest()

    def _sign(self, share_id: str) -> str:
        mac = hmac.new(self._key, share_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")

    def _info(self, row: Any) -> ShareLink:
        return ShareLink(
            id=row["id"],
            path=row["path"],
            url=f"{self.base_url}/s/{row['id']}.{self._sign(row['id'])}",
            writable=bool(row["writable"]),
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

    @handles("shares.create")
    def create(self, ctx: Context, request: ShareCreate) -> ShareLink:
        if request.writable:  # an upload target: it may not exist yet, but never a folder
            self._store.destination(request.path, overwrite=True)
        else:
            self._store.existing(request.path)
        share_id = secrets.token_urlsafe(12)
        now = time.time()
        who = ctx.identity.name if ctx.identity else None
        self._state.execute(
            "INSERT INTO shares (id, path, writable, expires_at, max_uses, created_at, "
            "created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (share_id, request.path, int(request.writable), now + request.expires,
             request.max_uses, now, who),
        )  # fmt: skip
        return self._info(self._row(share_id))

    @handles("shares.list")
    def list(self, ctx: Context, request: None) -> ShareList:
        rows = self._state.query("SELECT * FROM shares ORDER BY created_at DESC")
        return ShareList(shares=[self._info(row) for row in rows])

    @handles("shares.revoke")
    def revoke(self, ctx: Context, request: ShareRef) -> ShareLink:
        self._row(request.id)
        self._state.execute("UPDATE shares SET revoked = 1 WHERE id = ?", (request.id,))
        return self._info(self._row(request.id))

    def _redeem(self, token: str, write: bool) -> Any:
        """The live record behind `token`, or a clear refusal (its use not yet counted)."""
        share_id, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(share_id).encode()):
            raise PermissionDenied("this share link is not valid (bad signature)")
        try:
            row = self._row(share_id)
        except NotFound:
            raise Gone("this share link no longer exists") from None
        if row["revoked"]:
            raise Gone("this share link was revoked")
        if row["expires_at"] < time.time():
            raise Gone(f"this share link expired at {_when(row['expires_at']).isoformat()}")
        if write and not row["writable"]:
            raise PermissionDenied("this share link is read-only")
        if row["max_uses"] is not None and row["uses"] >= row["max_uses"]:
            raise Gone(f"this share link was used up ({row['max_uses']} uses)")
        return row

    def _count_use(self, row: Any) -> None:
        # One statement checks and counts, so concurrent uses never exceed the limit.
        used = self._state.execute(
            "UPDATE shares SET uses = uses + 1 "
            "WHERE id = ? AND (max_uses IS NULL OR uses < max_uses)",
            (row["id"],),
        )
        if not used:
            raise Gone(f"this share link was used up ({row['max_uses']} uses)")

    @handles("shares.read")
    def read(self, ctx: Context, request: ShareToken) -> Blob:
        row = self._redeem(request.token, write=False)
        target, stat = self._store.stat(row["path"])
        blob = self._store.blob(target, stat, request.start, request.end)
        blob.claim = lambda: self._count_use(row)  # a HEAD or a 304 uses nothing up
        return blob

    @handles("shares.write")
    async def write(self, ctx: Context, request: ShareToken, body: Body) -> ObjectInfo:
        if request.start is not None or request.end is not None:
            raise InvalidRequest("a share upload takes no range")
        row = self._redeem(request.token, write=True)
        self._count_use(row)
        target = self._store.destination(row["path"], overwrite=True)
        return await self._store.receive_into(target, body, row["path"], None, None)
