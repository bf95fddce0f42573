"""Models of bridges: join tokens, the join itself, and a master's view of its agents.

A bridge links an agent engine to a master. The agent dials out (one WebSocket to the
master's listener) and the master reaches the agent's whole API through it: a bridged
engine is an `Engine` whose requests go to `/api/bridges/{name}/...` on the master.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ._base import Request, Response
from ._workflow import WorkflowEvent

__all__ = [
    "BridgeEvent",
    "BridgeEventsQuery",
    "BridgeFacts",
    "BridgeForward",
    "BridgeHello",
    "BridgeInfo",
    "BridgeJoin",
    "BridgeJoined",
    "BridgeList",
    "BridgeListRequest",
    "BridgeRef",
    "BridgeToken",
    "BridgeTokenCreate",
    "Placement",
    "PlacementRef",
    "PlacementRequest",
]

BRIDGE_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""A DNS label, as a proxy's name: agents are often named after their host."""
LABEL_KEY = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$"
LABELS = r"^$|^[A-Za-z0-9][A-Za-z0-9._-]{0,62}=[^,=]*(,[A-Za-z0-9][A-Za-z0-9._-]{0,62}=[^,=]*)*$"
"""`key=value,key=value`, as a query parameter."""

Status = Literal["connected", "disconnected", "lost"]
_Name = Field(min_length=1, max_length=63, pattern=BRIDGE_NAME)


class BridgeTokenCreate(Request):
    """A join token: `expires` seconds of validity, `uses` joins, labels for its agents."""

    expires: float = Field(default=3600.0, gt=0, le=366 * 86400)
    uses: int = Field(default=1, ge=1, le=100_000)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    url: str | None = Field(default=None, max_length=2048)
    """The URL agents dial (default: the address the master's server bound)."""


class BridgeToken(Response):
    token: str
    """`dxflow-join:...`: the master's URL, its identity fingerprint and a secret."""
    id: str
    url: str
    fingerprint: str
    expires_at: datetime
    uses: int
    labels: dict[str, str] = {}


class BridgeJoin(Request):
    """What an agent sends to join (public: the token's secret is the credential)."""

    token_id: str = Field(min_length=8, max_length=64)
    secret: str = Field(min_length=16, max_length=128)
    name: str = _Name
    public_key: str = Field(min_length=32, max_length=16384)
    """The agent's own public key (PEM or OpenSSH): its identity on the master."""
    nonce: str = Field(min_length=16, max_length=128)
    """Signed back by the master, which proves it holds the pinned identity."""
    engine_id: str = Field(default="", max_length=128)


class BridgeJoined(Response):
    name: str
    identity: str
    """The agent's identity on the master (`bridge@{name}`, permission BRIDGE)."""
    engine_id: str
    """The master's engine id."""
    master_public_key: str
    signature: str
    """The master's signature of `dxflow-bridge:{name}:{nonce}`, base64."""
    labels: dict[str, str] = {}


class BridgeRef(Request):
    name: str = _Name


class BridgeHello(Request):
    """The first message of an agent's link: who it is and what it allows the master."""

    name: str = _Name
    engine_id: str = Field(default="", max_length=128)
    allow: list[str] = Field(default_factory=list, max_length=16)
    version: str = Field(default="", max_length=64)
    protocol: int = Field(default=1, ge=1, le=1 << 16)
    """The link's wire version (`_bridges._frames.PROTOCOL`): master and agent must agree."""
    nonce: str = Field(min_length=16, max_length=128)
    facts: dict[str, str | int | float | None] = Field(default_factory=dict, max_length=32)


class BridgeForward(Request):
    """A call of the agent's API, forwarded: its method and path under `/api/`."""

    name: str = _Name
    path: str = Field(max_length=8192)
    method: str = Field(default="GET", pattern=r"^[A-Z]{3,7}$")


class BridgeListRequest(Request):
    labels: str | None = Field(default=None, max_length=4096, pattern=LABELS)
    """`key=value,key=value`: only the agents whose labels include all of these."""


class BridgeFacts(Response):
    """What the agent reports about its host, refreshed with every heartbeat."""

    cpus: int | None = None
    memory: int | None = None
    """Bytes of RAM."""
    memory_available: int | None = None
    gpus: int = 0
    load: float | None = None
    """The 1-minute load average."""
    hostname: str | None = None
    version: str | None = None


class BridgeInfo(Response):
    name: str
    engine_id: str | None = None
    labels: dict[str, str] = {}
    status: Status
    last_seen: datetime | None = None
    rtt: float | None = None
    """The last heartbeat's round trip, seconds."""
    joined_at: datetime
    connected_since: datetime | None = None
    drained: bool = False
    allow: list[str] = []
    """What the agent lets the master do on it."""
    facts: BridgeFacts = BridgeFacts()
    address: str | None = None
    """Where the agent's link comes from (host:port as the master sees it)."""
    workloads: dict[str, list[str]] = {}
    """What runs on the agent, read each time its link comes up (never changed by it):
    `workflows`, `shells`, `proxies` by name (a kind the agent does not allow: absent)."""
    reconciled_at: datetime | None = None


class BridgeList(Response):
    bridges: list[BridgeInfo]


class BridgeEventsQuery(Request):
    labels: str | None = Field(default=None, max_length=4096, pattern=LABELS)
    """`key=value,...`: only the agents with all of these labels."""
    interval: float = Field(default=0.5, ge=0.1, le=60)
    """How often statuses are compared (a change shows within this)."""
    workflows: bool = False
    """Also the events of the workflows on connected agents (as the caller sees them)."""


class BridgeEvent(Response):
    """An agent's status changed (the first event of a stream: each agent as it is), or,
    with `workflow`, one of its workflows' events (`status` is then the agent's)."""

    time: datetime
    agent: str
    status: Status
    previous: Status | None = None
    labels: dict[str, str] = {}
    last_seen: datetime | None = None
    workflow: WorkflowEvent | None = None


Strategy = Literal["least_loaded", "spread", "pack"]


class PlacementRequest(Request):
    """Choose an agent for workflow `workflow`: one with all of `labels`, connected, not
    drained, with at least `cpus`, `memory` bytes available and `gpus`; then by
    `strategy`: least_loaded (load per CPU), spread (fewest placed workflows), pack
    (most placed workflows, filling one agent before the next)."""

    workflow: str = Field(min_length=1, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    strategy: Strategy = "least_loaded"
    cpus: float | None = Field(default=None, gt=0)
    memory: int | None = Field(default=None, gt=0)
    gpus: int | None = Field(default=None, ge=0)


class PlacementRef(Request):
    workflow: str = Field(min_length=1, max_length=63)


class Placement(Response):
    workflow: str
    agent: str
    strategy: str | None = None
    refused: dict[str, str] = {}
    """Why each other agent was not chosen."""
