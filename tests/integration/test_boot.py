"""`dxflow boot up` on real sockets: TCP and the unix socket, TLS, one engine per home."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest

import dxflow
from dxflow import EngineUnavailable, Unauthenticated

from .conftest import Booted, boot
from .conftest import dxflow as run


def test_ping_over_tcp_and_unix_socket(booted: Booted) -> None:
    with dxflow.Engine(booted.url, key=booted.master_key) as tcp:
        pong = tcp.ping()
        assert pong.identity == "master"
    with dxflow.Engine.from_home(booted.home) as unix:
        assert unix.ping().engine_id == pong.engine_id
    socket_path = booted.home / "run" / "engine.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600


def test_health_is_public_and_the_rest_is_not(booted: Booted) -> None:
    assert httpx.get(f"{booted.url}/api/health").json()["status"] == "ok"
    denied = httpx.get(f"{booted.url}/api/ping")
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "unauthenticated"
    with dxflow.Engine(booted.url) as anonymous:  # no key: public operations only
        assert anonymous.health().status == "ok"
        with pytest.raises(Unauthenticated):
            anonymous.ping()


def test_openapi_document_is_served(booted: Booted) -> None:
    document = httpx.get(f"{booted.url}/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/api/ping" in document["paths"]


def test_token_command_gives_a_bearer_token_for_curl(booted: Booted) -> None:
    token = run("token", "--home", booted.home, "--lifetime", "5m").stdout.strip()
    response = httpx.get(f"{booted.url}/api/info", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["engine_id"] == booted.runtime["engine_id"]


def test_second_boot_on_the_same_home_names_the_running_pid(booted: Booted) -> None:
    again = run("boot", "up", "--home", booted.home, "--port", "0", check=False)
    assert again.returncode == 1
    assert f"already running on {booted.home} (pid {booted.pid})" in again.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("boot", "up", "--home", tmp_path / "h", "--port", str(port), check=False)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    engine = boot(tmp_path / "tls", "--tls")
    try:
        assert engine.url.startswith("https://")
        cert = Path(engine.runtime["cert"])
        assert stat.S_IMODE((cert.parent / "key.pem").stat().st_mode) == 0o600
        with dxflow.Engine(engine.url, key=engine.master_key, verify=str(cert)) as secure:
            assert secure.ping().identity == "master"
        untrusting = dxflow.Engine(engine.url, key=engine.master_key)
        with untrusting, pytest.raises(EngineUnavailable, match="cannot reach"):
            untrusting.ping()  # self-signed: refused without the certificate
        # the unix socket stays plain HTTP for the local CLI
        assert run("ping", "--home", engine.home).returncode == 0
    finally:
        run("boot", "down", "--home", engine.home)


def test_boot_down_stops_and_cleans_up(tmp_path: Path) -> None:
    engine = boot(tmp_path / "down")
    stopped = run("boot", "down", "--home", engine.home)
    assert f"engine stopped (pid {engine.pid})" in stopped.stdout
    assert not (engine.home / "run" / "engine.sock").exists()
    assert not (engine.home / "run" / "engine.pid").exists()
    status = run("boot", "status", "--home", engine.home, check=False)
    assert status.returncode == 3 and "no engine is running" in status.stdout
    with pytest.raises(EngineUnavailable, match="dxflow boot up"):
        dxflow.Engine.from_home(engine.home)


def test_restart_after_kill_9_keeps_identity_and_keys(tmp_path: Path) -> None:
    engine = boot(tmp_path / "crash")
    os.kill(engine.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(engine.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    again = boot(engine.home)  # the stale socket and pid file do not block a new boot
    try:
        assert again.runtime["engine_id"] == engine.runtime["engine_id"]
        keys = json.loads(run("key", "list", "--home", engine.home, "--json").stdout)
        assert [k["identity"] for k in keys] == ["master"]
    finally:
        run("boot", "down", "--home", engine.home)


def test_from_env_reads_url_and_key(booted: Booted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DXFLOW_URL", booted.url)
    monkeypatch.setenv("DXFLOW_KEY", str(booted.master_key))
    with dxflow.Engine.from_env() as engine:
        assert repr(engine) == f"<Engine {booted.url}>"
        assert engine.ping().engine_id == booted.runtime["engine_id"]
    monkeypatch.delenv("DXFLOW_URL")
    monkeypatch.setenv("DXFLOW_HOME", str(booted.home))
    with dxflow.Engine.from_env() as local:  # no URL: in-process, on the same home
        assert repr(local) == "<Engine in-process>"
        assert local.ping().engine_id == booted.runtime["engine_id"]
