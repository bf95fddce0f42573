"""Bridges: a master's agents, their join tokens, and calls forwarded to them (BRIDGE).

An agent dials the master (`bridges.link`, a WebSocket) with a key that has BRIDGE; a
caller with BRIDGE reaches an agent's whole API under `/api/bridges/{name}/api/...`
(`bridges.forward`), where the agent checks the operation against what it allows the
master and what the caller holds. Minting join tokens and removing agents is MASTER's.
"""

from __future__ import annotations

from .. import _models as m
from .._permissions import Permission
from ._base import NoResponse, Operation

__all__ = [
    "DRAIN", "EVENTS", "FORWARD", "GET", "JOIN", "LINK", "LIST", "PLACE", "PLACEMENT",
    "REMOVE", "TOKEN",
]  # fmt: skip

BRIDGE_PREFIX = "/api/bridges/"
"""The agents, by name: `/api/bridges/{name}` and their APIs under it. The master's own
resources of its fleet (tokens, joins, the link, placements, events) are under
`/api/fleet/`, so that no agent's name can ever stand for one of them."""
LINK_PATH = "/api/fleet/link"  # the core's `_bridges._names.LINK_PATH` (the agent dials it)

_BRIDGE = Permission.BRIDGE
_MASTER = Permission.MASTER

# fmt: off
TOKEN: Operation[m.BridgeTokenCreate, m.BridgeToken] = Operation(
    "bridges.token", "POST", "/api/fleet/tokens",
    "A join token: the master's URL and identity, for N agents, until it expires.",
    request=m.BridgeTokenCreate, response=m.BridgeToken, permission=_MASTER, mutating=True,
    idempotent=False)
JOIN: Operation[m.BridgeJoin, m.BridgeJoined] = Operation(
    "bridges.join", "POST", "/api/fleet/join",
    "An agent joins with a token (the token is the credential): its key is registered "
    "with BRIDGE and it learns the master's identity.",
    request=m.BridgeJoin, response=m.BridgeJoined, public=True, mutating=True,
    idempotent=False, target="name")
LINK: Operation[m.BridgeHello, NoResponse] = Operation(
    "bridges.link", "GET", LINK_PATH,
    "The agent's link: one WebSocket multiplexing every stream the master opens to it "
    "(its first message is the agent's hello).",
    request=m.BridgeHello, kind="channel", permission=_BRIDGE, custom_route=True,
    target="name")
LIST: Operation[m.BridgeListRequest, m.BridgeList] = Operation(
    "bridges.list", "GET", "/api/bridges",
    "The agents: status, last seen, round trip, labels and host facts.",
    request=m.BridgeListRequest, response=m.BridgeList, permission=_BRIDGE)
EVENTS: Operation[m.BridgeEventsQuery, m.BridgeEvent] = Operation(
    "bridges.events", "GET", "/api/fleet/events",
    "The agents' status changes as they happen, each labelled by its agent (NDJSON).",
    request=m.BridgeEventsQuery, response=m.BridgeEvent, kind="stream", permission=_BRIDGE)
GET: Operation[m.BridgeRef, m.BridgeInfo] = Operation(
    "bridges.get", "GET", "/api/bridges/{name}", "One agent.",
    request=m.BridgeRef, response=m.BridgeInfo, permission=_BRIDGE)
DRAIN: Operation[m.BridgeRef, m.BridgeInfo] = Operation(
    "bridges.drain", "POST", "/api/bridges/{name}/drain",
    "Place nothing new on an agent; what runs there keeps running.",
    request=m.BridgeRef, response=m.BridgeInfo, permission=_MASTER, mutating=True,
    target="name")
REMOVE: Operation[m.BridgeRef, m.BridgeInfo] = Operation(
    "bridges.remove", "DELETE", "/api/bridges/{name}",
    "Forget an agent: its key leaves the registry, its link closes; nothing on it stops.",
    request=m.BridgeRef, response=m.BridgeInfo, permission=_MASTER, mutating=True,
    target="name")
PLACE: Operation[m.PlacementRequest, m.Placement] = Operation(
    "bridges.place", "POST", "/api/fleet/place",
    "Choose the agent a workflow goes to (labels, free resources, load, strategy) and "
    "remember it; nothing fits: a refusal that says why for each agent.",
    request=m.PlacementRequest, response=m.Placement, permission=_BRIDGE, mutating=True,
    idempotent=False, target="workflow")
PLACEMENT: Operation[m.PlacementRef, m.Placement] = Operation(
    "bridges.placement", "GET", "/api/fleet/placements/{workflow}",
    "Where a workflow was placed (a caller without BRIDGE learns only that it is not here).",
    request=m.PlacementRef, response=m.Placement)
FORWARD: Operation[m.BridgeForward, NoResponse] = Operation(
    "bridges.forward", "GET", "/api/bridges/{name}/api/{path}",
    "Any operation of the agent's API (every method, WebSocket too), run on the agent "
    "as this master within what the agent allows and the caller holds.",
    request=m.BridgeForward, kind="download", permission=_BRIDGE, custom_route=True,
    target="name")
# fmt: on
