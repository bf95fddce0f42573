"""Fixtures shared by every test: engine homes, cores, keys and engines per transport."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
BRIDGED_FILES = {"test_objects.py", "test_workflows.py", "test_shells.py"}
"""Contract files that also run over a bridge: client -> master -> agent (`bridged`)."""
SDKS = ["sync", "async"]
ASYNC_SDK_FILES = {
    "test_engine.py", "test_objects.py", "test_shells.py", "test_keys.py",
    "test_downloads_shares.py", "test_uploads.py", "test_closed.py", "test_reads.py",
    "test_key_updates.py",
}  # fmt: skip
"""Contract test files whose engines also come as the async SDK (`sdk` = "async"):
the ones that exercise the facades. Elsewhere `sdk` is "sync" alone."""


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
            if response.is_success:  # a stream may say nothing for long (events): its head
                return response.status_code, b""
            for chunk in response.iter_bytes():
                return response.status_code, chunk
            return response.status_code, b""


@pytest.fixture
def server_url(app: Starlette, core: EngineCore) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 in a thread, as `dxflow boot up` serves it."""
    with serve_app(app) as url:
        # As `dxflow boot up` does: share links and proxy URLs name the address bound.
        core.shares.base_url = core.proxies.base_url = url
        yield url
        core.shares.base_url = core.proxies.base_url = None


@contextlib.contextmanager
def serve_app(app: Starlette) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 in a thread; its URL."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    from dxflow_server._guard import guarded_protocol

    # The engine's own protocol: a refused body is answered, then the rest is drained
    # (a plain close would reset the connection before the client reads the refusal);
    # and its fast path (proxies, relayed calls, agents' links), as `dxflow boot up`.
    http = guarded_protocol(10.0, getattr(app, "fast_app", None))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
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


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """Which door `make_engine` opens: parametrized by `pytest_generate_tests`."""
    return str(request.param)


BRIDGED_AGENT = "agent"


@dataclass
class BridgedMaster:
    """A master engine (a core of its own, served on loopback) that `core` is joined to."""

    core: EngineCore
    url: str

    def caller_key(self, agent: EngineCore, key: Path | None) -> Any:
        """The private key of `key` (default: the master's own), registered on the master
        as it is on the agent, plus BRIDGE: the agent then sees the same caller."""
        if key is None:
            return load_private_key(self.core.config.home.master_key)
        private = load_private_key(key)
        record = agent.keys.by_fingerprint(private.public.fingerprint)
        if record is not None and self.core.keys.get(record.identity) is None:
            self.core.keys.add(record.identity, record.public,
                               record.permissions | Permission.BRIDGE)  # fmt: skip
        return private


@pytest.fixture
def bridged_master(core: EngineCore, server_url: str, tmp_path: Path) -> Iterator[BridgedMaster]:
    """`core` joined as agent "agent" to a master of its own, allowing it everything."""
    with joined_master(core, server_url, tmp_path) as master:
        yield master


@contextlib.contextmanager
def joined_master(
    core: EngineCore, agent_url: str, tmp_path: Path,
    allow: str = "WORKFLOW,OBJECT,SHELL,PLATFORM,PROXY,MASTER",
) -> Iterator[BridgedMaster]:  # fmt: skip
    """A master (a core of its own, served on loopback) that `core` joined as agent
    `BRIDGED_AGENT`: the agent's dialer runs on a loop thread and its streams go to
    `agent_url` (the agent's API on loopback)."""
    import asyncio

    from dxflow._core._bridges._enroll import join
    from dxflow._models import BridgeTokenCreate
    from dxflow._runner import Runner

    master = EngineCore(load_config(tmp_path / "master-home", auth_rate_limit=100_000))
    with serve_app(create_app(master)) as url:
        made = master.bridges.token(master.local_context(), BridgeTokenCreate(url=url))
        join(core.config.home, made.token, BRIDGED_AGENT, allow, True)
        core.bridge_agent.reload()
        host, port = agent_url.removeprefix("http://").split(":")
        core.bridge_agent.local = (host, int(port))
        runner = Runner()
        dialer = asyncio.run_coroutine_threadsafe(core.bridge_agent.run(), runner._ensure())
        deadline = time.monotonic() + 30
        while master.bridges.status(BRIDGED_AGENT, None) != "connected":
            assert time.monotonic() < deadline, "the agent did not link to its master"
            time.sleep(0.02)
        try:
            yield BridgedMaster(master, url)
        finally:
            dialer.cancel()
            runner.close()
    master.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The async SDK leg, for the contract files that exercise the facades; the bridged
    transport, for the files of workflows, objects and shells."""
    path = metafunc.definition.path
    markers = metafunc.definition.iter_markers("parametrize")
    defs = metafunc._arg2fixturedefs.get("transport")  # this file's fixture, or a module's
    ours = bool(defs) and defs[-1].func.__module__ == __name__  # type: ignore[index]
    if ours and not [m for m in markers if "transport" in m.args[0]]:
        bridged = path.parent.name == "contract" and path.name in BRIDGED_FILES
        metafunc.parametrize("transport", [*TRANSPORTS, *["bridged"] * bridged], indirect=True)
    if "sdk" not in metafunc.fixturenames or metafunc.definition.path.name not in ASYNC_SDK_FILES:
        return
    if metafunc.definition.path.parent.name != "contract":
        return
    chosen = [m for m in metafunc.definition.iter_markers("parametrize") if "sdk" in m.args[0]]
    if not chosen:
        metafunc.parametrize("sdk", SDKS, indirect=True)


@pytest.fixture
def sdk(request: pytest.FixtureRequest) -> str:
    """Which SDK the `engine` fixtures hand out: the blocking `Engine` ("sync"), or
    `AsyncEngine` driven through `AsyncDriven` ("async")."""
    return str(getattr(request, "param", "sync"))


@pytest.fixture
def make_engine(
    core: EngineCore, request: pytest.FixtureRequest, transport: str, sdk: str
) -> Iterator[EngineFactory]:
    """Open engines on `core` through the parametrized transport, as a given key.

    "http" is the server app on a real loopback socket: streams really stream.
    """
    opened: list[Any] = []
    runners: list[Any] = []

    def make(key: Path | None = None) -> Engine:
        if transport == "local":
            private = load_private_key(key) if key else None
            chosen: Any = LocalTransport(core, private, owns_core=False)
        elif transport == "bridged":
            master: BridgedMaster = request.getfixturevalue("bridged_master")
            private = master.caller_key(core, key)
            chosen = HttpTransport(master.url, private).bridged(BRIDGED_AGENT)
        else:
            private = load_private_key(key or core.config.home.master_key)
            chosen = HttpTransport(request.getfixturevalue("server_url"), private)
        if sdk == "sync":
            engine: Any = Engine(transport=chosen)
        else:
            engine = drive_async(chosen)
            runners.append(engine._runner)
        opened.append(engine)
        return engine  # type: ignore[no-any-return]

    yield make
    for engine in opened:
        engine.close()
    for runner in runners:
        runner.close()


def drive_async(transport: Any) -> Any:
    """An `AsyncEngine` on `transport`, run on a loop thread of its own and driven from
    blocking test code through `AsyncDriven`."""
    from dxflow import AsyncEngine
    from dxflow._runner import Runner

    runner = Runner()
    engine = runner.run_on_loop(_make_async_engine, AsyncEngine, transport)
    return AsyncDriven(engine, runner)


async def _make_async_engine(cls: Any, transport: Any) -> Any:
    return cls(transport=transport)  # made on the loop, as async code would


class AsyncDriven:
    """A blocking view of an async SDK object, for running the contract tests' blocking
    bodies against the async SDK: coroutines run on the loop thread, async iterators
    become iterators, async context managers context managers, and SDK objects that
    come back (collections, handles, channels) are driven the same way."""

    def __init__(self, target: Any, runner: Any) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)

    def __getattr__(self, name: str) -> Any:
        target = self._target
        if name == "close" and not hasattr(target, "close") and hasattr(target, "aclose"):
            return self._close
        value = getattr(target, name)
        return self._wrapped_call(value) if callable(value) else self._wrap(value)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return repr(self._target)

    def _close(self) -> None:
        self._runner.run_on_loop(self._target.aclose)  # the loop stays: calls can be tried

    def _wrapped_call(self, function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = self._runner.run_on_loop(_awaited, result)
            return self._wrap(result)

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._wrap(item) for item in value]
        if hasattr(value, "__anext__"):
            return (self._wrap(item) for item in self._runner.iterate(value))
        if type(value).__module__.startswith("dxflow._api"):
            return AsyncDriven(value, self._runner)
        return value

    def __iter__(self) -> Iterator[Any]:
        return (self._wrap(item) for item in self._runner.iterate(aiter(self._target)))

    def __enter__(self) -> Any:
        if hasattr(self._target, "__aenter__"):
            return self._wrap(self._runner.run_on_loop(self._target.__aenter__))
        return self

    def __exit__(self, *exc: Any) -> None:
        if hasattr(self._target, "__aexit__"):
            self._runner.run_on_loop(self._target.__aexit__, *exc)
        elif hasattr(self._target, "aclose"):
            self._close()


async def _awaited(coroutine: Any) -> Any:
    return await coroutine


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
