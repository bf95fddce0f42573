"""dxflow: turn any machine into an engine for containerized workflows, shells and data.

    >>> import dxflow
    >>> with dxflow.Engine() as engine:        # in-process, embedded defaults
    ...     engine.ping().engine_id
    >>> remote = dxflow.Engine("https://node:7419", key="~/.dxflow/keys/alice.pem")

Every name but ``__version__`` loads on first use (the exceptions and ``Permission``
too, they need ``typing`` and ``enum``), so that ``import dxflow`` stays fast: heavy
modules (pydantic, httpx, cryptography, docker) load only with what needs them.
"""

from __future__ import annotations

from ._version import __version__

# typing.TYPE_CHECKING without importing typing: `import dxflow` (and the CLI's fast
# path, which starts with it) loads nothing here; mypy knows the name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import models
    from ._api._fleet import FleetResult, FleetResults
    from ._api.bridges import AsyncBridge, Bridge
    from ._api.engine import AsyncEngine, Engine
    from ._api.objects import AsyncObjectStore, ObjectStore
    from ._api.proxies import AsyncProxy, Proxy, bridge
    from ._api.shells import AsyncChannel, AsyncShell, Channel, Shell
    from ._api.workflows import AsyncWorkflow, Workflow
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
    from ._filesystem import DxflowFileSystem
    from ._keypairs import KeyPair, generate_key_pair
    from ._permissions import DEFAULT_PERMISSIONS, Permission
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
    "ApiError": "dxflow._exceptions",
    "ChecksumMismatch": "dxflow._exceptions",
    "ConfigError": "dxflow._exceptions",
    "Conflict": "dxflow._exceptions",
    "DockerUnavailable": "dxflow._exceptions",
    "DxflowError": "dxflow._exceptions",
    "EngineClosed": "dxflow._exceptions",
    "EngineUnavailable": "dxflow._exceptions",
    "Gone": "dxflow._exceptions",
    "InsufficientStorage": "dxflow._exceptions",
    "InternalError": "dxflow._exceptions",
    "InvalidRequest": "dxflow._exceptions",
    "MethodNotAllowed": "dxflow._exceptions",
    "NotFound": "dxflow._exceptions",
    "PayloadTooLarge": "dxflow._exceptions",
    "PermissionDenied": "dxflow._exceptions",
    "RangeNotSatisfiable": "dxflow._exceptions",
    "RequestTimeout": "dxflow._exceptions",
    "TimedOut": "dxflow._exceptions",
    "TooManyRequests": "dxflow._exceptions",
    "TransportError": "dxflow._exceptions",
    "Unauthenticated": "dxflow._exceptions",
    "UsageError": "dxflow._exceptions",
    "WorkflowFailed": "dxflow._exceptions",
    "DEFAULT_PERMISSIONS": "dxflow._permissions",
    "Permission": "dxflow._permissions",
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
