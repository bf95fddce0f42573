"""Bridges, attacked: what a key that is not MASTER reaches through a master and its agents.

An agent (`core`, served on loopback) joins a master of its own; callers hold keys on
the master. Each test tries a way past the rules of docs/security.md ("Bridges") and
checks that it is refused and that nothing happened on the agent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.sync.client

import dxflow
from dxflow import Permission
from dxflow._core import EngineCore
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._transports._http import HttpTransport

from ..conftest import BRIDGED_AGENT, BridgedMaster, joined_master


@pytest.fixture
def master(core: EngineCore, server_url: str, tmp_path: Path) -> Iterator[BridgedMaster]:
    """The agent allows OBJECT and SHELL only: never MASTER, never WORKFLOW."""
    with joined_master(core, server_url, tmp_path, allow="OBJECT,SHELL") as joined:
        yield joined


def _key(master: BridgedMaster, tmp_path: Path, name: str, permissions: Permission) -> Path:
    pair = generate_key_pair(tmp_path / f"{name}.pem", "ed25519")
    master.core.keys.add(name, load_private_key(pair.private).public, permissions)
    return pair.private


def _agent(master: BridgedMaster, key: Path | None = None) -> dxflow.Engine:
    private = load_private_key(key or master.core.config.home.master_key)
    return dxflow.Engine(transport=HttpTransport(master.url, private).bridged(BRIDGED_AGENT))


def test_a_key_without_bridge_reaches_no_agent(master: BridgedMaster, tmp_path: Path) -> None:
    key = _key(master, tmp_path, "objects", Permission.OBJECT | Permission.SHELL)
    with _agent(master, key) as agent, pytest.raises(dxflow.PermissionDenied, match="BRIDGE"):
        agent.objects.ls("")


def test_a_caller_gets_only_what_both_it_and_the_agent_grant(
    master: BridgedMaster, core: EngineCore, tmp_path: Path
) -> None:
    with _agent(master) as agent:  # MASTER on the master: still only OBJECT,SHELL here
        for attempt, needs in [(lambda: agent.keys.list(), "MASTER"),
                               (lambda: agent.workflows.list(), "WORKFLOW"),
                               (lambda: agent.audit(), "MASTER")]:  # fmt: skip
            with pytest.raises(dxflow.PermissionDenied, match=needs):
                attempt()
    key = _key(
        master, tmp_path, "reader", Permission.BRIDGE | Permission.OBJECT | Permission.READ_ONLY
    )
    with _agent(master, key) as agent:
        with pytest.raises(dxflow.PermissionDenied, match="READ_ONLY"):
            agent.objects.pipe("x.txt", b"no")
        with pytest.raises(dxflow.PermissionDenied, match="has OBJECT,READ_ONLY"):
            agent.shells.create("s")
    assert core.objects.storage.root.joinpath("x.txt").exists() is False


def test_callers_do_not_see_each_others_sessions_on_the_agent(
    master: BridgedMaster, tmp_path: Path
) -> None:
    alice = _key(master, tmp_path, "alice", Permission.BRIDGE | Permission.SHELL)
    bob = _key(master, tmp_path, "bob", Permission.BRIDGE | Permission.SHELL)
    with _agent(master, alice) as as_alice, _agent(master, bob) as as_bob:
        as_alice.shells.create("alices")
        assert [s.name for s in as_bob.shells.list()] == []
        with pytest.raises(dxflow.NotFound):
            as_bob.shells.get("alices")


def test_an_agents_own_key_only_links(
    master: BridgedMaster, core: EngineCore, tmp_path: Path
) -> None:
    """A compromised node holds its engine's key, `bridge@agent` on the master: it must
    not reach the other agents, nor anything else on the master."""
    agent_key = core.config.home.master_key
    with dxflow.Engine(master.url, key=agent_key) as node:
        for attempt in (lambda: node.bridges.list(), lambda: node.bridges.get(BRIDGED_AGENT),
                        lambda: node.objects.ls(""), lambda: node.keys.list()):  # fmt: skip
            with pytest.raises(dxflow.PermissionDenied):
                attempt()
    with _agent(master, agent_key) as through, pytest.raises(dxflow.PermissionDenied):
        through.objects.ls("")


def test_only_the_pinned_master_may_name_a_caller(
    master: BridgedMaster, core: EngineCore, server_url: str, tmp_path: Path
) -> None:
    """A key of the agent's own that sends X-Dxflow-Caller is refused, not trusted."""
    pair = generate_key_pair(tmp_path / "local.pem", "ed25519")
    core.keys.add("local", load_private_key(pair.private).public, Permission.OBJECT)
    with dxflow.Engine(server_url, key=pair.private) as local:
        token = local.token().token
    headers = {"Authorization": f"Bearer {token}", "X-Dxflow-Caller": "someone",
               "X-Dxflow-Caller-Permissions": "MASTER"}  # fmt: skip
    reply = httpx.get(f"{server_url}/api/keys", headers=headers)
    assert reply.status_code == 403 and "bridge master" in reply.text, reply.text


def test_a_link_for_another_agents_name_is_refused(master: BridgedMaster, core: EngineCore) -> None:
    with dxflow.Engine(master.url, key=core.config.home.master_key) as node:
        token = node.token().token
    uri = master.url.replace("http", "ws", 1) + "/api/fleet/link"
    hello = {"name": "someone-else", "nonce": "n" * 24}
    with websockets.sync.client.connect(
        uri, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send(json.dumps(hello).encode())
        answer = json.loads(ws.recv(timeout=10))
    assert "joined as 'agent', not 'someone-else'" in answer["message"]


def test_a_removed_agent_cannot_link_again(master: BridgedMaster, core: EngineCore) -> None:
    with dxflow.Engine(master.url, key=master.core.config.home.master_key) as admin:
        admin.bridges.get(BRIDGED_AGENT).remove()
        with pytest.raises(dxflow.NotFound):
            admin.bridges.get(BRIDGED_AGENT)
    with (
        pytest.raises(dxflow.Unauthenticated),
        dxflow.Engine(master.url, key=core.config.home.master_key) as node,
    ):
        node.ping()


def test_a_malformed_hello_is_refused_cleanly(master: BridgedMaster, core: EngineCore) -> None:
    with dxflow.Engine(master.url, key=core.config.home.master_key) as node:
        token = node.token().token
    uri = master.url.replace("http", "ws", 1) + "/api/fleet/link"
    for payload, message in [(b"not json", "not JSON"), (b'{"name": "agent"}', "nonce"),
                             (json.dumps({"name": "agent", "nonce": "n" * 24,
                                          "surprise": 1}).encode(), "surprise")]:  # fmt: skip
        with websockets.sync.client.connect(
            uri, additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            ws.send(payload)
            answer = json.loads(ws.recv(timeout=10))
        assert message in answer["message"], answer


def test_an_agent_of_another_link_protocol_is_refused_with_both_versions(
    master: BridgedMaster, core: EngineCore
) -> None:
    with dxflow.Engine(master.url, key=core.config.home.master_key) as node:
        token = node.token().token
    uri = master.url.replace("http", "ws", 1) + "/api/fleet/link"
    hello = {"name": BRIDGED_AGENT, "nonce": "n" * 24, "protocol": 2, "version": "9.0"}
    with websockets.sync.client.connect(
        uri, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send(json.dumps(hello).encode())
        answer = json.loads(ws.recv(timeout=10))
    assert answer["code"] == "invalid_request", answer
    assert "link protocol 2 (dxflow 9.0), this master 1" in answer["message"]
    assert "run the same dxflow version on both" in answer["message"]


def test_a_link_request_that_is_no_websocket_is_a_400_naming_what_is_missing(
    master: BridgedMaster,
) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    reply = httpx.get(master.url + "/api/fleet/link", headers=headers, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_request"
    assert "Sec-WebSocket-Key" in reply.json()["error"]["message"]
