"""Bridges: an agent engine dials a master, and the master reaches the agent's whole API.

`_link` multiplexes byte streams over the agent's one WebSocket (flow control,
heartbeats); `_master` admits joins and links and tells each agent's status; `_forward`
speaks HTTP to an agent over its streams; `_agent` and `_enroll` are the agent's side.
"""

from ._agent import BridgeAgent
from ._master import BridgeMaster

__all__ = ["BridgeAgent", "BridgeMaster"]
