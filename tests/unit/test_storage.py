"""The storage root's own housekeeping (path confinement is tested through every door in
tests/contract/test_objects.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dxflow._core._objects._paths import STALE_TEMP, Storage


def test_start_up_removes_only_stale_temp_files(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "root")
    temp = storage.private / "tmp"
    old_file, old_dir, fresh = temp / "part-old", temp / "unzip-old", temp / "part-live"
    old_file.write_bytes(b"left by an engine killed mid-upload")
    (old_dir / "inner").mkdir(parents=True)
    (old_dir / "inner" / "x").write_bytes(b"x")
    fresh.write_bytes(b"an upload in flight")
    long_ago = time.time() - STALE_TEMP - 60
    for path in (old_file, old_dir):
        os.utime(path, (long_ago, long_ago))

    Storage(tmp_path / "root")  # the next start-up

    assert sorted(p.name for p in temp.iterdir()) == ["part-live"]
    assert fresh.read_bytes() == b"an upload in flight"
    assert storage.sweep_temp(0) == 1 and not any(temp.iterdir())
