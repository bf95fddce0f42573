"""Authentication: the signed-nonce handshake and bearer tokens."""

from __future__ import annotations

from .. import _models as m
from ._base import NoRequest, Operation

__all__ = ["CHALLENGE", "TOKEN", "VERIFY", "WHOAMI"]


# fmt: off
CHALLENGE: Operation[NoRequest, m.Challenge] = Operation(
    "auth.challenge", "POST", "/api/auth/challenge",
    "Issue a single-use nonce to sign (expires after 60 s).", response=m.Challenge, public=True,
    idempotent=False)
VERIFY: Operation[m.Verify, m.Token] = Operation(
    "auth.verify", "POST", "/api/auth/verify", "Exchange a signed nonce for a bearer token.",
    request=m.Verify, response=m.Token, public=True, idempotent=False)
TOKEN: Operation[m.TokenRequest, m.Token] = Operation(
    "auth.token", "POST", "/api/auth/token", "Issue a new token for the calling identity.",
    request=m.TokenRequest, response=m.Token, idempotent=False)
WHOAMI: Operation[NoRequest, m.WhoAmI] = Operation(
    "auth.whoami", "GET", "/api/auth/whoami", "The calling identity and its permissions.",
    response=m.WhoAmI)
# fmt: on
