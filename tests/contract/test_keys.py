"""Key registry, token revocation and the audit log, through every transport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dxflow import Conflict, Engine, InvalidRequest, NotFound, Permission, Unauthenticated
from dxflow._core import EngineCore
from dxflow._keypairs import generate_key_pair

from ..conftest import EngineFactory, KeyFactory


def _pair(tmp_path: Path, name: str, key_type: str = "ed25519") -> tuple[Path, Path]:
    pair = generate_key_pair(tmp_path / f"{name}.pem", key_type)  # type: ignore[arg-type]
    return pair.private, pair.public


def test_register_list_get_unregister(engine: Engine, tmp_path: Path) -> None:
    _, public = _pair(tmp_path, "alice")
    info = engine.keys.register(public, "alice", Permission.SHELL | Permission.OBJECT)
    assert info.identity == "alice" and info.key_type == "ed25519"
    assert set(info.permissions) == {"SHELL", "OBJECT"}
    assert {k.identity for k in engine.keys.list()} == {"master", "alice"}
    assert engine.keys.get("alice").fingerprint == info.fingerprint
    engine.keys.unregister("alice")
    assert {k.identity for k in engine.keys.list()} == {"master"}
    with pytest.raises(NotFound, match="alice"):
        engine.keys.get("alice")


def test_register_takes_pem_text_and_default_permissions(engine: Engine, tmp_path: Path) -> None:
    _, public = _pair(tmp_path, "bob", "rsa")
    info = engine.keys.register(public.read_text(), "bob")
    assert info.key_type == "rsa"
    assert set(info.permissions) == {"PROXY", "BRIDGE", "SHELL", "OBJECT", "PLATFORM", "WORKFLOW"}


def test_new_key_authenticates_with_its_permissions(
    engine: Engine, make_engine: EngineFactory, tmp_path: Path
) -> None:
    private, public = _pair(tmp_path, "carol")
    engine.keys.register(public, "carol", ["PLATFORM"])
    carol = make_engine(private)
    assert carol.ping().identity == "carol"
    assert carol.info().engine_id == engine.ping().engine_id


@pytest.mark.parametrize(
    ("public_key", "field"),
    [
        ("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n", "public_key"),
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDtoo-short-and-broken", "public_key"),
    ],
)
def test_bad_public_key_is_rejected_and_changes_nothing(
    engine: Engine, public_key: str, field: str
) -> None:
    before = engine.keys.list()
    with pytest.raises(InvalidRequest, match=field):
        engine.keys.register(public_key, "mallory")
    assert engine.keys.list() == before


def test_short_rsa_key_is_rejected(engine: Engine) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = (
        rsa.generate_private_key(65537, 1024)  # noqa: S505 - the point
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InvalidRequest, match="2048"):
        engine.keys.register(weak.decode(), "weak")


@pytest.mark.parametrize(
    ("identity", "permissions", "match"),
    [
        ("bad identity!", ["SHELL"], "identity"),
        ("", ["SHELL"], "identity"),
        ("eve", ["SHELL", "ROOT"], "ROOT"),
        ("eve", "SHELL,,wat", "permissions: .*wat"),
    ],
)
def test_bad_register_fields_name_the_field(
    engine: Engine, tmp_path: Path, identity: str, permissions: object, match: str
) -> None:
    _, public = _pair(tmp_path, "eve")
    before = engine.keys.list()
    with pytest.raises(InvalidRequest, match=match):
        engine.keys.register(public, identity, permissions)  # type: ignore[arg-type]
    assert engine.keys.list() == before


def test_duplicate_identity_and_duplicate_key_conflict(engine: Engine, tmp_path: Path) -> None:
    _, public = _pair(tmp_path, "dave")
    _, other = _pair(tmp_path, "dave2")
    engine.keys.register(public, "dave")
    with pytest.raises(Conflict, match="dave"):
        engine.keys.register(other, "dave")
    with pytest.raises(Conflict, match="registered already"):
        engine.keys.register(public, "dave-again")
    assert [k.identity for k in engine.keys.list()].count("dave") == 1


def test_unknown_identity_is_not_found(engine: Engine, tmp_path: Path) -> None:
    _, public = _pair(tmp_path, "ghost")
    with pytest.raises(NotFound):
        engine.keys.unregister("ghost")
    with pytest.raises(NotFound):
        engine.keys.rotate("ghost", public)


def test_master_cannot_unregister_itself(engine: Engine) -> None:
    with pytest.raises(Conflict, match="itself"):
        engine.keys.unregister("master")
    assert engine.keys.get("master").permissions == ["MASTER"]


def test_unregister_invalidates_tokens_at_once(
    engine: Engine, make_engine: EngineFactory, make_key: KeyFactory
) -> None:
    pair = make_key(Permission.PLATFORM, identity="frank")
    frank = make_engine(pair.private)
    assert frank.ping().identity == "frank"  # holds a live token now (over HTTP)
    engine.keys.unregister("frank")
    with pytest.raises(Unauthenticated):
        frank.ping()


def test_rotate_invalidates_the_old_key_and_admits_the_new(
    engine: Engine, make_engine: EngineFactory, make_key: KeyFactory, tmp_path: Path
) -> None:
    old = make_key(Permission.PLATFORM, identity="grace")
    before = make_engine(old.private)
    assert before.ping().identity == "grace"
    new_private, new_public = _pair(tmp_path, "grace-new")
    rotated = engine.keys.rotate("grace", new_public)
    assert rotated.rotated_at is not None and rotated.permissions == ["PLATFORM"]
    with pytest.raises(Unauthenticated):
        before.ping()
    assert make_engine(new_private).ping().identity == "grace"


def test_rotate_to_a_key_of_another_identity_conflicts(
    engine: Engine, make_key: KeyFactory, tmp_path: Path
) -> None:
    make_key(Permission.SHELL, identity="heidi")
    ivan = make_key(Permission.SHELL, identity="ivan")
    with pytest.raises(Conflict):
        engine.keys.rotate("heidi", ivan.public)


def test_audit_records_mutations_denials_and_logins(
    engine: Engine,
    make_engine: EngineFactory,
    make_key: KeyFactory,
    tmp_path: Path,
    transport: str,
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    _, public = _pair(tmp_path, "judy")
    engine.keys.register(public, "judy", "SHELL")
    with pytest.raises(Conflict):
        engine.keys.register(public, "judy")
    shell_only = make_engine(make_key(Permission.SHELL, identity="ken").private)
    with pytest.raises(Exception, match="PLATFORM"):
        shell_only.stats()
    records = engine.audit(since=started)
    seen = [(r.identity, r.operation, r.target, r.outcome) for r in records]
    assert ("master", "keys.register", "judy", "ok") in seen
    assert ("master", "keys.register", "judy", "error:conflict") in seen
    assert ("ken", "engine.stats", None, "denied") in seen
    if transport == "http":
        assert ("ken", "auth.verify", None, "ok") in seen
    assert engine.audit(since="1h", identity="ken")[0].identity == "ken"
    assert all(r.operation == "keys.register" for r in engine.audit(operation="keys.register"))
    assert len(engine.audit(limit=1)) == 1


def test_audit_needs_master(make_engine: EngineFactory, make_key: KeyFactory) -> None:
    everything_else = make_engine(
        make_key(Permission.parse("SHELL,OBJECT,WORKFLOW,PROXY,BRIDGE,PLATFORM")).private
    )
    with pytest.raises(Exception, match="MASTER"):
        everything_else.audit()
    with pytest.raises(Exception, match="MASTER"):
        everything_else.keys.list()


def test_read_only_master_reads_but_changes_nothing(
    make_engine: EngineFactory, make_key: KeyFactory, tmp_path: Path, core: EngineCore
) -> None:
    auditor = make_engine(make_key(Permission.MASTER | Permission.READ_ONLY).private)
    assert len(auditor.keys.list()) == 2
    _, public = _pair(tmp_path, "nope")
    with pytest.raises(Exception, match="READ_ONLY"):
        auditor.keys.register(public, "nope")
    assert core.keys.get("nope") is None


def test_register_and_update_run_as_and_workflow_policy(
    engine: Engine, make_engine: EngineFactory, tmp_path: Path
) -> None:
    private, public = _pair(tmp_path, "dora")
    info = engine.keys.register(public, "dora", ["SHELL"], run_as="nobody")
    assert (info.run_as, info.workflow_policy) == ("nobody", None)
    info = engine.keys.update("dora", permissions=["OBJECT"], workflow_policy="restricted")
    assert info.permissions == ["OBJECT"]
    assert (info.run_as, info.workflow_policy) == ("nobody", "restricted")
    info = engine.keys.update("dora", run_as="")
    assert (info.run_as, info.workflow_policy) == (None, "restricted")
    dora = make_engine(private)
    assert dora.whoami().permissions == ["OBJECT"]  # the new permissions hold at once


@pytest.mark.parametrize(
    "fields",
    [{"run_as": "root;rm"}, {"workflow_policy": "anything"}, {"permissions": ["ROOT"]}],
)
def test_bad_key_update_is_rejected_and_changes_nothing(
    engine: Engine, tmp_path: Path, fields: dict[str, object]
) -> None:
    _, public = _pair(tmp_path, "erin")
    before = engine.keys.register(public, "erin", ["SHELL"])
    with pytest.raises(InvalidRequest):
        engine.keys.update("erin", **fields)  # type: ignore[arg-type]
    assert engine.keys.get("erin") == before


def test_a_master_cannot_change_its_own_permissions(engine: Engine) -> None:
    with pytest.raises(Conflict, match="its own permissions"):
        engine.keys.update("master", permissions=["SHELL"])
