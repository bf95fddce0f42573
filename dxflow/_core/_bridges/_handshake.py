"""The challenge-response handshake, as one engine signs in to another over a bridge.

The SDK's transports do the same for users; the core cannot import them (layers point
down), and an engine needs only this much of them: ask a nonce, sign it, get a token,
and renew it before it expires.
"""

from __future__ import annotations

import ssl
import time

import httpx

from ..._exceptions import Unauthenticated
from ..._keypairs import PrivateKey, is_challenge_message
from ..._models import Challenge, Token
from ..._wire import error_from_reply

__all__ = ["Signer", "tls_context"]

_RENEW_MARGIN = 60.0


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS context for `verify`: True (system CAs), a CA bundle path, or False."""
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


class Signer:
    """A token on one engine for `key`, made by handshake and renewed when near expiry."""

    def __init__(self, client: httpx.AsyncClient, key: PrivateKey, lifetime: int = 3600) -> None:
        self._client, self._key, self._lifetime = client, key, lifetime
        self._token: str | None = None
        self._expires = 0.0

    def forget(self) -> None:
        self._token, self._expires = None, 0.0

    async def headers(self) -> dict[str, str]:
        if self._token is None or self._expires - time.time() < _RENEW_MARGIN:
            await self._handshake()
        return {"Authorization": f"Bearer {self._token}"}

    async def _post(self, path: str, body: dict[str, object] | None = None) -> bytes:
        reply = await self._client.post(path, json=body)
        if not reply.is_success:
            raise error_from_reply(reply.status_code, reply.content, reply.reason_phrase)
        return reply.content

    async def _handshake(self) -> None:
        challenge = Challenge.model_validate_json(await self._post("/api/auth/challenge"))
        if not is_challenge_message(challenge.message, challenge.nonce):
            raise Unauthenticated("the engine sent a malformed challenge; refusing to sign it")
        token = Token.model_validate_json(await self._post("/api/auth/verify", {
            "identity": self._key.public.fingerprint, "nonce": challenge.nonce,
            "signature": self._key.sign_b64(challenge.message), "lifetime": self._lifetime,
        }))  # fmt: skip
        self._token, self._expires = token.token, token.expires_at.timestamp()
