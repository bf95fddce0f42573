"""Attacks on share links (issue 8, section 4), over HTTP with real keys: each now fails.

Found by the review: `shares.list` gave every OBJECT key, READ_ONLY included, the secret
URL of every link; a READ_ONLY key wrote through a writable link found there; any OBJECT
key revoked other identities' links; creating a read link and downloading through links
were not audited; links outlived the key that made them; writable links could be read.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dxflow import Engine, InvalidRequest, NotFound, Permission, PermissionDenied
from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._models import KeyRef, ShareLink
from dxflow._transports._http import HttpTransport

from ..conftest import KeyFactory

OBJECT = Permission.OBJECT
READER = Permission.OBJECT | Permission.READ_ONLY

AsKey = Callable[..., Engine]


@pytest.fixture
def as_key(server_url: str, make_key: KeyFactory) -> Iterator[AsKey]:
    """An engine over HTTP as a freshly registered key with `permissions`."""
    engines: list[Engine] = []

    def make(permissions: Permission, identity: str | None = None) -> Engine:
        private = load_private_key(make_key(permissions, identity).private)
        engines.append(Engine(transport=HttpTransport(server_url, private)))
        return engines[-1]

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def master(server_url: str, core: EngineCore) -> Iterator[Engine]:
    private = load_private_key(core.config.home.master_key)
    engine = Engine(transport=HttpTransport(server_url, private))
    yield engine
    engine.close()


@pytest.fixture
def anonymous(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def files(core: EngineCore) -> None:
    for name in ("a.txt", "b.txt"):
        target = core.objects.storage.root / "pub" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f"contents of {name}".encode())


def _path(link: ShareLink) -> str:
    assert link.url is not None
    return link.url[link.url.index("/s/") :]


def _secret(link: ShareLink) -> str:
    """The signature: the part of a link's URL that makes it a credential."""
    assert link.url is not None
    return link.url.rpartition(".")[2]


def _raw(server_url: str, core: EngineCore, identity: str, path: str) -> str:
    record = core.keys.get(identity)
    assert record is not None
    token = core.auth.issue(record, 600).token
    reply = httpx.get(server_url + path, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    return reply.text


def test_listing_shows_only_your_links_and_never_anothers_secret(
    as_key: AsKey, master: Engine, core: EngineCore, server_url: str
) -> None:
    alice = as_key(OBJECT, "alice")
    as_key(READER, "reader")
    read = alice.objects.share("pub/a.txt")
    drop = alice.objects.share("pub/in.txt", writable=True)
    own = master.objects.share("pub/b.txt")
    # The attack: a READ_ONLY key listed every link, secret URL included.
    body = _raw(server_url, core, "reader", "/api/shares")
    assert json.loads(body)["shares"] == []
    for link in (read, drop, own):
        assert _secret(link) not in body
    # An identity sees its own links, with their URLs, and nobody else's.
    assert {s.id for s in alice.objects.shares()} == {read.id, drop.id}
    assert all(s.url for s in alice.objects.shares())
    # MASTER sees every link, but the secret of another identity's link never.
    listed = {s.id: s for s in master.objects.shares()}
    assert set(listed) == {read.id, drop.id, own.id}
    assert listed[read.id].url is None and listed[drop.id].url is None
    assert listed[read.id].created_by == "alice" and listed[own.id].url == own.url
    body = _raw(server_url, core, "master", "/api/shares")
    assert _secret(read) not in body and _secret(drop) not in body


def test_read_only_key_finds_no_writable_link_and_makes_none(
    as_key: AsKey, anonymous: httpx.Client
) -> None:
    alice = as_key(OBJECT, "alice")
    reader = as_key(READER, "reader")
    alice.objects.share("pub/in.txt", writable=True)
    assert reader.objects.shares() == []  # nothing to write through
    with pytest.raises(PermissionDenied, match="READ_ONLY"):
        reader.objects.share("pub/in.txt", writable=True)
    own = reader.objects.share("pub/a.txt")  # a read link is reading: allowed
    assert anonymous.put(_path(own), content=b"x").status_code == 403


def test_an_object_key_cannot_revoke_another_identitys_link(
    as_key: AsKey, master: Engine, anonymous: httpx.Client
) -> None:
    alice = as_key(OBJECT, "alice")
    mallory = as_key(OBJECT, "mallory")
    link = alice.objects.share("pub/a.txt")
    with pytest.raises(NotFound, match="no share link"):  # as unknown as a missing one
        mallory.objects.revoke(link.id)
    assert anonymous.get(_path(link)).status_code == 200
    assert not {s.id: s for s in alice.objects.shares()}[link.id].revoked
    # MASTER may revoke anyone's link; the answer still hides its secret.
    revoked = master.objects.revoke(link.id)
    assert revoked.revoked and revoked.url is None
    assert anonymous.get(_path(link)).status_code == 410
    mine = alice.objects.share("pub/b.txt")
    assert alice.objects.revoke(mine.id).revoked


def test_every_create_use_and_refusal_is_audited_without_the_token(
    as_key: AsKey, master: Engine, core: EngineCore, server_url: str, anonymous: httpx.Client
) -> None:
    alice = as_key(OBJECT, "alice")
    link = alice.objects.share("pub/a.txt", max_uses=1)
    drop = alice.objects.share("pub/in.txt", writable=True)
    assert anonymous.get(_path(link)).status_code == 200
    assert anonymous.get(_path(link)).status_code == 410  # used up
    assert anonymous.get(_path(drop)).status_code == 403  # a drop box does not download
    assert anonymous.put(_path(drop), content=b"up").status_code == 200
    assert anonymous.get(_path(link)[:-4] + "AAAA").status_code == 403  # forged
    records = [
        (r.operation, r.identity, r.target, r.outcome)
        for r in master.audit(limit=1000)
        if r.operation.startswith("shares.")
    ]
    assert ("shares.create", "alice", link.id, "ok") in records  # a read link too
    assert ("shares.create", "alice", drop.id, "ok") in records
    assert ("shares.read", f"share:{link.id}", link.id, "ok") in records
    assert ("shares.read", f"share:{link.id}", link.id, "error:gone") in records
    assert ("shares.read", f"share:{drop.id}", drop.id, "error:permission_denied") in records
    assert ("shares.write", f"share:{drop.id}", drop.id, "ok") in records
    assert ("shares.read", None, link.id, "error:permission_denied") in records
    created = [r for r in master.audit(operation="shares.create") if r.target == link.id]
    assert created[0].detail == "r pub/a.txt"
    everything = _raw(server_url, core, "master", "/api/audit?limit=1000")
    assert _secret(link) not in everything and _secret(drop) not in everything


def _unregister(master: Engine, identity: str, tmp_path: Path) -> None:
    master.keys.unregister(identity)


def _rotate(master: Engine, identity: str, tmp_path: Path) -> None:
    pair = generate_key_pair(tmp_path / "keys" / f"{identity}-new.pem", "ed25519")
    master.keys.rotate(identity, pair.public)


def _take_object(master: Engine, identity: str, tmp_path: Path) -> None:
    master.keys.update(identity, permissions=Permission.SHELL)


@pytest.mark.parametrize("change", [_unregister, _rotate, _take_object], ids=lambda f: f.__name__)
def test_links_die_with_the_key_that_made_them(
    as_key: AsKey,
    master: Engine,
    anonymous: httpx.Client,
    tmp_path: Path,
    change: Callable[[Engine, str, Path], None],
) -> None:
    alice = as_key(OBJECT, "alice")
    read = alice.objects.share("pub/a.txt", expires="1d")
    drop = alice.objects.share("pub/in.txt", writable=True, readable=True)
    assert anonymous.get(_path(read)).status_code == 200
    change(master, "alice", tmp_path)
    for link in (read, drop):
        gone = anonymous.get(_path(link))
        assert gone.status_code == 410 and "revoked" in gone.json()["error"]["message"]
    assert anonymous.put(_path(drop), content=b"late").status_code == 410
    listed = {s.id: s for s in master.objects.shares()}
    assert listed[read.id].revoked and listed[drop.id].revoked
    revocations = [r for r in master.audit(operation="shares.revoke") if r.target == read.id]
    assert revocations and revocations[0].identity == "master"
    assert "the key of 'alice' was" in (revocations[0].detail or "")


def test_a_key_made_read_only_loses_its_writable_links_only(
    as_key: AsKey, master: Engine, anonymous: httpx.Client
) -> None:
    alice = as_key(OBJECT, "alice")
    read = alice.objects.share("pub/a.txt")
    drop = alice.objects.share("pub/in.txt", writable=True)
    master.keys.update("alice", permissions=READER)
    assert anonymous.put(_path(drop), content=b"x").status_code == 410
    assert anonymous.get(_path(read)).status_code == 200  # it may still read: so may its link


def test_a_key_unregistered_by_another_engine_process_takes_its_links(
    as_key: AsKey, core: EngineCore, anonymous: httpx.Client
) -> None:
    alice = as_key(OBJECT, "alice")
    link = alice.objects.share("pub/a.txt")
    # Another engine process on the same home revokes them in the shared state.
    other = EngineCore(load_config(core.config.home.root, auth_rate_limit=100_000))
    try:
        other.keys.unregister(other.local_context(), KeyRef(identity="alice"))
    finally:
        other.close()
    gone = anonymous.get(_path(link))
    assert gone.status_code == 410 and "revoked" in gone.json()["error"]["message"]


def test_a_key_removed_behind_the_registrys_back_takes_its_links(
    as_key: AsKey, core: EngineCore, anonymous: httpx.Client
) -> None:
    alice = as_key(OBJECT, "alice")
    link = alice.objects.share("pub/a.txt")
    # No event at all (an older engine on the same home, or a hand edit): each use of
    # a link checks the key that made it is still registered, as it was.
    with contextlib.closing(sqlite3.connect(core.config.home.state_db)) as db, db:
        db.execute("DELETE FROM keys WHERE identity = 'alice'")
    gone = anonymous.get(_path(link))
    assert gone.status_code == 410 and "key that made it" in gone.json()["error"]["message"]


def test_writable_links_are_drop_boxes_unless_made_readable(
    as_key: AsKey, anonymous: httpx.Client
) -> None:
    alice = as_key(OBJECT, "alice")
    drop = alice.objects.share("pub/a.txt", writable=True)
    assert (drop.writable, drop.readable) == (True, False)
    # The attack: a writable link given out for uploads read back what was there.
    for method in ("GET", "HEAD"):
        refused = anonymous.request(method, _path(drop))
        assert refused.status_code == 403, method
    assert "drop box" in anonymous.get(_path(drop)).json()["error"]["message"]
    assert anonymous.put(_path(drop), content=b"dropped").status_code == 200
    assert alice.objects.cat("pub/a.txt") == b"dropped"
    both = alice.objects.share("pub/b.txt", writable=True, readable=True)
    assert (both.writable, both.readable) == (True, True)
    assert anonymous.put(_path(both), content=b"round trip").status_code == 200
    assert anonymous.get(_path(both)).content == b"round trip"
    read = alice.objects.share("pub/b.txt")
    assert (read.writable, read.readable) == (False, True)
    with pytest.raises(InvalidRequest, match="readable: only with writable"):
        alice.objects.share("pub/b.txt", readable=True)
    assert len(alice.objects.shares()) == 3  # the refused one made nothing
