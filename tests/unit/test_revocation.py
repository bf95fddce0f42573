"""OpenCalls on its own: a key change ends streams and channels, from any thread."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from dxflow import InvalidRequest, PermissionDenied, Unauthenticated
from dxflow._core._context import Context, Identity
from dxflow._core._key_registry import KeyChange
from dxflow._core._revocation import OpenCalls, still_admits
from dxflow._permissions import Permission

ALICE = Identity("alice", Permission.PLATFORM, "fp-1")


class Registry:
    """A fake key table: what `lookup` sees."""

    def __init__(self) -> None:
        self.keys: dict[str, Identity] = {"alice": ALICE}

    def lookup(self, name: str) -> Identity | None:
        return self.keys.get(name)


async def _forever(closed: list[str]) -> AsyncIterator[int]:
    try:
        yield 1
        await anyio.sleep_forever()
        yield 2
    finally:
        closed.append("closed")


def test_a_change_from_another_thread_ends_a_waiting_stream() -> None:
    registry = Registry()
    calls = OpenCalls(registry.lookup)
    closed: list[str] = []

    async def main() -> None:
        stream = calls.stream(Context(ALICE), _forever(closed))
        assert await stream.__anext__() == 1
        assert calls.held("alice") == 1
        change = KeyChange("alice", "unregistered", None)
        threading.Thread(target=calls.key_changed, args=(change,)).start()
        with anyio.fail_after(30), pytest.raises(Unauthenticated, match="unregistered"):
            await stream.__anext__()

    anyio.run(main)
    assert closed == ["closed"] and calls.held("alice") == 0


def test_a_change_in_the_key_table_alone_ends_it_too() -> None:
    registry = Registry()
    calls = OpenCalls(registry.lookup)

    async def main() -> None:
        stream = calls.stream(Context(ALICE), _forever([]))
        await stream.__anext__()
        registry.keys["alice"] = Identity("alice", Permission.OBJECT, "fp-1")  # no event
        with anyio.fail_after(30), pytest.raises(PermissionDenied, match="was changed"):
            await stream.__anext__()

    anyio.run(main)


def test_a_change_before_the_call_opened_ends_it_at_once() -> None:
    registry = Registry()
    registry.keys["alice"] = Identity("alice", Permission.PLATFORM, "fp-2")  # rotated
    calls = OpenCalls(registry.lookup)

    async def main() -> None:
        with pytest.raises(Unauthenticated, match="rotated"):
            async for _ in calls.stream(Context(ALICE), _forever([])):
                pass

    anyio.run(main)


def test_items_and_errors_pass_through_unchanged() -> None:
    calls = OpenCalls(Registry().lookup)

    async def failing() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise InvalidRequest("bad")

    async def main() -> list[int]:
        seen: list[int] = []
        with pytest.raises(InvalidRequest, match="bad"):
            async for item in calls.stream(Context(ALICE), failing()):
                seen.append(item)
        return seen

    assert anyio.run(main) == [1, 2]


class Link:
    def __init__(self) -> None:
        self.delivered: list[Any] = []

    async def messages(self) -> AsyncIterator[Any]:
        yield {"type": "hello"}
        await anyio.sleep_forever()
        yield b"never"

    async def deliver(self, message: Any) -> None:
        self.delivered.append(message)


def test_a_guarded_channel_ends_and_refuses_input() -> None:
    calls = OpenCalls(Registry().lookup)
    link = Link()

    async def main() -> None:
        with calls.channel(Context(ALICE), link) as guarded:
            messages = guarded.messages()
            assert await messages.__anext__() == {"type": "hello"}
            await guarded.deliver(b"typed")
            narrowed = Identity("alice", Permission.OBJECT, "fp-1")  # PLATFORM taken away
            calls.key_changed(KeyChange("alice", "updated", narrowed))
            with anyio.fail_after(30), pytest.raises(PermissionDenied):
                await messages.__anext__()
            with pytest.raises(PermissionDenied):
                await guarded.deliver(b"after")
            await messages.aclose()

    anyio.run(main)
    assert link.delivered == [b"typed"] and calls.held("alice") == 0


def test_a_reader_may_wait_in_scopes_of_its_own_and_leave_early() -> None:
    """Handlers hold task groups across their yields; the guard keeps them in one task."""
    calls = OpenCalls(Registry().lookup)
    closed: list[str] = []

    async def grouped() -> AsyncIterator[int]:
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(anyio.sleep_forever)
                for n in range(1_000):
                    yield n
                group.cancel_scope.cancel()
        finally:
            closed.append("closed")

    async def main() -> list[int]:
        stream = calls.stream(Context(ALICE), grouped())
        seen = []
        for _ in range(3):
            with anyio.fail_after(30):
                seen.append(await stream.__anext__())
        await stream.aclose()  # the reader leaves early
        return seen

    assert anyio.run(main) == [0, 1, 2]
    assert closed == ["closed"] and calls.held("alice") == 0


def test_an_update_that_takes_nothing_away_ends_nothing() -> None:
    """Widening a key (or an update that changes nothing) leaves its open calls alone."""
    registry = Registry()
    calls = OpenCalls(registry.lookup)
    link = Link()
    wider = Identity("alice", Permission.PLATFORM | Permission.OBJECT, "fp-1")

    async def main() -> None:
        with calls.channel(Context(ALICE), link) as guarded:
            messages = guarded.messages()
            assert await messages.__anext__() == {"type": "hello"}
            calls.key_changed(KeyChange("alice", "updated", ALICE))
            registry.keys["alice"] = wider  # the key table, as another process sees it
            calls.key_changed(KeyChange("alice", "updated", wider))
            calls.check(guarded._ticket, now=True)  # a look at the key table: still fine
            await guarded.deliver(b"still typing")
            await messages.aclose()

    anyio.run(main)
    assert link.delivered == [b"still typing"]


@pytest.mark.parametrize(
    ("after", "admits"),
    [
        (Identity("alice", Permission.PLATFORM | Permission.SHELL, "fp-1"), True),
        (Identity("alice", Permission.MASTER, "fp-1"), True),
        (Identity("alice", Permission.PLATFORM | Permission.READ_ONLY, "fp-1"), False),
        (Identity("alice", Permission.SHELL, "fp-1"), False),
        (Identity("alice", Permission.PLATFORM, "fp-2"), False),  # rotated
        (Identity("alice", Permission.PLATFORM, "fp-1", run_as="nobody"), False),
        (Identity("alice", Permission.PLATFORM, "fp-1", workflow_policy="restricted"), False),
        (None, False),  # unregistered
    ],
)
def test_still_admits(after: Identity | None, admits: bool) -> None:
    assert still_admits(ALICE, after) is admits
