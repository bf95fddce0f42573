"""Models of the object store: listings, transfers, archives, share links, uploads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ._base import Request, Response

__all__ = [
    "ObjectChecksum",
    "ObjectInfo",
    "ObjectList",
    "ObjectListing",
    "ObjectMkdir",
    "ObjectPath",
    "ObjectProgress",
    "ObjectRange",
    "ObjectRanges",
    "ObjectRangesData",
    "ObjectRead",
    "ObjectRemove",
    "ObjectRemoveMany",
    "ObjectResult",
    "ObjectResults",
    "ObjectTransfer",
    "ObjectWrite",
    "ObjectZip",
    "ShareCreate",
    "ShareLink",
    "ShareList",
    "ShareRef",
    "ShareToken",
    "UploadAppend",
    "UploadCreate",
    "UploadInfo",
    "UploadRef",
]

# Paths are checked by the store's one confinement helper; the model only bounds them.
_Path = Field(default="", max_length=4096)
_Target = Field(min_length=1, max_length=4096)
_Checksum = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")


class ObjectPath(Request):
    path: str = _Path


class ObjectList(Request):
    path: str = _Path
    pattern: str | None = Field(default=None, max_length=256)
    """A glob matched against names (`*.csv`)."""
    depth: int = Field(default=1, ge=1, le=64)
    hidden: bool = False
    limit: int | None = Field(default=None, ge=1, le=100_000)
    offset: int = Field(default=0, ge=0)


class ObjectInfo(Response):
    path: str
    name: str
    type: Literal["file", "directory"]
    size: int
    modified: datetime
    etag: str | None = None


class ObjectListing(Response):
    path: str
    items: list[ObjectInfo]
    total: int
    """Entries before `offset` and `limit` were applied."""


class ObjectMkdir(Request):
    path: str = _Target
    parents: bool = True


class ObjectRemove(Request):
    path: str = _Target
    recursive: bool = False


class ObjectRemoveMany(Request):
    paths: list[str] = Field(min_length=1, max_length=10_000)
    recursive: bool = False


class ObjectResult(Response):
    path: str
    ok: bool
    code: str | None = None
    error: str | None = None


class ObjectResults(Response):
    results: list[ObjectResult]


class ObjectTransfer(Request):
    src: str = _Target
    dst: str = _Target
    overwrite: bool = False


class ObjectChecksum(Response):
    path: str
    algorithm: Literal["sha256"] = "sha256"
    digest: str
    size: int


class ObjectRead(Request):
    """A download; over HTTP the range travels in a `Range` header instead."""

    path: str = _Path
    start: int | None = Field(default=None, ge=0)
    end: int | None = Field(default=None, ge=0)
    """Exclusive, as in Python slices."""


class ObjectWrite(Request):
    path: str = _Target
    overwrite: bool = False
    checksum: str | None = _Checksum
    """`sha256:<hex>`: the upload is committed only when its content matches."""
    size: int | None = Field(default=None, ge=0)


RANGES_MAX_COUNT = 10_000
"""Ranges one `objects.ranges` call may ask for (the engine caps their total bytes too)."""
RANGE_MAX_LENGTH = 16 << 20
"""Bytes one range may span; a longer one is a download of its own (with a Range header)."""


class ObjectRange(Request):
    path: str = _Target
    start: int = Field(ge=0, le=1 << 62)
    end: int = Field(ge=0, le=1 << 62)

    @model_validator(mode="after")
    def _bounded(self) -> ObjectRange:
        if self.end - self.start > RANGE_MAX_LENGTH:
            raise ValueError(
                f"a range may span at most {RANGE_MAX_LENGTH >> 20} MiB"
                f" ({self.start}-{self.end} spans {self.end - self.start} bytes);"
                " download a longer one with objects.read and a Range header"
            )
        return self


class ObjectRanges(Request):
    ranges: list[ObjectRange] = Field(min_length=1, max_length=RANGES_MAX_COUNT)


class ObjectRangesData(Response):
    # Bytes travel as base64 in JSON; in-process they are never encoded at all.
    model_config = ConfigDict(extra="ignore", ser_json_bytes="base64", val_json_bytes="base64")

    data: list[bytes]


class ObjectZip(Request):
    path: str = _Target
    dest: str | None = Field(default=None, max_length=4096)
    overwrite: bool = False


class ObjectProgress(Response):
    action: Literal["zipping", "unzipping", "done"]
    path: str
    entries: int = 0
    bytes: int = 0
    dest: str | None = None


class ShareCreate(Request):
    path: str = _Target
    expires: float = Field(default=3600, gt=0, le=366 * 86400)
    """Seconds from now."""
    writable: bool = False
    """The link uploads to `path` (a drop box: it does not download unless `readable`)."""
    readable: bool = False
    """With `writable`: the link downloads `path` too. A read link always downloads."""
    max_uses: int | None = Field(default=None, ge=1)

    @field_validator("readable")
    @classmethod
    def _readable_goes_with_writable(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("writable"):
            raise ValueError("only with writable (a read link downloads anyway); leave it out")
        return value


class ShareLink(Response):
    id: str
    path: str
    url: str | None
    """`<engine URL>/s/<token>`; anyone holding it may use it, without a key. Shown to the
    link's creator only (None when MASTER lists another identity's links)."""
    writable: bool
    readable: bool = True
    """The link downloads (False: a drop box, upload only)."""
    expires_at: datetime
    max_uses: int | None
    uses: int
    created_at: datetime
    created_by: str | None
    revoked: bool


class ShareList(Response):
    shares: list[ShareLink]


class ShareRef(Request):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class ShareToken(Request):
    token: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_.-]+$")
    start: int | None = Field(default=None, ge=0)
    end: int | None = Field(default=None, ge=0)

    @property
    def share_id(self) -> str:
        """The link's id, without the signature that makes the token a credential."""
        return self.token.partition(".")[0]


class UploadCreate(Request):
    path: str = _Target
    length: int | None = Field(default=None, ge=0)
    """None defers the length to the last append (tus creation-defer-length)."""
    overwrite: bool = False
    checksum: str | None = _Checksum
    metadata: dict[str, str] = Field(default_factory=dict)


class UploadRef(Request):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class UploadAppend(Request):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    offset: int = Field(ge=0)
    length: int | None = Field(default=None, ge=0)
    """The total length, for an upload created without one."""
    checksum: str | None = Field(default=None, max_length=200)
    """tus `Upload-Checksum` of this chunk: `<algorithm> <base64 digest>`."""


class UploadInfo(Response):
    id: str
    path: str
    offset: int
    length: int | None
    expires_at: datetime
    metadata: dict[str, str] = Field(default_factory=dict)
    completed: bool = False
