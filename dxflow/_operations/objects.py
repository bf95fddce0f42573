"""Objects: files and directories under the storage root."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoResponse, Operation

__all__ = [
    "CHECKSUM",
    "COPY",
    "INFO",
    "LIST",
    "MKDIR",
    "MOVE",
    "RANGES",
    "READ",
    "REMOVE",
    "REMOVE_MANY",
    "UNZIP",
    "WRITE",
    "ZIP",
]

_OBJECT = Permission.OBJECT

# fmt: off
LIST: Operation[m.ObjectList, m.ObjectListing] = Operation(
    "objects.list", "GET", "/api/objects", "A directory's entries, paged.", request=m.ObjectList,
    response=m.ObjectListing, permission=_OBJECT)
INFO: Operation[m.ObjectPath, m.ObjectInfo] = Operation(
    "objects.info", "GET", "/api/objects/info", "One file or directory.", request=m.ObjectPath,
    response=m.ObjectInfo, permission=_OBJECT)
CHECKSUM: Operation[m.ObjectPath, m.ObjectChecksum] = Operation(
    "objects.checksum", "GET", "/api/objects/checksum", "A file's sha256.", request=m.ObjectPath,
    response=m.ObjectChecksum, permission=_OBJECT)
READ: Operation[m.ObjectRead, NoResponse] = Operation(
    "objects.read", "GET", "/api/objects/content",
    "A file's bytes (Range, ETag, HEAD); a directory as a zip made on the fly.",
    request=m.ObjectRead, kind="download", permission=_OBJECT)
WRITE: Operation[m.ObjectWrite, m.ObjectInfo] = Operation(
    "objects.write", "PUT", "/api/objects/content",
    "Stream bytes into a file, committed atomically when complete (and verified).",
    request=m.ObjectWrite, response=m.ObjectInfo, kind="upload", permission=_OBJECT, mutating=True,
    idempotent=False, target="path")
RANGES: Operation[m.ObjectRanges, m.ObjectRangesData] = Operation(
    "objects.ranges", "POST", "/api/objects/ranges",
    "Many byte ranges of many files in one round trip.", request=m.ObjectRanges,
    response=m.ObjectRangesData, permission=_OBJECT)
MKDIR: Operation[m.ObjectMkdir, m.ObjectInfo] = Operation(
    "objects.mkdir", "POST", "/api/objects/mkdir", "Make a directory.", request=m.ObjectMkdir,
    response=m.ObjectInfo, permission=_OBJECT, mutating=True, target="path")
REMOVE: Operation[m.ObjectRemove, m.ObjectResult] = Operation(
    "objects.remove", "POST", "/api/objects/remove",
    "Remove a file, or a directory with recursive.", request=m.ObjectRemove,
    response=m.ObjectResult, permission=_OBJECT, mutating=True, target="path")
REMOVE_MANY: Operation[m.ObjectRemoveMany, m.ObjectResults] = Operation(
    "objects.remove_many", "POST", "/api/objects/remove-many",
    "Remove many paths; a result per path.", request=m.ObjectRemoveMany, response=m.ObjectResults,
    permission=_OBJECT, mutating=True)
MOVE: Operation[m.ObjectTransfer, m.ObjectInfo] = Operation(
    "objects.move", "POST", "/api/objects/move", "Move or rename.", request=m.ObjectTransfer,
    response=m.ObjectInfo, permission=_OBJECT, mutating=True, idempotent=False, target="src")
COPY: Operation[m.ObjectTransfer, m.ObjectInfo] = Operation(
    "objects.copy", "POST", "/api/objects/copy", "Copy a file or a directory.",
    request=m.ObjectTransfer, response=m.ObjectInfo, permission=_OBJECT, mutating=True,
    target="src")
ZIP: Operation[m.ObjectZip, m.ObjectProgress] = Operation(
    "objects.zip", "POST", "/api/objects/zip",
    "Archive a file or directory into a zip; progress events (NDJSON).", request=m.ObjectZip,
    response=m.ObjectProgress, kind="stream", permission=_OBJECT, mutating=True, idempotent=False,
    target="path")
UNZIP: Operation[m.ObjectZip, m.ObjectProgress] = Operation(
    "objects.unzip", "POST", "/api/objects/unzip",
    "Extract a zip safely (no zip slip, size and entry limits); progress events.",
    request=m.ObjectZip, response=m.ObjectProgress, kind="stream", permission=_OBJECT,
    mutating=True, idempotent=False, target="path")
# fmt: on
