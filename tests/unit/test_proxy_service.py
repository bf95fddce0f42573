"""The proxies' control plane on a real core: URLs, host-name routing, updates, and what
a restart brings back when the config changed meanwhile."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from dxflow import Permission
from dxflow._config import load_config
from dxflow._core import Context, EngineCore
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._operations import OPERATIONS


def call(core: EngineCore, op: str, ctx: Context | None = None, **payload: Any) -> Any:
    ctx = ctx or core.local_context()
    return asyncio.run(core.dispatcher.call(ctx, OPERATIONS[op], payload))


def test_urls(core: EngineCore) -> None:
    web = call(core, "proxies.create", name="web", targets=["127.0.0.1:9"])
    assert web.url is None  # no server serves this home yet
    core.proxies.base_url = "http://0.0.0.0:7419"
    assert call(core, "proxies.get", name="web").url == (
        f"http://{socket.gethostname()}:7419/p/web/"
    )
    own = call(core, "proxies.create", name="own", targets=["127.0.0.1:9"], port=0)
    assert own.url == f"http://127.0.0.1:{own.port}/" and own.state == "serving"
    tls = call(core, "proxies.create", name="sec", targets=["127.0.0.1:9"], port=0, tls=True)
    assert tls.url == f"https://127.0.0.1:{tls.port}/"
    db = call(core, "proxies.create", name="db", targets=["127.0.0.1:9"], port=0,
              protocol="tcp", host="::1")  # fmt: skip
    assert db.url == f"tcp://[::1]:{db.port}"
    assert core.proxies.by_name("own") is None  # a port of its own: not under /p/
    assert core.proxies.by_name("web") is not None


def test_host_names_route_with_a_domain(tmp_path: Path) -> None:
    core = EngineCore(load_config(tmp_path / "home", proxy_domain="Example.Test"))
    try:
        call(core, "proxies.create", name="web", targets=["127.0.0.1:9"])
        live = core.proxies.by_name("web")
        for host in ("web.example.test", "WEB.example.test:8443", "web.example.test."):
            assert core.proxies.by_host(host) is live, host
        for host in ("web.other.test", "example.test", "x.web.example.test", "nope.example.test"):
            assert core.proxies.by_host(host) is None, host
    finally:
        core.close()
    plain = EngineCore(load_config(tmp_path / "home"))
    try:
        assert plain.proxies.by_host("web.example.test") is None  # no domain: no routing
    finally:
        plain.close()


def test_an_update_from_a_workflow_to_targets_keeps_the_targets(core: EngineCore) -> None:
    compose = {"services": {"web": {"image": "scratch"}}}
    call(core, "workflows.create", name="etl", compose=compose)
    call(core, "proxies.create", name="app", workflow="etl", service="web", service_port=80)
    info = call(core, "proxies.update", name="app", targets=["127.0.0.1:9"])
    assert info.workflow is None and [t.target for t in info.pool] == ["127.0.0.1:9"]
    back = call(core, "proxies.update", name="app", workflow="etl", service="web",
                service_port=81)  # fmt: skip
    assert back.targets == [] and back.pool == [] and back.service_port == 81


def test_a_target_the_config_no_longer_allows_is_an_error_after_a_restart(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    core = EngineCore(load_config(home, proxy_public_targets=True))
    pair = generate_key_pair(tmp_path / "alice.pem", "ed25519")
    private = load_private_key(pair.private)
    core.keys.add("alice", private.public, Permission.PROXY)
    alice = core.local_context(private)
    call(core, "proxies.create", alice, name="pub", targets=["8.8.8.8:53"])
    call(core, "proxies.create", alice, name="local", targets=["127.0.0.1:9"])
    call(core, "proxies.create", name="master", targets=["8.8.4.4:53"])
    core.close()

    again = EngineCore(load_config(home))
    try:
        states = {p.name: (p.state, p.error) for p in call(again, "proxies.list").proxies}
        assert states["local"] == ("serving", None)
        assert states["master"] == ("serving", None)  # MASTER may target anything
        state, error = states["pub"]
        assert state == "error" and "proxy_public_targets" in (error or "")
        live = again.proxies.by_name("pub")
        assert live is not None and live.pool.pick("127.0.0.1") is None  # 503, not 404
    finally:
        again.close()
