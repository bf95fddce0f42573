"""What both sides of a bridge agree on: identities, headers, the identity proof."""

from __future__ import annotations

__all__ = [
    "CALLER_HEADER",
    "CALLER_PERMISSIONS_HEADER",
    "IDENTITY_PREFIX",
    "LINK_PATH",
    "MASTER_ON_AGENT",
    "link_message",
]

IDENTITY_PREFIX = "bridge@"
"""An agent's identity on its master: `bridge@NAME`, permission BRIDGE."""
MASTER_ON_AGENT = "bridge-master"
"""The master's identity on its agents, with what the agent allows."""
LINK_PATH = "/api/fleet/link"
"""Where agents dial in (a WebSocket: `_socket.py`)."""
CALLER_HEADER = "x-dxflow-caller"
CALLER_PERMISSIONS_HEADER = "x-dxflow-caller-permissions"


def link_message(name: str, nonce: str) -> bytes:
    """What a master signs to prove, at the join and on each link, the identity its
    agents pinned."""
    return f"dxflow-bridge:{name}:{nonce}".encode()
