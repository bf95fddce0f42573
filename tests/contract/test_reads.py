"""A file's bytes are read where the dispatcher translates errors: a file that goes away
between the look and the read is `NotFound` on both transports, never a raw
`FileNotFoundError` in-process or a 500 (or a broken 200) over HTTP."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest

from dxflow import Engine, InternalError, NotFound
from dxflow._core import EngineCore
from dxflow._core._objects import _blob
from dxflow._core._objects._walker import Walker

SMALL, BIG = 10_000, 3 << 20  # one read and one send; a streamed answer


@pytest.mark.parametrize("size", [SMALL, BIG])
def test_a_file_removed_between_info_and_open_is_not_found(
    engine: Engine, core: EngineCore, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    engine.objects.pipe("data/gone.bin", os.urandom(size))
    assert engine.objects.info("data/gone.bin").size == size  # it is there when looked at
    file = core.objects.storage.root / "data" / "gone.bin"
    opened = Walker.open_file

    def removed_first(self: Walker, parts: Any, path: str) -> tuple[int, os.stat_result]:
        file.unlink(missing_ok=True)  # gone after the stat, before the open
        return opened(self, parts, path)

    monkeypatch.setattr(Walker, "open_file", removed_first)
    with pytest.raises(NotFound, match=r"gone\.bin"):
        engine.objects.cat("data/gone.bin")


@pytest.mark.parametrize("size", [SMALL, BIG])
def test_a_file_gone_under_the_read_is_not_found(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    # Opened, then lost under the read (a network filesystem drops it: ENOENT, ESTALE).
    engine.objects.pipe("data/lost.bin", os.urandom(size))

    def lost(fd: int, start: int, end: int, chunk: int = 0) -> Iterator[bytes]:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        yield b""  # a generator, as the real one

    monkeypatch.setattr(_blob, "read_range", lost)
    with pytest.raises(NotFound, match=r"lost\.bin"):
        engine.objects.cat("data/lost.bin")
    with pytest.raises(NotFound, match=r"lost\.bin"):
        engine.objects.cat("data/lost.bin", 10, 20)


def test_any_other_read_failure_is_an_internal_error_with_a_reference(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.objects.pipe("data/broken.bin", os.urandom(SMALL))

    def broken(fd: int, start: int, end: int, chunk: int = 0) -> Iterator[bytes]:
        raise OSError(errno.EIO, "Input/output error")
        yield b""

    monkeypatch.setattr(_blob, "read_range", broken)
    with pytest.raises(InternalError, match=r"objects\.read.*ref "):
        engine.objects.cat("data/broken.bin")
