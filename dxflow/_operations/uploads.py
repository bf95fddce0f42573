"""Resumable uploads (tus 1.0), served by hand-written routes."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import Operation

__all__ = ["APPEND", "CREATE", "DELETE", "STATUS"]

_OBJECT = Permission.OBJECT

# fmt: off
CREATE: Operation[m.UploadCreate, m.UploadInfo] = Operation(
    "uploads.create", "POST", "/api/uploads", "Start a resumable upload (tus creation).",
    request=m.UploadCreate, response=m.UploadInfo, permission=_OBJECT, mutating=True,
    idempotent=False, target="path", custom_route=True)
STATUS: Operation[m.UploadRef, m.UploadInfo] = Operation(
    "uploads.status", "HEAD", "/api/uploads/{id}", "An upload's offset (tus).", request=m.UploadRef,
    response=m.UploadInfo, permission=_OBJECT, custom_route=True)
APPEND: Operation[m.UploadAppend, m.UploadInfo] = Operation(
    "uploads.append", "PATCH", "/api/uploads/{id}",
    "Append bytes at the offset (tus core, checksum).", request=m.UploadAppend,
    response=m.UploadInfo, kind="upload", permission=_OBJECT, mutating=True, idempotent=False,
    target="id", custom_route=True)
DELETE: Operation[m.UploadRef, m.UploadInfo] = Operation(
    "uploads.delete", "DELETE", "/api/uploads/{id}", "Abandon an upload (tus termination).",
    request=m.UploadRef, response=m.UploadInfo, permission=_OBJECT, mutating=True, target="id",
    custom_route=True)
# fmt: on
