"""The engine's config sets the default workflow policy and the host paths, over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest

from dxflow import Permission, PermissionDenied
from dxflow._core import EngineCore

from ..conftest import EngineFactory, KeyFactory
from ..docker.images import BUSYBOX_IMAGE

LABEL = "com.docker.compose.project"
NAME = f"dxcfg{os.getpid()}"  # unique on a Docker Engine shared by test runs


@pytest.fixture
def transport() -> str:
    return "http"


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "note.txt").write_text("from the operator's folder\n")
    return folder


@pytest.fixture
def home(tmp_path: Path, shared: Path) -> Path:
    """An engine home whose config.toml makes `restricted` the default, with a host path."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'workflow_policy = "restricted"\nhost_paths = ["{shared}"]\n'
    )
    return home


def _compose(shared: Path) -> dict[str, object]:
    service = {
        "image": BUSYBOX_IMAGE,
        "command": ["sleep", "3600"],
        "stop_grace_period": "1s",
        "volumes": [f"{shared}:/shared:ro"],
    }
    return {"services": {"s": service}}


def test_the_engine_default_applies_and_a_key_may_have_its_own(
    core: EngineCore,
    make_key: KeyFactory,
    make_engine: EngineFactory,
    shared: Path,
    docker_client: docker.DockerClient,
    docker_ready: None,
) -> None:
    assert core.config.workflow_policy == "restricted"
    default = make_engine(make_key(Permission.WORKFLOW).private)
    with pytest.raises(PermissionDenied) as caught:
        default.workflows.create(f"{NAME}-a", _compose(shared))
    assert "bind mounts are not allowed (policy restricted)" in caught.value.message

    pair = make_key(Permission.WORKFLOW, identity="baseline-key")
    make_engine().keys.update("baseline-key", workflow_policy="baseline")
    own = make_engine(pair.private)
    wf = own.workflows.create(f"{NAME}-b", _compose(shared))  # a host path the operator listed
    try:
        wf.up(timeout=60)
        result = wf.exec("s", ["cat", "/shared/note.txt"])
        assert (result.exit_code, result.output) == (0, "from the operator's folder\n")
        wf.down()
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL}={NAME}-b"}
        ):
            container.remove(force=True)
