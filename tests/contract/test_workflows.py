"""The workflow calls issue 10 added or changed, the same through every transport and
both SDKs: `top`, `exec` with a string, `update` returning the info, `create(exist_ok=,
replace=)`. (The rest of the workflow behaviour: tests/integration/test_workflows*.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from dxflow import Conflict, Permission, PermissionDenied
from dxflow import _operations as ops
from dxflow.models import WorkflowInfo, WorkflowTop

from ..conftest import EngineFactory, KeyFactory
from ..docker.images import BUSYBOX_IMAGE

pytestmark = pytest.mark.parametrize("sdk", ["sync", "async"], indirect=True)


def _compose(*services: str) -> dict[str, Any]:
    box = {"image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "init": True}
    return {"services": {service: box for service in services}}


def test_top_exec_update_and_create_again(engine: Any, project_name: str) -> None:
    name = project_name
    wf = engine.workflows.create(name, _compose("box"))
    with pytest.raises(Conflict, match="exist_ok=True"):
        engine.workflows.create(name, _compose("box"))
    assert engine.workflows.create(name, _compose("box"), exist_ok=True).info == wf.info
    wf.up(timeout=60)

    top = wf.top()
    assert isinstance(top, WorkflowTop) and [t.service for t in top.containers] == ["box"]
    assert any("sleep" in " ".join(row) for row in top.containers[0].processes)
    assert wf.exec("box", "sh -c 'echo \"$0 $1\"' one two").output == "one two\n"

    info = wf.update(compose=_compose("box", "more"))
    assert isinstance(info, WorkflowInfo) and info.services == ["box", "more"]
    replaced = engine.workflows.create(name, _compose("other"), replace=True)
    assert replaced.info.services == ["other"] and replaced.status().state == "missing"


def test_top_needs_the_workflow_permission(
    make_engine: EngineFactory, make_key: KeyFactory, engine: Any, project_name: str
) -> None:
    engine.workflows.create(project_name, _compose("box"))
    stranger = make_engine(make_key(Permission.SHELL).private)
    with pytest.raises(PermissionDenied, match="WORKFLOW"):
        stranger._call(ops.workflows.TOP, name=project_name)
