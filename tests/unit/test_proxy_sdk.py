"""The proxies' SDK without an engine: what `create`/`update`/`link` send, the handle's
URL, and how the proxies' models look (repr, print, HTML)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from dxflow import UsageError
from dxflow._api.proxies import AsyncProxies, AsyncProxy, Proxies, spec_fields, target_fields
from dxflow._operations import Operation
from dxflow._runner import Runner
from dxflow.models import (
    ProxyHealth,
    ProxyInfo,
    ProxyLink,
    ProxyLinkList,
    ProxyList,
    ProxyStats,
    ProxyTargetState,
    ProxyTargetStats,
)

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def info(name: str = "web", **changes: Any) -> ProxyInfo:
    fields: dict[str, Any] = {
        "name": name, "protocol": "http", "url": f"http://10.0.0.5:7419/p/{name}/",
        "state": "serving", "targets": ["127.0.0.1:8888"], "port": None, "host": "127.0.0.1",
        "tls": False, "balance": "round_robin", "health": None, "allow": [], "deny": [],
        "auth": "token", "permission": "PROXY", "rate": None, "burst": None,
        "rate_key": "client", "max_connections": 0, "timeout": 60.0, "connect_timeout": 5.0,
        "verify": True, "retries": 1, "created_by": "master", "created_at": NOW,
        "updated_at": NOW,
    }  # fmt: skip
    return ProxyInfo(**(fields | changes))


def link(**changes: Any) -> ProxyLink:
    fields: dict[str, Any] = {
        "id": "lnk1", "proxy": "web", "url": "http://10.0.0.5:7419/p/web/?dxflow_link=SECRET",
        "expires_at": NOW + timedelta(hours=1), "created_by": "master", "created_at": NOW,
    }  # fmt: skip
    return ProxyLink(**(fields | changes))


class FakeEngine:
    """An `AsyncEngineLike` that records calls and answers canned models."""

    def __init__(self, url: str | None = "https://engine.example:7419") -> None:
        self.url = url
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Any] = {}

    @property
    def in_process(self) -> bool:
        return self.url is None

    async def _call(self, op: Operation[Any, Any], /, **params: Any) -> Any:
        self.calls.append((op.name, params))
        return self.answers[op.name]


def run(function: Any, *args: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        return await function(*args, **kwargs)

    return anyio.run(main)


# -- target= and the spec ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "fields"),
    [
        ("127.0.0.1:8888", {"targets": ["127.0.0.1:8888"]}),
        (["a:1", "unix:/s.sock"], {"targets": ["a:1", "unix:/s.sock"]}),
        (
            {"workflow": "etl", "service": "web", "port": 80},
            {"workflow": "etl", "service": "web", "service_port": 80},
        ),
        (
            [{"workflow": "etl", "service": "web", "port": 80}],
            {"workflow": "etl", "service": "web", "service_port": 80},
        ),
    ],
)
def test_a_target_is_a_string_a_list_or_a_workflow_service(target: Any, fields: Any) -> None:
    assert target_fields(target) == fields


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (["a:1", {"workflow": "etl", "service": "web", "port": 80}], "pool of its own"),
        ({"workflow": "etl", "service": "web"}, "no port"),
        ({"workflow": "etl", "service": "web", "port": 80, "host": "x"}, "unknown keys"),
        ([], "at least one target"),
        ([8080], "not a target"),
    ],
)
def test_a_target_that_cannot_work_is_refused_before_any_call(target: Any, says: str) -> None:
    engine = FakeEngine()
    with pytest.raises(UsageError, match=says):
        run(AsyncProxies(engine).create, "web", target)
    assert engine.calls == []


def test_the_spec_leaves_out_what_is_not_given() -> None:
    assert spec_fields(None, rate=None, allow=None) == {}
    fields = spec_fields("h:1", allow="10.0.0.0/8", deny=["10.0.0.7"], rate="")
    assert fields == {"targets": ["h:1"], "allow": ["10.0.0.0/8"], "deny": ["10.0.0.7"], "rate": ""}


def test_health_is_a_dict_or_the_model() -> None:
    model = ProxyHealth(path="/health", interval=1)
    assert spec_fields(health=model)["health"] == model.model_dump()
    assert spec_fields(health={"path": "/h"})["health"] == {"path": "/h"}


def test_create_sends_the_request_fields() -> None:
    engine = FakeEngine()
    engine.answers["proxies.create"] = info()
    proxy = run(AsyncProxies(engine).create, "web", {"workflow": "etl", "service": "web",
                "port": 80}, health={"path": "/h"}, rate="100/min", port=None)  # fmt: skip
    name, params = engine.calls[0]
    assert name == "proxies.create"
    assert params == {
        "name": "web", "protocol": "http", "tls": False, "exist_ok": False, "workflow": "etl",
        "service": "web", "service_port": 80, "health": {"path": "/h"}, "rate": "100/min",
    }  # fmt: skip
    assert isinstance(proxy, AsyncProxy) and proxy.name == "web"


def test_update_and_links_go_to_the_named_proxy() -> None:
    engine = FakeEngine()
    proxy = AsyncProxy(engine, info())
    engine.answers |= {"proxies.update": info(rate="5/s"), "proxies.link": link(),
                       "proxies.unlink": link(revoked=True),
                       "proxies.links": ProxyLinkList(links=[link()])}  # fmt: skip
    assert run(proxy.update, ["h:1", "h:2"], rate="5/s").rate == "5/s"
    assert proxy.info.rate == "5/s"
    run(proxy.link, "2h")
    run(proxy.link, 90)
    run(proxy.link, timedelta(minutes=5))
    assert run(proxy.unlink, "lnk1").revoked
    assert [link.id for link in run(proxy.links)] == ["lnk1"]
    assert engine.calls[:5] == [
        ("proxies.update", {"name": "web", "targets": ["h:1", "h:2"], "rate": "5/s"}),
        ("proxies.link", {"name": "web", "expires": 7200.0}),
        ("proxies.link", {"name": "web", "expires": 90.0}),
        ("proxies.link", {"name": "web", "expires": 300.0}),
        ("proxies.unlink", {"name": "web", "id": "lnk1"}),
    ]
    with pytest.raises(UsageError, match="expires"):
        run(proxy.link, "soon")


# -- URLs -----------------------------------------------------------------------------------


def test_a_proxy_under_the_engine_is_reached_through_the_sdk_s_address() -> None:
    """As share links: a remote SDK reaches the engine through its own URL (a reverse
    proxy, a tunnel), so the proxy's URL is put under that one."""
    engine = FakeEngine("https://public.example/engine")
    proxy = AsyncProxy(engine, info())
    assert proxy.url == "https://public.example/engine/p/web/"
    engine.answers["proxies.link"] = link()
    made = run(proxy.link)
    assert made.url == "https://public.example/engine/p/web/?dxflow_link=SECRET"
    no_server = AsyncProxy(engine, info(url=None))
    assert no_server.url == "https://public.example/engine/p/web/"


def test_a_link_without_a_server_says_how_to_get_its_url() -> None:
    engine = FakeEngine(None)
    engine.answers["proxies.link"] = link(url=None)
    with pytest.warns(UserWarning, match="dxflow boot up"):
        made = run(AsyncProxy(engine, info(url=None)).link)
    assert made.url is None


def test_a_proxy_on_its_own_port_or_in_process_keeps_the_engine_s_url() -> None:
    own = AsyncProxy(FakeEngine(), info(port=9000, url="http://127.0.0.1:9000/"))
    assert own.url == "http://127.0.0.1:9000/"
    local = AsyncProxy(FakeEngine(None), info(url=None))
    assert local.url is None
    unix = AsyncProxy(FakeEngine("unix:///run/engine.sock"), info())
    assert unix.url == "http://10.0.0.5:7419/p/web/"


def test_the_blocking_twins_wrap_the_async_ones() -> None:
    engine = FakeEngine()
    engine.answers |= {"proxies.list": ProxyList(proxies=[info("a"), info("b")]),
                       "proxies.get": info("a"), "proxies.stats": stats(),
                       "proxies.remove": info("a", state="stopped")}  # fmt: skip
    runner = Runner()
    try:
        proxies = Proxies(runner, AsyncProxies(engine))
        assert [p.name for p in proxies.list()] == ["a", "b"]
        proxy = proxies.get("a")
        assert repr(proxy).startswith("<Proxy a http serving https://engine.example:7419/p/a/")
        assert proxy.stats().requests == 12
        proxy.remove()
        assert proxy.info.state == "stopped"
        assert "proxy a" in (proxy._repr_html_() or "")
    finally:
        runner.close()


# -- how they look ---------------------------------------------------------------------------


def stats() -> ProxyStats:
    target = ProxyTargetStats(target="127.0.0.1:8888", address="127.0.0.1:8888",
                              health="healthy", requests=12, bytes_out=2048,
                              latency_ms={"p50": 1.25, "p99": 4.0})  # fmt: skip
    return ProxyStats(name="a", since=NOW, requests=12, refused={"rate": 3, "auth": 1},
                      responses={"2xx": 11, "5xx": 1}, open_connections=2, bytes_in=512,
                      bytes_out=2048, latency_ms={"p50": 1.5}, targets=[target])  # fmt: skip


def test_an_info_prints_its_rules_and_pool() -> None:
    pool = [ProxyTargetState(target="127.0.0.1:8888", address="127.0.0.1:8888",
                             health="unhealthy", error="connection refused")]  # fmt: skip
    shown = info(rate="100/min", burst=20, allow=["10.0.0.0/8"], pool=pool,
                 health=ProxyHealth(path="/health", interval=1))  # fmt: skip
    line = repr(shown)
    assert line.startswith("<ProxyInfo web http serving http://10.0.0.5:7419/p/web/")
    assert "\n" not in line
    text = str(shown)
    for needle in (
        "proxy web",
        "token (PROXY)",
        "100/min per client address, burst 20",
        "GET /health every 1 s",
        "10.0.0.0/8",
        "TARGET",
        "connection refused",
    ):
        assert needle in text, (needle, text)  # fmt: skip
    assert "<table" in (shown._repr_html_() or "")


def test_a_workflow_target_shows_as_its_service() -> None:
    shown = info(targets=[], workflow="etl", service="web", service_port=80, auth="none")
    assert "workflow etl/web:80" in str(shown) and "none (public)" in str(shown)


def test_a_list_is_one_table() -> None:
    text = str(ProxyList(proxies=[info("a"), info("b", protocol="tcp", port=6380)]))
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["NAME", "PROTOCOL", "URL"]
    assert lines[2].startswith("a ") and lines[3].startswith("b ")


def test_stats_show_counts_per_class_and_per_target() -> None:
    shown = stats()
    line = repr(shown)
    assert "12 requests, 4 refused, 2 open" in line and "p50 1.5 ms" in line
    text = str(shown)
    assert "auth 1, rate 3" in text and "2xx 11, 5xx 1" in text
    assert "p50 1.2 ms p99 4.0 ms" in text and "2.0 KiB" in text
    assert "<table" in (shown._repr_html_() or "")


def test_a_link_s_secret_stays_out_of_its_repr() -> None:
    made = link()
    assert "SECRET" not in repr(made) and "SECRET" in str(made)
    listed = ProxyLinkList(links=[made, link(id="lnk2", revoked=True)])
    assert "SECRET" not in repr(listed) and "SECRET" not in str(listed)
    assert "revoked" in str(listed)


def test_a_list_of_handles_prints_and_shows_as_a_table() -> None:
    engine = FakeEngine()
    engine.answers["proxies.list"] = ProxyList(proxies=[info("a"), info("b")])
    runner = Runner()
    try:
        found = Proxies(runner, AsyncProxies(engine)).list()
        assert [p.name for p in found] == ["a", "b"] and isinstance(found, list)
        lines = str(found).splitlines()
        assert lines[0].split()[:3] == ["NAME", "PROTOCOL", "URL"]
        assert lines[1].startswith("a ") and lines[2].startswith("b ")
        assert "<table" in (found._repr_html_() or "")  # type: ignore[attr-defined]
        assert repr(found).startswith("[<Proxy a http serving")
    finally:
        runner.close()
