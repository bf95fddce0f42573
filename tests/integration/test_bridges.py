"""Bridges between real engine processes on loopback: join, forward, refuse, recover.

A master and its agents are each `dxflow boot up --daemon` on a home of their own; the
agents join with tokens from the master and dial it. Everything the SDK does to an
agent goes through the master (`bridge.engine`). Multi-host faults (partitions, loss,
delay) are in tests/bridges, on network namespaces.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import anyio
import pytest

import dxflow
from dxflow import Permission
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._models import BridgeEvent

from ..docker.images import BUSYBOX_IMAGE
from .conftest import Booted, boot, stop_holders, wait_for
from .conftest import dxflow as run_cli

FAST = "bridge_interval = 0.5\nbridge_grace = 3\nbridge_wait = 2\n"


def _home(root: Path, name: str, config: str = "") -> Path:
    home = root / name
    home.mkdir()
    (home / "config.toml").write_text(config)
    return home


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Booted]]:
    """Boot homes under tmp_path (`fleet("m")`, `fleet("a1", "--join", token)`); every
    one is stopped at the end, and its shells' holders too."""
    booted: list[Path] = []

    def start(name: str, *flags: str, config: str = FAST) -> Booted:
        home = tmp_path / name
        if not home.exists():
            _home(tmp_path, name, config)
        booted.append(home)
        return boot(home, *flags)

    yield start
    for home in booted:
        run_cli("boot", "down", "--home", home, check=False)
        stop_holders(home)


@pytest.fixture
def master(fleet: Callable[..., Booted]) -> Booted:
    return fleet("master")


def _token(master: Booted, **options: object) -> str:
    with dxflow.Engine.from_home(master.home) as engine:
        return engine.bridges.token(**options).token  # type: ignore[arg-type]


def _connected(engine: dxflow.Engine, name: str) -> bool:
    try:
        return engine.bridges.get(name).status == "connected"
    except dxflow.NotFound:
        return False


def test_an_agent_joins_and_its_engine_is_a_handle_through_the_master(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    token = _token(master, labels={"gpu": "true", "site": "lab"})
    fleet("a1", "--join", token, "--name", "a1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
        bridge = engine.bridges.get("a1")
        assert bridge.labels == {"gpu": "true", "site": "lab"}
        assert bridge.info.facts.cpus == os.cpu_count() and bridge.info.facts.memory
        assert "WORKFLOW" in bridge.info.allow and "MASTER" not in bridge.info.allow
        assert [b.name for b in engine.bridges.list({"gpu": "true"})] == ["a1"]
        assert engine.bridges.list({"gpu": "false"}) == []
        (stats,) = engine.stats().agents  # monitoring in one place: the master's stats
        assert (stats.name, stats.status, stats.cpus) == ("a1", "connected", os.cpu_count())
        remote = bridge.engine
        assert remote.info().engine_id == bridge.info.engine_id != engine.info().engine_id

        async def on_a_loop_of_its_own() -> str:
            async with bridge.aengine as agent:
                return (await agent.ping()).engine_id

        assert anyio.run(on_a_loop_of_its_own) == bridge.info.engine_id
        remote.objects.pipe("notes/hello.txt", b"through the master\n")
        assert remote.objects.cat("notes/hello.txt") == b"through the master\n"
        with pytest.raises(dxflow.NotFound):
            remote.objects.cat("notes/missing.txt")
        # It is the agent's store, not the master's.
        with pytest.raises(dxflow.NotFound):
            engine.objects.cat("notes/hello.txt")
        result = remote.shells.create("s1").run("echo $((6 * 7))")
        assert result.output.strip() == "42" and result.exit_code == 0


def test_a_forwarded_call_runs_as_the_caller_within_what_the_agent_allows(
    master: Booted, fleet: Callable[..., Booted], tmp_path: Path
) -> None:
    fleet("a1", "--join", _token(master), "--name", "a1", "--allow", "OBJECT")
    keys = {}
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
        for name, permissions in [("objects-only", "OBJECT"), ("bridge-shell", "BRIDGE,SHELL"),
                                  ("bridge-object", "BRIDGE,OBJECT")]:  # fmt: skip
            pair = generate_key_pair(tmp_path / f"{name}.pem", "ed25519")
            engine.keys.register(pair.public, name, permissions=permissions)
            keys[name] = pair.private
    for name, refused in [("objects-only", "BRIDGE"), ("bridge-shell", "OBJECT")]:
        with (
            dxflow.Engine(master.url, key=keys[name]) as caller,
            pytest.raises(dxflow.PermissionDenied, match=refused),
        ):
            caller.bridges.get("a1").engine.objects.ls("")
    with dxflow.Engine(master.url, key=keys["bridge-object"]) as caller:
        remote = caller.bridges.get("a1").engine
        remote.objects.pipe("mine.txt", b"ok")
        assert remote.objects.cat("mine.txt") == b"ok"
        # OBJECT is all the agent allows: a shell is refused there, though MASTER asks.
    with (
        dxflow.Engine.from_home(master.home) as engine,
        pytest.raises(dxflow.PermissionDenied, match="SHELL"),
    ):
        engine.bridges.get("a1").engine.shells.create("nope")
    # Both sides audit the call, with the original caller.
    with dxflow.Engine.from_home(master.home) as engine:
        records = engine.audit(operation="objects.write")
        assert any(r.identity == "bridge-object" for r in records)
    with dxflow.Engine.from_home(tmp_path / "a1") as agent:
        records = agent.audit(operation="objects.write")
        assert any(r.identity == "bridge-master/bridge-object" for r in records)


def test_bad_join_tokens_are_refused_and_change_nothing(master: Booted, tmp_path: Path) -> None:
    token = _token(master, uses=1, expires=600)
    prefix, body = token.split(":", 1)
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = prefix + ":" + base64.urlsafe_b64encode(
        json.dumps({**data, "s": "x" * 32}).encode()).decode()  # fmt: skip
    other_master = prefix + ":" + base64.urlsafe_b64encode(
        json.dumps({**data, "fp": "SHA256:somebody-else"}).encode()).decode()  # fmt: skip
    cases = [
        ("not-a-token", "--join takes a token"),
        ("dxflow-join:@@@", "damaged"),
        (forged, "not one this master made"),
        (other_master, "another identity"),
    ]
    for bad, message in cases:
        home = _home(tmp_path, f"bad{len(list(tmp_path.iterdir()))}")
        done = run_cli("boot", "up", "--home", home, "--port", "0", "--daemon", "--join", bad,
                       check=False)  # fmt: skip
        assert done.returncode != 0 and message in done.stderr, (bad, done.stderr)
        assert "Traceback" not in done.stderr
        assert not (home / "bridge.json").exists() and not (home / "run" / "engine.pid").exists()
    # The pinned-identity refusal happened after the master accepted the join, which used
    # the token up: a used-up token is refused too.
    home = _home(tmp_path, "late")
    done = run_cli("boot", "up", "--home", home, "--port", "0", "--daemon", "--join", token,
                   "--name", "late", check=False)  # fmt: skip
    assert done.returncode != 0 and "used up" in done.stderr, done.stderr
    expired = _token(master, expires=0.5)
    time.sleep(1)
    home = _home(tmp_path, "expired")
    done = run_cli("boot", "up", "--home", home, "--port", "0", "--daemon", "--join", expired,
                   "--name", "expired", check=False)  # fmt: skip
    assert done.returncode != 0 and "expired" in done.stderr, done.stderr
    with dxflow.Engine.from_home(master.home) as engine:
        names = [b.name for b in engine.bridges.list()]
    assert names == [n for n in names if n not in ("late", "expired")]


def test_joining_twice_with_the_same_name_and_another_key_is_a_conflict(
    master: Booted, fleet: Callable[..., Booted], tmp_path: Path
) -> None:
    fleet("a1", "--join", _token(master), "--name", "same")
    home = _home(tmp_path, "a2")
    done = run_cli("boot", "up", "--home", home, "--port", "0", "--daemon", "--join",
                   _token(master), "--name", "same", check=False)  # fmt: skip
    assert done.returncode != 0 and "joined already" in done.stderr, done.stderr


def test_a_lost_agent_is_reported_and_calls_to_it_fail_clearly(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    agent = fleet("a1", "--join", _token(master), "--name", "a1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
        os.kill(agent.pid, signal.SIGKILL)
        wait_for(lambda: engine.bridges.get("a1").status != "connected", "a disconnect")
        wait_for(lambda: engine.bridges.get("a1").status == "lost", "lost", timeout=15)
        with pytest.raises(dxflow.EngineUnavailable, match=r"'a1' is lost .*last seen"):
            engine.bridges.get("a1").engine.objects.ls("")
        results = engine.fleet.map(lambda e: e.ping().engine_id)
        assert list(results.errors) == ["a1"] and not results.ok


def test_the_agent_redials_a_master_that_was_killed_and_its_work_keeps_running(
    fleet: Callable[..., Booted],
) -> None:
    """kill -9 of the master cuts an attached shell (a clear end); nothing on the agent
    stops; the agent re-dials, and the shell reattaches from its offset, missing nothing
    that was printed meanwhile."""
    port = _free_port()
    master = fleet("master", "--port", str(port))
    agent = fleet("a1", "--join", _token(master), "--name", "a1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
        shell = engine.bridges.get("a1").engine.shells.create("keep")
        shell.run("export MARK=still-here")
        with shell.attach() as channel:
            channel.send("echo be''fore\n")
            _read_until(channel, b"before")
            offset = channel.offset
            os.kill(master.pid, signal.SIGKILL)
            with pytest.raises((EOFError, dxflow.DxflowError)):
                _read_until(channel, b"never")
    wait_for(lambda: not _alive(master.pid), "the master to die")
    with dxflow.Engine.from_home(agent.home) as direct:  # the agent, on its own socket
        direct.shells.get("keep").send("echo during-the-out''age\n")
    boot(master.home, "--port", str(port))  # the same home and URL: the same identity
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to re-dial", timeout=60)
        # The master's view converged on what runs there (read, never changed).
        wait_for(lambda: engine.bridges.get("a1").info.reconciled_at, "a reconcile")
        assert engine.bridges.get("a1").info.workloads["shells"] == ["keep"]
        shell = engine.bridges.get("a1").engine.shells.get("keep")
        with shell.attach(offset=offset) as channel:
            _read_until(channel, b"during-the-outage")
        assert shell.run("echo $MARK").output.strip() == "still-here"


def _read_until(channel: object, wanted: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} in {seen[-300:]!r}"
        message = channel.recv(timeout=left)  # type: ignore[attr-defined]
        if isinstance(message, bytes):
            seen += message
    return seen


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/status").read_text().count("State:\tZ")


def test_fleet_map_gives_every_result_and_every_error(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    token = _token(master, uses=2)
    fleet("a1", "--join", token, "--name", "a1")
    fleet("a2", "--join", token, "--name", "a2")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1") and _connected(engine, "a2"), "both")

        def probe(agent: dxflow.Engine) -> str:
            info = agent.info()
            if info.engine_id == engine.bridges.get("a2").info.engine_id:
                raise RuntimeError("a2 says no")
            return info.engine_id

        results = engine.fleet.map(probe, concurrency=2)
        assert list(results.ok) == ["a1"] and list(results.errors) == ["a2"]
        assert "a2 says no" in str(results.errors["a2"])
    done = run_cli("fleet", "--home", master.home, "--", "ping", check=False)
    assert done.returncode == 0, done.stderr
    assert {line.split(" | ")[0] for line in done.stdout.splitlines()} == {"a1", "a2"}


def test_cli_lists_shows_drains_and_removes_agents(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    token = run_cli("bridge", "token", "--home", master.home, "-l", "gpu=true").stdout.strip()
    fleet("a1", "--join", token, "--name", "a1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
    listed = run_cli("bridge", "list", "--home", master.home).stdout
    assert "a1" in listed and "connected" in listed and "gpu=true" in listed
    shown = json.loads(run_cli("bridge", "show", "a1", "--home", master.home, "--json").stdout)
    assert shown["status"] == "connected" and shown["labels"] == {"gpu": "true"}
    assert "drained" in run_cli("bridge", "drain", "a1", "--home", master.home).stdout
    run_cli("bridge", "rm", "a1", "--home", master.home)
    missing = run_cli("bridge", "show", "a1", "--home", master.home, check=False)
    assert missing.returncode == 1 and "no bridge named 'a1'" in missing.stderr
    with dxflow.Engine.from_home(master.home) as engine:
        assert "bridge@a1" not in [k.identity for k in engine.keys.list()]
    bad = run_cli("bridge", "token", "--home", master.home, "-l", "oops", check=False)
    assert bad.returncode == 2 and "key=value" in bad.stderr


def test_only_master_mints_join_tokens(master: Booted, tmp_path: Path) -> None:
    pair = generate_key_pair(tmp_path / "b.pem", "ed25519")
    with dxflow.Engine.from_home(master.home) as engine:
        engine.keys.register(pair.public, "b", permissions=str(Permission.BRIDGE))
    with (
        dxflow.Engine(master.url, key=pair.private) as caller,
        pytest.raises(dxflow.PermissionDenied, match="MASTER"),
    ):
        caller.bridges.token()
    assert load_private_key(pair.private)


def test_a_proxy_on_the_master_exposes_a_service_on_an_agent(
    master: Booted, fleet: Callable[..., Booted], tmp_path: Path
) -> None:
    """A node behind NAT serves on its loopback; the master exposes it (HTTP and TCP)."""
    import http.server
    import socket
    import threading

    import httpx

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("served on the agent\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    token = _token(master, uses=2)
    fleet("a1", "--join", token, "--name", "a1")
    fleet("a2", "--join", token, "--name", "a2", "--allow", "OBJECT")  # no PROXY
    try:
        with dxflow.Engine.from_home(master.home) as engine:
            wait_for(lambda: _connected(engine, "a1") and _connected(engine, "a2"), "both")
            web = engine.proxies.create("nb", target=dxflow.bridge("a1", f"127.0.0.1:{port}"),
                                        auth="none")  # fmt: skip
            assert httpx.get(f"{web.url}index.html").text == "served on the agent\n"
            raw = engine.proxies.create("raw", target=dxflow.bridge("a1", f"127.0.0.1:{port}"),
                                        protocol="tcp", port=0, auth="none")  # fmt: skip
            with socket.create_connection(("127.0.0.1", raw.info.port), timeout=10) as sock:
                sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                answer = b"".join(iter(lambda: sock.recv(65536), b""))
            assert answer.startswith(b"HTTP/1.0 200") and b"served on the agent" in answer
            refused = engine.proxies.create("no", target=dxflow.bridge("a2", f"127.0.0.1:{port}"),
                                            auth="none")  # fmt: skip
            reply = httpx.get(f"{refused.url}index.html")
            assert reply.status_code == 502, reply.text
            assert "does not allow proxy" in reply.text.lower(), reply.text
            pair = generate_key_pair(tmp_path / "p.pem", "ed25519")
            engine.keys.register(pair.public, "proxier", permissions="PROXY")
        with (
            dxflow.Engine(master.url, key=pair.private) as proxier,
            pytest.raises(dxflow.PermissionDenied, match="needs BRIDGE"),
        ):
            proxier.proxies.create("sneaky", target=dxflow.bridge("a1", f"127.0.0.1:{port}"))
    finally:
        server.shutdown()


COMPOSE = {"services": {"job": {"image": "dxflow-test/busybox:latest", "command": "true"}}}


def test_placement_chooses_an_agent_and_the_master_finds_the_workflow_there(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    fleet("a1", "--join", _token(master, labels={"gpu": "true"}), "--name", "a1")
    fleet("a2", "--join", _token(master, labels={"gpu": "false"}), "--name", "a2")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1") and _connected(engine, "a2"), "both")
        placed = engine.workflows.create("train", COMPOSE, placement={"labels": {"gpu": "true"}})
        assert placed.name == "train"
        with dxflow.Engine.from_home(master.home.parent / "a1") as a1:
            assert a1.workflows.get("train").name == "train"  # it is on a1, not the master
        again = engine.workflows.get("train")  # found through the placement
        assert again.info.name == "train"
        with pytest.raises(dxflow.Conflict, match=r"a1: no label gpu=maybe; a2: no label"):
            engine.workflows.create("x", COMPOSE, placement={"labels": {"gpu": "maybe"}})
        with pytest.raises(dxflow.NotFound):
            engine.workflows.get("x")
        # a1 holds one workflow, a2 none: spreading puts the next one on a2.
        engine.workflows.create("s0", COMPOSE, placement={"strategy": "spread"})
        with dxflow.Engine.from_home(master.home.parent / "a2") as a2:
            assert [w.name for w in a2.workflows.list()] == ["s0"]
        engine.bridges.get("a2").drain()
        with pytest.raises(dxflow.Conflict, match="a2: drained"):
            engine.workflows.create("y", COMPOSE, placement={"labels": {"gpu": "false"}})


def test_joining_with_a_registered_key_pins_the_master_at_the_first_link(
    master: Booted, fleet: Callable[..., Booted], tmp_path: Path
) -> None:
    pair = generate_key_pair(tmp_path / "node.pem", "ed25519")
    with dxflow.Engine.from_home(master.home) as engine:
        engine.keys.register(pair.public, "node-key", permissions="BRIDGE")
    agent = fleet("k1", "--join", master.url, "--key", str(pair.private), "--name", "k1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "k1"), "k1 to connect")
        assert engine.bridges.get("k1").engine.ping().engine_id != engine.info().engine_id
    settings = json.loads((agent.home / "bridge.json").read_text())
    with dxflow.Engine.from_home(master.home) as engine:
        assert settings["fingerprint"] == engine.keys.get("master").fingerprint
    assert (agent.home / "bridge.json").stat().st_mode & 0o777 == 0o600
    bad = run_cli("boot", "up", "--home", _home(tmp_path, "k2"), "--join", master.url,
                  check=False)  # fmt: skip
    assert bad.returncode == 2 and "--join URL needs --key" in bad.stderr


def test_an_agent_refuses_a_master_that_presents_another_identity(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    agent = fleet("a1", "--join", _token(master), "--name", "a1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
    run_cli("boot", "down", "--home", agent.home)
    settings = json.loads((agent.home / "bridge.json").read_text())
    settings["fingerprint"] = "SHA256:" + "A" * 43  # as if the master's key had changed
    (agent.home / "bridge.json").write_text(json.dumps(settings))
    boot(agent.home)
    log = agent.home / "logs" / "engine.log"
    wait_for(lambda: "presents identity" in log.read_text(), "the refusal in the agent's log")
    with dxflow.Engine.from_home(master.home) as engine:
        assert engine.bridges.get("a1").status != "connected"


def test_a_download_cut_midway_fails_clearly_and_succeeds_once_the_link_is_back(
    fleet: Callable[..., Booted], tmp_path: Path
) -> None:
    port = _free_port()
    master = fleet("master", "--port", str(port))
    agent = fleet("a1", "--join", _token(master), "--name", "a1")
    data = os.urandom(1 << 20) * 384  # 384 MiB: the cut comes long before the end
    (agent.home / "storage" / "big.bin").write_bytes(data)
    cut: list[int] = []

    def kill_master(done: int, total: int | None) -> None:
        if done and not cut:
            cut.append(done)
            os.kill(master.pid, signal.SIGKILL)

    with dxflow.Engine(master.url, key=master.master_key) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
        remote = engine.bridges.get("a1").engine
        with pytest.raises(dxflow.EngineUnavailable, match=r"lost|cannot reach|broke"):
            remote.objects.get("big.bin", tmp_path / "big.bin", progress=kill_master)
    assert cut and not (tmp_path / "big.bin").exists()  # no half file where the file goes
    wait_for(lambda: not _alive(master.pid), "the master to die")
    boot(master.home, "--port", str(port))
    with dxflow.Engine(master.url, key=master.master_key) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to re-dial", timeout=60)
        got = engine.bridges.get("a1").engine.objects.get("big.bin", tmp_path / "big.bin")
    assert got.read_bytes() == data


def test_a_call_after_the_agents_keep_alive_expired_does_not_reuse_a_dead_connection(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    """The agent's server closes idle connections (keep_alive_timeout); the master's pool
    of streams to it must see that and dial a new one, not fail the next call."""
    fleet("a1", "--join", _token(master), "--name", "a1", config=FAST + "keep_alive_timeout = 1\n")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
        remote = engine.bridges.get("a1").engine
        for _ in range(3):
            assert remote.ping().identity == "bridge-master/master"
            time.sleep(1.5)


def test_read_only_commands_with_bridge_reach_the_agent_not_the_master(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    """`ping`, `whoami`, `workflow list` have a lean path (a cached token, one GET): with
    --bridge (or DXFLOW_BRIDGE, as `dxflow fleet` sets it) they must go to the agent."""
    agent = fleet("a1", "--join", _token(master), "--name", "a1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
    run_cli("ping", "--home", master.home)  # caches the master's token: the lean path is open
    for _ in range(2):
        pong = run_cli("ping", "--home", master.home, "--bridge", "a1").stdout
        assert agent.runtime["engine_id"] in pong and "bridge-master/master" in pong, pong
    done = run_cli("fleet", "--home", master.home, "--", "ping")
    assert agent.runtime["engine_id"] in done.stdout, done.stdout


def test_a_token_from_a_file_joins_once_and_a_reboot_spends_no_use(
    master: Booted, fleet: Callable[..., Booted], tmp_path: Path
) -> None:
    token_file = tmp_path / "join-token"
    token_file.write_text(_token(master, uses=1) + "\n")
    agent = fleet("a1", "--join-file", str(token_file), "--name", "a1")
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
    run_cli("boot", "down", "--home", agent.home)
    boot(agent.home, "--join-file", str(token_file), "--name", "a1")  # its one use is spent
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect again")
    both = run_cli("boot", "up", "--home", agent.home, "--join", "x", "--join-file",
                   str(token_file), check=False)  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr


def test_the_masters_events_tell_each_agents_status_changes(
    master: Booted, fleet: Callable[..., Booted]
) -> None:
    import threading

    agent = fleet("a1", "--join", _token(master, labels={"gpu": "true"}), "--name", "a1")
    seen: list[tuple[str, str]] = []
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")

        def watch() -> None:
            for event in engine.bridges.events({"gpu": "true"}, interval=0.1):
                seen.append((event.agent, event.status))
                if event.status == "lost":
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        wait_for(lambda: seen, "the first event")
        os.kill(agent.pid, signal.SIGKILL)
        watcher.join(30)
    assert seen[0] == ("a1", "connected") and seen[-1] == ("a1", "lost"), seen
    assert ("a1", "disconnected") in seen


LONG = {"services": {"web": {"image": BUSYBOX_IMAGE, "command": "sleep 300"}}}


def test_the_masters_events_carry_each_agents_workflow_events_as_the_caller_sees_them(
    master: Booted, fleet: Callable[..., Booted], tmp_path: Path, docker_ready: None
) -> None:
    import threading

    fleet("a1", "--join", _token(master, labels={"site": "lab"}), "--name", "a1")
    seen: dict[str, list[BridgeEvent]] = {"master": [], "bridge-only": []}
    with dxflow.Engine.from_home(master.home) as engine:
        wait_for(lambda: _connected(engine, "a1"), "a1 to connect")
        pair = generate_key_pair(tmp_path / "bridge-only.pem", "ed25519")
        engine.keys.register(pair.public, "bridge-only", permissions="BRIDGE")
        remote = engine.bridges.get("a1").engine
        flow = remote.workflows.create("watched", LONG)  # before the watch: listed at once

        done = threading.Event()

        def watch(who: str, key: object) -> None:
            try:
                with dxflow.Engine(master.url, key=key) as caller:
                    for event in caller.bridges.events(workflows=True, interval=0.1):
                        seen[who].append(event)
                        workflow = event.workflow
                        if who == "master" and workflow and workflow.action == "started":
                            return
            except dxflow.TransportError:
                if not done.is_set():  # (the other watcher's stream ends with the master)
                    raise

        threads = [threading.Thread(target=watch, args=args, daemon=True) for args in
                   [("master", master.home / "keys" / "master.pem"),
                    ("bridge-only", pair.private)]]  # fmt: skip
        for thread in threads:
            thread.start()
        wait_for(lambda: seen["master"] and seen["bridge-only"], "the first events")
        try:
            flow.up()
            threads[0].join(60)
        finally:
            done.set()
            flow.down()
            flow.remove()
    events = [e for e in seen["master"] if e.workflow is not None]
    assert events and events[-1].workflow is not None, seen["master"]
    last = events[-1]
    assert (last.agent, last.labels, last.workflow.workflow) == ("a1", {"site": "lab"}, "watched")
    assert last.workflow.action == "started" and last.workflow.service == "web"
    # BRIDGE alone reaches the master's view of its agents, not their workflows.
    assert seen["bridge-only"][0].status == "connected"
    assert all(e.workflow is None for e in seen["bridge-only"]), seen["bridge-only"]
