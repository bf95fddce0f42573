"""Fixtures shared by every test: engine homes, cores, keys and engines per transport."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from dxflow import Engine, Permission
from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._keypairs import KeyPair, generate_key_pair, load_private_key
from dxflow._transports._http import HttpTransport
from dxflow._transports._local import LocalTransport
from dxflow_server import create_app

TRANSPORTS = ["local", "http"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def core(home: Path) -> Iterator[EngineCore]:
    # A high limit: the contract tests make many handshakes from one test address.
    engine_core = EngineCore(load_config(home, auth_rate_limit=100_000))
    yield engine_core
    end_sessions(engine_core)
    engine_core.close()


def end_sessions(core: EngineCore) -> None:
    """Shell sessions outlive their engine by design: a test's must not outlive the test."""
    import anyio

    from dxflow.models import ShellRef

    ctx = core.local_context()
    for info in core.shells.list(ctx, None).shells:
        anyio.run(core.shells.remove, ctx, ShellRef(name=info.name))


@pytest.fixture
def app(core: EngineCore) -> Starlette:
    return create_app(core)


class RestClient(httpx.Client):
    """Blocking raw HTTP on the server app over a real loopback socket (the REST door)."""

    def status(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        """Status and first chunk of a response that may be an endless stream."""
        with self.stream(method, url, **kwargs) as response:
            for chunk in response.iter_bytes():
                return response.status_code, chunk
            return response.status_code, b""


@pytest.fixture
def server_url(app: Starlette) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 in a thread, as `dxflow boot up` serves it."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    from dxflow_server._guard import guarded_protocol

    # The engine's own protocol: a refused body is answered, then the rest is drained
    # (a plain close would reset the connection before the client reads the refusal).
    http = guarded_protocol(10.0)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.005)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def rest(server_url: str) -> Iterator[RestClient]:
    with RestClient(base_url=server_url, timeout=10) as client:
        yield client


KeyFactory = Callable[..., KeyPair]


@pytest.fixture
def make_key(tmp_path: Path, core: EngineCore) -> KeyFactory:
    """Generate a key pair (Ed25519: fast) and register it with `permissions`."""
    counter = iter(range(10_000))

    def make(
        permissions: Permission | None = Permission.PLATFORM,
        identity: str | None = None,
        key_type: str = "ed25519",
    ) -> KeyPair:
        name = identity or f"user{next(counter)}"
        pair = generate_key_pair(tmp_path / "keys" / f"{name}.pem", key_type)  # type: ignore[arg-type]
        if permissions is not None:
            core.keys.add(name, load_private_key(pair.private).public, permissions)
        return pair

    return make


EngineFactory = Callable[..., Engine]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_engine(
    core: EngineCore, request: pytest.FixtureRequest, transport: str
) -> Iterator[EngineFactory]:
    """Open engines on `core` through the parametrized transport, as a given key.

    "http" is the server app on a real loopback socket: streams really stream.
    """
    opened: list[Engine] = []

    def make(key: Path | None = None) -> Engine:
        if transport == "local":
            private = load_private_key(key) if key else None
            engine = Engine(transport=LocalTransport(core, private, owns_core=False))
        else:
            private = load_private_key(key or core.config.home.master_key)
            url = request.getfixturevalue("server_url")
            engine = Engine(transport=HttpTransport(url, private))
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    """A MASTER engine through the parametrized transport."""
    return make_engine()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The real Docker Engine: required by the test command, so missing it fails."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("DXFLOW_REQUIRE_DOCKER") == "1":
            pytest.fail(f"the test command needs a running Docker Engine: {exc}")
        pytest.skip(f"no Docker Engine here: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_ready(docker_client: Any) -> None:
    """Docker answers and the locally built test image exists."""
    from .docker.images import ensure_busybox_image

    ensure_busybox_image()


_projects = itertools.count()


def remove_project(client: Any, project: str) -> None:
    """Everything a test's Compose project left on the Docker Engine, whoever made it."""
    label = f"com.docker.compose.project={project}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()
    volumes = client.volumes.list(filters={"label": label})
    volumes += client.volumes.list(filters={"name": project})  # made by name, unlabelled
    for volume in {v.id: v for v in volumes}.values():
        volume.remove(force=True)


@pytest.fixture
def project_name(docker_client: Any, docker_ready: None) -> Iterator[str]:
    """A project name of this test alone; its containers, networks and volumes go after."""
    project = f"dxt{os.getpid()}-{next(_projects)}"
    yield project
    remove_project(docker_client, project)
