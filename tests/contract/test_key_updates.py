"""Changing what a key may do without unregistering it (issue 10).

Unregistering and registering again was the way users found, and it kills every token of
the key. `keys.update` (SDK, `PATCH /api/keys/ID`, `dxflow key update`) changes the
permissions in place: the key's tokens keep working under the new permissions, and what
the key holds open ends only when the change takes something away.
"""

from __future__ import annotations

import pytest

from dxflow import Conflict, Engine, Permission, PermissionDenied
from dxflow._core import EngineCore

from ..conftest import EngineFactory, KeyFactory, RestClient

SAMPLES = 0.1
"""Seconds between stats samples."""


def test_widening_a_key_keeps_its_session_and_its_open_streams(
    make_engine: EngineFactory, make_key: KeyFactory, core: EngineCore
) -> None:
    master = make_engine()
    fred = make_engine(make_key(Permission.PLATFORM, "fred").private)
    with pytest.raises(PermissionDenied):
        fred.objects.pipe("f.txt", b"x")
    samples = fred.watch_stats(interval=SAMPLES)
    next(samples)
    info = master.keys.update("fred", permissions=["PLATFORM", "OBJECT"])
    assert set(info.permissions) == {"PLATFORM", "OBJECT"}
    # The same engine handle (over HTTP: the same token), under the new permissions.
    fred.objects.pipe("f.txt", b"x")
    assert set(fred.whoami().permissions) == {"PLATFORM", "OBJECT"}
    next(samples)  # nothing was taken away: the stream goes on
    next(samples)
    assert core.open_calls.held("fred") == 1  # the stream, still held under its ticket
    samples.close()


def test_narrowing_a_key_keeps_its_token_for_what_it_may_still_do(
    core: EngineCore, make_key: KeyFactory, rest: RestClient
) -> None:
    make_key(Permission.PLATFORM | Permission.OBJECT, "gina")
    record = core.keys.get("gina")
    assert record is not None
    headers = {"Authorization": f"Bearer {core.auth.issue(record, 3600).token}"}
    master = core.keys.get("master")
    assert master is not None
    admin = {"Authorization": f"Bearer {core.auth.issue(master, 3600).token}"}
    changed = rest.patch("/api/keys/gina", json={"permissions": ["OBJECT"]}, headers=admin)
    assert changed.status_code == 200 and changed.json()["permissions"] == ["OBJECT"]
    whoami = rest.get("/api/auth/whoami", headers=headers)
    assert whoami.status_code == 200 and whoami.json()["permissions"] == ["OBJECT"]
    assert rest.get("/api/objects", headers=headers).status_code == 200
    refused = rest.get("/api/info", headers=headers)
    assert refused.status_code == 403 and "PLATFORM" in refused.text


def test_registering_an_identity_again_names_the_way_out(
    engine: Engine, make_key: KeyFactory
) -> None:
    pair = make_key(Permission.OBJECT, "hana")
    with pytest.raises(Conflict) as again:
        engine.keys.register(pair.public, "hana", ["OBJECT", "SHELL"])
    assert "dxflow key update hana --permissions" in again.value.message
    assert "engine.keys.update('hana', permissions=...)" in again.value.message
    assert "dxflow key rotate hana" in again.value.message
    with pytest.raises(Conflict) as same_key:
        engine.keys.register(pair.public, "hana2")
    assert "registered already as 'hana'" in same_key.value.message
    assert "dxflow key update hana --permissions" in same_key.value.message
