"""Shells attacked over HTTP with real keys (issue 8, section 2).

Each test is an attack the review made against the old engine, which ran every host
shell as the engine user (root here) with the engine's environment, and let any SHELL
key reach any session: it now fails to reach what it reached.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dxflow import (
    Engine,
    EngineUnavailable,
    InvalidRequest,
    NotFound,
    Permission,
    PermissionDenied,
)
from dxflow import _operations as ops
from dxflow._core import EngineCore
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow.models import ShellRef

from ..conftest import EngineFactory, KeyFactory, RestClient
from ..docker.images import BUSYBOX_IMAGE

RUN_AS = "dxflow"  # the engine's default run_as
CANARY = "canary-engine-secret-4f1c"
_names = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def run_as_user() -> pwd.struct_passwd:
    """The unprivileged user scripts/setup.sh makes; made here when it is missing."""
    if os.geteuid() != 0:
        pytest.fail("these tests attack an engine that runs as root: run them as root")
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--create-home", "--shell", "/bin/bash",
             RUN_AS], check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return pwd.getpwnam(RUN_AS)


@pytest.fixture
def home() -> Iterator[Path]:
    """An engine home whose parents anyone may cross (unlike pytest's 0700 tmp_path), made
    0755 beforehand: only the engine's own modes can keep the run-as user out."""
    base = Path(tempfile.mkdtemp(prefix="dxflow-shell-sec-"))
    base.chmod(0o755)
    (base / "home" / "keys").mkdir(parents=True, mode=0o755)
    (base / "home").chmod(0o755)
    (base / "home" / "keys").chmod(0o755)
    yield base / "home"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    """A secret in the engine's own environment (the engine is this process)."""
    monkeypatch.setenv("DXFLOW_CANARY_TOKEN", CANARY)
    return CANARY


def _engine_as(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path, permissions: Permission,
    run_as: str | None = None,
) -> Engine:  # fmt: skip
    name = f"key{next(_names)}"
    pair = generate_key_pair(tmp_path / f"{name}.pem", "ed25519")
    core.keys.add(name, load_private_key(pair.private).public, permissions, run_as=run_as)
    return make_engine(pair.private)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_a_shell_key_cannot_read_the_engine_secrets(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path, home: Path,
    run_as_user: pwd.struct_passwd, canary: str,
) -> None:  # fmt: skip
    sh = _engine_as(core, make_engine, tmp_path, Permission.SHELL).shells.create("attack")
    assert sh.info.state == "running" and sh.info.pid
    assert (sh.info.user, sh.info.owner) == (RUN_AS, core.shells.get(
        core.local_context(), ShellRef(name="attack")).owner)  # fmt: skip
    assert sh.info.owner and sh.info.owner.startswith("key")
    assert _uid_of(sh.info.pid) == run_as_user.pw_uid  # the process itself, not just `id`
    status = Path(f"/proc/{sh.info.pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status  # set-uid files never make it root again
    assert sh.run("id -u").output == f"{run_as_user.pw_uid}\n"
    assert "0" not in sh.run("id -G").output.split()  # no root group either
    assert sh.run("pwd").output == f"{run_as_user.pw_dir}\n"
    # Nothing of the holder leaks in: the terminal (0-2) and bash's own copy (255) only.
    assert set(os.listdir(f"/proc/{sh.info.pid}/fd")) <= {"0", "1", "2", "255"}
    if os.path.exists("/var/run/docker.sock"):  # Docker is root: the user must not reach it
        docker = sh.run("[ -w /var/run/docker.sock ] && echo reachable || echo refused")
        assert docker.output == "refused\n"
    for target in (home / "keys" / "master.pem", home / "secrets" / "token.key"):
        stolen = sh.run(f"cat {target}")
        assert stolen.exit_code != 0 and "Permission denied" in stolen.output, stolen
        assert "PRIVATE KEY" not in stolen.output
    listing = sh.run(f"ls {home}")
    assert listing.exit_code != 0 and "Permission denied" in listing.output
    assert (home.stat().st_mode & 0o777, (home / "keys").stat().st_mode & 0o777) == (0o700,) * 2
    assert (home / "keys" / "master.pem").stat().st_mode & 0o777 == 0o600
    env = dict(
        line.split("=", 1) for line in sh.run("env").output.splitlines() if "=" in line
    )  # fmt: skip
    assert not [key for key in env if key.startswith("DXFLOW_")], env
    # Exactly the clean set at exec (what bash's rc files add later is the user's own).
    started = Path(f"/proc/{sh.info.pid}/environ").read_bytes().split(b"\0")
    names = {item.split(b"=", 1)[0].decode() for item in started if item}
    assert names == {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "TERM", "LANG"}, names
    assert canary not in json.dumps(env)
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (run_as_user.pw_dir, RUN_AS, RUN_AS)
    sh.remove()


def test_master_sessions_stay_the_engine_user(
    engine: Engine, run_as_user: pwd.struct_passwd, canary: str
) -> None:
    sh = engine.shells.create("admin", command="/bin/sh")
    assert sh.run("id -u").output == "0\n" and _uid_of(sh.info.pid or 0) == 0
    assert canary in sh.run("env").output  # an administrator's shell, by design
    sh.remove()


def test_cwd_cannot_open_the_engine_home(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path, home: Path
) -> None:
    shells = _engine_as(core, make_engine, tmp_path, Permission.SHELL).shells
    for cwd in (home, home / "keys"):
        sh = shells.create(cwd=str(cwd), command="/bin/sh")
        assert sh.info.state == "failed" and sh.info.exit_code == 126
        assert f"permission denied: {cwd}" in (sh.info.error or "")
        sh.remove()
    sh = shells.create(cwd="/tmp", command="/bin/sh")  # a folder the user may enter
    assert sh.run("pwd").output == "/tmp\n"
    sh.remove()


def test_a_key_runs_as_its_own_user_and_never_as_root(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path
) -> None:
    nobody = pwd.getpwnam("nobody")
    sh = _engine_as(core, make_engine, tmp_path, Permission.SHELL, "nobody").shells.create()
    assert sh.run("id -un").output == "nobody\n" and _uid_of(sh.info.pid or 0) == nobody.pw_uid
    assert sh.info.command == ["/bin/sh"]  # nobody's shell is nologin: /bin/sh instead
    assert sh.run("pwd").output == "/\n"  # its home does not exist
    sh.remove()
    root = _engine_as(core, make_engine, tmp_path, Permission.SHELL, "root").shells
    with pytest.raises(EngineUnavailable, match="never runs as root"):
        root.create(command="/bin/sh")
    ghost = _engine_as(core, make_engine, tmp_path, Permission.SHELL, "no-such-user").shells
    with pytest.raises(EngineUnavailable, match="useradd --system") as missing:
        ghost.create(command="/bin/sh")
    assert "--run-as" in missing.value.message
    assert core.shells.list(core.local_context(), None).shells == []  # nothing was started


def test_sessions_belong_to_their_creator(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path, engine: Engine,
    rest: RestClient, make_key: KeyFactory,
) -> None:  # fmt: skip
    alice = _engine_as(core, make_engine, tmp_path, Permission.SHELL)
    bob = _engine_as(core, make_engine, tmp_path, Permission.SHELL)
    mine = alice.shells.create("alices", command="/bin/sh")
    mine.run("export MARK=alice-was-here")
    assert [s.name for s in alice.shells.list()] == ["alices"]
    with mine.attach() as channel:  # the owner attaches, and types
        assert channel.hello["mode"] == "rw"
        channel.send("echo typed-by-$MARK\n")
        seen = b""
        while b"typed-by-alice-was-here" not in seen:
            message = channel.recv(timeout=10)
            seen += message if isinstance(message, bytes) else b""
    assert bob.shells.list() == []
    attempts = {
        "get": lambda: bob.shells.get("alices"),
        "read": lambda: bob._call(ops.shells.READ, name="alices"),
        "send": lambda: bob._call(ops.shells.SEND, name="alices", data=b"exit\n"),
        "run": lambda: bob._call(ops.shells.RUN, name="alices", cmd="echo $MARK"),
        "resize": lambda: bob._call(ops.shells.RESIZE, name="alices", rows=5, cols=5),
        "kill": lambda: bob._call(ops.shells.KILL, name="alices", signal="SIGKILL"),
        "remove": lambda: bob._call(ops.shells.REMOVE, name="alices"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(NotFound, match="no shell session 'alices'"):
            attempt()
        assert what and mine.reload().state == "running"
    assert _ws_refusal(core, rest, make_key, "alices") == 4404  # attach: the same answer
    bob.shells.prune()  # bob's prune does not reach alice's sessions
    assert mine.run("echo $MARK").output == "alice-was-here\n"
    assert [s.name for s in engine.shells.list()] == ["alices"]  # MASTER sees every session
    assert engine.shells.get("alices").run("echo $MARK").output == "alice-was-here\n"
    bobs = bob.shells.create(command="/bin/sh")  # a name of bob's own
    assert [s.name for s in alice.shells.list()] == ["alices"]
    assert {s.name for s in engine.shells.list()} == {"alices", bobs.name}
    engine.shells.get("alices").kill("SIGKILL")
    assert engine.shells.get("alices").info.state == "exited"


def _ws_refusal(core: EngineCore, rest: RestClient, make_key: KeyFactory, name: str) -> int:
    """The close code a stranger's raw WebSocket attach gets."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    record = core.keys.get(make_key(Permission.SHELL).private.stem)
    assert record is not None
    token = core.auth.issue(record, 600).token
    url = "ws" + str(rest.base_url).rstrip("/")[4:] + f"/api/shells/{name}/attach"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        first = json.loads(ws.recv(timeout=5))
        assert first["type"] == "error" and first["code"] == "not_found"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_containers_need_workflow_and_recordings_need_object(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path, engine: Engine
) -> None:
    shell_only = _engine_as(core, make_engine, tmp_path, Permission.SHELL)
    with pytest.raises(PermissionDenied, match="with workflow needs WORKFLOW") as denied:
        shell_only.shells.create(workflow="someone-elses", service="db")
    assert denied.value.details["permission"] == "WORKFLOW"
    with pytest.raises(PermissionDenied, match="with record needs OBJECT"):
        shell_only.shells.create(command="/bin/sh", record="planted.cast")
    assert not (core.objects.storage.root / "planted.cast").exists()
    rows = core.state.query("SELECT operation, outcome, detail FROM audit WHERE outcome='denied'")
    assert {(r["operation"], r["detail"]) for r in rows} == {
        ("shells.create", "needs WORKFLOW with workflow"),
        ("shells.create", "needs OBJECT with record"),
    }
    both = _engine_as(core, make_engine, tmp_path, Permission.SHELL | Permission.WORKFLOW)
    with pytest.raises(NotFound):  # allowed through: there is no such workflow
        both.shells.create(workflow="nope", service="db")
    recorder = _engine_as(core, make_engine, tmp_path, Permission.SHELL | Permission.OBJECT)
    sh = recorder.shells.create(command="/bin/sh", record="casts/mine.cast")
    sh.run("echo recorded")
    sh.remove()
    assert "recorded" in (core.objects.storage.root / "casts" / "mine.cast").read_text()


def test_a_recording_never_follows_a_link_planted_in_storage(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    storage = core.objects.storage.root
    (storage / "via").symlink_to(outside)  # what a container binding storage could plant
    (storage / "logs").mkdir()
    (storage / "logs" / "x.cast").symlink_to(outside / "x.cast")
    recorder = _engine_as(core, make_engine, tmp_path, Permission.SHELL | Permission.OBJECT)
    for path in ("via/x.cast", "logs/x.cast"):
        with pytest.raises(InvalidRequest):
            recorder.shells.create(command="/bin/sh", record=path)
    assert os.listdir(outside) == []
    assert recorder.shells.list() == []


@pytest.fixture
def busy_workflow(engine: Engine, docker_ready: None) -> Iterator[str]:
    import docker

    name = f"dxsec{os.getpid()}-{next(_names)}"
    wf = engine.workflows.create(name, {"services": {"box": {
        "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "init": True}}})  # fmt: skip
    wf.up(timeout=60)
    yield name
    client = docker.from_env()
    label = f"com.docker.compose.project={name}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()
    client.close()


def test_container_shell_variables_stay_off_command_lines(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path, busy_workflow: str
) -> None:
    secret = f"hunter2-{os.getpid()}-value with spaces"
    owner = _engine_as(core, make_engine, tmp_path, Permission.SHELL | Permission.WORKFLOW)
    sh = owner.shells.create(workflow=busy_workflow, service="box", env={"API_TOKEN": secret})
    assert sh.run('echo "[$API_TOKEN]"').output == f"[{secret}]\n"  # it reached the shell
    assert secret not in json.dumps(sh.info.command) and "--env-file=/dev/fd/3" in sh.info.command
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30)
    assert "hunter2" not in ps.stdout
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                assert b"hunter2" not in (entry / "cmdline").read_bytes(), entry
            except OSError:
                continue  # gone meanwhile
    # The docker CLI runs on the host: the caller's variables never reach its environment
    # (LD_PRELOAD, DOCKER_HOST... would steer a root process).
    assert b"hunter2" not in Path(f"/proc/{sh.info.pid}/environ").read_bytes()
    steer = owner.shells.create(
        workflow=busy_workflow, service="box", env={"DOCKER_HOST": "tcp://192.0.2.1:9"}
    )
    assert steer.run("echo $DOCKER_HOST").output == "tcp://192.0.2.1:9\n"  # container only
    with pytest.raises(Exception, match="line break"):
        owner.shells.create(workflow=busy_workflow, service="box", env={"X": "a\nb"})
    sh.remove()
    steer.remove()


def test_a_key_made_read_only_watches_its_own_sessions(
    core: EngineCore, make_engine: EngineFactory, tmp_path: Path, engine: Engine
) -> None:
    from dxflow.models import KeyUpdate

    name = f"key{next(_names)}"
    pair = generate_key_pair(tmp_path / f"{name}.pem", "ed25519")
    core.keys.add(name, load_private_key(pair.private).public, Permission.SHELL)
    make_engine(pair.private).shells.create("kept", command="/bin/sh")
    update = KeyUpdate(identity=name, permissions=["SHELL", "READ_ONLY"])
    core.keys.update(core.local_context(), update)
    watcher = make_engine(pair.private)
    assert [s.name for s in watcher.shells.list()] == ["kept"]
    with pytest.raises(PermissionDenied, match="READ_ONLY"):
        watcher.shells.get("kept").run("true")
    with watcher.shells.get("kept").attach() as channel:
        assert channel.hello["mode"] == "ro"
