"""A proxy to a workflow service through the SDK, on the real Docker Engine: one call
exposes a workflow's web app, and the proxy reaches it again once its container is
recreated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dxflow import Engine

from ..docker.images import BUSYBOX_IMAGE

pytestmark = pytest.mark.timeout(600)

COMPOSE = {
    "services": {
        "web": {"image": BUSYBOX_IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"]}
    }
}


@pytest.fixture
def notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An in-process engine that owns its core: its lifecycle runs the proxies' listeners
    and follows the workflow's containers."""
    monkeypatch.setenv("DXFLOW_HOME", str(tmp_path / "home"))
    with Engine() as engine:
        yield engine


def body_of(url: str) -> str:
    """The answer at `url` once it is a 200 (a container starting, a pool following a
    recreated one)."""
    deadline = time.monotonic() + 120
    last: Any = None
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(url, timeout=10)
            last = (reply.status_code, reply.text[:200])
            if reply.status_code == 200:
                return reply.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within 120 s: {last!r}")


def test_one_call_exposes_a_workflow_service_and_follows_it(
    notebook: Engine, project_name: str
) -> None:
    workflow = notebook.workflows.create(project_name, COMPOSE)
    workflow.up(timeout=120)
    app = notebook.proxies.create(
        "app", target={"workflow": project_name, "service": "web", "port": 8080},
        port=0, auth="none",
    )  # fmt: skip
    assert (app.info.workflow, app.info.service, app.info.service_port) == (
        project_name, "web", 8080)  # fmt: skip
    assert app.info.targets == []
    assert body_of(app.url or "") == "hello from dxflow\n"
    app.reload()
    first = [t.address for t in app.info.pool]
    assert len(first) == 1 and first[0] and first[0].endswith(":8080")
    assert app.info.pool[0].target.startswith(f"{project_name}/web")
    workflow.down()  # the container is removed; up makes a new one
    workflow.up(timeout=120)
    assert body_of(app.url or "") == "hello from dxflow\n"
    stats = app.stats()
    assert stats.requests >= 2 and stats.responses.get("2xx", 0) >= 2
    app.remove()
    workflow.down()
