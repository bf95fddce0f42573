"""The Docker adapter and the docker workflow runtime against the real Docker Engine:
`down` with a network other containers hold, container shells at the configured daemon."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import docker
import pytest

import dxflow
from dxflow import DockerUnavailable, Engine
from dxflow.models import WorkflowEvent

from ..docker.images import BUSYBOX_IMAGE

pytestmark = pytest.mark.usefixtures("docker_ready")

_SLEEPER = {"image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "init": True}


def _network(client: Any, name: str) -> Any:
    return next((n for n in client.networks.list(names=[name]) if n.name == name), None)


def _foreign(client: Any, network: str) -> Any:
    """A container no workflow knows of, attached to `network`."""
    return client.containers.run(
        BUSYBOX_IMAGE, ["sleep", "3600"], detach=True, init=True, network=network
    )


def test_down_waits_for_endpoints_still_detaching(
    engine: Engine, project_name: str, docker_client: Any
) -> None:
    wf = engine.workflows.create(project_name, {"services": {"app": _SLEEPER}})
    wf.up(timeout=60)
    network = f"{project_name}_default"
    foreign = _foreign(docker_client, network)
    events: list[WorkflowEvent] = []

    def progress(event: WorkflowEvent) -> None:
        events.append(event)
        if event.detail and event.detail.startswith("waiting for the endpoints"):
            foreign.remove(force=True)  # the endpoint goes while down waits for it

    try:
        wf.down(progress=progress)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            foreign.remove(force=True)
    details = [e.detail for e in events if e.action == "network"]
    assert f"waiting for the endpoints of {network} to detach" in details
    assert f"removed {network}" in details
    assert events[-1].action == "done" and events[-1].detail is None
    assert _network(docker_client, network) is None
    assert wf.status().state == "missing"


def test_down_leaves_a_busy_network_reports_it_and_up_reuses_it(
    tmp_path: Path, project_name: str, docker_client: Any
) -> None:
    compose = {
        "services": {"app": {**_SLEEPER, "volumes": ["data:/data"]}},
        "volumes": {"data": {}},
    }
    network, volume = f"{project_name}_default", f"{project_name}_data"
    with dxflow.Engine(home=tmp_path / "home") as engine:
        wf = engine.workflows.create(project_name, compose)
        wf.up(timeout=60)
        foreign = _foreign(docker_client, network)
        try:
            events: list[WorkflowEvent] = []
            wf.down(volumes=True, progress=events.append)  # finishes, does not raise
            done = events[-1]
            assert done.action == "done" and done.detail is not None
            assert f"network {network} left in place" in done.detail
            assert foreign.name in done.detail and "docker network disconnect" in done.detail
            assert any(e.action == "network" and e.detail == done.detail for e in events)
            # everything else went: the containers and, as asked, the volume
            assert wf.status().state == "missing"
            assert docker_client.volumes.list(filters={"name": volume}) == []
            assert _network(docker_client, network) is not None

            status = wf.up(timeout=60)  # the leftover network is reused
            assert status.state == "running"
        finally:
            foreign.remove(force=True)
        events = []
        wf.down(volumes=True, progress=events.append)  # nothing in the way any more
        assert events[-1].detail is None
        assert _network(docker_client, network) is None


def test_container_shells_use_the_configured_docker_host(
    tmp_path: Path, project_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's docker_host names the daemon through a path of its own; the
    # environment names none there: a shell that followed it could not open.
    link = tmp_path / "docker.sock"
    link.symlink_to("/var/run/docker.sock")
    monkeypatch.setenv("DXFLOW_DOCKER_HOST", f"unix://{link}")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/dxflow-test/docker.sock")
    with dxflow.Engine(home=tmp_path / "home") as engine:
        wf = engine.workflows.create(project_name, {"services": {"box": _SLEEPER}})
        wf.up(timeout=60)
        sh = engine.shells.create(workflow=project_name, service="box")
        try:
            assert sh.run("echo in-$((40 + 2))").output == "in-42\n"
            environ = Path(f"/proc/{sh.info.pid}/environ").read_bytes().split(b"\0")
            assert f"DOCKER_HOST=unix://{link}".encode() in environ
        finally:
            sh.remove()
            wf.down()


def test_an_unreachable_docker_host_is_docker_unavailable(
    tmp_path: Path, project_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = "unix:///nonexistent/dxflow-test/docker.sock"
    monkeypatch.setenv("DXFLOW_DOCKER_HOST", bogus)
    with dxflow.Engine(home=tmp_path / "home") as engine:
        wf = engine.workflows.create(project_name, {"services": {"box": _SLEEPER}})
        with pytest.raises(DockerUnavailable, match=r"/nonexistent/dxflow-test/docker\.sock"):
            engine.shells.create(workflow=project_name, service="box")
        assert engine.shells.list() == []  # no shell opened on another daemon
        with pytest.raises(DockerUnavailable, match="not reachable"):
            wf.status()
        with pytest.raises(DockerUnavailable):
            wf.up(timeout=30)
        assert not engine.info().docker.available
