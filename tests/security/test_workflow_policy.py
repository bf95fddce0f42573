"""Attacks through workflows, over HTTP with real non-MASTER keys and a real Docker Engine.

Each escalation the security review reached (issue 8, section 1) is tried again and must
now be refused at create (403 naming the Compose key, the value and the rule), leave no
container behind, and be audited with the fragment; an allowed workflow still runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import docker
import pytest

from dxflow import Engine, InvalidRequest, Permission, PermissionDenied
from dxflow import _operations as ops
from dxflow._core import EngineCore
from dxflow._transports._http import HttpTransport

from ..conftest import EngineFactory, KeyFactory
from ..docker.images import BUSYBOX_IMAGE

KEY_TEXT = "-----BEGIN PRIVATE KEY-----"
LABEL = "com.docker.compose.project"


@pytest.fixture
def transport() -> str:
    return "http"  # attacks come over the network, with real tokens


@pytest.fixture
def name(project_name: str) -> str:
    return project_name


@pytest.fixture
def attacker(make_key: KeyFactory, make_engine: EngineFactory) -> Engine:
    """A WORKFLOW-only key, no policy of its own: the engine default (baseline)."""
    engine = make_engine(make_key(Permission.WORKFLOW).private)
    assert isinstance(engine._transport, HttpTransport)  # a real HTTP round trip
    return engine


@pytest.fixture
def master(make_engine: EngineFactory) -> Engine:
    return make_engine()


def _containers(client: docker.DockerClient, project: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL}={project}"}))


def _service(**keys: Any) -> dict[str, Any]:
    return {"services": {"s": {"image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], **keys}}}


def _refused(engine: Engine, name: str, compose: Any, fragment: str, **params: Any) -> str:
    with pytest.raises(PermissionDenied) as caught:
        engine._call(ops.workflows.CREATE, name=name, compose=compose, **params)
    message = caught.value.message
    assert fragment in message, message
    assert "(policy baseline)" in message
    assert KEY_TEXT not in message
    return message


def _audited(core: EngineCore, operation: str, fragment: str) -> None:
    rows = core.state.query(
        "SELECT outcome, detail FROM audit WHERE operation = ? ORDER BY time DESC LIMIT 1",
        (operation,),
    )
    assert rows and rows[0]["outcome"] == "error:permission_denied", rows
    assert fragment in (rows[0]["detail"] or ""), rows[0]["detail"]


def test_root_bind_to_read_the_master_key_is_refused_and_nothing_runs(
    attacker: Engine, core: EngineCore, docker_client: docker.DockerClient, name: str
) -> None:
    key = core.config.home.master_key
    compose = _service(volumes=["/:/host:ro"], command=["cat", f"/host{key}"])
    fragment = "services.s.volumes[0]: '/' is outside the storage root"
    _refused(attacker, name, compose, fragment)
    _audited(core, "workflows.create", fragment)
    assert [w.name for w in attacker.workflows.list()] == []
    assert _containers(docker_client, name) == []


ESCALATIONS = [
    ("home-bind", lambda home: _service(volumes=[f"{home}:/h"]), "services.s.volumes[0]"),
    (
        "keys-bind",
        lambda home: _service(volumes=[f"{home}/keys:/k:ro"]),
        "inside the engine home",
    ),
    ("build-home", lambda home: _service(build=str(home)), "services.s.build.context"),
    (
        "docker-socket",
        lambda home: _service(volumes=["/var/run/docker.sock:/var/run/docker.sock"]),
        "Docker socket",
    ),
    ("cap-sys-admin", lambda home: _service(cap_add=["SYS_ADMIN"]), "services.s.cap_add[0]"),
    ("network-host", lambda home: _service(network_mode="host"), "services.s.network_mode"),
    ("devices", lambda home: _service(devices=["/dev/mem"]), "services.s.devices[0]"),
    ("privileged", lambda home: _service(privileged=True), "services.s.privileged: True"),
    (
        "secret-key",
        lambda home: {
            **_service(secrets=["k"]),
            "secrets": {"k": {"file": f"{home}/keys/master.pem"}},
        },
        "secrets.k.file",
    ),
    (
        "label-engine",  # its containers would pass as another engine's (audit G5)
        lambda home: _service(labels={"io.dxflow.engine": "other"}),
        "services.s.labels.io.dxflow.engine: 'other' is a reserved label",
    ),
]


@pytest.mark.parametrize(
    ("case", "compose", "fragment"), ESCALATIONS, ids=[c[0] for c in ESCALATIONS]
)
def test_escalations_are_refused_at_create(
    attacker: Engine,
    core: EngineCore,
    docker_client: docker.DockerClient,
    name: str,
    case: str,
    compose: Any,
    fragment: str,
) -> None:
    _refused(attacker, name, compose(core.config.home.root), fragment)
    _audited(core, "workflows.create", fragment)
    assert attacker.workflows.list() == []
    assert _containers(docker_client, name) == []


def test_a_missing_bind_source_is_refused_not_created(
    attacker: Engine, core: EngineCore, name: str
) -> None:
    missing = core.config.storage_root / "made-by-docker"
    _refused(attacker, name, _service(volumes=[f"{missing}:/d"]), "never created")
    assert not missing.exists()


def test_env_files_pointing_at_the_master_key_are_refused_unread(
    attacker: Engine, core: EngineCore, name: str
) -> None:
    key = str(core.config.home.master_key)
    message = _refused(attacker, name, _service(), "env_file: ", env_file=[key])
    assert "inside the engine home" in message
    message = _refused(attacker, name, _service(env_file=key), "services.s.env_file: ")
    assert "inside the engine home" in message
    link = core.config.storage_root / "innocent.env"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(key)  # a link in storage that leads to the key
    message = _refused(attacker, name, _service(env_file=str(link)), "resolves to")
    _audited(core, "workflows.create", "services.s.env_file")


def _environ_values() -> set[str]:
    """Values of the engine's environment (the server runs in this process)."""
    raw = Path("/proc/self/environ").read_bytes().split(b"\0")
    pairs = [item.decode(errors="replace").partition("=") for item in raw if b"=" in item]
    return {value for _, _, value in pairs if len(value) >= 6}


def test_a_link_a_container_plants_is_refused_on_the_next_config(
    attacker: Engine,
    make_key: KeyFactory,
    make_engine: EngineFactory,
    core: EngineCore,
    docker_client: docker.DockerClient,
    name: str,
    tmp_path: Path,
) -> None:
    """A baseline container binds its workflow's folder and swaps the env file for a link to
    a host file, then to the engine's /proc/self/environ: the next `config` (its author's,
    a READ_ONLY key's) is the policy's 403 and no secret comes back (issue 8, audit G1)."""
    secret = "hunter2-outside-secret"
    outside = tmp_path / "outside.env"
    outside.write_text(f"DB_PASSWORD={secret}\n")
    folder = core.config.storage_root / "proj"
    folder.mkdir(parents=True)
    env_file = folder / "app.env"
    env_file.write_text("A=1\n")
    compose = _service(
        env_file=str(env_file),
        environment={"X": "${DB_PASSWORD:-none}"},
        volumes=[f"{folder}:/proj"],
        stop_grace_period="1s",
    )
    wf = attacker.workflows.create(name, compose, env_file=[str(env_file)])
    wf.up(timeout=60)
    reader = make_engine(make_key(Permission.WORKFLOW | Permission.READ_ONLY).private)
    before = reader._call(ops.workflows.CONFIG, name=name)
    assert before.services["s"].environment["X"] == "none"

    def refused_everywhere(target: str, leaked: set[str]) -> None:
        assert os.readlink(env_file) == target  # the container planted it
        for engine in (attacker, reader):
            with pytest.raises(PermissionDenied) as caught:
                engine._call(ops.workflows.CONFIG, name=name)
            message = caught.value.message
            assert f"env_file: '{env_file}' is outside the storage root" in message, message
            assert "(policy baseline)" in message
            listed = engine._call(ops.workflows.LIST).model_dump_json()
            for text in (message, listed):
                assert not any(value in text for value in leaked), text

    planted = wf.exec("s", ["/bin/busybox", "ln", "-sf", str(outside), "/proj/app.env"])
    assert planted.exit_code == 0, planted.output
    refused_everywhere(str(outside), {secret})
    with pytest.raises(PermissionDenied, match="env_file"):  # no way in through exec either
        wf.exec("s", ["true"])
    _audited(core, "workflows.exec", "env_file")

    shown = before.model_dump_json() + str(env_file) + str(tmp_path)
    environ = {value for value in _environ_values() if value not in shown}
    (container,) = _containers(docker_client, name)  # the container's own process, again
    code, output = container.exec_run(
        ["/bin/busybox", "ln", "-sf", "/proc/self/environ", "/proj/app.env"]
    )
    assert code == 0, output
    refused_everywhere("/proc/self/environ", environ)

    wf.down()  # a planted link never keeps a workflow up: down reads no refused file
    assert _containers(docker_client, name) == []


def test_update_cannot_smuggle_what_create_refuses(
    attacker: Engine, core: EngineCore, name: str
) -> None:
    wf = attacker.workflows.create(name, _service())
    with pytest.raises(PermissionDenied, match=r"services\.s\.privileged"):
        wf.update(compose=_service(privileged=True))
    _audited(core, "workflows.update", "services.s.privileged")
    assert wf.config().services["s"].privileged is False


def test_a_master_privileged_workflow_cannot_be_up_by_a_baseline_key(
    attacker: Engine,
    master: Engine,
    core: EngineCore,
    docker_client: docker.DockerClient,
    name: str,
) -> None:
    master.workflows.create(name, _service(privileged=True, stop_grace_period="1s"))
    theirs = attacker.workflows.get(name)
    with pytest.raises(PermissionDenied, match=r"services\.s\.privileged: True is not allowed"):
        theirs.up(timeout=60)
    _audited(core, "workflows.up", "services.s.privileged")
    assert _containers(docker_client, name) == []


def test_a_baseline_key_cannot_exec_into_what_master_ran(
    attacker: Engine, master: Engine, core: EngineCore, name: str
) -> None:
    home = core.config.home.root  # (privileged containers cannot start on every test host)
    wf = master.workflows.create(
        name, _service(volumes=[f"{home}:/home:ro"], stop_grace_period="1s")
    )
    wf.up(timeout=60)
    with pytest.raises(PermissionDenied, match=r"services\.s\.volumes\[0\]"):
        attacker.workflows.get(name).exec("s", ["cat", "/home/keys/master.pem"])
    _audited(core, "workflows.exec", "services.s.volumes[0]")
    wf.down()


def test_a_baseline_key_gets_no_shell_in_what_master_ran(
    make_key: KeyFactory, make_engine: EngineFactory, master: Engine, core: EngineCore, name: str
) -> None:
    home = core.config.home.root
    wf = master.workflows.create(
        name, _service(volumes=[f"{home}:/home:ro"], stop_grace_period="1s")
    )
    wf.up(timeout=60)
    both = make_engine(make_key(Permission.WORKFLOW | Permission.SHELL).private)
    with pytest.raises(PermissionDenied, match=r"services\.s\.volumes\[0\]"):
        both.shells.create(f"{name}-sh", workflow=name, service="s")
    assert both.shells.list() == []
    wf.down()


def test_a_key_registered_restricted_gets_restricted(
    master: Engine, make_key: KeyFactory, make_engine: EngineFactory, core: EngineCore, name: str
) -> None:
    pair = make_key(None)
    master.keys.register(pair.public, "strict", Permission.WORKFLOW, workflow_policy="restricted")
    strict = make_engine(pair.private)
    data = core.config.storage_root / "data"
    data.mkdir(parents=True)
    with pytest.raises(PermissionDenied) as caught:
        strict.workflows.create(name, _service(volumes=[f"{data}:/d"]))
    message = caught.value.message
    assert "services.s.volumes[0]" in message and "bind mounts are not allowed" in message
    assert "services.s.user: None must be set to a non-root user" in message
    assert "(policy restricted)" in message
    assert "services.s.cap_drop" in message and "services.s.security_opt" in message
    safe = _service(
        user="1000:1000",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        command=["sh", "-c", "id -u; grep -E 'NoNewPrivs|CapEff' /proc/self/status"],
        restart="no",
    )
    wf = strict.workflows.create(name, safe)
    wf.up(timeout=60, wait=False)
    _wait_exited(wf)
    lines = [line.line for line in wf.logs()]
    assert "1000" in lines
    assert any(line.split() == ["NoNewPrivs:", "1"] for line in lines), lines
    assert any(line.split() == ["CapEff:", "0000000000000000"] for line in lines), lines
    with pytest.raises(PermissionDenied, match="is root"):
        wf.exec("s", ["true"], user="root")
    wf.down()


def _wait_exited(wf: Any) -> None:
    import time

    deadline = time.monotonic() + 120  # bounded, not a timing assertion
    while time.monotonic() < deadline:
        states = [c.state for s in wf.status().services for c in s.containers]
        if states and all(state == "exited" for state in states):
            return
        time.sleep(0.2)
    raise AssertionError(f"the one-shot service did not finish: {wf.status()}")


def test_master_can_grant_privileged_to_a_non_master_key(
    master: Engine, make_key: KeyFactory, make_engine: EngineFactory, name: str
) -> None:
    pair = make_key(Permission.WORKFLOW, identity="operator-choice")
    trusted = make_engine(pair.private)
    with pytest.raises(PermissionDenied):
        trusted.workflows.create(name, _service(privileged=True))
    master.keys.update("operator-choice", workflow_policy="privileged")
    wf = trusted.workflows.create(name, _service(privileged=True))
    assert wf.config().services["s"].privileged is True
    master.keys.update("operator-choice", workflow_policy="")  # back to the engine default
    with pytest.raises(PermissionDenied):
        trusted.workflows.get(name).up(timeout=60)


def test_an_allowed_workflow_with_a_bind_in_storage_runs_under_baseline(
    attacker: Engine, core: EngineCore, name: str
) -> None:
    data = core.config.storage_root / "project"
    data.mkdir(parents=True)
    (data / "hello.txt").write_text("hello from storage\n")
    compose = _service(volumes=[f"{data}:/data:ro"], stop_grace_period="1s")
    wf = attacker.workflows.create(name, compose)
    status = wf.up(timeout=60)
    assert [c.state for s in status.services for c in s.containers] == ["running"]
    result = wf.exec("s", ["cat", "/data/hello.txt"])
    assert (result.exit_code, result.output) == (0, "hello from storage\n")
    wf.down()


def test_relative_paths_resolve_in_a_working_dir_inside_storage(
    attacker: Engine, core: EngineCore, name: str
) -> None:
    folder = core.config.storage_root / "proj"
    (folder / "data").mkdir(parents=True)
    compose = _service(volumes=["./data:/d"])
    wf = attacker.workflows.create(name, compose, working_dir=str(folder))
    assert wf.info.working_dir == str(folder)
    assert wf.config().services["s"].volumes[0].source == str(folder / "data")
    _refused(
        attacker,
        f"{name}x",
        _service(volumes=["../../keys:/k"]),
        "inside the engine home",
        working_dir=str(folder),
    )


def test_a_working_dir_in_the_home_is_refused(
    attacker: Engine, core: EngineCore, name: str
) -> None:
    home = str(core.config.home.root)
    _refused(attacker, name, _service(), "working_dir: ", working_dir=home)


def test_compose_path_pointing_at_the_master_key_is_refused_unread(
    attacker: Engine, core: EngineCore, name: str
) -> None:
    key = str(core.config.home.master_key)
    # Only MASTER may name a compose file on the engine host: refused before any read.
    with pytest.raises(InvalidRequest, match="only a MASTER key may name a file") as caught:
        attacker._call(ops.workflows.CREATE, name=name, compose=key)
    assert KEY_TEXT not in caught.value.message
    assert attacker.workflows.list() == []


@pytest.mark.parametrize("who", ["master", "attacker"])
def test_unreadable_env_file_paths_are_4xx_never_500(
    who: str, request: pytest.FixtureRequest, name: str
) -> None:
    engine: Engine = request.getfixturevalue(who)
    for path in ("0" * 4000, "/" + "a" * 300 + "/b"):  # names too long for the kernel
        with pytest.raises((InvalidRequest, PermissionDenied)):
            engine._call(ops.workflows.CREATE, name=name, compose=_service(), env_file=[path])
    assert engine.workflows.list() == []
