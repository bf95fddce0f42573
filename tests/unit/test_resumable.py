"""The tus client loop: what it does when the engine answers 409 on a PATCH."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from dxflow._exceptions import Conflict
from dxflow._models import ObjectInfo, UploadInfo
from dxflow._operations import OPERATIONS, Operation
from dxflow._transports import _resumable
from dxflow._transports._base import FileSlice

NOW = datetime.now(UTC)


class Engine:
    """Answers uploads.* like the engine; the first PATCH meets `first` (a Conflict)."""

    url = "http://engine.test"

    def __init__(self, first: Conflict, size: int) -> None:
        self.first: Conflict | None = first
        self.size = size
        self.offset = 0
        self.patches: list[int] = []

    def _info(self) -> UploadInfo:
        return UploadInfo(id="u1", path="a.bin", length=self.size, offset=self.offset,
                          expires_at=NOW, completed=self.offset == self.size)  # fmt: skip

    async def call(self, op: Operation, params: Mapping[str, Any]) -> Any:
        if op.name in ("uploads.create", "uploads.status"):
            return self._info()
        assert op.name == "objects.info"
        return ObjectInfo(path="a.bin", name="a.bin", type="file", size=self.size, modified=NOW)

    async def upload(self, op: Operation, params: Mapping[str, Any], body: FileSlice) -> Any:
        self.patches.append(params["offset"])
        if self.first is not None:
            first, self.first = self.first, None
            self.offset = 1024  # the request that died had written this much meanwhile
            raise first
        self.offset = params["offset"] + body.length
        return self._info()


@pytest.fixture
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(_resumable, "SMALL", 4096)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 10_000)
    return path


def put(engine: Engine, source: Path) -> Any:
    async def main() -> Any:
        return await _resumable.put_file(engine, OPERATIONS["objects.write"],  # type: ignore[arg-type]
                                         {"path": "a.bin"}, source, None)  # fmt: skip

    return anyio.run(main)


@pytest.mark.parametrize(
    "conflict",
    [Conflict("upload 'u1' is receiving another request", busy=True),
     Conflict("upload 'u1' is at offset 1024, not 0", offset=1024)],
)  # fmt: skip
def test_a_busy_or_moved_upload_is_resumed_from_the_engines_offset(
    big: Path, conflict: Conflict
) -> None:
    engine = Engine(conflict, 10_000)
    assert put(engine, big).size == 10_000
    assert engine.patches == [0, 1024]  # asked where it was, went on from there


def test_another_conflict_is_the_callers(big: Path) -> None:
    engine = Engine(Conflict("a.bin exists; pass overwrite=True to replace it"), 10_000)
    with pytest.raises(Conflict, match="exists"):
        put(engine, big)
    assert engine.patches == [0]
