"""The default key attacks the engine, over HTTP: no road leads to MASTER or to root.

Issue 8's headline promise is about the set a new user gets, `DEFAULT_PERMISSIONS`
(PROXY, BRIDGE, SHELL, OBJECT, PLATFORM, WORKFLOW: everything but READ_ONLY and MASTER),
"without administrative privileges". The other modules here each attack with the one
permission under test; this one attacks with the whole default set, registered the way a
new user's key is (`keys.register` with no permissions given), and tries each road to the
master key or the host again (audit of issue 8, gap G6):

(a) a workflow binding `/` or the engine home to read keys/master.pem;
(b) an env file pointing at the master key, directly or through a link in storage;
(c) a host shell reading the key: it runs as the key's run-as user, never as root;
(d) objects: `../keys/master.pem`, and links planted in storage that lead to it;
(e) proxies to the Docker socket, to a link in storage leading to it, to the engine's
    own socket, to public and link-local addresses, and a socket swapped for a link;
(f) a shell (or an exec) in a workflow container of MASTER's;
(g) every operation that needs MASTER (keys, audit, bridge tokens, agents).

Each attempt fails, and the master key's bytes never come back, in a reply or an error.
One engine, one master and one default key serve the whole module.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from dxflow import (
    DEFAULT_PERMISSIONS,
    ApiError,
    Engine,
    InvalidRequest,
    NotFound,
    Permission,
    PermissionDenied,
)
from dxflow import _operations as ops
from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._transports._http import HttpTransport

from ..conftest import end_sessions, serve_app
from .test_proxy_sockets import Place, _exchange
from .test_shells import RUN_AS, _uid_of, run_as_user  # noqa: F401 (autouse: makes the user)
from .test_workflow_policy import _audited, _containers, _refused, _service

NEW_USER = "newcomer"
_names = itertools.count()


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """The engine home, in folders anyone may cross (pytest's tmp_path is 0700): only
    the engine's own modes keep the run-as user out (as in test_shells.py)."""
    base = Path(tempfile.mkdtemp(prefix="dxflow-default-key-"))
    base.chmod(0o755)
    yield base / "home"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def core(home: Path) -> Iterator[EngineCore]:
    engine_core = EngineCore(load_config(home, auth_rate_limit=100_000))
    yield engine_core
    end_sessions(engine_core)
    engine_core.close()


@pytest.fixture(scope="module")
def server_url(core: EngineCore) -> Iterator[str]:
    from dxflow_server import create_app

    with serve_app(create_app(core)) as url:
        core.shares.base_url = core.proxies.base_url = url
        yield url


@pytest.fixture(scope="module")
def master(core: EngineCore, server_url: str) -> Iterator[Engine]:
    engine = Engine(
        transport=HttpTransport(server_url, load_private_key(core.config.home.master_key))
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def user(master: Engine, server_url: str, home: Path) -> Iterator[Engine]:
    """A new user's key, registered as one is: no permissions named, no run-as user, no
    workflow policy (the engine's defaults: `dxflow`, baseline)."""
    pair = generate_key_pair(home.parent / f"{NEW_USER}.pem", "ed25519")
    info = master.keys.register(pair.public, NEW_USER)
    assert set(info.permissions) == set(str(DEFAULT_PERMISSIONS).split(","))
    assert (info.run_as, info.workflow_policy) == (None, None)
    engine = Engine(transport=HttpTransport(server_url, load_private_key(pair.private)))
    assert engine.whoami().identity == NEW_USER
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def master_key(core: EngineCore) -> bytes:
    return core.config.home.master_key.read_bytes()


@pytest.fixture(scope="module")
def secrets(master_key: bytes) -> list[bytes]:
    """What must never come back: the PEM's header and each line of its key material."""
    lines = [line for line in master_key.splitlines() if line and not line.startswith(b"-")]
    assert lines
    return [b"PRIVATE KEY", *lines]


def _clean(secrets: list[bytes], *said: Any) -> None:
    """None of the master key's bytes is in what came back (replies, errors, output)."""
    for item in said:
        if isinstance(item, ApiError):
            item = f"{item.message} {item.details}"
        data = item if isinstance(item, bytes) else str(item).encode()
        leaked = [secret for secret in secrets if secret in data]
        assert not leaked, f"the master key came back: {data[:300]!r}"


def _refusal(error: type[ApiError], match: str, attempt: Any, *args: Any, **kw: Any) -> ApiError:
    """The error `attempt(*args, **kw)` raises, which must be `error` saying `match`."""
    with pytest.raises(error, match=match) as caught:
        attempt(*args, **kw)
    return caught.value


def _name() -> str:
    return f"dk{os.getpid()}-{next(_names)}"


# -- (a) (b) workflows --------------------------------------------------------------------


def test_a_workflow_binding_root_or_the_home_is_refused_at_create(
    user: Engine, core: EngineCore, docker_client: docker.DockerClient, secrets: list[bytes]
) -> None:
    home = core.config.home.root
    key = core.config.home.master_key
    storage = core.config.storage_root
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "to-home").symlink_to(home)  # what a container binding storage could plant
    attempts = [
        (_service(volumes=["/:/host:ro"], command=["cat", f"/host{key}"]),
         "services.s.volumes[0]: '/' is outside the storage root"),
        (_service(volumes=[f"{home}:/h:ro"]), "services.s.volumes[0]"),
        (_service(volumes=[f"{home}/keys:/k:ro"]), "inside the engine home"),
        (_service(volumes=[f"{key}:/master.pem:ro"]), "inside the engine home"),
        (_service(volumes=[f"{storage}/to-home:/h:ro"]), "services.s.volumes[0]"),
        (_service(build=str(home)), "services.s.build.context"),
        ({**_service(secrets=["k"]), "secrets": {"k": {"file": str(key)}}}, "secrets.k.file"),
    ]  # fmt: skip
    for compose, fragment in attempts:
        name = _name()
        message = _refused(user, name, compose, fragment)
        _audited(core, "workflows.create", fragment)
        _clean(secrets, message)
        assert _containers(docker_client, name) == []
    assert user.workflows.list() == []


def test_an_env_file_pointing_at_the_master_key_is_refused_unread(
    user: Engine, master: Engine, core: EngineCore, secrets: list[bytes]
) -> None:
    key = str(core.config.home.master_key)
    storage = core.config.storage_root
    storage.mkdir(parents=True, exist_ok=True)
    link = storage / "innocent.env"
    link.symlink_to(key)
    said = [
        _refused(user, _name(), _service(), "env_file: ", env_file=[key]),
        _refused(user, _name(), _service(env_file=key), "services.s.env_file: "),
        _refused(user, _name(), _service(env_file=str(link)), "resolves to"),
    ]
    assert all("inside the engine home" in message for message in said[:2]), said
    # A link planted after create (by a container binding the folder, audit G1): the
    # next read of the workflow is the policy's 403, never the file.
    folder = storage / "proj"
    folder.mkdir()
    env_file = folder / "app.env"
    env_file.write_text("A=1\n")
    name = _name()
    wf = user.workflows.create(name, _service(env_file=str(env_file)), env_file=[str(env_file)])
    assert wf.config().services["s"].environment["A"] == "1"
    env_file.unlink()
    env_file.symlink_to(key)
    said.append(_refusal(PermissionDenied, "env_file", wf.config))
    said.append(_refusal(PermissionDenied, "env_file", wf.explain_env, "s", "A"))
    said.append(_refusal(PermissionDenied, "env_file", wf.exec, "s", ["true"]))
    said.append(user.workflows.list())  # listed, without what it refuses to read
    _clean(secrets, *said)
    env_file.unlink()
    env_file.write_text("A=1\n")
    wf.remove()


# -- (c) a host shell ---------------------------------------------------------------------


def test_a_host_shell_runs_as_the_run_as_user_and_cannot_read_the_key(
    user: Engine, core: EngineCore, secrets: list[bytes]
) -> None:
    import pwd

    run_as = pwd.getpwnam(RUN_AS)
    home = core.config.home.root
    sh = user.shells.create("attack", command="/bin/sh")
    assert sh.info.user == RUN_AS and sh.info.pid
    assert _uid_of(sh.info.pid) == run_as.pw_uid != 0
    assert sh.run("id -u").output == f"{run_as.pw_uid}\n"
    said = []
    for command in (
        f"cat {home}/keys/master.pem",
        f"cat {home}/secrets/token.key",
        f"ls {home}",
        f"cat /proc/{os.getpid()}/root{home}/keys/master.pem",  # through the engine's root
        f"cat /proc/{os.getpid()}/environ",
    ):
        result = sh.run(command)
        said.append(result.output)
        assert result.exit_code != 0, (command, result)
        assert "Permission denied" in result.output, (command, result.output)
    result = sh.run(f"sudo -n cat {home}/keys/master.pem")  # no road to root either
    said.append(result.output)
    assert result.exit_code != 0, result
    if os.path.exists("/var/run/docker.sock"):  # Docker is root: the user must not reach it
        docker_sock = sh.run("[ -w /var/run/docker.sock ] && echo reachable || echo refused")
        assert docker_sock.output == "refused\n"
    _clean(secrets, *said)
    sh.remove()


# -- (d) objects --------------------------------------------------------------------------


def test_objects_never_reach_the_key_by_dots_or_by_planted_links(
    user: Engine, core: EngineCore, master_key: bytes, secrets: list[bytes], tmp_path: Path
) -> None:
    home = core.config.home.root
    key = core.config.home.master_key
    storage = core.config.storage_root
    user.objects.pipe("d/ok.txt", b"mine")
    (storage / "d" / "key.pem").symlink_to(key)  # planted by a container binding storage
    (storage / "d" / "keys").symlink_to(home / "keys")
    (storage / "d" / "up").symlink_to(home)
    objects = user.objects
    said: list[Any] = []
    links = ("d/key.pem", "d/keys", "d/up")
    paths = ["../keys/master.pem", "d/../../keys/master.pem", str(key), "d/key.pem",
             "d/keys/master.pem", "d/up/keys/master.pem"]  # fmt: skip
    for path in paths:
        for attempt, args in (
            (objects.cat, (path,)),
            (objects.info, (path,)),
            (objects.checksum, (path,)),
            (objects.cat_ranges, ([(path, 0, 64)],)),
            (objects.get, (path, tmp_path / "stolen.pem")),
            (objects.cp, (path, "d/stolen.pem")),
            (objects.zip, (path, "d/stolen.zip")),
            (objects.share, (path,)),  # never a link: what it serves would be refused
            # A link itself may be moved or removed (never what it points to):
            *([(objects.mv, (path, "d/moved.pem")),
               (objects.rm, (path,))] if path not in links else []),
        ):  # fmt: skip
            with pytest.raises((InvalidRequest, NotFound)) as caught:
                attempt(*args)
                pytest.fail(f"{attempt.__name__}({path!r}) was allowed")
            said.append(caught.value)
    for folder in ("..", "../keys", "d/keys", "d/up", "d/up/keys"):
        for attempt in (objects.ls, objects.cat, objects.share):  # cat: a folder's zip
            with pytest.raises((InvalidRequest, NotFound)) as caught:
                attempt(folder)
                pytest.fail(f"{attempt.__name__}({folder!r}) was allowed")
            said.append(caught.value)
    listed = objects.ls("d", depth=5)  # links are neither listed nor followed
    assert [i.path for i in listed] == ["d/ok.txt"]
    said.append(listed)
    said.append(objects.cat("d"))  # the folder's zip leaves the links out
    objects.cp("d", "d-copy")
    assert sorted(os.listdir(storage / "d-copy")) == ["ok.txt"]
    for link in links:  # a read link to a planted link is refused when it is made
        with pytest.raises(InvalidRequest, match="symbolic link"):
            objects.share(link)
    said.append(httpx.get(str(objects.share("d").url), timeout=30).content)
    assert not (tmp_path / "stolen.pem").exists()
    assert sorted(os.listdir(storage / "d")) == ["key.pem", "keys", "ok.txt", "up"]
    assert key.read_bytes() == master_key  # nothing moved, removed or changed it
    _clean(secrets, *said)


# -- (e) proxies --------------------------------------------------------------------------


def test_proxies_reach_neither_the_docker_socket_nor_outside(
    user: Engine, core: EngineCore, secrets: list[bytes], tmp_path: Path
) -> None:
    storage = core.config.storage_root
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "d.sock").symlink_to("/var/run/docker.sock")
    (storage / "var-run").symlink_to("/var/run")
    home = core.config.home.root
    refused = [
        ("unix:/var/run/docker.sock", "Docker socket"),
        ("unix:/run/docker.sock", "Docker socket"),
        (f"unix:{storage}/d.sock", "docker.sock"),
        (f"unix:{storage}/var-run/docker.sock", "docker.sock"),
        (f"unix:{home}/run/engine.sock", "engine home"),  # the engine's own API socket
        ("8.8.8.8:53", "proxy_public_targets"),
        ("https://1.1.1.1:443", "proxy_public_targets"),
        ("169.254.169.254:80", "link-local"),  # where cloud metadata answers
    ]  # (public targets allowed by proxy_public_targets: tests/unit/test_proxy_service.py)
    said = []
    for target, words in refused:
        said.append(_refusal(PermissionDenied, words, user.proxies.create, _name(), target))
    assert user.proxies.list() == []
    # A socket in storage is allowed; swapped for a link (by a container binding the
    # folder, audit G2), the proxy refuses it and never connects outside.
    place = Place(storage / "swap", tmp_path)
    try:
        proxy = user.proxies.create("app", f"unix:{place.socket}", auth="none")
        assert proxy.url is not None
        assert httpx.get(proxy.url, timeout=60).text == "inside"
        assert _exchange(place.socket, place.decoy)
        swapped = httpx.get(proxy.url, timeout=60)
        assert swapped.status_code == 502 and "symbolic link" in swapped.text, swapped.text
        assert place.outside.accepted == 0
        proxy.remove()
    finally:
        place.stop()
    _clean(secrets, *said)


# -- (f) MASTER's containers --------------------------------------------------------------


@pytest.fixture
def masters_workflow(
    master: Engine, core: EngineCore, docker_ready: None, project_name: str
) -> Iterator[str]:
    """A workflow of MASTER's that binds the engine home: running, within reach."""
    home = core.config.home.root
    compose = _service(volumes=[f"{home}:/home:ro"], stop_grace_period="1s")
    master.workflows.create(project_name, compose).up(timeout=60)
    yield project_name
    master.workflows.get(project_name).remove()


def test_no_shell_or_exec_in_a_container_of_masters(
    user: Engine, core: EngineCore, masters_workflow: str, secrets: list[bytes]
) -> None:
    theirs = user.workflows.get(masters_workflow)
    rule = r"services\.s\.volumes\[0\]: .* \(it is or contains the engine home"
    said = [
        _refusal(PermissionDenied, rule, user.shells.create, "theirs", workflow=masters_workflow,
                 service="s"),
        _refusal(PermissionDenied, rule, theirs.exec, "s", ["cat", "/home/keys/master.pem"]),
        _refusal(PermissionDenied, rule, theirs.up, timeout=60),
    ]  # fmt: skip
    _audited(core, "workflows.up", "services.s.volumes[0]")
    assert user.shells.list() == []
    _clean(secrets, *said)


# -- (g) MASTER's operations --------------------------------------------------------------


def test_every_operation_of_masters_is_403(
    user: Engine, master: Engine, server_url: str, core: EngineCore, home: Path,
    secrets: list[bytes],
) -> None:  # fmt: skip
    record = core.keys.get(NEW_USER)
    assert record is not None
    headers = {"Authorization": f"Bearer {core.auth.issue(record, 600).token}"}
    masters = [op for op in ops.OPERATIONS.values() if op.permission == Permission.MASTER]
    assert {op.name for op in masters} >= {
        "keys.list", "keys.get", "keys.register", "keys.update", "keys.rotate",
        "keys.unregister", "audit.list", "bridges.token", "bridges.drain", "bridges.remove",
    }  # fmt: skip
    said: list[Any] = []
    with httpx.Client(base_url=server_url, headers=headers, timeout=30) as http:
        for op in masters:
            path = op.path.format(**{p: NEW_USER for p in op.path_params})
            body = None if op.method in ("GET", "DELETE") else {}
            reply = http.request(op.method, path, json=body)
            assert reply.status_code == 403, (op.name, reply.status_code, reply.text)
            assert reply.json()["error"]["code"] == "permission_denied", reply.text
            said.append(reply.text)
    pair = generate_key_pair(home.parent / "second.pem", "ed25519")
    keys = user.keys
    for attempt, args, kw in [
        (keys.list, (), {}),
        (keys.get, ("master",), {}),
        (keys.register, (pair.public, "root-of-mine", Permission.MASTER), {}),
        (keys.update, (NEW_USER,), {"permissions": Permission.MASTER}),
        (keys.update, (NEW_USER,), {"workflow_policy": "privileged"}),
        (keys.update, (NEW_USER,), {"run_as": "root"}),
        (keys.rotate, ("master", pair.public), {}),
        (keys.unregister, ("master",), {}),
        (user.bridges.token, (), {}),
        (user._call, (ops.audit.LIST,), {}),
    ]:
        said.append(_refusal(PermissionDenied, "needs MASTER", attempt, *args, **kw))
    mine = master.keys.get(NEW_USER)
    assert set(mine.permissions) == set(str(DEFAULT_PERMISSIONS).split(","))
    assert (mine.run_as, mine.workflow_policy) == (None, None)
    assert {k.identity for k in master.keys.list()} == {"master", NEW_USER}
    assert user.whoami().permissions == mine.permissions
    _clean(secrets, *said)
