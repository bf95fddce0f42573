"""The swarm runtime on a real three-node Swarm (tests/testbed/swarm.py): the same
Compose files and `engine.workflows` API as on one machine.

Every service uses `endpoint_mode: dnsrr`: the kernel here has no IPVS, so Swarm's
virtual-IP names and its routing mesh do not work (TESTBEDS.md)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dxflow
from dxflow import Conflict, InvalidRequest, WorkflowFailed
from dxflow._models import WorkflowEvent
from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.netns import wait_until
from tests.testbed.swarm import SwarmBed

pytestmark = pytest.mark.timeout(180)

IMAGE = BUSYBOX_IMAGE


@pytest.fixture
def engine(swarm: SwarmBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An in-process engine whose Docker Engine is the bed's manager."""
    monkeypatch.setenv("DXFLOW_DOCKER_HOST", swarm.manager.url)
    with dxflow.Engine(home=tmp_path / "home") as engine:
        yield engine


def sleeper(replicas: int = 1, **extra: Any) -> dict[str, Any]:
    return {"image": IMAGE, "command": ["sleep", "3600"],
            "deploy": {"replicas": replicas, "endpoint_mode": "dnsrr", **extra}}  # fmt: skip


def running(status: Any, service: str) -> list[Any]:
    found = next(s for s in status.services if s.name == service)
    return [t for t in found.tasks if t.state == "running" and t.desired_state == "running"]


def test_replicas_spread_over_the_nodes_and_show_as_a_stack(engine: Any, swarm: SwarmBed) -> None:
    wf = engine.workflows.create("spread", {"services": {"web": sleeper(6)}}, runtime="swarm")
    assert wf.info.runtime == "swarm"
    wf.up()
    status = wf.status()
    web = status.services[0]
    assert (status.state, web.state, web.desired, web.running) == ("running", "running", 6, 6)
    assert {t.node for t in running(status, "web")} == {n.name for n in swarm.nodes}
    stacks = subprocess.run(["docker", "-H", swarm.manager.url, "stack", "ls"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "spread" in stacks.split()
    ps = subprocess.run(["docker", "-H", swarm.manager.url, "stack", "ps", "spread", "-q"],
                        capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert len(ps.split()) == 6


def test_dependency_gates_and_a_one_shot_job(engine: Any, swarm: SwarmBed) -> None:
    compose = {"services": {
        "db": {**sleeper(), "command": ["sh", "-c", "sleep 2; echo > /ready; sleep 3600"],
               "healthcheck": {"test": ["CMD-SHELL", "test -f /ready"],
                               "interval": "500ms", "retries": 30}},
        "migrate": {"image": IMAGE, "command": ["sh", "-c", "echo migrated"], "restart": "no",
                    "depends_on": {"db": {"condition": "service_healthy"}}},
        "web": {**sleeper(2), "depends_on": {
            "db": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"}}},
    }}  # fmt: skip
    wf = engine.workflows.create("chain", compose, runtime="swarm")
    events: list[WorkflowEvent] = []
    wf.up(progress=events.append)
    order = [(e.action, e.service) for e in events]
    assert order.index(("healthy", "db")) < order.index(("creating", "migrate"))
    assert order.index(("exited", "migrate")) < order.index(("creating", "web"))
    status = {s.name: s for s in wf.status().services}
    assert (status["migrate"].state, status["migrate"].exit_code) == ("exited", 0)
    assert status["web"].running == 2 and wf.status().state == "running"
    api = swarm.client()
    mode = api.inspect_service("chain_migrate")["Spec"]["Mode"]
    assert "ReplicatedJob" in mode
    lines = [line.line for line in wf.logs(service="migrate")]
    assert "migrated" in lines


def test_a_failed_job_stops_up_with_its_exit_code(engine: Any) -> None:
    compose = {"services": {
        "migrate": {"image": IMAGE, "command": ["sh", "-c", "exit 3"], "restart": "no"},
        "web": {**sleeper(), "depends_on": {
            "migrate": {"condition": "service_completed_successfully"}}},
    }}  # fmt: skip
    wf = engine.workflows.create("failing", compose, runtime="swarm")
    with pytest.raises(WorkflowFailed, match=r"services\.migrate: the one-shot job failed"):
        wf.up(timeout=60)
    assert {s.name: s.state for s in wf.status().services}["web"] == "missing"


def test_scale_keeps_the_running_tasks(engine: Any) -> None:
    wf = engine.workflows.create("scaled", {"services": {"web": sleeper(2)}}, runtime="swarm")
    wf.up()
    before = {(t.id, t.container) for t in running(wf.status(), "web")}
    status = wf.scale("web", 6)
    after = {(t.id, t.container) for t in running(status, "web")}
    assert len(after) == 6 and before <= after  # the two tasks of before still run
    status = wf.scale("web", 1)
    wait_until(lambda: len(running(wf.status(), "web")) == 1, 30, 0.2, "scaled down to 1")
    left = {(t.id, t.container) for t in running(wf.status(), "web")}
    assert left <= before
    wf.up()  # nothing of web changed: the scale holds, no task is replaced
    assert {(t.id, t.container) for t in running(wf.status(), "web")} == left


def test_an_update_rolls_only_the_changed_service(engine: Any) -> None:
    compose: dict[str, Any] = {"services": {
        "a": {**sleeper(2), "environment": {"V": "1"},
              "deploy": {"replicas": 2, "endpoint_mode": "dnsrr",
                         "update_config": {"parallelism": 1, "order": "start-first"}}},
        "b": sleeper(2),
    }}  # fmt: skip
    wf = engine.workflows.create("rolling", compose, runtime="swarm")
    wf.up()
    a_before = {t.id for t in running(wf.status(), "a")}
    b_before = {t.id for t in running(wf.status(), "b")}
    compose["services"]["a"]["environment"]["V"] = "2"
    wf.update(compose)
    wf.up()
    wait_until(lambda: len(running(wf.status(), "a")) == 2
               and not {t.id for t in running(wf.status(), "a")} & a_before,
               60, 0.3, "service a rolled")  # fmt: skip
    assert {t.id for t in running(wf.status(), "b")} == b_before


def test_down_removes_services_secrets_and_networks(engine: Any, swarm: SwarmBed) -> None:
    on_manager = {"constraints": ["node.role == manager"]}  # where exec reaches it
    web = {**sleeper(2, placement=on_manager), "secrets": ["token"], "configs": ["site"]}
    compose = {"services": {"web": web},
               "secrets": {"token": {"environment": "TOKEN"}},
               "configs": {"site": {"content": "listen 80"}}}  # fmt: skip
    wf = engine.workflows.create("tidy", compose, env={"TOKEN": "s3cret"}, runtime="swarm")
    wf.up()
    assert {t.node for t in running(wf.status(), "web")} == {swarm.manager.name}
    assert wf.exec("web", ["cat", "/run/secrets/token", "/site"]).output == "s3cretlisten 80"
    api = swarm.client()
    assert api.secrets() and api.configs()
    assert any(n["Name"] == "tidy_default" for n in api.networks())
    wf.down()
    assert not api.services() and not api.secrets() and not api.configs()
    assert not any(n["Name"] == "tidy_default" for n in api.networks())


def test_a_missing_image_names_the_nodes_and_rolls_back(engine: Any, swarm: SwarmBed) -> None:
    compose = {"services": {"web": {**sleeper(3), "image": "dxflow-test/nowhere:1"}}}
    wf = engine.workflows.create("lost", compose, runtime="swarm")
    with pytest.raises(WorkflowFailed) as failed:
        wf.up(timeout=120)
    message = str(failed.value)
    assert "services.web.image" in message and "registry" in message
    assert any(node.name in message for node in swarm.nodes)
    assert not swarm.client().services()  # what the failed up created is gone


def test_a_placement_no_node_satisfies_names_the_key_and_nodes(
    engine: Any, swarm: SwarmBed
) -> None:
    placement = {"constraints": ["node.labels.gpu == true"]}
    compose = {"services": {"web": sleeper(1, placement=placement)}}
    wf = engine.workflows.create("nowhere", compose, runtime="swarm")
    with pytest.raises(WorkflowFailed) as failed:
        wf.up(timeout=120)
    message = str(failed.value)
    assert "services.web.deploy.placement" in message
    assert all(node.name in message for node in swarm.nodes)
    assert "node update --label-add" in message


def test_a_key_swarm_cannot_honour_is_refused_at_create(engine: Any) -> None:
    compose = {"services": {"web": {**sleeper(), "privileged": True}}}
    with pytest.raises(InvalidRequest, match=r"services\.web\.privileged"):
        engine.workflows.create("priv", compose, runtime="swarm")
    assert "priv" not in [w.name for w in engine.workflows.list()]


def test_one_machine_verbs_say_what_to_use_instead(engine: Any) -> None:
    wf = engine.workflows.create("verbs", {"services": {"web": sleeper()}}, runtime="swarm")
    wf.up()
    with pytest.raises(InvalidRequest, match=r"scale\(service, 0\)"):
        wf.stop()


def test_a_node_lost_has_its_tasks_rescheduled_and_is_reported(
    engine: Any, swarm: SwarmBed
) -> None:
    wf = engine.workflows.create("survivor", {"services": {"web": sleeper(3)}}, runtime="swarm")
    wf.up()
    victim = next(t.node for t in running(wf.status(), "web") if t.node != swarm.manager.name)
    seen: list[tuple[str, str | None]] = []
    events = wf.events()

    def collect() -> None:
        with contextlib.suppress(Exception):  # the stream ends when the engine closes
            for event in events:
                seen.append((event.action, event.detail))

    threading.Thread(target=collect, daemon=True).start()
    try:
        time.sleep(1.5)  # the watcher's first read of the tasks and nodes
        swarm.partition(victim)
        wait_until(lambda: ("node", f"{victim} down") in seen, 60, 0.2, f"{victim} down")
        wait_until(lambda: any(a == "rescheduled" for a, _ in seen), 60, 0.2, "rescheduled")
        wait_until(lambda: any(t.rescheduled for t in running(wf.status(), "web")), 60, 0.2,
                   "the rescheduled task runs")  # fmt: skip
        moved = [t for t in running(wf.status(), "web") if t.rescheduled]
        assert moved and all(t.node != victim for t in moved)
        swarm.heal(victim)
        wait_until(lambda: ("node", f"{victim} ready") in seen, 60, 0.2, f"{victim} back")
    finally:
        swarm.heal()
    assert wf.status().services[0].running == 3


def test_runtime_on_an_engine_that_is_no_manager(tmp_path: Path, docker_ready: None) -> None:
    with dxflow.Engine(home=tmp_path / "home") as engine:
        with pytest.raises(Conflict, match=r"not a swarm manager.*docker swarm init"):
            engine.workflows.create("one", {"services": {"web": sleeper()}}, runtime="swarm")
        assert engine.workflows.list() == []


def test_exec_into_a_task_on_another_node_says_how_to_reach_it(
    engine: Any, swarm: SwarmBed
) -> None:
    elsewhere = {"constraints": ["node.role == worker"]}
    wf = engine.workflows.create(
        "remote", {"services": {"web": sleeper(1, placement=elsewhere)}}, runtime="swarm"
    )
    wf.up()
    (task,) = running(wf.status(), "web")
    assert task.node != swarm.manager.name
    with pytest.raises(Conflict) as refused:
        wf.exec("web", ["echo", "hi"])
    message = str(refused.value)
    assert f"runs on node {task.node}" in message
    assert f"engine.bridges.get({task.node!r}).engine" in message
