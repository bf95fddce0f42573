"""The master's side of bridges: joins, the agents' links, and their status.

An agent's status is computed when asked, from when its link last carried a frame:
`connected` while heartbeats arrive, `disconnected` after two intervals without one (or
once its link closed), `lost` after `bridge_grace` seconds. A status is only a view:
the master never stops, moves or forgets an agent's work because of it.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio

from ..._config import Config
from ..._exceptions import (
    Conflict,
    EngineUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from ..._keypairs import PrivateKey, load_private_key, parse_public_key
from ..._models import (
    AgentStats,
    BridgeEvent,
    BridgeEventsQuery,
    BridgeFacts,
    BridgeForward,
    BridgeHello,
    BridgeInfo,
    BridgeJoin,
    BridgeJoined,
    BridgeList,
    BridgeListRequest,
    BridgeRef,
    BridgeToken,
    BridgeTokenCreate,
    KeyRef,
    Placement,
    PlacementRef,
    PlacementRequest,
)
from ..._models._bridge import Status
from ..._permissions import Permission
from ..._server_runtime import read_runtime
from ..._version import __version__
from .._audit import AuditLog
from .._auth import RateLimiter
from .._context import Context, Identity
from .._handlers import handles
from .._key_registry import KeyChange, KeyRegistry
from .._state import State
from ._forward import Forwarder, stream_socket
from ._frames import PROTOCOL
from ._join import JoinTokens
from ._link import Carrier, Link, LinkError, Stream, StreamReset
from ._names import IDENTITY_PREFIX, link_message
from ._placement import choose
from ._routes import operation_at
from ._watch import fleet_events

__all__ = ["BridgeMaster", "parse_labels"]

log = logging.getLogger("dxflow.bridges")

MASTER_NAME = "master"
"""The engine's own MASTER identity (as `_engine.MASTER_IDENTITY`): it reads its agents."""
WORKLOADS = ("workflows", "shells", "proxies")
ENGINE: dict[str, Any] = {"to": "engine"}
"""The stream target of forwarded calls: the agent engine's own socket."""


def parse_labels(text: str | None) -> dict[str, str]:
    """`gpu=true,site=lab` as a dict; a bad pair is an error naming it."""
    labels: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise InvalidRequest(f"label {pair.strip()!r} must be key=value (e.g. gpu=true)")
        labels[key.strip()] = value.strip()
    return labels


def _when(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp else None


def _stats(i: BridgeInfo) -> AgentStats:
    facts = i.facts
    return AgentStats(name=i.name, status=i.status, labels=i.labels, last_seen=i.last_seen,
                      rtt=i.rtt, cpus=facts.cpus, load=facts.load, memory=facts.memory,
                      memory_available=facts.memory_available, gpus=facts.gpus)  # fmt: skip


def _not_an_agent(ctx: Context, what: str) -> None:
    """An agent's own key (`bridge@NAME`) only dials its link: BRIDGE lets it in, and
    nothing more (a compromised node must not reach the rest of the fleet)."""
    who = ctx.identity.name if ctx.identity else ""
    if who.startswith(IDENTITY_PREFIX):
        raise PermissionDenied(f"{who!r} is an agent's key: it may link, not {what}")


@dataclass
class LinkAdmission:
    name: str
    hello: BridgeHello
    answer: dict[str, Any]


@dataclass
class LiveAgent:
    name: str
    link: Link
    address: str | None
    since: float
    workloads: dict[str, list[str]] = field(default_factory=dict)
    reconciled_at: float | None = None

    def last_seen(self) -> float:
        """The wall time of the link's last frame (the link keeps a monotonic one)."""
        return time.time() - (time.monotonic() - self.link.last_seen)


class BridgeMaster:
    def __init__(
        self, state: State, config: Config, keys: KeyRegistry, audit: AuditLog, engine_id: str,
        fingerprint: str,
    ) -> None:  # fmt: skip
        self._state, self._config, self._keys, self._audit = state, config, keys, audit
        self.engine_id, self.fingerprint = engine_id, fingerprint
        self.tokens = JoinTokens(state)
        self._joins = RateLimiter(config.auth_rate_limit, what="join attempts")
        self._live: dict[str, LiveAgent] = {}
        self._changed: dict[str, anyio.Event] = {}
        self._key: PrivateKey | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._forwarders: dict[str, Forwarder] = {}
        self._splices: set[asyncio.Task[None]] = set()

    @property
    def key(self) -> PrivateKey:
        """The master's own private key: signs its identity, authenticates to agents."""
        if self._key is None:
            self._key = load_private_key(self._config.home.master_key)
        return self._key

    # -- tokens and joins ---------------------------------------------------------------

    def _url(self, given: str | None) -> str:
        if given:
            return given.rstrip("/")
        from .._objects._shares import _reachable  # a wildcard bind names this machine

        runtime = read_runtime(self._config.home)
        if runtime and runtime.get("url"):
            return _reachable(str(runtime["url"]))
        scheme = "https" if self._config.tls else "http"
        return _reachable(f"{scheme}://{self._config.host}:{self._config.port}")

    @handles("bridges.token")
    def token(self, ctx: Context, request: BridgeTokenCreate) -> BridgeToken:
        who = ctx.identity.name if ctx.identity else None
        token, expires_at = self.tokens.mint(
            self._url(request.url), self.fingerprint, request.expires, request.uses,
            request.labels, who,
        )  # fmt: skip
        return BridgeToken(
            token=token.encode(), id=token.id, url=token.url, fingerprint=token.fingerprint,
            expires_at=datetime.fromtimestamp(expires_at, UTC), uses=request.uses,
            labels=request.labels,
        )  # fmt: skip

    @handles("bridges.join")
    def join(self, ctx: Context, request: BridgeJoin) -> BridgeJoined:
        self._joins.hit(ctx.client)
        self.tokens.check(request.token_id, request.secret)  # a stranger learns nothing more
        try:
            public = parse_public_key(request.public_key)
        except ValueError as exc:
            raise InvalidRequest(f"public_key: {exc}") from None
        identity = IDENTITY_PREFIX + request.name
        row = self._row(request.name, missing_ok=True)
        if row is not None and row["fingerprint"] != public.fingerprint:
            raise Conflict(
                f"an agent named {request.name!r} is joined already with another key "
                f"({row['fingerprint']}); on the master: dxflow bridge rm {request.name}, "
                "or join with another --name",
                name=request.name,
            )
        labels = self.tokens.redeem(request.token_id, request.secret)
        if row is None:
            self._keys.add(identity, public, Permission.BRIDGE)
            self._state.insert(
                "INSERT INTO bridges (name, identity, fingerprint, labels, engine_id, joined_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (request.name, identity, public.fingerprint, json.dumps(labels),
                 request.engine_id or None, time.time()),
            )  # fmt: skip
        else:  # the same agent joining again (a new token, new labels)
            self._state.execute(
                "UPDATE bridges SET labels = ? WHERE name = ?", (json.dumps(labels), request.name)
            )
        self._audit.record(ctx, "bridges.join", "ok", target=request.name, identity=identity)
        return BridgeJoined(
            name=request.name, identity=identity, engine_id=self.engine_id,
            master_public_key=self.key.public.pem,
            signature=self.key.sign_b64(link_message(request.name, request.nonce).decode()),
            labels=labels,
        )  # fmt: skip

    # -- links --------------------------------------------------------------------------

    def name_for(self, ctx: Context, hello: BridgeHello) -> str:
        """The bridge a link belongs to: the identity's own (`bridge@NAME`), or for a key
        registered with BRIDGE by hand, the name its hello asks for, bound to that key."""
        assert ctx.identity is not None
        who = ctx.identity.name
        if who.startswith(IDENTITY_PREFIX):
            if hello.name != who[len(IDENTITY_PREFIX) :]:
                raise PermissionDenied(
                    f"this key joined as {who[len(IDENTITY_PREFIX) :]!r}, not {hello.name!r}"
                )
            return hello.name
        row = self._row(hello.name, missing_ok=True)
        if row is None:
            self._state.insert(
                "INSERT INTO bridges (name, identity, fingerprint, labels, engine_id, joined_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (hello.name, who, ctx.identity.fingerprint or "", "{}", None, time.time()),
            )
        elif row["identity"] != who:
            raise Conflict(
                f"the bridge {hello.name!r} belongs to another key; choose another name",
                name=hello.name,
            )
        return hello.name

    @handles("bridges.link")
    def link(self, ctx: Context, request: BridgeHello) -> LinkAdmission:
        """Admit an agent's link: the master's answer proves the identity it pinned."""
        name = self.name_for(ctx, request)
        if request.protocol != PROTOCOL:
            raise InvalidRequest(
                f"agent {name!r} speaks link protocol {request.protocol} (dxflow"
                f" {request.version or 'unknown'}), this master {PROTOCOL} (dxflow"
                f" {__version__}): run the same dxflow version on both",
                field="protocol",
            )
        answer = {"name": name, "engine_id": self.engine_id, "public_key": self.key.public.pem,
                  "signature": self.key.sign_b64(link_message(name, request.nonce).decode()),
                  "interval": self._config.bridge_interval, "protocol": PROTOCOL}  # fmt: skip
        return LinkAdmission(name, request, answer)

    async def serve(
        self, ctx: Context, admission: LinkAdmission, carrier: Carrier, address: str | None
    ) -> None:
        """Run one agent's link until it ends; a newer link of the same agent replaces it."""
        name, hello = admission.name, admission.hello
        self._loop = asyncio.get_running_loop()
        link = Link(carrier, side="master", interval=self._config.bridge_interval)
        live = LiveAgent(name, link, address, time.time())
        link.peer_facts.update(hello.facts)
        old = self._live.get(name)
        self._live[name] = live
        if old is not None:
            await old.link.close("replaced by a newer link of the same agent")
        self._state.execute(
            "UPDATE bridges SET engine_id = ?, allow = ? WHERE name = ?",
            (hello.engine_id, ",".join(hello.allow), name),
        )
        await self._forget_forwarder(name)  # its pooled connections were the old link's
        self._wake(name)
        self._audit.record(ctx, "bridges.link", "connected", target=name, detail=address)
        reconcile = asyncio.get_running_loop().create_task(self._reconcile(live))
        try:
            await link.run()
        except LinkError as exc:
            log.info("bridge %s: link ended: %s", name, exc)
        finally:
            reconcile.cancel()
            self._state.execute(
                "UPDATE bridges SET last_seen = ?, facts = ? WHERE name = ?",
                (live.last_seen(), json.dumps(link.peer_facts), name),
            )
            if self._live.get(name) is live:
                del self._live[name]
                await self._forget_forwarder(name)
            self._audit.record(ctx, "bridges.link", "disconnected", target=name)

    async def _reconcile(self, live: LiveAgent) -> None:
        """Read what runs on the agent now that its link is back: the master's view
        converges on the agent's state; nothing on the agent is touched (reads only)."""
        ctx = Context(Identity(MASTER_NAME, Permission.MASTER, self.fingerprint), "local")
        forwarder = self.forwarder(live.name)
        seen: dict[str, list[str]] = {}
        for kind in WORKLOADS:
            try:
                headers = await forwarder.headers(ctx)
                reply = await forwarder.client.get(f"/api/{kind}", headers=headers)
                if reply.is_success:
                    seen[kind] = sorted(item["name"] for item in reply.json()[kind])
            except Exception as exc:
                log.info("bridge %s: reconciling %s failed: %s", live.name, kind, exc)
                return
        live.workloads, live.reconciled_at = seen, time.time()

    def forwarder(self, name: str) -> Forwarder:
        """Agent `name`'s door: calls as the master, for a caller (`Forwarder.headers`)."""
        forwarder = self._forwarders.get(name)
        if forwarder is None:
            forwarder = Forwarder(name, partial(self.open, name, ENGINE), self.key)
            self._forwarders[name] = forwarder
        return forwarder

    @handles("bridges.forward")
    def forward(self, ctx: Context, request: BridgeForward) -> Forwarder:
        """The door to agent `request.name` (the caller has BRIDGE); the agent decides
        whether the operation itself is allowed. Mutating calls are audited here too."""
        _not_an_agent(ctx, "reach other agents through the master")
        if request.name not in self._live:  # a linked agent exists: no query on the hot path
            self._row(request.name)
        if request.method not in ("GET", "HEAD"):  # a read is never audited: no lookup
            op = operation_at(request.method, "/api/" + request.path)
            if op is not None and op.mutating:
                self._audit.record(ctx, op.name, "forwarded", target=request.name)
        return self.forwarder(request.name)

    async def socket(self, name: str, host: str, port: int) -> socket.socket:
        """A socket to `host:port` on agent `name` (a proxy's target there); the agent
        refuses unless it allows PROXY and the address is its own host's or network's."""
        try:
            stream = await self.open(name, {"to": "tcp", "host": host, "port": port})
        except StreamReset as exc:
            raise ConnectionRefusedError(f"the agent {name!r}: {exc.reason}") from None
        except EngineUnavailable as exc:
            raise ConnectionRefusedError(exc.message) from None
        return await stream_socket(stream, self._splices)

    async def _forget_forwarder(self, name: str) -> None:
        forwarder = self._forwarders.pop(name, None)
        if forwarder is not None:
            await forwarder.aclose()

    def _wake(self, name: str) -> None:
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    async def open(self, name: str, target: dict[str, Any]) -> Stream:
        """A stream to `target` on agent `name`, waiting up to `bridge_wait` for its link."""
        row = self._row(name)
        with anyio.move_on_after(self._config.bridge_wait):
            while True:
                live = self._live.get(name)
                if live is not None and not live.link.closed:
                    try:
                        return await live.link.open(target)
                    except LinkError:
                        pass  # it broke meanwhile: wait for the next one
                event = self._changed.setdefault(name, anyio.Event())
                await event.wait()
        info = self._info(row)
        seen = info.last_seen.isoformat(timespec="seconds") if info.last_seen else "never"
        raise EngineUnavailable(
            f"the agent {name!r} is {info.status} (last seen {seen}); waited "
            f"{self._config.bridge_wait:g} s for its link. Its engine keeps running; calls "
            "work again once it reconnects (dxflow bridge show " + name + ")",
            reason="bridge_" + info.status,
            bridge=name,
        )

    # -- views --------------------------------------------------------------------------

    def _row(self, name: str, missing_ok: bool = False) -> Any:
        rows = self._state.query("SELECT * FROM bridges WHERE name = ?", (name,))
        if not rows and not missing_ok:
            raise NotFound(f"no bridge named {name!r}; see dxflow bridge list", name=name)
        return rows[0] if rows else None

    def status(self, name: str, last_seen: float | None) -> Status:
        live = self._live.get(name)
        now = time.time()
        interval = self._config.bridge_interval
        if (
            live is not None
            and not live.link.closed
            and (time.monotonic() - live.link.last_seen < 2 * interval)
        ):
            return "connected"
        if last_seen is None or now - last_seen > self._config.bridge_grace:
            return "lost"
        return "disconnected"

    def _info(self, row: Any) -> BridgeInfo:
        name = row["name"]
        live = self._live.get(name)
        last_seen = live.last_seen() if live is not None else row["last_seen"]
        facts = live.link.peer_facts if live is not None else json.loads(row["facts"] or "{}")
        return BridgeInfo(
            name=name, engine_id=row["engine_id"], labels=json.loads(row["labels"]),
            status=self.status(name, last_seen),
            last_seen=_when(last_seen), rtt=live.link.rtt if live else None,
            joined_at=_when(row["joined_at"]), connected_since=_when(live.since) if live else None,
            drained=bool(row["drained"]), allow=[a for a in row["allow"].split(",") if a],
            workloads=live.workloads if live else {},
            reconciled_at=_when(live.reconciled_at) if live else None,
            facts=BridgeFacts.model_validate(facts), address=live.address if live else None,
        )  # fmt: skip

    def infos(self, labels: dict[str, str] | None = None) -> list[BridgeInfo]:
        rows = self._state.query("SELECT * FROM bridges ORDER BY name")
        infos = [self._info(row) for row in rows]
        wanted = (labels or {}).items()
        return [i for i in infos if all(i.labels.get(k) == v for k, v in wanted)]

    def agent_stats(self) -> builtins.list[AgentStats]:
        """Every agent as the master's stats show it (monitoring in one place)."""
        return [_stats(info) for info in self.infos()]

    @handles("bridges.list")
    def list(self, ctx: Context, request: BridgeListRequest) -> BridgeList:
        _not_an_agent(ctx, "list the master's agents")
        return BridgeList(bridges=self.infos(parse_labels(request.labels)))

    @handles("bridges.events")
    async def events(self, ctx: Context, request: BridgeEventsQuery) -> AsyncIterator[BridgeEvent]:
        """Each agent as it is, then every change of status (lost included, which no
        frame announces: statuses are compared every `interval`); with `workflows`, the
        events of the workflows on connected agents too (`_watch.py`)."""
        _not_an_agent(ctx, "watch the master's agents")
        statuses = partial(self._statuses, parse_labels(request.labels), request.interval)
        events = fleet_events(self, ctx, request, statuses) if request.workflows else statuses()
        async for event in events:
            yield event

    async def _statuses(self, wanted: dict[str, str], interval: float
                        ) -> AsyncIterator[BridgeEvent]:  # fmt: skip
        known: dict[str, str] = {}
        while True:
            for info in self.infos(wanted):
                before = known.get(info.name)
                if before != info.status:
                    known[info.name] = info.status
                    yield BridgeEvent(time=datetime.now(UTC), agent=info.name,
                                      status=info.status, previous=before,
                                      labels=info.labels, last_seen=info.last_seen)  # fmt: skip
            await anyio.sleep(interval)

    @handles("bridges.get")
    def get(self, ctx: Context, request: BridgeRef) -> BridgeInfo:
        _not_an_agent(ctx, "see the master's agents")
        return self._info(self._row(request.name))

    @handles("bridges.place")
    def place(self, ctx: Context, request: PlacementRequest) -> Placement:
        """Choose an agent for a workflow and remember it (placing it again moves the
        record: the caller creates the workflow there next)."""
        _not_an_agent(ctx, "place workflows")
        rows = self._state.query("SELECT agent, COUNT(*) FROM placements GROUP BY agent")
        agent, refused = choose(self.infos(), request, {r[0]: r[1] for r in rows})
        who = ctx.identity.name if ctx.identity else None
        self._state.execute(
            "INSERT OR REPLACE INTO placements (workflow, agent, placed_by, placed_at)"
            " VALUES (?, ?, ?, ?)",
            (request.workflow, agent, who, time.time()),
        )
        return Placement(workflow=request.workflow, agent=agent, strategy=request.strategy,
                         refused=refused)  # fmt: skip

    @handles("bridges.placement")
    def placement(self, ctx: Context, request: PlacementRef) -> Placement:
        _not_an_agent(ctx, "see placements")
        rows = self._state.query(
            "SELECT agent FROM placements WHERE workflow = ?", (request.workflow,)
        )
        granted = ctx.identity.permissions if ctx.identity else Permission(0)
        if not rows or not (granted & (Permission.BRIDGE | Permission.MASTER)):
            # Any caller may ask (the SDK does, for a workflow not found here); only one
            # that may reach agents learns where it is, the rest that it is not here.
            raise NotFound(f"the workflow {request.workflow!r} was not placed on an agent")
        return Placement(workflow=request.workflow, agent=rows[0][0])

    @handles("bridges.drain")
    def drain(self, ctx: Context, request: BridgeRef) -> BridgeInfo:
        self._row(request.name)
        self._state.execute("UPDATE bridges SET drained = 1 WHERE name = ?", (request.name,))
        return self._info(self._row(request.name))

    @handles("bridges.remove")
    async def remove(self, ctx: Context, request: BridgeRef) -> BridgeInfo:
        """Forget an agent: its key leaves the registry and its link closes. Nothing on
        the agent is touched (its engine and work keep running)."""
        row = self._row(request.name)
        info = self._info(row)
        live = self._live.pop(request.name, None)
        if live is not None:
            await live.link.close("the master removed this bridge")
        await self._forget_forwarder(request.name)
        self._state.execute("DELETE FROM bridges WHERE name = ?", (request.name,))
        if row["identity"].startswith(IDENTITY_PREFIX) and self._keys.get(row["identity"]):
            self._keys.unregister(ctx, KeyRef(identity=row["identity"]))
        return info

    def key_changed(self, change: KeyChange) -> None:
        """A bridge's key unregistered or rotated: its link ends (it must join again)."""
        if change.kind == "updated":
            return
        for live in list(self._live.values()):
            row = self._row(live.name, missing_ok=True)
            if row is not None and row["identity"] == change.identity:
                self._live.pop(live.name, None)
                self._close_soon(live.link, "the bridge's key was " + change.kind)

    def _close_soon(self, link: Link, reason: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def close() -> None:
            task = loop.create_task(link.close(reason))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        loop.call_soon_threadsafe(close)
