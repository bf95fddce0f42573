"""The dispatcher: the one place every call goes through, whatever door it came in by.

It authenticates and authorizes the caller against the operation table, validates the
request, calls the core handler, translates stray exceptions and writes the audit log.
No handler and no server route checks permissions on its own.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .._exceptions import (
    ApiError,
    InternalError,
    PermissionDenied,
    TooManyRequests,
    Unauthenticated,
)
from .._models import Request, Response
from .._operations import Operation
from .._permissions import Permission, check_permission
from .._validation import validate_request
from ._audit import AuditLog
from ._context import Context, Identity
from ._handlers import Handler
from ._objects._blob import Blob
from ._proxies._contract import Admission, Client, Refused
from ._proxies._links import Links
from ._proxies._live import LiveProxy
from ._revocation import OpenCalls

__all__ = ["Dispatcher"]

log = logging.getLogger("dxflow.engine")

REFUSAL_AUDIT_EVERY = 10.0
"""Seconds between two audit records of a proxy's refusals for one reason (the ones in
between are counted into the next record: a flood cannot fill the log)."""


class Dispatcher:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        audit: AuditLog,
        open_calls: OpenCalls | None = None,
        authenticate: Callable[[str, str | None], Identity] | None = None,
    ) -> None:
        self._handlers = dict(handlers)
        self._audit = audit
        self._authenticate = authenticate
        """The bearer token check (`AuthService.authenticate`), for proxies with auth=token."""
        self._refusals: dict[tuple[str, str], tuple[float, int]] = {}
        self.open_calls = open_calls or OpenCalls()
        """Every open channel and stream by identity: a change to its key ends it."""
        self._inline = {
            name
            for name, handler in handlers.items()
            if not inspect.iscoroutinefunction(handler) and not inspect.isasyncgenfunction(handler)
        }

    def handles(self) -> set[str]:
        return set(self._handlers)

    def is_inline(self, op: Operation) -> bool:
        """True when the handler never awaits, so a blocking caller may run it directly."""
        return op.kind == "call" and op.name in self._inline

    def admit(self, ctx: Context, op: Operation, payload: Any) -> Request | None:
        """Check the caller may make this call and return the validated request."""
        self.authorize(ctx, op)
        request = validate_request(op.request, payload)
        if op.writes_when and not op.public and self._mutating(op, request):
            self._authorize(ctx, op, True, op.permission)  # a writable share: not READ_ONLY
        for field, needed in op.also_requires:  # e.g. a shell in a workflow's container
            if getattr(request, field, None) not in (None, "", False):
                self._authorize(ctx, op, op.mutating, needed, f" with {field}")
        return request

    def authorize(self, ctx: Context, op: Operation) -> None:
        """The permission check alone, for routes that parse a protocol of their own
        (tus) and must refuse a stranger before they look at the request."""
        if not op.public:
            self._authorize(ctx, op, op.mutating, op.permission)

    def _authorize(
        self, ctx: Context, op: Operation, mutating: bool, required: Permission | None,
        why: str = "",
    ) -> None:  # fmt: skip
        if ctx.identity is None:
            # Not audited: no credentials were presented, and anyone could make
            # the log grow at line rate. Failed credentials are (see AuthService).
            raise Unauthenticated(f"{op.name} needs authentication")
        missing = check_permission(ctx.identity.permissions, required, mutating)
        if missing is not None:
            self._audit.record(ctx, op.name, "denied", detail=f"needs {missing}{why}")
            raise PermissionDenied(
                f"{op.name}{why} needs {missing}; identity {ctx.identity.name!r} has "
                f"{ctx.identity.permissions}",
                operation=op.name,
                permission=missing,
            )

    @staticmethod
    def _mutating(op: Operation, request: Request | None) -> bool:
        return op.mutating or bool(op.writes_when and getattr(request, op.writes_when, False))

    def _target(self, op: Operation, request: Request | None) -> str | None:
        return str(getattr(request, op.target)) if op.target and request is not None else None

    def _finish(self, ctx: Context, op: Operation, request: Request | None, error: Any) -> None:
        if self._mutating(op, request) and not op.self_audited:
            outcome = "ok" if error is None else f"error:{getattr(error, 'code', 'internal')}"
            detail = getattr(error, "audit_detail", None)  # e.g. what a workflow policy refused
            self._audit.record(ctx, op.name, outcome, target=self._target(op, request),
                               detail=detail)  # fmt: skip

    def _translate(self, op: Operation, exc: BaseException) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        ref = secrets.token_hex(4)
        log.error("internal error in %s (ref %s)", op.name, ref, exc_info=exc)
        return InternalError(
            f"internal error in {op.name}; the engine log has the cause (ref {ref})"
        )

    async def call(self, ctx: Context, op: Operation, payload: Any = None, body: Any = None) -> Any:
        """Run `op`; an upload's handler also gets `body`, an async iterator of bytes."""
        request = self.admit(ctx, op, payload)
        try:
            extra = (body,) if op.kind == "upload" else ()
            result = self._handlers[op.name](ctx, request, *extra)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            error = self._translate(op, exc)
            self._finish(ctx, op, request, error)
            raise error from None
        self._finish(ctx, op, request, None)
        if isinstance(result, Blob):  # its bytes are read later, by the door: same errors
            result.translate = lambda exc: self._translate(op, exc)
        return result

    def call_inline(self, ctx: Context, op: Operation, payload: Any = None) -> Response:
        """`call` on the caller's thread, for handlers that never await (see `is_inline`).

        Such a call never suspends, so one step of its coroutine runs it to the end
        without an event loop: a blocking SDK skips the hop to its loop thread.
        """
        coroutine = self.call(ctx, op, payload)
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coroutine.close()
        raise RuntimeError(f"{op.name} suspended; it cannot run inline")

    @contextlib.asynccontextmanager
    async def channel(self, ctx: Context, op: Operation, payload: Any = None) -> AsyncIterator[Any]:
        """Open a two-way channel (a shell attach); its opening and closing are audited.

        The handler learns whether the caller may write: a READ_ONLY key gets a channel
        that carries output only.
        """
        request = self.admit(ctx, op, payload)
        assert ctx.identity is not None or op.public
        writable = ctx.identity is not None and (
            check_permission(ctx.identity.permissions, op.permission, True) is None
        )
        target = self._target(op, request)
        async with contextlib.AsyncExitStack() as stack:
            try:
                link = await stack.enter_async_context(
                    self._handlers[op.name](ctx, request, writable)
                )
            except Exception as exc:
                raise self._translate(op, exc) from None
            self._audit.record(ctx, op.name, "opened" if writable else "opened:read-only",
                               target=target)  # fmt: skip
            stack.callback(self._audit.record, ctx, op.name, "closed", target=target)
            yield stack.enter_context(self.open_calls.channel(ctx, link))

    def stream(self, ctx: Context, op: Operation, payload: Any = None) -> AsyncIterator[Any]:
        """Admit the call now (so refusals come before any item), then stream its items."""
        return self._stream(ctx, op, self.admit(ctx, op, payload))

    async def _stream(
        self, ctx: Context, op: Operation, request: Request | None
    ) -> AsyncIterator[Any]:
        error: ApiError | None = None
        try:
            async for item in self.open_calls.stream(ctx, self._handlers[op.name](ctx, request)):
                yield item
        except Exception as exc:
            error = self._translate(op, exc)
            raise error from None
        finally:
            self._finish(ctx, op, request, error)

    # -- the proxies' data plane: one decision per connection or request ----------------

    def admit_proxy(self, live: LiveProxy, client: Client) -> Admission:
        """Admit `client` to `live` or raise `Refused`: its CIDR rules, its rate, its
        auth (a token with the proxy's permission, or one of its access links), then its
        connection cap. Refusals are counted and audited (rate-limited)."""
        try:
            return self._admit_proxy(live, client)
        except Refused as refused:
            live.stats.refuse(refused.reason)
            self._audit_refusal(live.name, client, refused)
            raise

    def _admit_proxy(self, live: LiveProxy, client: Client) -> Admission:
        if live.removed:  # found a moment before its removal
            raise Refused(404, f"no proxy named {live.name!r} (it was removed)", reason="removed")
        rules = live.rules
        rules.networks.check(client.ip)
        if rules.buckets is not None and rules.rate_key == "client":
            rules.buckets.take(client.ip)  # before auth: a flood of bad tokens is slowed too
        identity, set_cookie = self._proxy_identity(live, client)
        if rules.buckets is not None and rules.rate_key == "identity":
            rules.buckets.take(identity or client.ip)
        if rules.max_connections and live.open >= rules.max_connections:
            raise Refused(503, f"proxy {live.name} is at its cap of {rules.max_connections} "
                          "open connections; retry shortly", {"Retry-After": "1"},
                          reason="connections")  # fmt: skip
        return Admission(identity, set_cookie, live.acquire())

    def _proxy_identity(self, live: LiveProxy, client: Client) -> tuple[str | None, str | None]:
        """Who the client is by the proxy's auth, and the cookie a link sets."""
        auth = live.rules.auth
        if auth == "none":
            return None, None
        if auth == "link":
            link = Links.check(live, client.link) if client.link else None
            if link is None:
                why = "is not valid (revoked, expired or unknown)" if client.link else "is needed"
                raise Refused(401 if not client.link else 403,
                              f"proxy {live.name}: an access link of this proxy {why}",
                              reason="auth")  # fmt: skip
            path = f"/p/{live.name}/" if live.prefix else "/"
            cookie = f"dxflow_link_{live.name}={client.link}; Path={path}; HttpOnly; SameSite=Lax"
            return f"link:{link.id}", cookie
        if not client.token or self._authenticate is None:
            raise Refused(401, f"proxy {live.name} needs a dxflow token: send "
                          "Authorization: Bearer <token> (`dxflow token`)",
                          {"WWW-Authenticate": 'Bearer realm="dxflow"'}, reason="auth")  # fmt: skip
        try:
            identity = self._authenticate(client.token, client.ip)
        except TooManyRequests as exc:
            retry = str(exc.details.get("retry_after", 60))
            raise Refused(429, exc.message, {"Retry-After": retry}, reason="rate") from None
        except Unauthenticated as exc:
            challenge = {"WWW-Authenticate": 'Bearer realm="dxflow"'}
            message = f"proxy {live.name}: {exc.message}"
            raise Refused(401, message, challenge, reason="auth") from None
        missing = check_permission(identity.permissions, live.rules.permission, client.writes)
        if missing is not None:
            message = (f"proxy {live.name} needs {missing}; identity {identity.name!r} has "
                       f"{identity.permissions}")  # fmt: skip
            raise Refused(403, message, reason="auth")
        return identity.name, None

    def _audit_refusal(self, proxy: str, client: Client, refused: Refused) -> None:
        key = (proxy, refused.reason)
        now = time.monotonic()
        last, count = self._refusals.get(key, (float("-inf"), 0))
        if now - last < REFUSAL_AUDIT_EVERY:
            self._refusals[key] = (last, count + 1)
            return
        self._refusals[key] = (now, 0)
        if len(self._refusals) > 10_000:  # proxies come and go: forget the oldest
            self._refusals.pop(next(iter(self._refusals)))
        more = f" (and {count} more since the last record)" if count else ""
        self._audit.record(Context(None, client.ip), "proxies.access",
                           f"refused:{refused.reason}", target=proxy,
                           detail=f"{refused.status} {refused.message}{more}")  # fmt: skip
