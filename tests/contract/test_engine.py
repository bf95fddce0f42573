"""The engine's own operations behave the same in-process and over HTTP."""

from __future__ import annotations

import anyio
import pytest

import dxflow
from dxflow import Engine, InvalidRequest, Permission, PermissionDenied
from dxflow import _operations as ops
from dxflow._core import EngineCore
from dxflow.models import EngineInfo, EngineStats, Pong

from ..conftest import EngineFactory, KeyFactory


def test_health_and_ping(engine: Engine, core: EngineCore) -> None:
    health = engine.health()
    assert health.status == "ok" and health.version == dxflow.__version__
    pong = engine.ping()
    assert isinstance(pong, Pong)
    assert pong.engine_id == core.engine_id
    assert pong.identity == "master"


def test_info_describes_the_host(engine: Engine, core: EngineCore) -> None:
    info = engine.info()
    assert isinstance(info, EngineInfo)
    assert info.engine_id == core.engine_id
    assert info.version == dxflow.__version__
    assert info.cpu.count >= 1
    assert 0 < info.memory.available <= info.memory.total
    assert any(disk.mount == "/" or disk.total > 0 for disk in info.disks)
    assert info.host.python.startswith("3.")
    assert info.docker.available or info.docker.error  # never silently empty


def test_stats_sample_every_core_mount_and_interface(engine: Engine) -> None:
    stats = engine.stats()
    assert isinstance(stats, EngineStats)
    assert len(stats.cpu.per_core) >= 1
    assert stats.memory.total > 0
    assert stats.disks and all(d.total >= d.used for d in stats.disks)
    assert "lo" in {n.interface for n in stats.network}


def test_watch_stats_streams_the_asked_number_of_samples(engine: Engine) -> None:
    samples = list(engine.watch_stats(interval=0.1, count=3))
    assert len(samples) == 3
    assert samples[0].time < samples[1].time < samples[2].time


def test_watch_stats_can_be_abandoned(engine: Engine) -> None:
    stream = engine.watch_stats(interval=0.1)
    assert isinstance(next(iter(stream)), EngineStats)
    stream.close()  # type: ignore[attr-defined]
    assert engine.ping().identity == "master"  # the engine is still usable


def test_whoami_reports_the_key_identity(make_engine: EngineFactory, make_key: KeyFactory) -> None:
    pair = make_key(Permission.PLATFORM | Permission.READ_ONLY, identity="reader")
    me = make_engine(pair.private).whoami()
    assert me.identity == "reader"
    assert set(me.permissions) == {"PLATFORM", "READ_ONLY"}


def test_token_lifetime_is_bounded(engine: Engine) -> None:
    token = engine.token(lifetime=120)
    assert token.identity == "master"
    with pytest.raises(InvalidRequest, match="lifetime"):
        engine.token(lifetime=30)
    with pytest.raises(InvalidRequest, match="lifetime"):
        engine.token(lifetime=86401)


def test_unknown_fields_and_wrong_types_name_the_field(engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match="bogus: unknown field"):
        engine._call(ops.auth.TOKEN, lifetime=600, bogus=1)
    with pytest.raises(InvalidRequest, match="lifetime"):
        engine._call(ops.auth.TOKEN, lifetime="soon")
    with pytest.raises(InvalidRequest, match="extra: unknown field"):
        engine._call(ops.engine.PING, extra=True)


def test_missing_permission_names_it(make_engine: EngineFactory, make_key: KeyFactory) -> None:
    limited = make_engine(make_key(Permission.SHELL).private)
    assert limited.ping().identity.startswith("user")
    with pytest.raises(PermissionDenied, match="PLATFORM") as caught:
        limited.info()
    assert caught.value.status == 403


def test_async_twin_behaves_the_same(
    core: EngineCore, transport: str, request: pytest.FixtureRequest
) -> None:
    from dxflow import AsyncEngine
    from dxflow._keypairs import load_private_key
    from dxflow._transports._http import HttpTransport
    from dxflow._transports._local import LocalTransport

    async def main() -> None:
        if transport == "local":
            chosen = LocalTransport(core, owns_core=False)
        else:
            url = request.getfixturevalue("server_url")
            chosen = HttpTransport(url, load_private_key(core.config.home.master_key))
        async with AsyncEngine(transport=chosen) as engine:
            assert (await engine.ping()).engine_id == core.engine_id
            assert (await engine.whoami()).permissions == ["MASTER"]
            samples = [s async for s in engine.watch_stats(interval=0.1, count=2)]
            assert len(samples) == 2
            with pytest.raises(InvalidRequest, match="lifetime"):
                await engine.token(lifetime=1)
            keys = await engine.keys.list()
            assert [k.identity for k in keys] == ["master"]

    anyio.run(main)


@pytest.mark.parametrize("transport", ["http"], indirect=True)  # the HTTP transport's own
def test_http_transport_renews_tokens_before_expiry_and_after_401(
    make_engine: EngineFactory, core: EngineCore
) -> None:
    engine = make_engine()
    http = engine._transport
    assert engine.ping().identity == "master"
    logins = len([r for r in engine.audit(operation="auth.verify") if r.outcome == "ok"])
    first = http._token  # type: ignore[attr-defined]
    http._expires = __import__("time").time() + 30  # type: ignore[attr-defined]  # inside the margin
    engine.ping()
    assert http._token != first  # type: ignore[attr-defined]
    core.auth._secret = b"r" * 32  # as after the engine lost its secret: every token is dead
    assert engine.ping().identity == "master"  # one 401, one fresh handshake, one retry
    after = len([r for r in engine.audit(operation="auth.verify") if r.outcome == "ok"])
    assert after == logins + 2
