"""The operation table: every API call, listed once, one module per capability.

Server routes, the HTTP client, the permission check, the audit log and the OpenAPI
document are all derived from this table. A new capability adds a module here and
handlers in the core; it never touches the plumbing.

Naming: the module is the operation's tag (the part of its name before the first dot)
and the constant is the rest, upper-cased, dots as underscores: ``objects.info`` is
``objects.INFO``, ``objects.remove_many`` is ``objects.REMOVE_MANY``,
``engine.stats.watch`` is ``engine.STATS_WATCH``. Each constant is typed by the request
it takes and the response it gives, ``Operation[Req, Resp]``; ``NoRequest`` and
``NoResponse`` stand in where the table has None (no parameters; bytes or a WebSocket
back). A caller generic over the response gets the model back typed, and a misspelt
constant fails at type check::

    from dxflow import _operations as ops

    R = TypeVar("R", bound=Response)

    async def _call(op: Operation[Any, R], /, **params: Any) -> R: ...

    info = await _call(ops.objects.INFO, path="a.txt")   # ObjectInfo
    info = await _call(ops.objects.INF0, path="a.txt")   # mypy: has no attribute "INF0"

``OPERATIONS`` maps every name to its operation, in table order (the order of the
modules in ``CAPABILITIES``, then of the constants in each module); code that takes any
operation keeps using it and the bare ``Operation``.
"""

from __future__ import annotations

from types import ModuleType

from . import (
    audit,
    auth,
    bridges,
    engine,
    keys,
    objects,
    proxies,
    shares,
    shells,
    uploads,
    workflows,
)
from ._base import Kind, NoRequest, NoResponse, Operation

__all__ = [
    "CAPABILITIES",
    "OPENAPI_PATH",
    "OPERATIONS",
    "Kind",
    "NoRequest",
    "NoResponse",
    "Operation",
    "audit",
    "auth",
    "bridges",
    "engine",
    "keys",
    "objects",
    "proxies",
    "shares",
    "shells",
    "uploads",
    "workflows",
]

CAPABILITIES: tuple[ModuleType, ...] = (
    engine,
    auth,
    keys,
    workflows,
    objects,
    uploads,
    shares,
    shells,
    proxies,
    bridges,
    audit,
)
"""The capability modules, in table order (the OpenAPI document lists them so)."""


def constants(module: ModuleType) -> list[Operation]:
    """The operations a capability module defines, in the order it defines them."""
    return [value for value in vars(module).values() if isinstance(value, Operation)]


OPERATIONS: dict[str, Operation] = {
    op.name: op for module in CAPABILITIES for op in constants(module)
}

OPENAPI_PATH = "/api/openapi.json"
"""The server's own document of this table: a route, not an operation."""
