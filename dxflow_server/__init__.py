"""dxflow_server: the thin Starlette app in front of the engine core.

Its routes are generated from the operation table; it holds no logic of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazily: `python -m dxflow_server` imports this package before its __main__, and
    # `dxflow boot up` loads the app only once collection is off (see _cli/_boot.py).
    if name == "create_app":
        from ._app import create_app

        return create_app
    raise AttributeError(f"module 'dxflow_server' has no attribute {name!r}")
