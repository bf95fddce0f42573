"""The proxies' control plane: the `proxies.*` handlers, persistence, the live registry.

`EngineCore.proxies` is this service. It keeps one `LiveProxy` per stored proxy (made
at start from the state, so proxies come back with the engine) and is the registry the
data planes ask (`by_name`, `by_host`, `admit`: see `_contract.py`).

Ownership: a key sees and changes only the proxies it made; another's is NotFound
(MASTER: every one). Names are one namespace: creating a name another key holds is a
Conflict. A failed create changes nothing: the socket of a port of its own is bound
before the row is written, and closed if anything after fails. Keys: a proxy outlives
the key that made it (MASTER still sees it), but the access links that key made die.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from ..._config import Config
from ..._exceptions import ApiError, Conflict, NotFound
from ..._models import (
    ProxyCreate,
    ProxyInfo,
    ProxyLink,
    ProxyLinkCreate,
    ProxyLinkList,
    ProxyLinkRef,
    ProxyList,
    ProxyRef,
    ProxyStats,
    ProxyUpdate,
)
from ..._permissions import Permission
from ..._server_runtime import read_runtime
from .._audit import AuditLog
from .._context import Context
from .._handlers import handles
from .._key_registry import KeyChange
from .._lifecycle import Lifecycle
from .._objects import ObjectService
from .._state import State
from ._contract import Admission, Client, LiveProxyLike, Refused, Upstream
from ._links import Links
from ._listen import bind, display_host
from ._live import LiveProxy
from ._pool import Pool
from ._runner import Runner
from ._spec import check_shape, compile_rules, merged, normalized
from ._stats import percentiles
from ._targets import TargetPolicy, parse_target
from ._tls import Stamp, engine_context, engine_files, engine_paths, reload, stamp, store_context
from ._workloads import Workloads

__all__ = ["ProxyService"]

log = logging.getLogger("dxflow.engine")

Admit = Callable[[LiveProxy, Client], Admission]
SYNC_EVERY = 2.0
"""Seconds between two looks at the state for what another engine process changed."""
TLS_RENEW_EVERY = 86400.0
"""Seconds between two looks at the engine certificate's expiry (see `_tls.RENEW_BEFORE`)."""
_IMMUTABLE = ("protocol", "host", "tls", "tls_cert", "tls_key")


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _master(ctx: Context) -> bool:
    return ctx.identity is not None and ctx.identity.is_master


class ProxyService:
    def __init__(
        self,
        state: State,
        config: Config,
        lifecycle: Lifecycle,
        audit: AuditLog,
        policy: TargetPolicy,
        workloads: Workloads,
        secret: bytes,
        objects: ObjectService,
    ) -> None:
        self.base_url: str | None = None
        """Set by the server this core runs in: the address its listener bound."""
        self._listener_tls: ssl.SSLContext | None = None
        self._tls_loaded: Stamp = None
        """The version of the engine's certificate files the contexts presenting it hold."""
        self._state = state
        self._config = config
        self._lifecycle = lifecycle
        self._audit = audit
        self._policy = policy
        self._workloads = workloads
        self._links = Links(state, secret, audit)
        self._admit: Admit | None = None
        self._live: dict[str, LiveProxy] = {}
        self._domain = config.proxy_domain.strip(".").lower()
        self._objects = objects
        self._runner = Runner(lifecycle, workloads, self._live, self, self._tls_for)
        self._restore()

    def bind_admission(self, admit: Admit) -> None:
        """The dispatcher's `admit_proxy`: the one place that decides admission."""
        self._admit = admit

    # -- the registry the data planes see ------------------------------------------------

    def by_name(self, name: str) -> LiveProxy | None:
        live = self._live.get(name)
        if live is None:
            row = self._in_state(name)  # made by another engine process on this home?
            live = self._adopt(row) if row is not None else None
        # One in error (its targets no longer allowed) is found: its empty pool answers
        # 503, which says more than a 404 would.
        return live if live is not None and live.spec.port is None else None

    def by_host(self, host: str) -> LiveProxy | None:
        if not self._domain:
            return None
        host = host.lower().rsplit(":", 1)[0] if not host.endswith("]") else host.lower()
        name, dot, domain = host.rstrip(".").partition(".")
        return self.by_name(name) if dot and domain == self._domain else None

    def _in_state(self, name: str) -> Any:
        rows = self._state.query("SELECT * FROM proxies WHERE name = ?", (name,))
        return rows[0] if rows else None

    async def admit(self, live: LiveProxyLike, client: Client) -> Admission:
        if self._admit is None or not isinstance(live, LiveProxy):
            raise Refused(503, "this proxy is not ready", reason="unavailable")
        return self._admit(live, client)

    # -- restoring -----------------------------------------------------------------------

    def _restore(self) -> None:
        """Every stored proxy comes back; one that cannot (a target the config no longer
        allows) shows state "error" with the reason, and the rest serve."""
        for row in self._state.query("SELECT * FROM proxies ORDER BY created_at"):
            self._adopt(row)
        self._lifecycle.every("proxies.sync", SYNC_EVERY, self.sync)
        self._lifecycle.every("proxies.tls_renew", TLS_RENEW_EVERY, self.renew_certificates)

    def serve_tls(self, context: ssl.SSLContext) -> None:
        """The context the server's listener presents (made from `engine_files`): from now
        on it is given the engine's certificate whenever that is renewed or replaced."""
        self._listener_tls = context
        self._tls_loaded = stamp(*engine_paths(self._config))

    def _engine_contexts(self) -> list[ssl.SSLContext]:
        """The live contexts that present the engine's certificate: the listener's (when
        the engine serves TLS) and those of TLS ports of their own without one of theirs."""
        contexts = [
            live.ssl_context for live in self._live.values()
            if live.spec.tls and not live.spec.tls_cert and live.ssl_context is not None
        ]  # fmt: skip
        return contexts if self._listener_tls is None else [self._listener_tls, *contexts]

    async def renew_certificates(self) -> None:
        """The engine's self-signed certificate is made anew before it expires, and every
        context presenting it loads the new one: the engine's own listener (which would
        otherwise present the old one until the engine restarts, while `<home>/tls/cert.pem`
        no longer matches it) and TLS ports of their own. Nothing presents it: nothing is
        made (an in-process engine without TLS proxies has no use for one)."""
        contexts = self._engine_contexts()
        if not contexts:
            return
        cert, key = engine_files(self._config)
        seen = stamp(cert, key)
        try:
            reload(contexts, cert, key)
        except (OSError, ssl.SSLError) as exc:
            log.warning("the engine's certificate %s does not load (%s): its listeners keep "
                        "presenting the one they have", cert, exc)  # fmt: skip
        self._tls_loaded = seen  # once per version of the files, whatever came of it

    async def _follow_certificate(self) -> None:
        """The engine's certificate files changed since they were loaded: another engine
        process on this home renewed them (a notebook's in-process engine making a TLS
        proxy), or the operator replaced them (`--cert` renewed by certbot). Looked at at
        once (renewed if they are near expiry) rather than at the next daily renewal."""
        if not self._engine_contexts():
            return
        now = stamp(*engine_paths(self._config))
        if now != self._tls_loaded:
            self._tls_loaded = now  # a renewal that fails is not retried every tick
            await self.renew_certificates()

    def _adopt(self, row: Any) -> LiveProxy:
        stored = json.loads(row["spec"])
        by_master = bool(stored.pop("by_master", False))
        spec = ProxyCreate.model_validate(stored)
        live = LiveProxy(
            name=row["name"], spec=spec, rules=compile_rules(spec),
            pool=Pool([], spec.balance or "round_robin"), created_by=row["created_by"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            by_master=by_master, port=row["port"],
        )  # fmt: skip
        try:
            live.pool.replace(self._static(spec, by_master))
        except Exception as exc:  # an ApiError, or a name that no longer resolves
            live.error = f"cannot restore its targets: {exc}"
        self._links.load(live)
        self._live[live.name] = live
        if live.port is not None and live.error is None:
            # Bound now, not when the background work starts (START_DELAY after boot):
            # clients that come at once wait in the backlog instead of being refused.
            with contextlib.suppress(ApiError):  # taken: its listener task says why
                live.sock = bind(spec.host, live.port, live.name)
        self._runner.start(live)
        return live

    async def sync(self) -> None:
        """Follow what another engine process on this home changed (a notebook's
        in-process engine next to a server): proxies made, updated or removed there, and
        their links, and the engine's certificate files. A proxy whose port was taken
        tries again (when the other process ends, this one takes over its listener)."""
        rows = {row["name"]: row for row in self._state.query("SELECT * FROM proxies")}
        for name, live in list(self._live.items()):
            row = rows.pop(name, None)
            if row is None:
                del self._live[name]
                self._runner.stop(live)
            elif row["updated_at"] != live.updated_at:
                self._reload(live, row)
            else:
                self._links.load(live)
                if live.error is not None and live.port is not None and not live.serving:
                    self._runner.restart(live)
        for row in rows.values():
            self._adopt(row)
        await self._follow_certificate()

    def _reload(self, live: LiveProxy, row: Any) -> None:
        stored = json.loads(row["spec"])
        by_master = bool(stored.pop("by_master", False))
        spec = ProxyCreate.model_validate(stored)
        old = live.spec
        try:
            upstreams = None if spec.workflow else self._static(spec, by_master)
        except Exception as exc:
            live.error = f"cannot load its targets: {exc}"
            upstreams = []
        live.by_master = by_master
        live.swap(spec, compile_rules(spec), upstreams, row["updated_at"])
        self._links.load(live)
        self._runner.changed(live, workload=(old.workflow, old.service, old.service_port)
                             != (spec.workflow, spec.service, spec.service_port))  # fmt: skip

    # -- helpers -------------------------------------------------------------------------

    def _tls_for(self, live: LiveProxy) -> ssl.SSLContext | None:
        spec = live.spec
        if not spec.tls:
            return None
        if spec.tls_cert and spec.tls_key:
            scratch = self._config.home.run_dir / "proxies"
            return store_context(self._objects, spec.tls_cert, spec.tls_key, scratch)
        return engine_context(self._config)

    def _static(self, spec: ProxyCreate, master: bool, may_bridge: bool = True) -> list[Upstream]:
        """The spec's host targets, parsed and checked (a workflow's come from Docker)."""
        return [
            self._policy.check(parse_target(text, spec.protocol), master, may_bridge)
            for text in spec.targets or []
        ]

    def _own(self, ctx: Context, name: str) -> LiveProxy:
        """The caller's proxy (any for MASTER); another's is as unknown as a missing one."""
        live = self._live.get(name)
        if live is None or not (
            _master(ctx) or (ctx.identity is not None and ctx.identity.name == live.created_by)
        ):
            raise NotFound(f"no proxy named {name!r}", name=name)
        return live

    def _address(self) -> str | None:
        """Where the server serving this home answers (None: no server runs on it)."""
        from .._objects._shares import _reachable

        if self.base_url:
            return _reachable(self.base_url)
        runtime = read_runtime(self._config.home)
        return _reachable(str(runtime["url"])) if runtime and runtime.get("url") else None

    def url(self, live: LiveProxy) -> str | None:
        spec = live.spec
        if live.port is None:
            address = self._address()
            return f"{address.rstrip('/')}/p/{live.name}/" if address else None
        scheme = "tcp" if spec.protocol == "tcp" else ("https" if spec.tls else "http")
        tail = "" if spec.protocol == "tcp" else "/"
        return f"{scheme}://{display_host(spec.host)}:{live.port}{tail}"

    def _state_of(self, live: LiveProxy) -> Literal["serving", "stopped", "error"]:
        if live.error is not None:
            return "error"
        if live.port is None or live.serving or live.sock is not None:
            return "serving"
        return "stopped"

    def _info(self, live: LiveProxy) -> ProxyInfo:
        spec = live.spec
        return ProxyInfo(
            name=live.name, protocol=spec.protocol, url=self.url(live),
            state=self._state_of(live), error=live.error,
            targets=list(spec.targets or []), workflow=spec.workflow, service=spec.service,
            service_port=spec.service_port, port=live.port, host=spec.host, tls=spec.tls,
            balance=spec.balance or "round_robin", health=spec.health,
            allow=list(spec.allow or []), deny=list(spec.deny or []),
            auth=live.rules.auth, permission=live.rules.permission.names[0],
            rate=spec.rate, burst=spec.burst, rate_key=live.rules.rate_key,
            max_connections=live.rules.max_connections, timeout=live.timeout,
            connect_timeout=live.connect_timeout, verify=live.verify, retries=live.retries,
            pool=[t.state() for t in live.pool.targets], created_by=live.created_by,
            created_at=_when(live.created_at), updated_at=_when(live.updated_at),
        )  # fmt: skip

    def _store(self, live: LiveProxy, insert: bool) -> None:
        spec = {**live.spec.model_dump(mode="json"), "by_master": live.by_master}
        if insert:
            self._state.execute(
                "INSERT INTO proxies (name, spec, created_by, created_at, updated_at, port)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (live.name, json.dumps(spec), live.created_by, live.created_at,
                 live.updated_at, live.port),
            )  # fmt: skip
        else:
            self._state.execute(
                "UPDATE proxies SET spec = ?, updated_at = ? WHERE name = ?",
                (json.dumps(spec), live.updated_at, live.name),
            )

    async def _checked(self, ctx: Context, spec: ProxyCreate) -> list[Upstream] | None:
        """Refuse a spec that cannot work or may not go where it points; its host targets
        (None for a workflow service: the runner resolves its containers)."""
        check_shape(spec)
        if spec.workflow is not None:
            assert spec.service is not None
            await self._workloads.check(spec.workflow, spec.service)
            return None
        may_bridge = ctx.identity is not None and Permission.BRIDGE in ctx.identity.permissions
        return self._static(spec, _master(ctx), may_bridge)

    # -- handlers ------------------------------------------------------------------------

    @handles("proxies.list")
    def list(self, ctx: Context, request: None) -> ProxyList:
        mine = [
            live for live in self._live.values()
            if _master(ctx) or (ctx.identity is not None and ctx.identity.name == live.created_by)
        ]  # fmt: skip
        return ProxyList(proxies=[self._info(live) for live in sorted(mine, key=lambda p: p.name)])

    @handles("proxies.get")
    def get(self, ctx: Context, request: ProxyRef) -> ProxyInfo:
        return self._info(self._own(ctx, request.name))

    @handles("proxies.create")
    async def create(self, ctx: Context, request: ProxyCreate) -> ProxyInfo:
        if request.name not in self._live and (row := self._in_state(request.name)):
            self._adopt(row)  # made by another engine process on this home
        if request.name in self._live:
            return await self._exists(ctx, request)
        spec = normalized(request)
        upstreams = await self._checked(ctx, spec)
        if request.name in self._live:  # made meanwhile
            return await self._exists(ctx, request)
        now = time.time()
        rules = compile_rules(spec)
        sock = bind(spec.host, spec.port, spec.name) if spec.port is not None else None
        live = LiveProxy(
            name=spec.name, spec=spec, rules=rules,
            pool=Pool(upstreams or [], spec.balance or "round_robin"),
            created_by=ctx.identity.name if ctx.identity else "", created_at=now,
            updated_at=now, by_master=_master(ctx),
            port=sock.getsockname()[1] if sock is not None else None, sock=sock,
        )  # fmt: skip
        try:
            live.ssl_context = self._tls_for(live)  # a bad certificate fails the create
            self._store(live, insert=True)
        except sqlite3.IntegrityError:  # another engine process on this home made it
            if sock is not None:
                sock.close()
            raise self._taken(spec.name) from None
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        self._live[live.name] = live
        self._runner.start(live)
        return self._info(live)

    @staticmethod
    def _taken(name: str) -> Conflict:
        return Conflict(
            f"name: a proxy named {name!r} exists; pick another name, pass exist_ok=True to "
            f"update yours to this spec, or change it with update() (CLI: `dxflow proxy "
            f"update {name}`)", field="name", name=name,
        )  # fmt: skip

    async def _exists(self, ctx: Context, request: ProxyCreate) -> ProxyInfo:
        """create with a taken name: a Conflict, or with exist_ok an update of one's own
        proxy to this spec (what cannot change must match)."""
        live = self._live.get(request.name)
        mine = live is not None and (
            _master(ctx) or (ctx.identity is not None and ctx.identity.name == live.created_by)
        )
        if live is None or not request.exist_ok or not mine:
            raise self._taken(request.name)
        spec = normalized(request)
        for field in _IMMUTABLE:
            if getattr(spec, field) != getattr(live.spec, field):
                raise Conflict(
                    f"{field}: proxy {live.name!r} exists with {field}="
                    f"{getattr(live.spec, field)!r}; a proxy's {field} does not change: "
                    "remove it first (`dxflow proxy rm`) or use another name", field=field,
                )  # fmt: skip
        if (spec.port is None) != (live.port is None) or spec.port not in (0, None, live.port):
            raise Conflict(
                f"port: proxy {live.name!r} exists with port={live.port!r}; its port does "
                "not change: remove it first or use another name", field="port",
            )  # fmt: skip
        return await self._apply(ctx, live, spec.model_copy(update={"port": live.spec.port}))

    @handles("proxies.update")
    async def update(self, ctx: Context, request: ProxyUpdate) -> ProxyInfo:
        live = self._own(ctx, request.name)
        return await self._apply(ctx, live, merged(live.spec, request))

    async def _apply(self, ctx: Context, live: LiveProxy, spec: ProxyCreate) -> ProxyInfo:
        upstreams = await self._checked(ctx, spec)
        rules = compile_rules(spec)
        if self._live.get(live.name) is not live:
            raise NotFound(f"no proxy named {live.name!r} (it was removed)", name=live.name)
        old = (live.spec, live.by_master, live.updated_at)
        live.spec, live.by_master, live.updated_at = spec, _master(ctx), time.time()
        try:
            self._store(live, insert=False)
        except BaseException:
            live.spec, live.by_master, live.updated_at = old
            raise
        live.swap(spec, rules, upstreams, live.updated_at)
        if upstreams is not None:
            live.error = None if live.port is None or live.sock or live.serving else live.error
        self._runner.changed(live, workload=old[0].workflow != spec.workflow
                             or old[0].service != spec.service
                             or old[0].service_port != spec.service_port)  # fmt: skip
        return self._info(live)

    @handles("proxies.remove")
    async def remove(self, ctx: Context, request: ProxyRef) -> ProxyInfo:
        live = self._own(ctx, request.name)
        self._state.execute("DELETE FROM proxies WHERE name = ?", (live.name,))
        self._links.forget(live.name)
        del self._live[live.name]
        self._runner.stop(live)
        info = self._info(live)
        return info.model_copy(update={"state": "stopped", "pool": []})

    @handles("proxies.stats")
    def stats(self, ctx: Context, request: ProxyRef) -> ProxyStats:
        live = self._own(ctx, request.name)
        s = live.stats
        bytes_in, bytes_out = s.totals()
        return ProxyStats(
            name=live.name, since=s.since, requests=s.requests, refused=dict(s.refused),
            responses=dict(s.responses), open_connections=s.open_connections,
            bytes_in=bytes_in, bytes_out=bytes_out, latency_ms=percentiles(s.latencies),
            targets=[t.stats() for t in live.pool.targets],
        )  # fmt: skip

    @handles("proxies.link")
    def link(self, ctx: Context, request: ProxyLinkCreate) -> ProxyLink:
        live = self._own(ctx, request.name)
        return self._links.create(ctx, live, request.expires, self.url(live))

    @handles("proxies.links")
    def links(self, ctx: Context, request: ProxyRef) -> ProxyLinkList:
        live = self._own(ctx, request.name)
        return ProxyLinkList(links=self._links.list(ctx, live, self.url(live)))

    @handles("proxies.unlink")
    def unlink(self, ctx: Context, request: ProxyLinkRef) -> ProxyLink:
        live = self._own(ctx, request.name)
        return self._links.revoke(ctx, live, request.id, self.url(live))

    # -- links, for the dispatcher -------------------------------------------------------

    def check_link(self, live: LiveProxy, secret: str) -> str | None:
        """The id of the live link `secret` opens on `live`, or None."""
        link = self._links.check(live, secret)
        return link.id if link is not None else None

    def key_changed(self, change: KeyChange) -> None:
        self._links.key_changed(change, self._live)

    def close(self) -> None:
        """Close the sockets no listener task holds (the lifecycle stops the others)."""
        for live in self._live.values():
            self._runner.release(live)
