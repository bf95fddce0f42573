"""Proxies: listeners that forward HTTP, WebSocket and TCP to pools of targets.

The package's modules load what they need; `ProxyService` and its parts are imported
by the engine from here (the dispatcher imports only the plain `_contract`, `_live`
and `_links` modules).
"""

from ._service import ProxyService
from ._targets import TargetPolicy
from ._workloads import Workloads

__all__ = ["ProxyService", "TargetPolicy", "Workloads"]
