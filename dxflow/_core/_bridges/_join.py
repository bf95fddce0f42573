"""Join tokens: what lets a new agent register its key on a master, once or N times.

A token is `dxflow-join:` and base64url JSON of the master's URL, the fingerprint of the
master's identity (the agent pins it), the token's id and a secret. The master stores a
hash of the secret only, so its state leaks no usable token; a token is checked by id,
then secret (constant time), then expiry and uses left. The secret never reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..._exceptions import Gone, InvalidRequest, Unauthenticated
from .._state import State

__all__ = ["JoinToken", "JoinTokens", "parse_token"]

PREFIX = "dxflow-join:"


@dataclass(frozen=True)
class JoinToken:
    url: str
    fingerprint: str
    id: str
    secret: str

    def encode(self) -> str:
        body = {"v": 1, "url": self.url, "fp": self.fingerprint, "id": self.id, "s": self.secret}
        text = json.dumps(body, separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(text).decode().rstrip("=")


def parse_token(text: str) -> JoinToken:
    """Read a join token; anything else is an error that says what a token looks like."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise InvalidRequest(
            "this is not a join token (it starts with 'dxflow-join:'); make one on the "
            "master: dxflow bridge token"
        )
    raw = text[len(PREFIX) :]
    try:
        body: Any = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        token = JoinToken(str(body["url"]), str(body["fp"]), str(body["id"]), str(body["s"]))
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest(
            "the join token is damaged (copy it whole, it is one line); make a new one on "
            "the master: dxflow bridge token"
        ) from None
    return token


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _valid(db: Any, token_id: str, secret: str) -> Any:
    """The token's row, if it is one of ours, in date and with uses left."""
    row = db.execute(
        "SELECT secret_hash, labels, uses_left, expires_at FROM bridge_tokens WHERE id = ?",
        (token_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row[0], _hash(secret)):
        raise Unauthenticated(
            "the join token is not one this master made (forged, or from another "
            "master); make one here: dxflow bridge token"
        )
    if row[3] < time.time():
        raise Gone(
            f"the join token expired {time.ctime(row[3])}; make a new one on the "
            "master: dxflow bridge token --expires 1h"
        )
    if row[2] < 1:
        raise Gone(
            "the join token is used up; make a new one on the master: dxflow bridge token --uses N"
        )
    return row


class JoinTokens:
    def __init__(self, state: State) -> None:
        self._state = state

    def mint(
        self, url: str, fingerprint: str, expires: float, uses: int, labels: dict[str, str],
        created_by: str | None,
    ) -> tuple[JoinToken, float]:  # fmt: skip
        token = JoinToken(url, fingerprint, secrets.token_hex(8), secrets.token_urlsafe(24))
        expires_at = time.time() + expires
        self._state.insert(
            "INSERT INTO bridge_tokens (id, secret_hash, labels, uses_left, expires_at,"
            " created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (token.id, _hash(token.secret), json.dumps(labels), uses, expires_at, created_by,
             time.time()),
        )  # fmt: skip
        return token, expires_at

    def check(self, token_id: str, secret: str) -> None:
        """Refuse a forged, expired or used-up token without using it (a join checks
        its token before anything else it was sent)."""
        with self._state.transaction() as db:
            _valid(db, token_id, secret)

    def redeem(self, token_id: str, secret: str) -> dict[str, str]:
        """Use the token once; its labels. Refuses a forged, expired or used-up token."""
        with self._state.transaction() as db:
            row = _valid(db, token_id, secret)
            db.execute("UPDATE bridge_tokens SET uses_left = uses_left - 1 WHERE id = ?",
                       (token_id,))  # fmt: skip
        labels: dict[str, str] = json.loads(row[1])
        return labels

    def prune(self) -> None:
        self._state.execute(
            "DELETE FROM bridge_tokens WHERE expires_at < ? OR uses_left < 1", (time.time(),)
        )
