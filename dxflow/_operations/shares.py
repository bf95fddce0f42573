"""Share links: signed, expiring, revocable links to files and directories."""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoRequest, NoResponse, Operation

__all__ = ["CREATE", "LIST", "READ", "REVOKE", "WRITE"]

_OBJECT = Permission.OBJECT

# fmt: off
CREATE: Operation[m.ShareCreate, m.ShareLink] = Operation(
    "shares.create", "POST", "/api/shares",
    "A signed, expiring, revocable link to a file or directory.", request=m.ShareCreate,
    response=m.ShareLink, permission=_OBJECT, idempotent=False, target="path",
    writes_when="writable", self_audited=True)
LIST: Operation[NoRequest, m.ShareList] = Operation(
    "shares.list", "GET", "/api/shares",
    "Your share links, live and past (MASTER: everyone's, without their URLs).",
    response=m.ShareList, permission=_OBJECT)
REVOKE: Operation[m.ShareRef, m.ShareLink] = Operation(
    "shares.revoke", "DELETE", "/api/shares/{id}",
    "Revoke one of your share links (MASTER: anyone's).", request=m.ShareRef, response=m.ShareLink,
    permission=_OBJECT, mutating=True, target="id")
READ: Operation[m.ShareToken, NoResponse] = Operation(
    "shares.read", "GET", "/s/{token}",
    "Download through a share link (no credentials: the link is the key).", request=m.ShareToken,
    kind="download", public=True, self_audited=True)
WRITE: Operation[m.ShareToken, m.ObjectInfo] = Operation(
    "shares.write", "PUT", "/s/{token}",
    "Upload through a writable share link (audited by the link's id, never its token).",
    request=m.ShareToken, response=m.ObjectInfo, kind="upload", public=True, mutating=True,
    idempotent=False, target="share_id", self_audited=True)
# fmt: on
