"""Uploading a local file over HTTP: one request when small, a resumable tus upload
when big, picked up where it stopped after a broken connection and after a restart of
the program.

Unfinished uploads are remembered on disk: a record names the engine, the local file
(path, size, modification time) and the destination, and holds the engine's upload id
and nothing secret. Records live in `$XDG_CACHE_HOME/dxflow/uploads`
(`~/.cache/dxflow/uploads`), one 0600 file each.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .. import _operations as ops
from .._exceptions import Conflict, EngineUnavailable, NotFound
from .._models import Response, UploadInfo
from .._operations import Operation
from ._base import FileSlice, Progress

if TYPE_CHECKING:
    from ._base import Transport

__all__ = ["PATCH", "SMALL", "put_file"]

SMALL = 16 << 20
"""Files up to this size go in one request; bigger ones as a resumable (tus) upload."""
PATCH = 64 << 20
"""Bytes sent per tus PATCH request."""
_RETRIES = 5


async def put_file(
    transport: Transport,
    op: Operation,
    params: Mapping[str, Any],
    source: Path,
    progress: Progress,
) -> Response:
    size = os.stat(source).st_size
    if size > SMALL:
        return await _resumable(transport, params, source, size, progress)
    info: Response = await transport.upload(
        op, {**params, "size": size}, FileSlice(source, 0, size)
    )
    if progress:
        progress(size, size)
    return info


async def _resumable(
    transport: Transport, params: Mapping[str, Any], source: Path, size: int, progress: Progress
) -> Response:
    path, overwrite = params["path"], bool(params.get("overwrite", False))
    key = upload_key(transport.url or "", source, path)
    upload, offset = await _resume(transport, recall(key), size)
    if upload is None:
        created: UploadInfo = await transport.call(  # type: ignore[assignment]
            ops.uploads.CREATE, {"path": path, "length": size, "overwrite": overwrite}
        )
        upload = created.id
        remember(key, upload)
    failures = 0
    while offset < size:
        try:
            length = min(PATCH, size - offset)
            body = FileSlice(source, offset, length, _shifted(progress, offset, size))
            reply = await transport.upload(
                ops.uploads.APPEND, {"id": upload, "offset": offset}, body
            )
            offset = reply.offset
        except (EngineUnavailable, Conflict) as exc:
            if isinstance(exc, Conflict) and not {"busy", "offset"} & exc.details.keys():
                raise  # not about where the upload is (the target exists, say)
            # The engine still drains a request that died (a tus upload takes one request
            # at a time), or is at another offset: ask it where to go on.
            failures += 1
            if failures > _RETRIES:
                raise
            await anyio.sleep(0.2 * failures)
            offset = (await transport.call(ops.uploads.STATUS, {"id": upload})).offset  # type: ignore[attr-defined]
    forget(key)
    return await transport.call(ops.objects.INFO, {"path": path})


async def _resume(transport: Transport, upload: str | None, size: int) -> tuple[str | None, int]:
    """The remembered upload and its offset, if the engine still has it."""
    if upload is None:
        return None, 0
    try:
        status: UploadInfo = await transport.call(  # type: ignore[assignment]
            ops.uploads.STATUS, {"id": upload}
        )
    except NotFound:
        return None, 0
    return (upload, status.offset) if status.length == size else (None, 0)


def _shifted(progress: Progress, offset: int, total: int) -> Progress:
    if progress is None:
        return None
    return lambda done, _: progress(offset + done, total)


# -- the memory of unfinished uploads --------------------------------------------------


def _folder() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "dxflow" / "uploads"


def upload_key(engine: str, source: Path, destination: str) -> str:
    stat = source.stat()
    what = [engine, str(source.resolve()), stat.st_size, stat.st_mtime_ns, destination]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


def recall(key: str) -> str | None:
    try:
        return str(json.loads((_folder() / key).read_text())["upload"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(key: str, upload: str) -> None:
    try:
        folder = _folder()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"upload": upload}, out)
    except OSError:
        pass  # no cache to write to: the upload still resumes within this process


def forget(key: str) -> None:
    (_folder() / key).unlink(missing_ok=True)
