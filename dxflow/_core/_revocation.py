"""Revocation of what a key holds open: its channels and streams end when the key changes.

The dispatcher opens every channel (a shell attach) and every stream (stats watch, logs
follow, events, workflow up) and holds each here under a `Ticket` for its identity. When
the key registry reports a change to that key (unregistered, rotated, or updated so that
it may do less), every ticket of the identity is revoked at once: a stream ends with the
error as its last item; a channel's messages end with it and its input is refused. An
update that only adds permissions ends nothing: what was allowed stays allowed.

Another engine process on the same home changes the keys table without telling this one.
So a ticket also compares the key with the one it opened under: before every input, at
most every half second while items flow, and every half second while it waits for one.
Such a change ends the call within about half a second too.

A stream's handler runs in a task of the call's own that feeds a memory stream, so the
wait for its next item can be abandoned while the handler's generator stays in one task
from first to last (handlers hold task groups across their yields, and a generator moved
between tasks breaks them). A channel's link holds none, so each wait for its next
message is a task of its own, cancelled when the key changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio

from .._exceptions import ApiError, PermissionDenied, Unauthenticated
from .._permissions import Permission, check_permission
from ._context import Context, Identity
from ._key_registry import ChangeKind, KeyChange

__all__ = ["OpenCalls", "Ticket"]

_TICK = 0.5
"""Seconds between two looks at the key table (for changes made by another process)."""

_CLEANUP = 5.0
"""Seconds a stream's handler has to clean up once its stream ends early."""

Lookup = Callable[[str], Identity | None]


def _closing(name: str, kind: ChangeKind) -> ApiError:
    if kind == "updated":
        return PermissionDenied(
            f"the key of {name!r} was changed, so this call was closed; open it again to "
            "be admitted under the key's new permissions",
            identity=name,
        )
    why = f"the key of {name!r} was {kind}, so this call was closed"
    return Unauthenticated(why, identity=name)


def _kind(opened_as: Identity | None, current: Identity | None) -> ChangeKind:
    if current is None or opened_as is None:
        return "unregistered"
    return "rotated" if current.fingerprint != opened_as.fingerprint else "updated"


_GRANTS = [(p, m) for p in (*Permission, None) for m in (False, True)]
"""Every (permission an operation needs, whether it mutates) a check can be asked."""


def still_admits(before: Identity | None, after: Identity | None) -> bool:
    """`after` may do everything `before` could, as the same key: a call admitted under
    `before` may go on. A new run-as user or workflow policy ends it (they change what
    its shells and workflows are), as does a new key."""
    if before is None or after is None:
        return before is after
    if (before.fingerprint, before.run_as, before.workflow_policy) != (
        after.fingerprint,
        after.run_as,
        after.workflow_policy,
    ):
        return False
    return all(
        check_permission(after.permissions, p, m) is None
        for p, m in _GRANTS
        if check_permission(before.permissions, p, m) is None
    )


class Ticket:
    """One open channel or stream of one identity."""

    def __init__(self, name: str, opened_as: Identity | None) -> None:
        self.name = name
        self.opened_as = opened_as
        """The key as the registry had it when the call opened."""
        self.error: ApiError | None = None
        self._loop = asyncio.get_running_loop()
        self._revoked: asyncio.Future[None] = self._loop.create_future()
        self._scope: anyio.CancelScope | None = None
        """The wait for a stream's next item, if one is under way."""
        self._checked = time.monotonic()

    def revoke(self, error: ApiError) -> None:
        """End the call, from any thread (a blocking SDK changes keys on its own thread)."""
        if self.error is None:
            self.error = error
        with contextlib.suppress(RuntimeError):  # the loop is closed: the call is gone
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if not self._revoked.done():
            self._revoked.set_result(None)
        if self._scope is not None:
            self._scope.cancel()


class OpenCalls:
    """Every open channel and stream, by identity: the one place revocation happens."""

    def __init__(self, lookup: Lookup | None = None) -> None:
        """`lookup`: the identity a name stands for now (None: not registered); without
        one, nothing is ever revoked (a dispatcher with no key registry)."""
        self._lookup = lookup
        self._lock = threading.Lock()
        self._tickets: dict[str, set[Ticket]] = {}

    def key_changed(self, change: KeyChange) -> None:
        """The registry's listener: end everything the changed key holds open."""
        with self._lock:  # and the calls a bridge master holds for its callers (`name/...`)
            tickets = [t for name, held in self._tickets.items()
                       if name == change.identity or name.startswith(change.identity + "/")
                       for t in held]  # fmt: skip
        for ticket in tickets:
            if change.kind != "updated" or not still_admits(ticket.opened_as, change.after):
                ticket.revoke(_closing(change.identity, change.kind))

    def held(self, name: str) -> int:
        """How many channels and streams `name` holds open."""
        with self._lock:
            return len(self._tickets.get(name, ()))

    @contextlib.contextmanager
    def _held(self, identity: Identity) -> Iterator[Ticket]:
        assert self._lookup is not None
        current = self._lookup(identity.name)
        ticket = Ticket(identity.name, current)
        # A change between admission and now (its event went out before this ticket
        # existed): the key the caller was admitted with is no longer the one registered.
        if not still_admits(identity, current):
            ticket.revoke(_closing(identity.name, _kind(identity, current)))
        with self._lock:
            self._tickets.setdefault(identity.name, set()).add(ticket)
        try:
            yield ticket
        finally:
            with self._lock:
                held = self._tickets.get(identity.name, set())
                held.discard(ticket)
                if not held:
                    self._tickets.pop(identity.name, None)

    def check(self, ticket: Ticket, now: bool = False) -> None:
        """Raise why the call is closed, once its key has changed (here or elsewhere)."""
        due = now or time.monotonic() - ticket._checked >= _TICK
        if ticket.error is None and self._lookup is not None and due:
            ticket._checked = time.monotonic()
            current = self._lookup(ticket.name)
            if not still_admits(ticket.opened_as, current):
                ticket.revoke(_closing(ticket.name, _kind(ticket.opened_as, current)))
        if ticket.error is not None:
            raise ticket.error

    async def _wait(self, ticket: Ticket, pending: asyncio.Future[Any]) -> Any:
        """The result of `pending`, unless the key changes first (then why it closed).

        `pending` is never cancelled here: a tick only looks at the key table again.
        """
        self.check(ticket)
        while not pending.done():
            await asyncio.wait(
                (pending, ticket._revoked), timeout=_TICK, return_when=asyncio.FIRST_COMPLETED
            )
            self.check(ticket, now=not pending.done())  # a tick: look at the key table
        return pending.result()

    # -- streams ------------------------------------------------------------------------

    async def stream(self, ctx: Context, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """`items`, until they end or the caller's key changes (then its error)."""
        if ctx.identity is None or self._lookup is None:
            async for item in items:
                yield item
            return
        with self._held(ctx.identity) as ticket:
            send, receive = anyio.create_memory_object_stream[tuple[bool, Any]](16)
            # A task of the call's own, not of a task group: a task group held across
            # this generator's yields would break a reader that waits for each item in a
            # cancel scope of its own (`with anyio.fail_after(5): await anext(stream)`).
            stop = anyio.CancelScope()
            producer = asyncio.ensure_future(_produce(items, send, stop))
            try:
                while True:
                    try:
                        failed, item = await self._receive(ticket, receive)
                    except anyio.EndOfStream:
                        return
                    if failed:
                        raise item
                    yield item
            finally:
                stop.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait((producer,))
                receive.close()
                if not producer.cancelled():
                    producer.exception()  # retrieved: it has been handed over already

    async def _receive(self, ticket: Ticket, receive: Any) -> tuple[bool, Any]:
        ticked = False
        while True:
            self.check(ticket, now=ticked)  # after a tick: look at the key table
            with contextlib.suppress(anyio.WouldBlock):
                return receive.receive_nowait()  # type: ignore[no-any-return]
            # A memory stream's receive is safe to cancel (anyio never drops an item
            # handed over): a tick or the key's change abandons the wait, not an item.
            with anyio.CancelScope(deadline=anyio.current_time() + _TICK) as scope:
                ticket._scope = scope
                if ticket.error is not None:
                    scope.cancel()  # revoked between the check and now
                try:
                    return await receive.receive()  # type: ignore[no-any-return]
                finally:
                    ticket._scope = None
            ticked = True

    # -- channels -----------------------------------------------------------------------

    @contextlib.contextmanager
    def channel(self, ctx: Context, link: Any) -> Iterator[Any]:
        """`link`, guarded: its messages end and its input is refused once the key changes."""
        if ctx.identity is None or self._lookup is None:
            yield link
            return
        with self._held(ctx.identity) as ticket:
            yield GuardedLink(self, ticket, link)


async def _produce(items: AsyncIterator[Any], send: Any, stop: anyio.CancelScope) -> None:
    with stop:
        async with send:
            try:
                async for item in items:
                    try:  # no checkpoint per item while the reader keeps up
                        send.send_nowait((False, item))
                    except anyio.WouldBlock:
                        await send.send((False, item))
            except Exception as exc:  # the reader raises it, in the caller's own task
                await send.send((True, exc))
            finally:
                # Closed here, in the task that iterated it (its task groups live in
                # this task), with a few seconds for its own clean-up when cancelled.
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    with anyio.move_on_after(_CLEANUP, shield=True):
                        await aclose()


class GuardedLink:
    """A channel's link (`messages()` and `deliver()`) that its key's change ends."""

    def __init__(self, calls: OpenCalls, ticket: Ticket, link: Any) -> None:
        self._calls = calls
        self._ticket = ticket
        self._link = link

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    async def messages(self) -> AsyncIterator[Any]:
        inner = self._link.messages()
        try:
            while True:
                # Each wait is a task of its own: a link's messages hold no task group, so
                # a wait abandoned when the key changes leaves nothing behind.
                pending = asyncio.ensure_future(inner.__anext__())
                try:
                    message = await self._calls._wait(self._ticket, pending)
                except StopAsyncIteration:
                    return
                finally:
                    if not pending.done():
                        pending.cancel()
                        await asyncio.wait((pending,))
                yield message
        finally:
            await inner.aclose()

    async def deliver(self, message: Any) -> None:
        self._calls.check(self._ticket, now=True)  # input never outlives the key
        await self._link.deliver(message)
