"""Proxies: listeners that forward HTTP, WebSocket and TCP to pools of targets.

`_contract.py` is what the data planes (`_http.py`, `_tcp.py`) and the control plane
(`_service.py` and the parts it assembles) agree on. The dispatcher decides admission
(`Dispatcher.admit_proxy`) from the compiled rules of `_live.py`.
"""

from ._service import ProxyService
from ._targets import TargetPolicy
from ._workloads import Workloads

__all__ = ["ProxyService", "TargetPolicy", "Workloads"]
