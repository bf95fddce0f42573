"""Workflows in everyday use (issue 10): re-running a notebook, exec with a string, `top`,
failed `up`s that leave something to debug, interrupts, build output and the events,
against the real Docker Engine through every transport."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from dxflow import Conflict, Engine, WorkflowFailed

from ..docker.images import BUSYBOX_IMAGE


@pytest.fixture
def name(project_name: str) -> str:
    return project_name


def _box(command: str = "sleep 3600", **extra: Any) -> dict[str, Any]:
    return {"image": BUSYBOX_IMAGE, "command": ["sh", "-c", command], "init": True, **extra}


def _labelled(client: docker.DockerClient, project: str) -> list[Any]:
    label = f"com.docker.compose.project={project}"
    return list(client.containers.list(all=True, filters={"label": label}))


# -- re-running a notebook: create, exist_ok, replace, update -------------------------------


def test_create_again_names_the_way_out_and_exist_ok_updates(engine: Engine, name: str) -> None:
    first = {"services": {"box": _box()}}
    wf = engine.workflows.create(name, first)
    with pytest.raises(Conflict) as caught:
        engine.workflows.create(name, first)
    message = caught.value.message
    assert "exist_ok=True" in message and "replace=True" in message and "dxflow up" in message

    same = engine.workflows.create(name, first, exist_ok=True)  # identical: a no-op
    assert same.info == wf.info
    second = {"services": {"box": _box(), "extra": _box()}}
    changed = engine.workflows.create(name, second, exist_ok=True)
    assert changed.info.services == ["box", "extra"]
    assert changed.info.created_at == wf.info.created_at  # the same workflow, updated
    assert engine.workflows.get(name).config().services.keys() == {"box", "extra"}

    info = wf.update(compose={"services": {"only": _box()}})
    assert info.services == ["only"] and wf.info == info


def test_replace_brings_the_old_one_down_and_creates_it_anew(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    wf = engine.workflows.create(name, {"services": {"old": _box()}})
    wf.up(timeout=60)
    assert [c.name for c in _labelled(docker_client, name)] == [f"{name}-old-1"]
    anew = engine.workflows.create(name, {"services": {"new": _box()}}, replace=True)
    assert anew.info.services == ["new"]
    assert _labelled(docker_client, name) == []  # the old containers went with it
    assert anew.status().state == "missing"


# -- exec with a string, top ----------------------------------------------------------------


def test_exec_takes_a_string_and_top_lists_processes(engine: Engine, name: str) -> None:
    wf = engine.workflows.create(name, {"services": {"box": _box(), "job": _box("true")}})
    wf.up(timeout=60)
    done = wf.exec("box", "sh -c 'echo \"two words\"; exit 4'")
    assert (done.exit_code, done.output) == (4, "two words\n")
    assert wf.exec("box", ["echo", "a list"]).output == "a list\n"

    top = wf.top()
    assert top.name == name
    assert [(t.service, t.container) for t in top.containers] == [("box", f"{name}-box-1")]
    table = top.containers[0]
    assert "PID" in table.titles and "CMD" in table.titles
    commands = [row[table.titles.index("CMD")] for row in table.processes]
    assert any("sleep 3600" in command for command in commands), commands
