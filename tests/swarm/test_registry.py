"""The swarm runtime with a registry (tests/testbed/swarm.py, `SwarmBed(registry=True)`):
a service with `build:` is built on the manager, pushed to the engine's `registry`, and
every node pulls it from there.

On this bed the busybox test image is only on the manager, and the nodes pull (no
DOCKER_SERVICE_PREFER_OFFLINE_IMAGE): a task runs on a worker only if that worker pulled
its image from the bed's registry. Every service uses `endpoint_mode: dnsrr` (no IPVS
here, TESTBEDS.md)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import dxflow
from dxflow import WorkflowFailed
from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.netns import wait_until
from tests.testbed.swarm import SwarmBed

pytestmark = pytest.mark.timeout(180)

MESSAGE = "carried by the registry to every node"
EngineMaker = Callable[..., Any]


@pytest.fixture
def engines(
    swarm_registry: SwarmBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EngineMaker]:
    """`engines(registry=...)`: an in-process engine whose Docker Engine is the registry
    bed's manager, with the engine config `registry` set (DXFLOW_REGISTRY) or not."""
    monkeypatch.setenv("DXFLOW_DOCKER_HOST", swarm_registry.manager.url)
    opened: list[Any] = []

    def make(registry: str = "") -> Any:
        if registry:
            monkeypatch.setenv("DXFLOW_REGISTRY", registry)
        else:
            monkeypatch.delenv("DXFLOW_REGISTRY", raising=False)
        engine = dxflow.Engine(home=tmp_path / f"home{len(opened)}")
        opened.append(engine.__enter__())
        return engine

    try:
        yield make
    finally:
        for engine in reversed(opened):
            engine.__exit__(None, None, None)


def app_context(folder: Path) -> Path:
    """A build context: FROM the busybox test image, a file COPY'd in, a CMD that prints
    it and sleeps."""
    folder.mkdir()
    (folder / "message.txt").write_text(f"{MESSAGE}\n")
    (folder / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nCOPY message.txt /message.txt\n"
        'CMD ["sh", "-c", "cat /message.txt; exec sleep 3600"]\n'
    )
    return folder


def built(context: Path, replicas: int = 3) -> dict[str, Any]:
    deploy = {"replicas": replicas, "endpoint_mode": "dnsrr"}
    return {"services": {"app": {"build": str(context), "deploy": deploy}}}


def images_of(bed: SwarmBed, node: Any) -> set[str]:
    """`docker -H NODE image ls`: the node's images as REPOSITORY:TAG."""
    out = subprocess.run(
        ["docker", "-H", bed.node(node).url, "image", "ls", "--format",
         "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return set(out.split())


def running(status: Any, service: str) -> list[Any]:
    found = next(s for s in status.services if s.name == service)
    return [t for t in found.tasks if t.state == "running" and t.desired_state == "running"]


def test_a_built_image_is_pushed_and_every_node_pulls_it(
    engines: EngineMaker, swarm_registry: SwarmBed, tmp_path: Path
) -> None:
    bed = swarm_registry
    reference = f"{bed.registry}/pushed-app"
    for worker in bed.workers:  # what follows is theirs only through the registry
        assert not any(i.startswith(bed.registry) for i in images_of(bed, worker))
        assert f"{BUSYBOX_IMAGE}" not in images_of(bed, worker)
    engine = engines(registry=bed.registry)
    wf = engine.workflows.create("pushed", built(app_context(tmp_path / "app")), runtime="swarm")
    events: list[Any] = []
    wf.up(build=True, timeout=120, progress=events.append)
    actions = [(e.action, e.detail) for e in events if e.service == "app"]
    assert ("pull", f"pushing {reference}") in actions
    assert any(a == "build" for a, _ in actions)
    assert bed.registry_catalog()["pushed-app"] == ["latest"]

    tasks = running(wf.status(), "app")
    assert len(tasks) == 3
    assert {t.node for t in tasks} == {n.name for n in bed.nodes}  # one per node
    service = bed.client().inspect_service("pushed_app")
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == reference
    for worker in bed.workers:
        assert f"{reference}:latest" in images_of(bed, worker)  # pulled from the registry

    def printed() -> list[str]:
        lines = [line.line for line in wf.logs(service="app")]
        return lines if lines.count(MESSAGE) == 3 else []

    assert wait_until(printed, 30, 0.3, "every task printed the built-in file") == [MESSAGE] * 3


ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def test_a_build_without_a_registry_is_refused_and_nothing_runs(
    engines: EngineMaker, swarm_registry: SwarmBed, tmp_path: Path
) -> None:
    bed = swarm_registry
    engine = engines()  # no `registry` in its config
    wf = engine.workflows.create("noreg", built(app_context(tmp_path / "app")), runtime="swarm")
    with pytest.raises(WorkflowFailed) as failed:
        wf.up(build=True, timeout=60)
    message = str(failed.value)
    assert "services.app.build" in message and "`registry`" in message
    api = bed.client()
    # (ended tasks of the last test's removed services may still be listed a moment)
    live = [t for t in api.tasks() if t["Status"]["State"] not in ENDED]
    assert not api.services() and not live
    for node in bed.nodes:
        assert not bed.client(node).containers(all=True)
    assert "noreg-app:latest" not in images_of(bed, bed.manager)  # refused before building
    assert "noreg-app" not in bed.registry_catalog()  # (the registry lives all session)
    assert {s.state for s in wf.status().services} == {"missing"}


def test_an_image_in_no_registry_names_the_key_and_the_nodes(
    engines: EngineMaker, swarm_registry: SwarmBed
) -> None:
    bed = swarm_registry
    engine = engines(registry=bed.registry)
    image = f"{bed.registry}/nowhere:1"
    deploy = {"replicas": 3, "endpoint_mode": "dnsrr"}
    compose = {
        "services": {"web": {"image": image, "command": ["sleep", "3600"], "deploy": deploy}}
    }
    wf = engine.workflows.create("lost", compose, runtime="swarm")
    with pytest.raises(WorkflowFailed) as failed:
        wf.up(timeout=60)
    message = str(failed.value)
    assert "services.web.image" in message and image in message
    assert f"`registry` is {bed.registry}" in message
    assert any(node.name in message for node in bed.nodes)
    assert not bed.client().services()  # what the failed up created is gone
