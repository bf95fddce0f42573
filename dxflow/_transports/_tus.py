"""The tus side of HttpTransport: `uploads.*` operations spoken in tus headers."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .._models import UploadInfo

__all__ = ["tus_headers", "upload_info"]

VERSION = "1.0.0"


def _metadata(values: Mapping[str, Any]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(str(value).encode()).decode()}" for key, value in values.items()
    )


def tus_headers(name: str, data: Mapping[str, Any]) -> dict[str, str]:
    """The headers of one tus request for operation `name` (its method and path are the
    operation table's)."""
    headers = {"Tus-Resumable": VERSION}
    if name == "uploads.create":
        meta = {**data.get("metadata", {}), "path": data["path"]}
        if data.get("overwrite"):
            meta["overwrite"] = "true"
        if data.get("checksum"):
            meta["checksum"] = data["checksum"]
        headers["Upload-Metadata"] = _metadata(meta)
        if data.get("length") is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(data["length"])
    elif name == "uploads.append":
        headers.update({"Upload-Offset": str(data["offset"]),
                        "Content-Type": "application/offset+octet-stream"})  # fmt: skip
        if data.get("length") is not None:
            headers["Upload-Length"] = str(data["length"])
        if data.get("checksum"):
            headers["Upload-Checksum"] = data["checksum"]
    return headers


def upload_info(reply: httpx.Response, data: Mapping[str, Any]) -> UploadInfo:
    """What a tus reply's headers say of the upload."""
    location = reply.headers.get("location", "")
    upload_id = location.rstrip("/").rpartition("/")[2] or data.get("id", "")
    length = reply.headers.get("upload-length")
    expires = reply.headers.get("upload-expires")
    offset = int(reply.headers.get("upload-offset", "0"))
    return UploadInfo(
        id=upload_id,
        path=data.get("path", ""),
        offset=offset,
        length=int(length) if length is not None else None,
        expires_at=parsedate_to_datetime(expires) if expires else datetime.now(UTC) + timedelta(1),
        completed=length is not None and offset == int(length),
    )
