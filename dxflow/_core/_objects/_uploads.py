"""Resumable uploads, as tus 1.0 defines them (core, creation, creation-defer-length,
termination, checksum, expiration).

An upload is a record in the state database and a partial file in the engine's private
folder. Bytes that arrive are kept even when the connection breaks, so a client asks
for the offset (HEAD) and goes on from there, after a network failure or its own restart.
When the last byte is in, the file is verified (sha256, if one was given) and committed
to its destination by a rename: an unfinished upload never shows at its destination.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio

from ..._exceptions import ChecksumMismatch, Conflict, InvalidRequest, NotFound
from ..._models import UploadAppend, UploadCreate, UploadInfo, UploadRef
from .._context import Context
from .._handlers import handles
from .._state import State
from ._fds import sha256_of
from ._paths import STALE_TEMP
from ._receive import Body, receive
from ._store import ObjectService

__all__ = ["CHECKSUM_ALGORITHMS", "UploadService"]

CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")


class UploadService:
    def __init__(self, state: State, store: ObjectService, expiry: float) -> None:
        self._state = state
        self._store = store
        self._expiry = expiry
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _folder(self) -> Iterator[int]:
        """An fd of the private uploads folder (walked from the root like any path)."""
        fd = self._store.storage.private_dir("uploads")
        try:
            yield fd
        finally:
            os.close(fd)

    def _size(self, upload_id: str) -> int:
        with self._folder() as folder:
            try:
                return os.stat(upload_id, dir_fd=folder, follow_symlinks=False).st_size
            except FileNotFoundError:
                return 0

    def _drop(self, upload_id: str) -> None:
        """Remove a partial file and give its bytes back to the quota."""
        with self._folder() as folder, contextlib.suppress(FileNotFoundError):
            size = os.stat(upload_id, dir_fd=folder, follow_symlinks=False).st_size
            os.unlink(upload_id, dir_fd=folder)
            self._store.quota.changed(-size)

    def _row(self, upload_id: str) -> Any:
        rows = self._state.query("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        if not rows or rows[0]["expires_at"] < time.time():
            raise NotFound(f"no upload {upload_id!r} (finished, abandoned or expired)")
        return rows[0]

    def _info(self, row: Any, offset: int | None = None, completed: bool = False) -> UploadInfo:
        if offset is None:
            offset = self._size(row["id"])
        return UploadInfo(
            id=row["id"],
            path=row["path"],
            offset=offset,
            length=row["length"],
            expires_at=datetime.fromtimestamp(row["expires_at"], UTC),
            metadata=json.loads(row["metadata"]),
            completed=completed,
        )

    def sweep(self) -> int:
        """Forget expired uploads and free their partial files; return how many went.

        Also removes partial files no upload names (an engine that died between creating
        one and recording it) once they are STALE_TEMP old. The core's background work
        runs this every UPLOAD_SWEEP_EVERY seconds; an expired upload is refused at once.
        """
        now = time.time()
        expired = self._state.query("SELECT id FROM uploads WHERE expires_at < ?", (now,))
        for row in expired:
            self._drop(row["id"])
        self._state.execute("DELETE FROM uploads WHERE expires_at < ?", (now,))
        known = {row["id"] for row in self._state.query("SELECT id FROM uploads")}
        with self._folder() as folder, os.scandir(folder) as entries:
            orphans = [
                entry.name
                for entry in entries
                if entry.name not in known and _untouched(entry, now - STALE_TEMP)
            ]
        for name in orphans:
            self._drop(name)
        return len(expired) + len(orphans)

    @handles("uploads.create")
    def create(self, ctx: Context, request: UploadCreate) -> UploadInfo:
        self._store.destination(request.path, request.overwrite)  # refuse early, not at the end
        if request.length is not None:
            self._store.quota.check(request.length, path=request.path)
        upload_id = secrets.token_urlsafe(16)
        now = time.time()
        with self._folder() as folder:
            os.close(self._store.storage.create_file(folder, upload_id))
        self._state.execute(
            "INSERT INTO uploads (id, path, length, overwrite, checksum, metadata, created_at, "
            "expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (upload_id, request.path, request.length, int(request.overwrite), request.checksum,
             json.dumps(request.metadata), now, now + self._expiry,
             ctx.identity.name if ctx.identity else None),
        )  # fmt: skip
        return self._info(self._row(upload_id), 0)

    @handles("uploads.status")
    def status(self, ctx: Context, request: UploadRef) -> UploadInfo:
        return self._info(self._row(request.id))

    @handles("uploads.delete")
    def delete(self, ctx: Context, request: UploadRef) -> UploadInfo:
        info = self._info(self._row(request.id))
        self._state.execute("DELETE FROM uploads WHERE id = ?", (request.id,))
        self._drop(request.id)
        return info

    @handles("uploads.append")
    async def append(self, ctx: Context, request: UploadAppend, body: Body) -> UploadInfo:
        row = self._row(request.id)
        with self._lock:  # one PATCH at a time per upload, as tus requires
            if request.id in self._busy:
                raise Conflict(
                    f"upload {request.id!r} is receiving another request; ask "
                    "its offset and resume once that request ends",
                    busy=True,
                )
            self._busy.add(request.id)
        try:
            return await self._append(row, request, body)
        finally:
            with self._lock:
                self._busy.discard(request.id)

    async def _append(self, row: Any, request: UploadAppend, body: Body) -> UploadInfo:
        length = self._length(row, request)
        digest, expected = _chunk_digest(request.checksum)
        with self._folder() as folder:
            fd = self._store.storage.create_file(folder, row["id"], append=True)
            try:
                offset = os.fstat(fd).st_size
                if request.offset != offset:
                    raise Conflict(
                        f"upload {row['id']!r} is at offset {offset}, not {request.offset}; resume "
                        f"from {offset} (a HEAD of the upload says where it is)",
                        offset=offset,
                    )
                room = None if length is None else length - offset
                try:
                    await receive(body, fd, self._store.quota, digest=digest, limit=room,
                                  path=row["path"])  # fmt: skip
                    if digest is not None and _b64(digest) != expected:
                        raise ChecksumMismatch(
                            f"upload {row['id']!r}: the chunk does not match its checksum"
                        )
                except BaseException:
                    if digest is not None:  # a chunk under a checksum is all or nothing
                        self._store.quota.changed(offset - os.fstat(fd).st_size)
                        os.ftruncate(fd, offset)
                    raise
                size = os.fstat(fd).st_size
                if length is not None and size == length:
                    return await self._finish(row, folder, fd, size)
            finally:
                os.close(fd)
        return self._info(row, size)

    def _length(self, row: Any, request: UploadAppend) -> int | None:
        if request.length is None:
            return row["length"]  # type: ignore[no-any-return]
        if row["length"] is not None and row["length"] != request.length:
            raise InvalidRequest(f"upload {row['id']!r} already has length {row['length']}")
        self._store.quota.check(request.length, path=row["path"])
        self._state.execute(
            "UPDATE uploads SET length = ? WHERE id = ?", (request.length, row["id"])
        )
        return request.length

    async def _finish(self, row: Any, folder: int, fd: int, size: int) -> UploadInfo:
        target = self._store.destination(row["path"], bool(row["overwrite"]))
        if row["checksum"]:
            found = await anyio.to_thread.run_sync(sha256_of, fd)
            if f"sha256:{found}" != row["checksum"]:
                self.delete(Context(None), UploadRef(id=row["id"]))
                raise ChecksumMismatch(
                    f"upload of {row['path']!r}: the file is sha256:{found}, "
                    f"not {row['checksum']}; it was discarded"
                )
        self._store.commit(folder, row["id"], target, size)
        self._state.execute("DELETE FROM uploads WHERE id = ?", (row["id"],))
        return self._info(row, size, completed=True)


def _untouched(entry: os.DirEntry[str], since: float) -> bool:
    """A regular file not written since `since` (False once it is gone)."""
    try:
        return (
            entry.is_file(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_mtime < since
        )
    except FileNotFoundError:
        return False


def _b64(digest: Any) -> str:
    return base64.b64encode(digest.digest()).decode()


def _chunk_digest(checksum: str | None) -> tuple[Any, str]:
    """A hasher for the tus `Upload-Checksum` of a chunk, and the digest it must reach."""
    if checksum is None:
        return None, ""
    algorithm, _, value = checksum.partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS or not value:
        raise InvalidRequest(
            f"Upload-Checksum {checksum!r}: expected '<{'|'.join(CHECKSUM_ALGORITHMS)}> <base64>'"
        )
    return hashlib.new(algorithm), value
