"""Challenge-response authentication and bearer tokens.

A client asks for a nonce, signs ``dxflow-auth-v1:<engine id>:<nonce>`` with its private
key and exchanges the signature for a token. Nonces are single use and live 60 s.
Failures say only "authentication failed": never whether an identity exists.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from datetime import UTC, datetime

from .._exceptions import TooManyRequests, Unauthenticated
from .._keypairs import PublicKey, challenge_message
from .._models import Challenge, Token, TokenRequest, Verify, WhoAmI
from ._audit import AuditLog
from ._context import Context, Identity
from ._handlers import handles
from ._key_registry import KeyRecord, KeyRegistry
from ._tokens import TokenError, decode_token, encode_token

__all__ = ["AuthService", "RateLimiter"]

NONCE_TTL = 60.0
# The unix socket is 0600, so only the engine's own user reaches it; in-process calls
# are that user too. Neither is a stranger to slow down.
_TRUSTED = frozenset({"unix", "local"})
_MAX_NONCES = 10_000
_FAILED = "authentication failed"


def _address(client: str | None) -> str:
    """The bucket of a client `host:port`: its address; for IPv6, its /64 network (one
    host usually holds a whole /64, and could otherwise take a fresh address per try)."""
    host = (client or "unknown").rsplit(":", 1)[0].strip("[]")
    if ":" not in host:
        return host
    try:
        return str(ipaddress.IPv6Network(f"{host}/64", strict=False))
    except ValueError:
        return host


class RateLimiter:
    """At most `limit` events per `window` seconds per bucket (a client address by default)."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        max_clients: int = 10_000,
        what: str = "authentication requests",
    ) -> None:
        self.limit, self.window, self._max, self.what = limit, window, max_clients, what
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, client: str | None, bucket: str | None = None) -> None:
        """Count one event of `client` (in `bucket`, else its address); 429 past the limit."""
        if client in _TRUSTED:
            return
        key = bucket or _address(client)
        now = time.monotonic()
        with self._lock:
            events = self._events.pop(key, None) or deque()
            while events and events[0] <= now - self.window:
                events.popleft()
            self._events[key] = events
            if len(self._events) > self._max:
                self._events.popitem(last=False)
            if len(events) >= self.limit:
                retry = max(1, int(events[0] + self.window - now) + 1)
                raise TooManyRequests(
                    f"too many {self.what} from {key}; retry in {retry} s",
                    retry_after=retry,
                )
            events.append(now)


class AuthService:
    def __init__(
        self,
        engine_id: str,
        secret: bytes,
        registry: KeyRegistry,
        audit: AuditLog,
        rate_limit: int,
        decoy: PublicKey,
    ) -> None:
        self.engine_id = engine_id
        self._secret = secret
        self._registry = registry
        self._audit = audit
        # Three budgets, so that one noisy client behind a NAT cannot lock the others out:
        # challenges per address; failed credentials (bad tokens, failed handshakes) per
        # address, which never block a good login; successful logins per identity.
        self._limiter = RateLimiter(rate_limit)
        self._failures = RateLimiter(rate_limit, what="failed authentications")
        self._logins = RateLimiter(rate_limit, what="logins")
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._decoy = decoy

    # -- tokens -------------------------------------------------------------------------

    def issue(self, record: KeyRecord, lifetime: int) -> Token:
        claims = {
            "iss": self.engine_id,
            "sub": record.identity,
            "perm": record.permissions.names,
            "kv": record.version,
        }
        token, expires = encode_token(self._secret, claims, lifetime)
        return Token(
            token=token,
            identity=record.identity,
            permissions=record.permissions.names,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def authenticate(self, token: str, client: str | None) -> Identity:
        """The identity a bearer token stands for; revoked keys fail at once."""
        try:
            claims = decode_token(self._secret, token, self.engine_id)
        except TokenError as exc:
            self._reject(client, str(exc), None)
            raise Unauthenticated(f"invalid token: {exc}") from None
        record = self._registry.get(str(claims.get("sub")))
        if record is None or record.version != claims.get("kv"):
            self._reject(client, "key unregistered or rotated", str(claims.get("sub")))
            raise Unauthenticated("invalid token: its key was unregistered or rotated")
        return record.identity_of()

    def _reject(self, client: str | None, why: str, identity: str | None) -> None:
        # Failed tokens count against the address's budget of failures, which bounds how
        # fast a stranger can make the audit log grow (past it: 429, not recorded).
        self._failures.hit(client)
        ctx = Context(None, client)
        self._audit.record(ctx, "auth.token", "rejected", identity=identity, detail=why)

    def identity_for_key(self, public: PublicKey) -> Identity:
        """The identity of an in-process engine opened with a private key."""
        record = self._registry.by_fingerprint(public.fingerprint)
        if record is None:
            raise Unauthenticated(f"{_FAILED}: the key {public.fingerprint} is not registered")
        return record.identity_of()

    def _record_for(self, identity: Identity) -> KeyRecord:
        record = self._registry.get(identity.name)
        if record is None or record.public.fingerprint != identity.fingerprint:
            raise Unauthenticated("the calling key was unregistered or rotated")
        return record

    # -- handlers -----------------------------------------------------------------------

    @handles("auth.challenge")
    def challenge(self, ctx: Context, request: None) -> Challenge:
        self._limiter.hit(ctx.client)
        nonce = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            while self._nonces and next(iter(self._nonces.values())) <= now:
                self._nonces.popitem(last=False)
            if len(self._nonces) >= _MAX_NONCES:
                self._nonces.popitem(last=False)
            self._nonces[nonce] = now + NONCE_TTL
        return Challenge(
            nonce=nonce,
            expires_at=datetime.fromtimestamp(time.time() + NONCE_TTL, UTC),
            message=challenge_message(self.engine_id, nonce),
        )

    @handles("auth.verify")
    def verify(self, ctx: Context, request: Verify) -> Token:
        with self._lock:
            expiry = self._nonces.pop(request.nonce, None)
        if expiry is None or expiry <= time.monotonic():
            self._fail(ctx, request.identity, "unknown, used or expired challenge")
            raise Unauthenticated(f"{_FAILED}: the challenge is unknown, used or expired")
        # Identities cannot contain ":", fingerprints always do: no ambiguity.
        record = (
            self._registry.by_fingerprint(request.identity)
            if request.identity.startswith("SHA256:")
            else self._registry.get(request.identity)
        )
        if record is None:
            # Spend the time a real verification takes, so timing does not tell
            # an unknown identity from a wrong signature.
            self._signature_ok(self._decoy, request)
        if record is None or not self._signature_ok(record.public, request):
            self._fail(ctx, request.identity, "bad signature or unknown key")
            raise Unauthenticated(f"{_FAILED}: the signature does not match a registered key")
        self._logins.hit(ctx.client, f"identity {record.identity}")
        self._audit.record(ctx, "auth.verify", "ok", identity=record.identity)
        return self.issue(record, request.lifetime)

    def _signature_ok(self, public: PublicKey, request: Verify) -> bool:
        try:
            signature = base64.b64decode(request.signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        message = challenge_message(self.engine_id, request.nonce).encode()
        return public.verify(message, signature)

    def _fail(self, ctx: Context, identity: str | None, why: str) -> None:
        self._failures.hit(ctx.client)
        self._audit.record(ctx, "auth.verify", "failed", identity=identity, detail=why)

    @handles("auth.token")
    def token(self, ctx: Context, request: TokenRequest) -> Token:
        assert ctx.identity is not None
        self._logins.hit(ctx.client, f"identity {ctx.identity.name}")
        return self.issue(self._record_for(ctx.identity), request.lifetime)

    @handles("auth.whoami")
    def whoami(self, ctx: Context, request: None) -> WhoAmI:
        assert ctx.identity is not None
        return WhoAmI(
            identity=ctx.identity.name,
            permissions=ctx.identity.permissions.names,
            engine_id=self.engine_id,
        )
