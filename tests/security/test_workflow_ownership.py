"""Attacks on what a workflow reaches besides its own containers, over HTTP with real keys.

Found by the review (issue 8): reusing another engine's or tool's project name made `up`
remove its containers as orphans; `external` volumes of other projects could be mounted;
`workflows.projects` listed every project on the Docker Engine; `${VAR}` exposed the
engine's environment, to READ_ONLY keys too through `config` and `env`; an env file that
failed to parse was quoted in the error. Each test now fails to reach what that reached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from dxflow import Conflict, Engine, InvalidRequest, Permission, PermissionDenied
from dxflow import _operations as ops
from dxflow._core import EngineCore
from dxflow._keypairs import load_private_key
from dxflow._transports._http import HttpTransport

from ..conftest import KeyFactory
from ..docker.images import BUSYBOX_IMAGE

COMPOSE_LABELS = {"com.docker.compose.version": "2.29.1", "com.docker.compose.oneoff": "False"}
Open = Callable[[Permission | None], Engine]


@pytest.fixture
def as_key(server_url: str, make_key: KeyFactory, core: EngineCore) -> Iterator[Open]:
    """An engine over real HTTP as a fresh key of `permissions` (None: MASTER)."""
    opened: list[Engine] = []

    def open_as(permissions: Permission | None) -> Engine:
        path = core.config.home.master_key if permissions is None else make_key(permissions).private
        engine = Engine(transport=HttpTransport(server_url, load_private_key(path)))
        opened.append(engine)
        return engine

    yield open_as
    for engine in opened:
        engine.close()


@pytest.fixture
def name(project_name: str) -> str:
    return project_name


def _sleeper(**extra: Any) -> dict[str, Any]:
    service = {"image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "stop_grace_period": "1s"}
    return {**service, **extra}


ONE_SERVICE = {"services": {"mine": _sleeper()}}


def _foreign_container(
    client: docker.DockerClient, project: str, service: str, **labels: str
) -> Any:
    """A container "another tool" made in `project`, as docker compose labels it."""
    return client.containers.run(
        BUSYBOX_IMAGE,
        ["sleep", "3600"],
        name=f"{project}-{service}-1",
        detach=True,
        labels={
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": "1",
            **labels,
        },
    )


@pytest.mark.parametrize(
    "owner",
    [COMPOSE_LABELS, {"io.dxflow.engine": "dxf-0000000000000000", "io.dxflow.workflow": "x"}],
    ids=["docker-compose", "another-engine"],
)
def test_up_never_removes_another_owners_containers_as_orphans(
    as_key: Open, name: str, docker_client: docker.DockerClient, owner: dict[str, str]
) -> None:
    foreign = _foreign_container(docker_client, name, "theirs", **owner)
    workflow = as_key(Permission.WORKFLOW).workflows.create(name, ONE_SERVICE)
    with pytest.raises(Conflict) as caught:
        workflow.up(timeout=60)
    assert f"the Compose project {name!r}" in caught.value.message
    assert f"{name}-theirs-1" in caught.value.message
    assert "Use another workflow name" in caught.value.message
    foreign.reload()
    assert foreign.status == "running"  # untouched
    label = f"com.docker.compose.project={name}"
    assert [c.name for c in docker_client.containers.list(all=True, filters={"label": label})] == [
        foreign.name
    ]  # nothing of the workflow was created either


def test_master_may_take_a_project_over(
    as_key: Open, name: str, docker_client: docker.DockerClient
) -> None:
    foreign = _foreign_container(docker_client, name, "theirs", **COMPOSE_LABELS)
    workflow = as_key(None).workflows.create(name, {"services": {"mine": _sleeper()}})
    workflow.up(timeout=60)  # Compose's rule for MASTER: a project is its name
    with pytest.raises(docker.errors.NotFound):
        foreign.reload()


def test_down_and_stop_leave_another_owners_containers_alone(
    as_key: Open, name: str, docker_client: docker.DockerClient
) -> None:
    workflow = as_key(Permission.WORKFLOW).workflows.create(name, ONE_SERVICE)
    workflow.up(timeout=60)
    foreign = _foreign_container(docker_client, name, "theirs", **COMPOSE_LABELS)
    assert [s.name for s in workflow.status().services] == ["mine"]
    workflow.stop()
    foreign.reload()
    assert foreign.status == "running"
    workflow.down()
    foreign.reload()
    assert foreign.status == "running"
    assert workflow.status().state == "missing"


def test_top_and_logs_show_only_this_engines_containers(
    as_key: Open, name: str, docker_client: docker.DockerClient
) -> None:
    """`top` (issue 10) reaches what `status` reaches: another tool's container in the
    same project shows neither its processes nor its log lines to a WORKFLOW key."""
    workflow = as_key(Permission.WORKFLOW).workflows.create(name, ONE_SERVICE)
    workflow.up(timeout=60)
    foreign = _foreign_container(docker_client, name, "theirs", **COMPOSE_LABELS)
    try:
        top = workflow.top()
        assert [c.service for c in top.containers] == ["mine"]
        assert all(c.container != foreign.name for c in top.containers)
        assert all(line.container != foreign.name for line in workflow.logs())
    finally:
        workflow.down()
        foreign.remove(force=True)


def _with_volume(volume: dict[str, Any]) -> dict[str, Any]:
    return {
        "services": {"mine": _sleeper(volumes=["data:/data"])},
        "volumes": {"data": volume},
    }


@pytest.mark.parametrize(
    ("labels", "external"),
    [
        ({"com.docker.compose.project": "otherproject", **COMPOSE_LABELS}, True),
        ({"io.dxflow.engine": "dxf-0000000000000000", "com.docker.compose.project": "o"}, True),
        ({}, True),  # made with `docker volume create`, for whatever else
        ({"com.docker.compose.project": "otherproject", **COMPOSE_LABELS}, False),
    ],
    ids=["compose-project", "another-engine", "unlabelled", "by-name"],
)
def test_a_volume_of_another_project_cannot_be_mounted(
    as_key: Open,
    name: str,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
    external: bool,
) -> None:
    volume = docker_client.volumes.create(f"{name}-theirs", labels=labels)
    document = _with_volume({"external": external, "name": volume.name})
    workflow = as_key(Permission.WORKFLOW).workflows.create(name, document)
    with pytest.raises(PermissionDenied) as caught:
        workflow.up(timeout=60)
    assert caught.value.message.startswith(f"volumes.data: the volume {volume.name!r} belongs")
    assert "io.dxflow.engine=" in caught.value.message  # how an operator shares one
    assert workflow.status().state == "missing"
    as_key(None).workflows.get(name).up(timeout=60)  # MASTER may
    assert workflow.status().state == "running"


def test_a_volume_labelled_for_this_engine_can_be_mounted(
    as_key: Open, name: str, docker_client: docker.DockerClient, core: EngineCore
) -> None:
    volume = docker_client.volumes.create(
        f"{name}-shared", labels={"io.dxflow.engine": core.engine_id}
    )
    document = _with_volume({"external": True, "name": volume.name})
    workflow = as_key(Permission.WORKFLOW).workflows.create(name, document)
    assert workflow.up(timeout=60).state == "running"
    container = docker_client.containers.get(f"{name}-mine-1")
    assert container.labels["io.dxflow.engine"] == core.engine_id


OTHER_ENGINE = "dxf-0000000000000000"


def test_a_service_cannot_label_its_containers_as_another_engines(
    as_key: Open,
    name: str,
    docker_client: docker.DockerClient,
    core: EngineCore,
    make_key: KeyFactory,
    server_url: str,
) -> None:
    """Audit G5: a service's own `labels:` overrode the owner label, so a key's containers
    could pass as another engine's, or as nobody's (out of reach of its own `down`)."""
    forged = {"services": {"mine": _sleeper(labels={"io.dxflow.engine": OTHER_ENGINE})}}
    pair = make_key(Permission.WORKFLOW, identity="trusted")
    as_key(None).keys.update("trusted", workflow_policy="privileged")  # no MASTER still
    with Engine(transport=HttpTransport(server_url, load_private_key(pair.private))) as trusted:
        baseline = as_key(Permission.WORKFLOW)
        for engine, value in ((baseline, OTHER_ENGINE), (baseline, ""), (trusted, OTHER_ENGINE)):
            document = {"services": {"mine": _sleeper(labels={"io.dxflow.engine": value})}}
            with pytest.raises(PermissionDenied) as caught:
                engine.workflows.create(name, document)
            assert f"services.mine.labels.io.dxflow.engine: {value!r} is a reserved label" in (
                caught.value.message
            )
    label = f"com.docker.compose.project={name}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    # MASTER may write the label, but the engine's own still wins: the container is ours.
    workflow = as_key(None).workflows.create(name, forged)
    workflow.up(timeout=60)
    container = docker_client.containers.get(f"{name}-mine-1")
    assert container.labels["io.dxflow.engine"] == core.engine_id
    workflow.down()
    assert docker_client.containers.list(all=True, filters={"label": label}) == []


@pytest.mark.parametrize("external", [True, False], ids=["external", "by-name"])
def test_a_network_of_another_engine_can_be_neither_used_nor_removed(
    as_key: Open, name: str, docker_client: docker.DockerClient, external: bool
) -> None:
    """Made with a plain `docker network create`, labelled as another engine's: named as
    `external`, or with the name the workflow's own network would have."""
    key = "net"
    network_name = f"{name}-theirs" if external else f"{name}_{key}"
    network = docker_client.networks.create(
        network_name,
        labels={"io.dxflow.engine": OTHER_ENGINE, "com.docker.compose.project": "otherproject"},
    )
    spec: dict[str, Any] = {"external": True, "name": network_name} if external else {}
    document = {"services": {"mine": _sleeper(networks=[key])}, "networks": {key: spec}}
    try:
        workflow = as_key(Permission.WORKFLOW).workflows.create(name, document)
        with pytest.raises(PermissionDenied) as caught:
            workflow.up(timeout=60)
        assert caught.value.message.startswith(
            f"networks.{key}: the network {network_name!r} belongs to dxflow engine {OTHER_ENGINE}"
        ), caught.value.message
        assert workflow.status().state == "missing"
        workflow.down()
        workflow.remove()
        network.reload()  # still there, untouched
        assert network.attrs["Labels"]["io.dxflow.engine"] == OTHER_ENGINE
        assert network.containers == []
    finally:
        network.remove()


def test_projects_lists_only_this_engines_projects_but_to_master(
    as_key: Open, name: str, docker_client: docker.DockerClient, core: EngineCore
) -> None:
    other = f"{name}-other"
    try:
        _foreign_container(docker_client, other, "theirs", **COMPOSE_LABELS)
        as_key(Permission.WORKFLOW).workflows.create(name, {"services": {"m": _sleeper()}}).up()
        for permissions in (Permission.WORKFLOW, Permission.WORKFLOW | Permission.READ_ONLY):
            listed = {p.name: p for p in as_key(permissions).workflows.projects()}
            assert name in listed and other not in listed
            assert listed[name].owner == core.engine_id and listed[name].managed
        everything = {p.name: p for p in as_key(None).workflows.projects()}
        assert everything[name].owner == core.engine_id
        assert everything[other].owner is None and not everything[other].managed
    finally:
        docker_client.containers.get(f"{other}-theirs-1").remove(force=True)


SECRET = f"engine-secret-{os.getpid()}"
PROBE = {
    "services": {
        "app": {
            "image": BUSYBOX_IMAGE,
            "environment": {
                "S": "${DXFLOW_PROBE_SECRET:-unset}",
                "H": "${HOME}",
                "P": "${PATH}",
                "FROM_ENGINE": None,  # `- KEY` takes the project's value, if any
            },
        }
    }
}


@pytest.fixture
def engine_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DXFLOW_PROBE_SECRET", SECRET)
    monkeypatch.setenv("FROM_ENGINE", SECRET)
    return SECRET


def test_the_engines_environment_is_not_interpolated_for_non_master(
    as_key: Open, engine_secret: str, docker_client: docker.DockerClient
) -> None:
    name = f"dxs{os.getpid()}-env"
    writer = as_key(Permission.WORKFLOW)
    writer.workflows.create(name, PROBE)
    for reader in (writer, as_key(Permission.WORKFLOW | Permission.READ_ONLY)):
        workflow = reader.workflows.get(name)
        environment = workflow.config().services["app"].environment
        assert environment == {"S": "unset", "H": "", "P": "", "FROM_ENGINE": None}
        assert engine_secret not in workflow.config().model_dump_json()
        for variable in ("DXFLOW_PROBE_SECRET", "HOME", "PATH", "FROM_ENGINE"):
            explained = workflow.explain_env("app", variable)
            assert explained.value is None and explained.source == "unset", variable


def test_master_still_reads_the_engines_environment_until_someone_else_writes(
    as_key: Open, engine_secret: str
) -> None:
    name = f"dxs{os.getpid()}-master-env"
    master = as_key(None)
    master.workflows.create(name, PROBE)
    environment = master.workflows.get(name).config().services["app"].environment
    assert environment["S"] == engine_secret and environment["H"] == os.environ["HOME"]
    explained = master.workflows.get(name).explain_env("app", "DXFLOW_PROBE_SECRET")
    assert (explained.value, explained.source) == (engine_secret, "process")
    # Others never read the engine's environment through `env`, used by the project or not.
    for permissions in (Permission.WORKFLOW, Permission.WORKFLOW | Permission.READ_ONLY):
        workflow = as_key(permissions).workflows.get(name)
        for variable in ("DXFLOW_PROBE_SECRET", "HOME", "PATH"):
            explained = workflow.explain_env("app", variable)
            assert (explained.value, explained.source) == (None, "process"), variable
    # A non-MASTER writer re-saves MASTER's workflow: what it reads is now only its own.
    as_key(Permission.WORKFLOW).workflows.get(name).update(env={"X": "1"})
    reader = as_key(Permission.WORKFLOW | Permission.READ_ONLY).workflows.get(name)
    assert reader.config().services["app"].environment["S"] == "unset"
    assert reader.explain_env("app", "DXFLOW_PROBE_SECRET").value is None


PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"


@pytest.mark.parametrize("level", ["request", "service"])
def test_an_env_file_that_fails_to_parse_is_never_quoted(
    as_key: Open, core: EngineCore, level: str
) -> None:
    storage = Path(core.config.storage_root)
    storage.mkdir(parents=True, exist_ok=True)
    pem = storage / "key.env"
    pem.write_text(PEM)
    service: dict[str, Any] = {"image": BUSYBOX_IMAGE}
    options: dict[str, Any] = {}
    if level == "request":
        options["env_file"] = [pem]
    else:
        service["env_file"] = [str(pem)]
    workflows = as_key(Permission.WORKFLOW).workflows
    with pytest.raises(InvalidRequest) as caught:
        workflows.create(f"dxs{os.getpid()}-pem", {"services": {"s": service}}, **options)
    message = str(caught.value)
    assert f"{pem}: line 1: expected KEY=VALUE" in message
    assert "BEGIN" not in message and "MIIE" not in message
    assert "BEGIN" not in repr(caught.value.details)


def test_a_compose_path_on_the_engine_host_is_read_for_master_only(
    as_key: Open, core: EngineCore
) -> None:
    """The SDK reads a compose file on the caller's side; a raw request naming a file on
    the engine host (a key, a config file) makes the engine read and parse it."""
    target = core.config.home.master_key
    engine = as_key(Permission.WORKFLOW)
    with pytest.raises(InvalidRequest) as caught:
        engine._call(ops.workflows.CREATE, name=f"dxs{os.getpid()}-path", compose=str(target))
    assert caught.value.message.startswith("compose: only a MASTER key may name a file")
    assert "BEGIN" not in str(caught.value)
    master = as_key(None)
    with pytest.raises(InvalidRequest, match="must be a mapping"):  # read, and not YAML
        master._call(ops.workflows.CREATE, name=f"dxs{os.getpid()}-path", compose=str(target))
