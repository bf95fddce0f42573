"""Secrets, configs and file binds against the real Docker Engine, read back through exec;
and what `create` refuses before `up` could fail (a missing build context, a bad port)."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import docker
import pytest

from dxflow import Engine, InvalidRequest, NotFound
from dxflow._core import EngineCore

from ..docker.images import BUSYBOX_IMAGE


@pytest.fixture
def name(project_name: str) -> str:
    return project_name


@pytest.fixture
def work(core: EngineCore, name: str) -> Path:
    """The workflow's folder inside the engine's storage root (where bind sources live)."""
    folder = Path(core.config.storage_root) / name
    folder.mkdir(parents=True)
    return folder


COMPOSE = f"""
services:
  app:
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    user: "1000:1000"
    secrets:
      - db_password
      - token
      - source: token
        target: /etc/app/token
        mode: 0400
    configs:
      - app_ini
      - source: inline
        target: /etc/app/inline.ini
      - source: from_env
        target: /etc/app/from_env
secrets:
  db_password:
    file: ./db_password.txt
  token:
    environment: TOKEN
configs:
  app_ini:
    file: ./app.ini
  inline:
    content: |
      debug = ${{DEBUG:-off}}
  from_env:
    environment: APP_CONFIG
"""


def test_secrets_and_configs_are_mounted_read_only(
    engine: Engine, name: str, work: Path, core: EngineCore, docker_client: docker.DockerClient
) -> None:
    (work / "db_password.txt").write_text("from a file\n")
    (work / "app.ini").write_text("[app]\nanswer = 42\n")
    (work / "compose.yaml").write_text(COMPOSE)
    token = f"t0ken-{os.getpid()}"
    wf = engine.workflows.create(
        name, work / "compose.yaml", env={"TOKEN": token, "APP_CONFIG": "cfg = 1"}
    )
    wf.up(timeout=60)

    def read(path: str) -> str:
        result = wf.exec("app", ["cat", path])
        assert result.exit_code == 0, result.output
        return result.output

    assert read("/run/secrets/db_password") == "from a file\n"
    assert read("/run/secrets/token") == token  # a non-root user reads it (0444)
    assert read("/app_ini") == "[app]\nanswer = 42\n"
    assert read("/etc/app/inline.ini") == "debug = off\n"
    assert read("/etc/app/from_env") == "cfg = 1"
    mode = wf.exec("app", ["busybox", "stat", "-c", "%a", "/etc/app/token"]).output.strip()
    assert mode == "400"
    assert wf.exec("app", ["cat", "/etc/app/token"]).exit_code != 0  # 0400: not for uid 1000
    write = wf.exec("app", ["sh", "-c", "echo x >> /etc/app/inline.ini"], user="0")
    assert write.exit_code != 0 and "Read-only file system" in write.output

    # The value is never on a command line nor in the container's environment.
    attrs = docker_client.containers.get(f"{name}-app-1").attrs
    assert token not in json.dumps(attrs)
    written = core.objects.storage.private / "workflows" / name
    secret = written / "app" / "secrets" / "1-token"
    assert secret.read_text() == token
    for folder in (written, written / "app", written / "app" / "secrets"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # no other host user gets in

    wf.down()
    assert not written.exists()


def test_an_existing_file_or_socket_is_bound_as_it_is(
    engine: Engine, name: str, work: Path
) -> None:
    (work / "data.txt").write_text("a file, not a folder\n")
    listener = socket.socket(socket.AF_UNIX)
    previous = os.getcwd()
    os.chdir(work)  # a socket path must be short: bind it relative
    try:
        listener.bind("s.sock")
    finally:
        os.chdir(previous)
    compose = f"""
services:
  app:
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    volumes:
      - ./data.txt:/data.txt:ro
      - ./s.sock:/run/s.sock
      - ./made:/made
"""
    (work / "compose.yaml").write_text(compose)
    try:
        wf = engine.workflows.create(name, work / "compose.yaml")
        wf.up(timeout=60)
        assert wf.exec("app", ["cat", "/data.txt"]).output == "a file, not a folder\n"
        assert wf.exec("app", ["sh", "-c", "test -S /run/s.sock"]).exit_code == 0
        assert (work / "data.txt").is_file() and stat.S_ISSOCK((work / "s.sock").stat().st_mode)
        assert (work / "made").is_dir()  # a missing source is still made a folder (MASTER)
        wf.down()
    finally:
        listener.close()


def test_a_missing_build_context_is_refused_at_create(
    engine: Engine, name: str, work: Path
) -> None:
    (work / "compose.yaml").write_text("services:\n  app:\n    build: ./nodir\n")
    with pytest.raises(InvalidRequest) as caught:
        engine.workflows.create(name, work / "compose.yaml")
    assert caught.value.message.startswith("services.app.build.context: ")
    assert f"{work / 'nodir'} does not exist" in caught.value.message
    with pytest.raises(NotFound):
        engine.workflows.get(name)


def test_a_malformed_port_is_refused_never_widened(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    compose = {"services": {"web": {"image": BUSYBOX_IMAGE, "ports": ["127.0.0.1:18090:8000:9"]}}}
    with pytest.raises(InvalidRequest) as caught:
        engine.workflows.create(name, compose)
    assert caught.value.message.startswith("services.web.ports[0]: ")
    assert "accepted: CONTAINER, HOST:CONTAINER, IP:HOST:CONTAINER" in caught.value.message
    with pytest.raises(NotFound):
        engine.workflows.get(name)
    label = f"com.docker.compose.project={name}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
