"""Access links of proxies with `auth="link"`: expiring, revocable, dying with their key.

A link's secret is `<id>.<mac>`, the MAC derived from the engine secret, so the creator
can be shown its URL again while the state keeps only a hash of it. The data plane
checks a secret against the in-memory copy of the links (no state query per request);
every change goes to the state first, then to that copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from ..._exceptions import InvalidRequest, NotFound
from ..._models import ProxyLink
from ..._permissions import Permission, check_permission
from .._audit import AuditLog
from .._context import Context
from .._key_registry import KeyChange
from .._state import State
from ._live import Link, LiveProxy
from ._rules import hash_secret

__all__ = ["LINK_PARAMETER", "Links"]

LINK_PARAMETER = "dxflow_link"
"""The query parameter that carries a link's secret once (then its cookie does)."""


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Links:
    def __init__(self, state: State, secret: bytes, audit: AuditLog) -> None:
        self._state = state
        self._audit = audit
        self._key = hmac.new(secret, b"dxflow-proxy-links-v1", hashlib.sha256).digest()

    def secret_of(self, link_id: str) -> str:
        mac = hmac.new(self._key, link_id.encode(), hashlib.sha256).digest()
        return f"{link_id}.{base64.urlsafe_b64encode(mac[:24]).decode().rstrip('=')}"

    def load(self, live: LiveProxy) -> None:
        rows = self._state.query(
            "SELECT * FROM proxy_links WHERE proxy = ? AND revoked = 0 AND expires_at > ?",
            (live.name, time.time()),
        )
        live.links = {row["id"]: _link(row) for row in rows}

    def create(self, ctx: Context, live: LiveProxy, expires: float, url: str | None) -> ProxyLink:
        if live.rules.auth != "link":
            raise InvalidRequest(
                f"name: proxy {live.name!r} has auth={live.rules.auth!r}: access links open "
                f"proxies with auth=\"link\" only (update it: auth=\"link\")", field="name",
            )  # fmt: skip
        link_id = secrets.token_urlsafe(9)
        now = time.time()
        who = ctx.identity.name if ctx.identity else None
        secret = self.secret_of(link_id)
        self._state.execute(
            "INSERT INTO proxy_links (id, proxy, secret_hash, expires_at, created_by,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (link_id, live.name, hash_secret(secret), now + expires, who, now),
        )
        live.links[link_id] = Link(link_id, hash_secret(secret), now + expires, False, who)
        return self.info(self._row(live.name, link_id), ctx, url)

    def list(self, ctx: Context, live: LiveProxy, url: str | None) -> list[ProxyLink]:
        rows = self._state.query(
            "SELECT * FROM proxy_links WHERE proxy = ? ORDER BY created_at DESC", (live.name,)
        )
        return [self.info(row, ctx, url) for row in rows]

    def revoke(self, ctx: Context, live: LiveProxy, link_id: str, url: str | None) -> ProxyLink:
        self._row(live.name, link_id)
        self._state.execute("UPDATE proxy_links SET revoked = 1 WHERE id = ?", (link_id,))
        live.links.pop(link_id, None)
        return self.info(self._row(live.name, link_id), ctx, url)

    def forget(self, name: str) -> None:
        self._state.execute("DELETE FROM proxy_links WHERE proxy = ?", (name,))

    def _row(self, proxy: str, link_id: str) -> Any:
        rows = self._state.query(
            "SELECT * FROM proxy_links WHERE id = ? AND proxy = ?", (link_id, proxy)
        )
        if not rows:
            raise NotFound(f"no access link {link_id!r} of proxy {proxy!r}", id=link_id)
        return rows[0]

    def info(self, row: Any, ctx: Context | None, url: str | None) -> ProxyLink:
        # The URL is the credential: only the identity that made the link sees it.
        mine = ctx is None or (ctx.identity is not None and ctx.identity.name == row["created_by"])
        sep = "&" if url and "?" in url else "?"
        return ProxyLink(
            id=row["id"],
            proxy=row["proxy"],
            url=f"{url}{sep}{LINK_PARAMETER}={self.secret_of(row['id'])}" if url and mine else None,
            expires_at=_when(row["expires_at"]),
            revoked=bool(row["revoked"]),
            created_by=row["created_by"] or "",
            created_at=_when(row["created_at"]),
        )

    @staticmethod
    def check(live: LiveProxy, secret: str) -> Link | None:
        """The live link `secret` opens, or None (unknown, revoked, expired)."""
        link = live.links.get(secret.partition(".")[0])
        if link is None or link.revoked or link.expires_at < time.time():
            return None
        if not hmac.compare_digest(link.secret_hash, hash_secret(secret)):
            return None
        return link

    def key_changed(self, change: KeyChange, proxies: dict[str, LiveProxy]) -> None:
        """A link dies with the key that made it (unregistered, rotated, PROXY taken)."""
        after = change.after
        if (
            after is not None
            and change.kind != "rotated"
            and check_permission(after.permissions, Permission.PROXY, False) is None
        ):
            return
        rows = self._state.query(
            "SELECT id, proxy FROM proxy_links WHERE created_by = ? AND revoked = 0",
            (change.identity,),
        )
        why = f"the key of {change.identity!r} was {change.kind}"
        for row in rows:
            self._state.execute("UPDATE proxy_links SET revoked = 1 WHERE id = ?", (row["id"],))
            live = proxies.get(row["proxy"])
            if live is not None:
                live.links.pop(row["id"], None)
            self._audit.record(change.by, "proxies.unlink", "ok", target=row["id"], detail=why)


def _link(row: Any) -> Link:
    return Link(row["id"], row["secret_hash"], row["expires_at"], bool(row["revoked"]),
                row["created_by"])  # fmt: skip
