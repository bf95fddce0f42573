"""dxflow_server: the thin Starlette app in front of the engine core.

Its routes are generated from the operation table; it holds no logic of its own.
"""

from ._app import create_app

__all__ = ["create_app"]
