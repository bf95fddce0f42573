"""The one helper that turns a user's path into a file under the storage root.

Every object feature (listing, transfer, archives, share links, uploads) resolves
user paths here and nowhere else. A path is relative to the storage root, uses `/`,
and may not climb out of it by any means: `..`, an absolute path, a symlink leading
outside, a NUL byte, a backslash (a Windows separator in disguise), or a name longer
than the filesystem allows. Each is refused with InvalidRequest naming the path.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..._exceptions import InvalidRequest

__all__ = ["PRIVATE", "Storage"]

PRIVATE = ".dxflow"
"""The engine's own folder in the storage root (partial uploads, temp files)."""

STALE_TEMP = 24 * 3600.0
"""A temp file untouched this long was left by an engine that died mid-transfer: a live
transfer writes to its file every few MiB, and a stalled client is long gone by then."""

_MAX_NAME = 255
_MAX_PATH = 4096


def _refuse(path: str, why: str) -> InvalidRequest:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return InvalidRequest(f"invalid path {shown!r}: {why}", path=shown)


class Storage:
    """The storage root and the confinement of user paths to it."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.private = self.root / PRIVATE
        (self.private / "tmp").mkdir(parents=True, exist_ok=True)
        (self.private / "uploads").mkdir(parents=True, exist_ok=True)
        self.sweep_temp(STALE_TEMP)

    def sweep_temp(self, older_than: float) -> int:
        """Remove temp files not written for `older_than` seconds; return how many.

        Not everything there: another engine process on the same home (an in-process
        `Engine()` beside a booted one) may be writing the fresh ones.
        """
        cutoff, removed = time.time() - older_than, 0
        with os.scandir(self.private / "tmp") as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:  # its owner finished with it meanwhile
                    continue
        return removed

    def parts(self, path: str) -> list[str]:
        """The checked components of `path` ("" and "." mean the root)."""
        if "\x00" in path:
            raise _refuse(path.replace("\x00", "\\0"), "contains a NUL byte")
        if "\\" in path:
            raise _refuse(path, "contains a backslash; use / between names")
        if path.startswith("/"):
            raise _refuse(path, "is absolute; paths are relative to the storage root")
        if len(path.encode()) > _MAX_PATH:
            raise _refuse(path, f"is longer than {_MAX_PATH} bytes")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        for part in parts:
            if part == "..":
                raise _refuse(path, "'..' would leave the storage root")
            if len(part.encode()) > _MAX_NAME:
                raise _refuse(path, f"a name is longer than {_MAX_NAME} bytes")
        if parts and parts[0] == PRIVATE:
            raise _refuse(path, f"{PRIVATE}/ is the engine's own folder")
        return parts

    def resolve(self, path: str) -> Path:
        """The file `path` names, confined to the root even through symlinks."""
        parts = self.parts(path)
        target = self.root.joinpath(*parts)
        # Symlinks are followed as the OS would follow them; where they lead decides.
        real = Path(os.path.realpath(target))
        if real != self.root and not real.is_relative_to(self.root):
            raise _refuse(path, "leads outside the storage root (through a symlink)")
        return target

    def relative(self, target: Path) -> str:
        """The user-facing path of a file under the root."""
        return target.relative_to(self.root).as_posix() if target != self.root else ""

    def temp_path(self, hint: str = "part") -> Path:
        """A fresh name in the private temp folder (same filesystem: rename is atomic)."""
        return self.private / "tmp" / f"{hint}-{os.urandom(8).hex()}"
