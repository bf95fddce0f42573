"""dxflow: turn any machine into an engine for containerized workflows, shells and data.

    >>> import dxflow
    >>> with dxflow.Engine() as engine:        # in-process, embedded defaults
    ...     engine.ping().engine_id
    >>> remote = dxflow.Engine("https://node:7419", key="~/.dxflow/keys/alice.pem")

Heavy modules (pydantic, httpx, cryptography, docker) load on first use, so that
``import dxflow`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ApiError,
    ChecksumMismatch,
    ConfigError,
    Conflict,
    DockerUnavailable,
    DxflowError,
    EngineClosed,
    EngineUnavailable,
    Gone,
    InsufficientStorage,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RangeNotSatisfiable,
    RequestTimeout,
    TimedOut,
    TooManyRequests,
    TransportError,
    Unauthenticated,
    UsageError,
    WorkflowFailed,
)
from ._permissions import DEFAULT_PERMISSIONS, Permission
from ._version import __version__

if TYPE_CHECKING:
    from . import models
    from ._api._fleet import FleetResult, FleetResults
    from ._api.bridges import AsyncBridge, Bridge
    from ._api.engine import AsyncEngine, Engine
    from ._api.objects import AsyncObjectStore, ObjectStore
    from ._api.proxies import AsyncProxy, Proxy, bridge
    from ._api.shells import AsyncChannel, AsyncShell, Channel, Shell
    from ._api.workflows import AsyncWorkflow, Workflow
    from ._filesystem import DxflowFileSystem
    from ._keypairs import KeyPair, generate_key_pair
    from ._progress import Progress

__all__ = [
    "DEFAULT_PERMISSIONS",
    "ApiError",
    "AsyncBridge",
    "AsyncChannel",
    "AsyncEngine",
    "AsyncObjectStore",
    "AsyncProxy",
    "AsyncShell",
    "AsyncWorkflow",
    "Bridge",
    "Channel",
    "ChecksumMismatch",
    "ConfigError",
    "Conflict",
    "DockerUnavailable",
    "DxflowError",
    "DxflowFileSystem",
    "Engine",
    "EngineClosed",
    "EngineUnavailable",
    "FleetResult",
    "FleetResults",
    "Gone",
    "InsufficientStorage",
    "InternalError",
    "InvalidRequest",
    "KeyPair",
    "MethodNotAllowed",
    "NotFound",
    "ObjectStore",
    "PayloadTooLarge",
    "Permission",
    "PermissionDenied",
    "Progress",
    "Proxy",
    "RangeNotSatisfiable",
    "RequestTimeout",
    "Shell",
    "TimedOut",
    "TooManyRequests",
    "TransportError",
    "Unauthenticated",
    "UsageError",
    "Workflow",
    "WorkflowFailed",
    "__version__",
    "bridge",
    "generate_key_pair",
    "models",
]

_LAZY = {
    "AsyncBridge": "dxflow._api.bridges",
    "Bridge": "dxflow._api.bridges",
    "FleetResult": "dxflow._api._fleet",
    "FleetResults": "dxflow._api._fleet",
    "AsyncChannel": "dxflow._api.shells",
    "AsyncEngine": "dxflow._api.engine",
    "AsyncObjectStore": "dxflow._api.objects",
    "AsyncProxy": "dxflow._api.proxies",
    "AsyncShell": "dxflow._api.shells",
    "AsyncWorkflow": "dxflow._api.workflows",
    "Channel": "dxflow._api.shells",
    "DxflowFileSystem": "dxflow._filesystem",
    "Engine": "dxflow._api.engine",
    "ObjectStore": "dxflow._api.objects",
    "Proxy": "dxflow._api.proxies",
    "bridge": "dxflow._api.proxies",
    "Shell": "dxflow._api.shells",
    "Workflow": "dxflow._api.workflows",
    "KeyPair": "dxflow._keypairs",
    "generate_key_pair": "dxflow._keypairs",
    "Progress": "dxflow._progress",
}


def __getattr__(name: str) -> Any:
    if name == "models":
        import importlib

        return importlib.import_module("dxflow.models")
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dxflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
