"""`Operation`: one API call, typed by the request it takes and the response it gives."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, Literal

# TypeVar defaults (PEP 696) are in `typing` from Python 3.13 only.
from typing_extensions import TypeVar

from .. import _models as m
from .._permissions import Permission

__all__ = ["Kind", "NoRequest", "NoResponse", "Operation"]

Kind = Literal["call", "stream", "channel", "download", "upload"]
"""call: one model back; stream: NDJSON models; channel: a WebSocket; download: bytes
back (ranges, ETag); upload: bytes in (the request's fields travel in the query)."""
_PATH_PARAM = re.compile(r"{(\w+)}")


class NoRequest(m.Request):
    """The request type of an operation that takes none (its `request` is None)."""


class NoResponse(m.Response):
    """The response type of an operation that answers with no model (its `response` is
    None): a download answers with bytes, a channel with a WebSocket."""


# Covariant, so every typed constant is also a plain `Operation`; the defaults make a bare
# `Operation` mean `Operation[Request, Response]`, what code that takes any operation sees.
Req = TypeVar("Req", bound=m.Request, covariant=True, default=m.Request)
Resp = TypeVar("Resp", bound=m.Response, covariant=True, default=m.Response)


@dataclass(frozen=True)
class Operation(Generic[Req, Resp]):
    """One API call: its name, its route, its models and its access rules."""

    name: str
    method: str
    path: str
    summary: str
    request: type[Req] | None = None
    response: type[Resp] | None = None
    kind: Kind = "call"
    permission: Permission | None = None
    """What the caller needs; None means any authenticated identity."""
    public: bool = False
    """Callable without credentials (health, the authentication handshake)."""
    mutating: bool = False
    """Changes state: blocked by READ_ONLY and written to the audit log."""
    idempotent: bool = True
    """Safe to retry after a lost connection."""
    target: str | None = None
    """The request field that names what the call acts on, for the audit log."""
    writes_when: str | None = None
    """A boolean request field that makes an otherwise read-only call mutating."""
    also_requires: tuple[tuple[str, Permission], ...] = ()
    """(field, permission) pairs: when the request sets `field` (not None, empty or
    false), the caller needs `permission` too (a shell in a workflow's container needs
    WORKFLOW). The dispatcher checks them, like `permission`."""
    custom_route: bool = False
    """Served by a hand-written route (a protocol of its own, e.g. tus), not a generated one."""
    self_audited: bool = False
    """The handler writes the call's audit records itself: it knows what the request does
    not (a share link's id, and the link as the identity that acts)."""
    path_params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_params", tuple(_PATH_PARAM.findall(self.path)))

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def body_in_query(self) -> bool:
        return self.method in ("GET", "DELETE", "HEAD") or self.kind == "upload"
