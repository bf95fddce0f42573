"""The object store: files under the storage root, share links and resumable uploads."""

from ._blob import Blob, LocalFile
from ._paths import Storage
from ._quota import Quota
from ._shares import ShareService
from ._store import ObjectService
from ._uploads import CHECKSUM_ALGORITHMS, UploadService
from ._zip import UnzipLimits

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "Blob",
    "LocalFile",
    "ObjectService",
    "Quota",
    "ShareService",
    "Storage",
    "UnzipLimits",
    "UploadService",
]
