"""Proxies' control plane through every transport and both SDKs: the round trip, who sees
what, and bad input that changes nothing. (The data plane is tested where it is built.)"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dxflow import (
    Conflict,
    Engine,
    InvalidRequest,
    NotFound,
    Permission,
    PermissionDenied,
    UsageError,
)
from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._keypairs import load_private_key
from dxflow._transports._local import LocalTransport
from dxflow.models import ProxyHealth, ProxyInfo, ProxyStats

from ..conftest import SDKS, EngineFactory, KeyFactory

BOTH_SDKS = pytest.mark.parametrize("sdk", SDKS, indirect=True)
"""The async SDK too (the facades are what this file tests)."""

TARGET = "127.0.0.1:9"
"""A loopback address: creating a proxy does not connect to its targets."""


@pytest.fixture(autouse=True)
def served(request: pytest.FixtureRequest) -> None:
    """The http leg's core knows where it is served, as `dxflow boot up` tells it."""
    if "transport" in request.fixturenames and request.getfixturevalue("transport") == "http":
        core = request.getfixturevalue("core")
        core.proxies.base_url = request.getfixturevalue("server_url")


def make_link(proxy: Any, in_process: bool, expires: str = "1h") -> Any:
    """An access link; in process with no server it has no URL yet, and a warning says so."""
    if not in_process:
        return proxy.link(expires=expires)
    with pytest.warns(UserWarning, match="no URL yet"):
        made = proxy.link(expires=expires)
    assert made.url is None
    return made


@pytest.fixture
def listening() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _point(handle: Any, info: ProxyInfo) -> None:
    """Make `handle` name another proxy, as a handle kept (or forged) would."""
    inner = handle._target if type(handle).__name__ == "AsyncDriven" else handle._async
    inner.info = info


def names(engine: Any) -> list[str]:
    return [p.name for p in engine.proxies.list()]


@BOTH_SDKS
def test_create_list_get_update_remove(engine: Engine, transport: str) -> None:
    made = engine.proxies.create("web", target=TARGET)
    info = made.info
    assert isinstance(info, ProxyInfo) and made.name == "web"
    assert (info.protocol, info.targets, info.port, info.state) == (
        "http",
        [TARGET],
        None,
        "serving",
    )
    assert (info.balance, info.auth, info.permission, info.rate_key) == (
        "round_robin", "token", "PROXY", "client")  # fmt: skip
    assert (info.max_connections, info.timeout, info.connect_timeout) == (0, 60, 5)
    assert (info.verify, info.retries, info.health) == (True, 1, None)
    if transport == "http":  # under the engine's listener, through the SDK's address
        assert made.url == f"{engine.url}/p/web/"
    assert names(engine) == ["web"]
    got = engine.proxies.get("web")
    assert got.info.targets == [TARGET] and got.url == made.url
    updated = got.update(["127.0.0.1:10", "127.0.0.1:11"], rate="100/min", burst=20,
                         allow="127.0.0.0/8", deny=["127.0.0.7"], balance="least_conn",
                         health={"path": "/health", "interval": 1})  # fmt: skip
    assert updated.targets == ["127.0.0.1:10", "127.0.0.1:11"] and got.info == updated
    assert (updated.rate, updated.burst, updated.balance) == ("100/min", 20, "least_conn")
    assert (updated.allow, updated.deny) == (["127.0.0.0/8"], ["127.0.0.7"])
    assert updated.health == ProxyHealth(path="/health", interval=1)
    assert updated.protocol == "http" and updated.port is None  # what update leaves alone
    made.reload()
    assert made.info.rate == "100/min"
    assert got.update(rate="").rate is None  # "" removes the limit
    made.remove()
    with pytest.raises(NotFound, match="web"):
        engine.proxies.get("web")
    assert names(engine) == []
    with pytest.raises(NotFound):
        got.update(rate="1/s")


@BOTH_SDKS
def test_a_port_of_its_own_and_tcp(engine: Engine) -> None:
    db = engine.proxies.create("db", target=TARGET, protocol="tcp", port=0)
    assert db.info.protocol == "tcp" and db.info.port and db.info.port > 0
    assert db.url == f"tcp://127.0.0.1:{db.info.port}"
    with socket.socket() as probe, pytest.raises(OSError):  # taken while the proxy lives
        probe.bind(("127.0.0.1", db.info.port))
    web = engine.proxies.create("own", target=[TARGET, "127.0.0.1:10"], port=0)
    assert web.url == f"http://127.0.0.1:{web.info.port}/"
    assert sorted(names(engine)) == ["db", "own"]
    db.remove()
    web.remove()


@BOTH_SDKS
def test_exist_ok_updates_and_a_taken_name_is_a_conflict(engine: Engine) -> None:
    engine.proxies.create("web", target=TARGET)
    with pytest.raises(Conflict, match="exist"):
        engine.proxies.create("web", target="127.0.0.1:10")
    assert engine.proxies.get("web").info.targets == [TARGET]
    again = engine.proxies.create("web", target="127.0.0.1:10", rate="5/s", exist_ok=True)
    assert again.info.targets == ["127.0.0.1:10"] and again.info.rate == "5/s"
    with pytest.raises(Conflict, match="protocol"):  # what cannot change must match
        engine.proxies.create("web", target=TARGET, protocol="tcp", port=0, exist_ok=True)
    assert names(engine) == ["web"]


@BOTH_SDKS
def test_stats_and_access_links(engine: Engine, transport: str) -> None:
    proxy = engine.proxies.create("app", target=TARGET, auth="link")
    stats = proxy.stats()
    assert isinstance(stats, ProxyStats) and stats.name == "app" and stats.requests == 0
    link = make_link(proxy, transport == "local", "30m")
    assert link.proxy == "app" and not link.revoked and link.created_by == "master"
    if transport == "http":
        assert link.url is not None and link.url.startswith(f"{engine.url}/p/app/")
        assert "dxflow_link=" in link.url
    assert [k.id for k in proxy.links()] == [link.id]
    revoked = proxy.unlink(link.id)
    assert revoked.id == link.id and revoked.revoked
    assert [k.revoked for k in proxy.links() if k.id == link.id] in ([True], [])
    with pytest.raises(NotFound):
        proxy.unlink("nosuchlink")
    with pytest.raises(UsageError, match="expires"):
        proxy.link(expires="whenever")


@BOTH_SDKS
@pytest.mark.parametrize(
    ("fields", "error", "says"),
    [
        ({"allow": ["10.0.0.300/8"]}, InvalidRequest, "allow"),
        ({"deny": "not-a-network"}, InvalidRequest, "deny"),
        ({"rate": "fast"}, InvalidRequest, "rate"),
        ({"rate": "0/min"}, InvalidRequest, "rate"),
        ({"target": "not a target"}, InvalidRequest, "targets"),
        ({"target": "ftp://127.0.0.1:21"}, InvalidRequest, "targets"),
        ({"target": {"workflow": "nope", "service": "web", "port": 80}}, NotFound, "nope"),
        ({"target": [TARGET, {"workflow": "w", "service": "s", "port": 1}]}, UsageError, "pool"),
        ({"health": {"interval": 0}}, InvalidRequest, "interval"),
        ({"protocol": "tcp"}, InvalidRequest, "port"),
        ({"name": "Not_A_Name"}, InvalidRequest, "name"),
        ({"auth": "password"}, InvalidRequest, "auth"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    engine: Engine, fields: dict[str, Any], error: type[Exception], says: str
) -> None:
    engine.proxies.create("kept", target=TARGET)
    before = [p.info for p in engine.proxies.list()]
    arguments = {"name": "bad", "target": TARGET} | fields
    with pytest.raises(error, match=says):
        engine.proxies.create(**arguments)
    assert [p.info for p in engine.proxies.list()] == before
    if "name" in fields or "protocol" in fields:
        return  # what an update cannot change
    kept = engine.proxies.get("kept")
    with pytest.raises(error, match=says):  # the same refusal as an update
        kept.update(**{k: v for k, v in arguments.items() if k != "name"})
    assert [p.info for p in engine.proxies.list()] == before


@BOTH_SDKS
def test_a_port_in_use_is_a_conflict_that_changes_nothing(engine: Engine, listening: int) -> None:
    with pytest.raises(Conflict, match="in use"):
        engine.proxies.create("busy", target=TARGET, port=listening)
    with pytest.raises(Conflict, match="in use"):
        engine.proxies.create("busy", target=TARGET, protocol="tcp", port=listening)
    assert names(engine) == []


@BOTH_SDKS
def test_a_key_sees_and_changes_only_its_own_proxies(
    engine: Engine, make_engine: EngineFactory, make_key: KeyFactory
) -> None:
    alice = make_engine(make_key(Permission.PROXY, "alice").private)
    bob = make_engine(make_key(Permission.PROXY, "bob").private)
    mine = alice.proxies.create("alices", target=TARGET)
    assert mine.info.created_by == "alice"
    assert names(bob) == []
    bob.proxies.create("bobs", target=TARGET)
    with pytest.raises(NotFound, match="alices"):
        bob.proxies.get("alices")
    with pytest.raises(Conflict):  # one namespace: the name is taken, even unseen
        bob.proxies.create("alices", target="127.0.0.1:10")
    with pytest.raises(Conflict):  # exist_ok updates one's own only
        bob.proxies.create("alices", target="127.0.0.1:10", exist_ok=True)
    assert alice.proxies.get("alices").info.targets == [TARGET]
    assert sorted(names(engine)) == ["alices", "bobs"]  # MASTER sees every one
    assert names(alice) == ["alices"]
    engine.proxies.get("alices").update(rate="1/s")  # and may change it
    assert alice.proxies.get("alices").info.rate == "1/s"


@BOTH_SDKS
def test_another_key_gets_not_found_for_every_operation(
    make_engine: EngineFactory, make_key: KeyFactory, transport: str
) -> None:
    alice = make_engine(make_key(Permission.PROXY, "alice").private)
    bob = make_engine(make_key(Permission.PROXY, "bob").private)
    mine = alice.proxies.create("alices", target=TARGET, auth="link")
    link = make_link(mine, transport == "local")
    seen_by_bob = bob.proxies.create("bobs", target=TARGET)
    _point(seen_by_bob, mine.info)  # a handle of alice's proxy in bob's hands
    for call in (seen_by_bob.reload, seen_by_bob.stats, seen_by_bob.link, seen_by_bob.links,
                 seen_by_bob.remove, lambda: seen_by_bob.unlink(link.id),
                 lambda: seen_by_bob.update(rate="1/s")):  # fmt: skip
        with pytest.raises(NotFound):
            call()
    assert alice.proxies.get("alices").info.rate is None
    assert [k.id for k in mine.links()] == [link.id]


@BOTH_SDKS
def test_read_only_keys_list_but_never_create(
    engine: Engine, make_engine: EngineFactory, make_key: KeyFactory
) -> None:
    engine.proxies.create("web", target=TARGET)
    viewer = make_engine(make_key(Permission.PROXY | Permission.READ_ONLY).private)
    with pytest.raises(PermissionDenied, match="READ_ONLY"):
        viewer.proxies.create("mine", target=TARGET)
    assert names(viewer) == [] and names(engine) == ["web"]


def test_create_update_and_remove_are_audited(
    engine: Engine, make_engine: EngineFactory, make_key: KeyFactory
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    alice = make_engine(make_key(Permission.PROXY, "alice").private)
    viewer = make_engine(make_key(Permission.PROXY | Permission.READ_ONLY, "viewer").private)
    made = alice.proxies.create("audited", target=TARGET)
    made.update(rate="1/s")
    with pytest.raises(InvalidRequest):
        made.update(rate="fast")
    with pytest.raises(Conflict):
        alice.proxies.create("audited", target=TARGET)
    with pytest.raises(PermissionDenied):
        viewer.proxies.create("audited", target=TARGET)
    alice.proxies.list()
    made.stats()
    made.remove()
    seen = [
        (r.identity, r.operation, r.target, r.outcome)
        for r in engine.audit(since=started) if r.operation.startswith("proxies.")
    ]  # fmt: skip
    assert ("alice", "proxies.create", "audited", "ok") in seen
    assert ("alice", "proxies.update", "audited", "ok") in seen
    assert ("alice", "proxies.update", "audited", "error:invalid_request") in seen
    assert ("alice", "proxies.create", "audited", "error:conflict") in seen
    assert ("viewer", "proxies.create", None, "denied") in seen
    assert ("alice", "proxies.remove", "audited", "ok") in seen
    # Reads are not written to the log (they change nothing).
    assert not [s for s in seen if s[1] in ("proxies.list", "proxies.get", "proxies.stats")]
    assert [r.operation for r in engine.audit(operation="proxies.remove", since=started)] == [
        "proxies.remove"
    ]


@BOTH_SDKS
def test_a_workflow_target_needs_workflow_too(
    engine: Engine, make_engine: EngineFactory, make_key: KeyFactory
) -> None:
    service = {"workflow": "etl", "service": "web", "port": 80}
    proxy_only = make_engine(make_key(Permission.PROXY).private)
    with pytest.raises(PermissionDenied, match="WORKFLOW"):
        proxy_only.proxies.create("app", target=service)
    with pytest.raises(PermissionDenied, match="WORKFLOW"):
        proxy_only.proxies.create("app", target=[service])
    both = make_engine(make_key(Permission.PROXY | Permission.WORKFLOW).private)
    with pytest.raises(NotFound, match="etl"):  # allowed, but there is no such workflow
        both.proxies.create("app", target=service)
    assert names(engine) == []


@BOTH_SDKS
@pytest.mark.parametrize(
    ("target", "says"),
    [("8.8.8.8:53", "public"), ("169.254.169.254:80", "link-local")],
)
def test_keys_reach_only_the_engine_s_host(
    engine: Engine, make_engine: EngineFactory, make_key: KeyFactory, target: str, says: str
) -> None:
    user = make_engine(make_key(Permission.PROXY).private)
    with pytest.raises(PermissionDenied, match=says):
        user.proxies.create("out", target=target)
    with pytest.raises(PermissionDenied, match=says):
        user.proxies.create("out", target=[TARGET, target])
    assert names(engine) == []


def test_proxies_come_back_when_the_engine_restarts(tmp_path: Path) -> None:
    home = tmp_path / "home"

    def open_engine() -> tuple[EngineCore, Engine]:
        core = EngineCore(load_config(home))
        key = load_private_key(core.config.home.master_key)
        return core, Engine(transport=LocalTransport(core, key, owns_core=False))

    core, engine = open_engine()
    try:
        web = engine.proxies.create(
            "web", target=TARGET, rate="10/s", allow="127.0.0.0/8", auth="link"
        )
        db = engine.proxies.create("db", target=TARGET, protocol="tcp", port=0)
        app = make_link(web, in_process=True)
        before = {p.name: p.info for p in engine.proxies.list()}
    finally:
        engine.close()
        core.close()
    core, engine = open_engine()
    try:
        after = {p.name: p.info for p in engine.proxies.list()}
        assert sorted(after) == ["db", "web"]
        for name in after:
            kept = {k: v for k, v in after[name].model_dump().items() if k not in ("pool", "state")}
            assert kept == {k: v for k, v in before[name].model_dump().items()
                            if k not in ("pool", "state")}  # fmt: skip
        assert after["db"].port == db.info.port  # the same port, so clients find it again
        assert [k.id for k in engine.proxies.get("web").links()] == [app.id]
    finally:
        engine.close()
        core.close()
