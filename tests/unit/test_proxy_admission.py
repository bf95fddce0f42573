"""Admission to a proxy, decided in one place (`Dispatcher.admit_proxy`): CIDR rules,
token and link auth, the rate, the connection cap, and the audit of refusals."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dxflow import Permission
from dxflow._core import Context, EngineCore
from dxflow._core._proxies._contract import Admission, Client, Refused
from dxflow._core._proxies._live import LiveProxy
from dxflow._keypairs import load_private_key
from dxflow._operations import OPERATIONS
from dxflow.models import AuditQuery

from ..conftest import KeyFactory


def call(core: EngineCore, ctx: Context, op: str, **payload: Any) -> Any:
    return asyncio.run(core.dispatcher.call(ctx, OPERATIONS[op], payload))


def admit(core: EngineCore, live: LiveProxy, **client: Any) -> Admission:
    return asyncio.run(core.proxies.admit(live, Client(**{"ip": "127.0.0.1", **client})))


def refusal(core: EngineCore, live: LiveProxy, **client: Any) -> Refused:
    with pytest.raises(Refused) as caught:
        admit(core, live, **client)
    return caught.value


def proxy(core: EngineCore, name: str = "web", **spec: Any) -> LiveProxy:
    call(core, core.local_context(), "proxies.create", name=name,
         targets=["127.0.0.1:9"], **spec)  # fmt: skip
    live = core.proxies.by_name(name) or core.proxies._live[name]
    return live


def key_context(core: EngineCore, make_key: KeyFactory, permissions: Permission) -> Context:
    pair = make_key(permissions)
    return core.local_context(load_private_key(pair.private))


def token_of(core: EngineCore, ctx: Context) -> str:
    assert ctx.identity is not None
    record = core.keys.get(ctx.identity.name)
    assert record is not None
    return core.auth.issue(record, 600).token


def unregister(core: EngineCore, ctx: Context) -> None:
    assert ctx.identity is not None
    call(core, core.local_context(), "keys.unregister", identity=ctx.identity.name)


def test_read_only_keys_only_read_through_a_proxy(core: EngineCore, make_key: KeyFactory) -> None:
    """READ_ONLY blocks every mutating call: through a proxy, any method but GET, HEAD and
    OPTIONS, and any WebSocket (the data planes mark both `writes`)."""
    live = proxy(core)
    reader = key_context(core, make_key, Permission.PROXY | Permission.READ_ONLY)
    token = token_of(core, reader)
    assert admit(core, live, token=token).identity == reader.identity.name  # type: ignore[union-attr]
    refused = refusal(core, live, token=token, writes=True)
    assert refused.status == 403 and "READ_ONLY" in refused.message
    writer = key_context(core, make_key, Permission.PROXY)
    assert admit(core, live, token=token_of(core, writer), writes=True).identity is not None


def test_allow_and_deny(core: EngineCore) -> None:
    live = proxy(core, auth="none", allow=["10.0.0.0/8"], deny=["10.0.0.7"])
    assert admit(core, live, ip="10.1.2.3").identity is None
    for ip in ("10.0.0.7", "127.0.0.1"):
        refused = refusal(core, live, ip=ip)
        assert (refused.status, refused.reason) == (403, "denied")
    assert live.stats.refused == {"denied": 2}


def test_token_auth_asks_the_named_permission(core: EngineCore, make_key: KeyFactory) -> None:
    live = proxy(core)
    missing = refusal(core, live)
    assert missing.status == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
    assert refusal(core, live, token="not-a-token").status == 401
    objects = key_context(core, make_key, Permission.OBJECT)
    denied = refusal(core, live, token=token_of(core, objects))
    assert denied.status == 403 and "needs PROXY" in denied.message
    proxies = key_context(core, make_key, Permission.PROXY)
    assert admit(core, live, token=token_of(core, proxies)).identity == proxies.identity.name  # type: ignore[union-attr]
    master = token_of(core, core.local_context())
    assert admit(core, live, token=master).identity == "master"

    workflow = proxy(core, "wf", permission="WORKFLOW")
    assert refusal(core, workflow, token=token_of(core, proxies)).status == 403
    wf_key = key_context(core, make_key, Permission.WORKFLOW)
    admit(core, workflow, token=token_of(core, wf_key))


def test_a_token_of_an_unregistered_key_is_refused_at_once(
    core: EngineCore, make_key: KeyFactory
) -> None:
    live = proxy(core)
    ctx = key_context(core, make_key, Permission.PROXY)
    token = token_of(core, ctx)
    admit(core, live, token=token)
    unregister(core, ctx)
    assert refusal(core, live, token=token).status == 401


def test_rate_per_client_with_retry_after(core: EngineCore) -> None:
    live = proxy(core, auth="none", rate="2/min")
    admit(core, live).release()
    admit(core, live).release()
    refused = refusal(core, live)
    assert (refused.status, refused.reason) == (429, "rate")
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    admit(core, live, ip="127.0.0.2")  # another client: its own bucket


def test_rate_per_identity_spans_addresses(core: EngineCore, make_key: KeyFactory) -> None:
    live = proxy(core, rate="1/h", rate_key="identity")
    token = token_of(core, key_context(core, make_key, Permission.PROXY))
    admit(core, live, ip="10.0.0.1", token=token)
    assert refusal(core, live, ip="10.0.0.2", token=token).status == 429
    other = token_of(core, key_context(core, make_key, Permission.PROXY))
    admit(core, live, ip="10.0.0.2", token=other)


def test_connection_cap_and_release(core: EngineCore) -> None:
    live = proxy(core, auth="none", max_connections=2)
    first, _ = admit(core, live), admit(core, live)
    refused = refusal(core, live)
    assert (refused.status, refused.reason) == (503, "connections")
    first.release()
    first.release()  # twice: freed once
    admit(core, live)
    assert live.open == 2


def test_links_open_a_link_proxy_and_die(core: EngineCore, make_key: KeyFactory) -> None:
    core.proxies.base_url = "http://127.0.0.1:7419"
    owner = key_context(core, make_key, Permission.PROXY)
    call(core, owner, "proxies.create", name="app", targets=["127.0.0.1:9"], auth="link")
    live = core.proxies.by_name("app")
    assert live is not None
    assert refusal(core, live).status == 401
    link = call(core, owner, "proxies.link", name="app", expires=60)
    assert link.url.startswith("http://127.0.0.1:7419/p/app/?dxflow_link=")
    secret = link.url.partition("dxflow_link=")[2]
    admitted = admit(core, live, link=secret)
    assert admitted.identity == f"link:{link.id}"
    assert admitted.set_cookie == (
        f"dxflow_link_app={secret}; Path=/p/app/; HttpOnly; SameSite=Lax"
    )
    assert refusal(core, live, link=secret[:-2] + "xx").status == 403
    # Only its creator sees its URL, again; MASTER sees the link but not the URL.
    assert call(core, owner, "proxies.links", name="app").links[0].url == link.url
    assert call(core, core.local_context(), "proxies.links", name="app").links[0].url is None
    call(core, owner, "proxies.unlink", name="app", id=link.id)
    assert refusal(core, live, link=secret).status == 403

    again = call(core, owner, "proxies.link", name="app", expires=60)
    secret = again.url.partition("dxflow_link=")[2]
    admit(core, live, link=secret)
    unregister(core, owner)
    assert refusal(core, live, link=secret).status == 403
    assert call(core, core.local_context(), "proxies.links", name="app").links[0].revoked
    assert core.proxies.by_name("app") is live  # the proxy stays


def test_an_expired_link_is_refused(core: EngineCore) -> None:
    live = proxy(core, auth="link")
    link = call(core, core.local_context(), "proxies.link", name="web", expires=60)
    secret = core.proxies._links.secret_of(link.id)
    admit(core, live, link=secret)
    live.links[link.id].expires_at = time.time() - 1
    assert refusal(core, live, link=secret).status == 403


def test_links_need_auth_link(core: EngineCore) -> None:
    from dxflow._exceptions import InvalidRequest

    proxy(core)
    with pytest.raises(InvalidRequest, match='auth="link"'):
        call(core, core.local_context(), "proxies.link", name="web")


def test_refusals_are_audited_at_most_once_per_reason_per_interval(core: EngineCore) -> None:
    live = proxy(core, auth="none", deny=["0.0.0.0/0"])
    for _ in range(30):
        refusal(core, live, ip="192.0.2.1")
    assert live.stats.refused == {"denied": 30}
    records = call(core, core.local_context(), "audit.list", **AuditQuery(
        operation="proxies.access").model_dump(exclude_none=True)).records  # fmt: skip
    assert len(records) == 1
    assert records[0].outcome == "refused:denied" and records[0].target == "web"
    # The next record, once the interval passed, carries the count of those in between.
    core.dispatcher._refusals[("web", "denied")] = (time.monotonic() - 60, 29)
    refusal(core, live, ip="192.0.2.1")
    records = call(core, core.local_context(), "audit.list", operation="proxies.access").records
    assert len(records) == 2 and "29 more" in (records[0].detail or "")
