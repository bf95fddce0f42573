"""Bearer tokens: compact JWTs (HS256) signed with the engine's persisted secret.

Written against the standard library (RFC 7519 with one algorithm) rather than a JWT
package: the verifier accepts exactly one header, which rules out algorithm confusion.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

__all__ = ["TokenError", "decode_token", "encode_token"]

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


class TokenError(Exception):
    """The token is malformed, forged, expired or issued by another engine."""


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def encode_token(secret: bytes, claims: dict[str, Any], lifetime: int) -> tuple[str, int]:
    """Sign `claims` for `lifetime` seconds; return the token and its expiry (epoch)."""
    now = int(time.time())
    body = {**claims, "iat": now, "exp": now + lifetime, "jti": secrets.token_hex(8)}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signing_input = _HEADER + b"." + payload
    signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode(), body["exp"]


def decode_token(secret: bytes, token: str, issuer: str) -> dict[str, Any]:
    """Return the claims of a valid token, or raise TokenError."""
    parts = token.split(".")
    # Headers arrive as latin-1 text: anything beyond ASCII is garbage, not a signature
    # (compare_digest refuses non-ASCII str with a TypeError).
    if len(parts) != 3 or parts[0] != _HEADER.decode() or not token.isascii():
        raise TokenError("malformed token")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    expected = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, parts[2]):
        raise TokenError("bad token signature")
    try:
        claims: dict[str, Any] = json.loads(_unb64(parts[1]))
    except ValueError:
        raise TokenError("malformed token") from None
    if not isinstance(claims, dict) or claims.get("iss") != issuer:
        raise TokenError("token issued by another engine")
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
        raise TokenError("token expired")
    return claims
