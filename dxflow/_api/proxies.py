"""`engine.proxies` and the `Proxy` handle, async and blocking.

A proxy exposes services of the engine's host (or a workflow service's containers) over
HTTP, WebSocket or TCP, behind the engine's keys (see `dxflow._models._proxy`).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _operations as ops
from .._display import Listing, html_of
from .._durations import parse_duration
from .._exceptions import UsageError
from .._models import ProxyHealth, ProxyInfo, ProxyLink, ProxyStats, Response
from .._models._proxy import AuthMode, Balance, RateKey
from .._models._proxy import Protocol as ProxyProtocol
from .._operations import Operation
from .._operations.proxies import PROXY_PREFIX
from ._base import Blocking

if TYPE_CHECKING:
    from ._protocol import AsyncEngineLike

R = TypeVar("R", bound=Response)

__all__ = ["AsyncProxies", "AsyncProxy", "Proxies", "Proxy", "bridge"]

Service = Mapping[str, Any]
"""{"workflow": "etl", "service": "web", "port": 80}: the containers of a workflow service."""
Target = str | Service | Sequence[str | Service]
"""`host:port`, `http(s)://host:port[/base]`, `unix:/path.sock`, a workflow service, or a
list of addresses (a pool)."""
Health = ProxyHealth | Mapping[str, Any]
Cidrs = str | Sequence[str]
Expires = str | float | timedelta

_SERVICE_KEYS = {"workflow", "service", "port"}
NO_SERVER = (
    "access link made, but no engine server runs on this engine's home, so the link has "
    "no URL yet (link.url is None): start one with `dxflow boot up` (on the same "
    "DXFLOW_HOME); the link then works, and proxy.links() lists it with its URL"
)


def bridge(agent: str, address: str) -> str:
    """A proxy target on an agent of this engine: `address` (`host:port`) as the agent
    sees it, reached over the agent's link (`target=dxflow.bridge("gpu-1",
    "127.0.0.1:8888")` exposes a notebook on a node behind NAT through the master)."""
    return f"bridge://{agent}/{address}"


def _service_fields(service: Service) -> dict[str, Any]:
    """A workflow service target as the request's top-level fields."""
    unknown = set(service) - _SERVICE_KEYS
    missing = _SERVICE_KEYS - set(service)
    if unknown or missing:
        what = f"unknown keys {sorted(unknown)}" if unknown else f"no {', '.join(sorted(missing))}"
        raise UsageError(
            f"target={dict(service)!r}: {what}; a workflow service target is "
            '{"workflow": "etl", "service": "web", "port": 80}'
        )
    return {
        "workflow": service["workflow"],
        "service": service["service"],
        "service_port": service["port"],
    }


def target_fields(target: Target) -> dict[str, Any]:
    """`target=` as the request's fields: `targets`, or `workflow`/`service`/`service_port`.

    A workflow service is a pool of its own (its containers), so it cannot be mixed with
    addresses in one list; the refusal says so before anything reaches the engine.
    """
    if isinstance(target, str):
        return {"targets": [target]}
    if isinstance(target, Mapping):
        return _service_fields(target)
    items = list(target)
    services = [t for t in items if isinstance(t, Mapping)]
    if services and len(items) == 1:
        return _service_fields(services[0])
    if services:
        raise UsageError(
            "target: a workflow service ({'workflow', 'service', 'port'}) is a pool of its "
            "own (its containers): give it alone, not in a list with other targets"
        )
    if not items:
        raise UsageError("target=[]: give at least one target (e.g. '127.0.0.1:8000')")
    if bad := [t for t in items if not isinstance(t, str)]:
        raise UsageError(f"target: {bad[0]!r} is not a target; use 'host:port' or a URL")
    return {"targets": items}


def _cidrs(value: Cidrs | None) -> builtins.list[str] | None:
    """One CIDR or a list of them (a lone string is not split into characters)."""
    if value is None or isinstance(value, str):
        return None if value is None else [value]
    return list(value)


def _health(value: Health | None) -> Any:
    if isinstance(value, ProxyHealth):
        return value.model_dump()
    return None if value is None else dict(value)


def spec_fields(target: Target | None = None, **spec: Any) -> dict[str, Any]:
    """The fields create and update share, None ones left out (the engine keeps or
    defaults them)."""
    fields = {} if target is None else target_fields(target)
    spec["allow"], spec["deny"] = _cidrs(spec.get("allow")), _cidrs(spec.get("deny"))
    spec["health"] = _health(spec.get("health"))
    return fields | {k: v for k, v in spec.items() if v is not None}


def _rebase(url: str | None, name: str, base: str | None) -> str | None:
    """A URL under the engine's listener (`/p/{name}/`) through the address this SDK
    reaches the engine at (a reverse proxy, a tunnel), as share links do."""
    if url is None or not base or not base.startswith(("http://", "https://")):
        return url
    route = f"{PROXY_PREFIX}{name}/"
    at = url.find(route)
    return url if at < 0 else base.rstrip("/") + url[at:]


class AsyncProxy:
    def __init__(self, engine: AsyncEngineLike, info: ProxyInfo) -> None:
        self._engine = engine
        self.info = self._absolute(info)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def url(self) -> str | None:
        """Where clients reach the proxy (None: in-process under `/p/` with no server)."""
        return self.info.url

    def __repr__(self) -> str:
        info = self.info
        return f"<{type(self).__name__} {self.name} {info.protocol} {info.state} {info.url or '-'}>"

    def _repr_html_(self) -> str | None:
        return html_of(self.info)

    def _absolute(self, info: ProxyInfo) -> ProxyInfo:
        if info.port is not None:
            return info  # a port of its own: the engine's address does not apply
        base = self._engine.url
        url = _rebase(info.url, info.name, base)
        if url is None and base and base.startswith(("http://", "https://")):
            url = f"{base.rstrip('/')}{PROXY_PREFIX}{info.name}/"
        return info if url == info.url else info.model_copy(update={"url": url})

    async def _op(self, op: Operation[Any, R], **params: Any) -> R:
        return await self._engine._call(op, name=self.name, **params)

    async def reload(self) -> ProxyInfo:
        self.info = self._absolute(await self._op(ops.proxies.GET))
        return self.info

    async def update(
        self, target: Target | None = None, *, balance: Balance | None = None,
        health: Health | None = None, allow: Cidrs | None = None, deny: Cidrs | None = None,
        auth: AuthMode | None = None, permission: str | None = None, rate: str | None = None,
        burst: int | None = None, rate_key: RateKey | None = None,
        max_connections: int | None = None, timeout: float | None = None,
        connect_timeout: float | None = None, verify: bool | None = None,
        retries: int | None = None,
    ) -> ProxyInfo:  # fmt: skip
        """Change what is given (None keeps it; `rate=""` removes the rate limit). Open
        connections finish on the old spec. The new info (also in `info`)."""
        fields = spec_fields(target, balance=balance, health=health, allow=allow, deny=deny,
                             auth=auth, permission=permission, rate=rate, burst=burst,
                             rate_key=rate_key, max_connections=max_connections,
                             timeout=timeout, connect_timeout=connect_timeout, verify=verify,
                             retries=retries)  # fmt: skip
        self.info = self._absolute(await self._op(ops.proxies.UPDATE, **fields))
        return self.info

    async def remove(self) -> None:
        """Remove the proxy: its listener closes and its open connections end."""
        self.info = self._absolute(await self._op(ops.proxies.REMOVE))

    async def stats(self) -> ProxyStats:
        return await self._op(ops.proxies.STATS)

    async def link(self, expires: Expires = "1h") -> ProxyLink:
        """An access link (for `auth="link"`): opening its `url` lets a browser in until
        it expires or is revoked (`unlink`)."""
        try:
            seconds = parse_duration(expires)
        except ValueError as exc:
            raise UsageError(f"expires: {exc}") from None
        link = await self._op(ops.proxies.LINK, expires=seconds)
        if link.url is None:
            import warnings

            # Explicit: this runs on the engine's loop, whose frames mean nothing to a user.
            warnings.warn_explicit(NO_SERVER, UserWarning, "dxflow", 0)
        return self._absolute_link(link)

    async def links(self) -> builtins.list[ProxyLink]:
        found = await self._op(ops.proxies.LINKS)
        return Listing(self._absolute_link(link) for link in found.links)  # a table in Jupyter

    async def unlink(self, link_id: str) -> ProxyLink:
        """Revoke an access link: requests carrying it are refused at once."""
        return self._absolute_link(await self._op(ops.proxies.UNLINK, id=link_id))

    def _absolute_link(self, link: ProxyLink) -> ProxyLink:
        url = _rebase(link.url, link.proxy, self._engine.url) if self.info.port is None else None
        return link if url is None or url == link.url else link.model_copy(update={"url": url})


class AsyncProxies:
    def __init__(self, engine: AsyncEngineLike) -> None:
        self._engine = engine

    async def create(
        self, name: str, target: Target, *, protocol: ProxyProtocol = "http",
        balance: Balance | None = None,
        health: Health | None = None, allow: Cidrs | None = None, deny: Cidrs | None = None,
        auth: AuthMode | None = None, permission: str | None = None, rate: str | None = None,
        burst: int | None = None, rate_key: RateKey | None = None,
        max_connections: int | None = None, timeout: float | None = None,
        connect_timeout: float | None = None, verify: bool | None = None,
        retries: int | None = None, port: int | None = None, host: str | None = None,
        tls: bool = False, tls_cert: str | None = None, tls_key: str | None = None,
        exist_ok: bool = False,
    ) -> AsyncProxy:  # fmt: skip
        """Expose `target` as proxy `name`; it persists across engine restarts.

        `target`: `"host:port"` (on the engine's host: loopback or private addresses),
        `"http://host:port/base"`, `"https://host:port"`, `"unix:/path.sock"`, a list of
        these (a pool), or `{"workflow": "etl", "service": "web", "port": 80}`.
        HTTP proxies are served under `<engine url>/p/{name}/` unless `port` is given
        (0 picks a free one; TCP needs one). Left out (None), the engine's defaults apply:
        balance round_robin, auth "token" with permission PROXY, rate_key client, no
        connection cap, timeout 60 s, connect_timeout 5 s, verify on, retries 1, passive
        health only. `tls_cert`/`tls_key` are object store paths. A name in use is a
        Conflict, unless `exist_ok` (the proxy is updated to this spec).
        """
        fields = spec_fields(target, balance=balance, health=health, allow=allow, deny=deny,
                             auth=auth, permission=permission, rate=rate, burst=burst,
                             rate_key=rate_key, max_connections=max_connections,
                             timeout=timeout, connect_timeout=connect_timeout, verify=verify,
                             retries=retries, port=port, host=host, tls_cert=tls_cert,
                             tls_key=tls_key)  # fmt: skip
        fields |= {"name": name, "protocol": protocol, "tls": tls, "exist_ok": exist_ok}
        info = await self._engine._call(ops.proxies.CREATE, **fields)
        return AsyncProxy(self._engine, info)

    async def get(self, name: str) -> AsyncProxy:
        return AsyncProxy(self._engine, await self._engine._call(ops.proxies.GET, name=name))

    async def list(self) -> builtins.list[AsyncProxy]:
        """Your proxies (MASTER: every one)."""
        found = await self._engine._call(ops.proxies.LIST)
        return Listing(AsyncProxy(self._engine, info) for info in found.proxies)  # a table


# -- the blocking twins -------------------------------------------------------------------


class Proxy(Blocking[AsyncProxy]):
    """The blocking twin of `AsyncProxy`. In Jupyter it shows its info."""

    info = property(lambda self: self._async.info)
    name = property(lambda self: self._async.name)
    url = property(lambda self: self._async.url)

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncProxy", "Proxy", 1)

    def _repr_html_(self) -> str | None:
        return self._async._repr_html_()

    def reload(self) -> ProxyInfo:
        return self._run(self._async.reload)

    def update(
        self, target: Target | None = None, *, balance: Balance | None = None,
        health: Health | None = None, allow: Cidrs | None = None, deny: Cidrs | None = None,
        auth: AuthMode | None = None, permission: str | None = None, rate: str | None = None,
        burst: int | None = None, rate_key: RateKey | None = None,
        max_connections: int | None = None, timeout: float | None = None,
        connect_timeout: float | None = None, verify: bool | None = None,
        retries: int | None = None,
    ) -> ProxyInfo:  # fmt: skip
        """See `AsyncProxy.update`: the new info."""
        return self._run(self._async.update, target, balance=balance, health=health,
                         allow=allow, deny=deny, auth=auth, permission=permission, rate=rate,
                         burst=burst, rate_key=rate_key, max_connections=max_connections,
                         timeout=timeout, connect_timeout=connect_timeout, verify=verify,
                         retries=retries)  # fmt: skip

    def remove(self) -> None:
        self._run(self._async.remove)

    def stats(self) -> ProxyStats:
        return self._run(self._async.stats)

    def link(self, expires: Expires = "1h") -> ProxyLink:
        return self._run(self._async.link, expires)

    def links(self) -> builtins.list[ProxyLink]:
        return self._run(self._async.links)

    def unlink(self, link_id: str) -> ProxyLink:
        return self._run(self._async.unlink, link_id)


class Proxies(Blocking[AsyncProxies]):
    """The blocking twin of `AsyncProxies`."""

    def _wrap(self, proxy: AsyncProxy) -> Proxy:
        return Proxy(self._runner, proxy)

    def create(
        self, name: str, target: Target, *, protocol: ProxyProtocol = "http",
        balance: Balance | None = None,
        health: Health | None = None, allow: Cidrs | None = None, deny: Cidrs | None = None,
        auth: AuthMode | None = None, permission: str | None = None, rate: str | None = None,
        burst: int | None = None, rate_key: RateKey | None = None,
        max_connections: int | None = None, timeout: float | None = None,
        connect_timeout: float | None = None, verify: bool | None = None,
        retries: int | None = None, port: int | None = None, host: str | None = None,
        tls: bool = False, tls_cert: str | None = None, tls_key: str | None = None,
        exist_ok: bool = False,
    ) -> Proxy:  # fmt: skip
        """See `AsyncProxies.create`."""
        return self._wrap(self._run(
            self._async.create, name, target, protocol=protocol, balance=balance,
            health=health, allow=allow, deny=deny, auth=auth, permission=permission, rate=rate,
            burst=burst, rate_key=rate_key, max_connections=max_connections, timeout=timeout,
            connect_timeout=connect_timeout, verify=verify, retries=retries, port=port,
            host=host, tls=tls, tls_cert=tls_cert, tls_key=tls_key, exist_ok=exist_ok,
        ))  # fmt: skip

    def get(self, name: str) -> Proxy:
        return self._wrap(self._run(self._async.get, name))

    def list(self) -> builtins.list[Proxy]:
        """Your proxies (MASTER: every one); print() or Jupyter shows them as a table."""
        return Listing(self._wrap(proxy) for proxy in self._run(self._async.list))
