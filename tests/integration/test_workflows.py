"""Workflows against the real Docker Engine, through every transport."""

from __future__ import annotations

import socket

import docker
import httpx
import pytest

from dxflow import Conflict, Engine, InvalidRequest, NotFound, WorkflowFailed

from ..conftest import EngineFactory
from ..docker.images import BUSYBOX_IMAGE


@pytest.fixture
def name(project_name: str) -> str:
    return project_name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _app(port: int) -> str:
    return f"""
services:
  init:
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "echo initialised"]
  web:
    image: {BUSYBOX_IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["127.0.0.1:{port}:8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 10
    depends_on:
      init: {{condition: service_completed_successfully}}
  worker:
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    environment: {{ROLE: "${{ROLE:-worker}}"}}
    depends_on: [web]
"""


def test_create_validates_stores_and_lists(engine: Engine, name: str) -> None:
    wf = engine.workflows.create(name, _app(_free_port()))
    assert wf.info.services == ["init", "web", "worker"]
    assert [w.name for w in engine.workflows.list()] == [name]
    config = wf.config()
    assert config.services["worker"].environment == {"ROLE": "worker"}
    assert config.services["web"].depends_on["init"].condition == "service_completed_successfully"
    with pytest.raises(Conflict, match=name):
        engine.workflows.create(name, _app(_free_port()))
    assert engine.workflows.get(name).status().state == "missing"  # nothing created yet


def test_bad_compose_is_refused_and_nothing_is_stored(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid YAML at line 1"):
        engine.workflows.create(name, "services: [not, a, mapping")
    with pytest.raises(InvalidRequest, match="colour"):
        engine.workflows.create(
            name, {"services": {"a": {"image": BUSYBOX_IMAGE, "colour": "red"}}}
        )
    with pytest.raises(NotFound):
        engine.workflows.get(name)


def test_up_runs_the_graph_and_down_removes_everything(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    port = _free_port()
    wf = engine.workflows.create(name, _app(port))
    events: list[str] = []
    status = wf.up(timeout=60, progress=lambda e: events.append(f"{e.action}:{e.service}"))
    by_name = {s.name: s for s in status.services}
    assert by_name["init"].state == "exited" and by_name["init"].exit_code == 0
    assert by_name["web"].state == "running" and by_name["web"].health == "healthy"
    assert by_name["worker"].state == "running"
    assert events.index("started:init") < events.index("creating:web")  # completed first
    assert events[-1] == "done:None"
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "hello from dxflow\n"
    assert by_name["web"].containers[0].ports == [f"127.0.0.1:{port}->8080/tcp"]

    container = docker_client.containers.get(f"{name}-web-1")
    labels = container.labels
    assert labels["com.docker.compose.project"] == name
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert len(labels["com.docker.compose.config-hash"]) == 64

    ids = {c.id for s in status.services for c in s.containers}
    again = wf.up(timeout=60)  # idempotent: nothing recreated
    assert {c.id for s in again.services for c in s.containers} == ids

    wf.down()
    assert wf.status().state == "missing"
    label = f"com.docker.compose.project={name}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []


def test_stop_start_restart(engine: Engine, name: str) -> None:
    wf = engine.workflows.create(name, _app(_free_port()))
    wf.up(timeout=60)
    stopped = wf.stop(services=["worker"], timeout=1)
    assert {s.name: s.state for s in stopped.services}["worker"] == "exited"
    started = wf.start(services=["worker"])
    assert {s.name: s.state for s in started.services}["worker"] == "running"
    assert {s.name: s.state for s in wf.restart(services=["worker"], timeout=1).services}[
        "worker"
    ] == "running"
    paused = {s.name: s.state for s in wf.pause(services=["worker"]).services}
    assert paused["worker"] == "paused"
    assert {s.name: s.state for s in wf.unpause(services=["worker"]).services}[
        "worker"
    ] == "running"
    wf.stop(services=["worker"], timeout=1)
    again = {s.name: s.state for s in wf.up(timeout=60).services}
    assert again["worker"] == "running"  # up brings a stopped service back, as compose does


def test_failing_one_shot_raises_with_its_exit_code_and_logs(engine: Engine, name: str) -> None:
    compose = {
        "services": {
            "migrate": {
                "image": BUSYBOX_IMAGE,
                "command": ["sh", "-c", "echo schema broken; exit 3"],
            },
            "app": {
                "image": BUSYBOX_IMAGE,
                "command": ["sleep", "3600"],
                "depends_on": {"migrate": {"condition": "service_completed_successfully"}},
            },
        }
    }
    wf = engine.workflows.create(name, compose)
    with pytest.raises(WorkflowFailed) as caught:
        wf.up(timeout=60)
    assert "migrate" in caught.value.message and "exited with code 3" in caught.value.message
    assert "schema broken" in caught.value.message
    assert caught.value.details["exit_code"] == 3


def test_missing_image_leaves_nothing_behind(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    compose = {
        "services": {
            "ok": {"image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]},
            "ghost": {"image": "dxflow-test/does-not-exist:1", "depends_on": ["ok"]},
        }
    }
    wf = engine.workflows.create(name, compose)
    with pytest.raises(NotFound, match="does-not-exist"):
        wf.up(timeout=60)
    label = f"com.docker.compose.project={name}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []


def test_port_in_use_leaves_nothing_behind(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        wf = engine.workflows.create(name, _app(port))
        with pytest.raises(WorkflowFailed, match="web"):
            wf.up(timeout=60)
    label = f"com.docker.compose.project={name}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []


def test_operations_on_a_removed_workflow_are_not_found(engine: Engine, name: str) -> None:
    wf = engine.workflows.create(name, _app(_free_port()))
    wf.remove()
    for call in (wf.status, wf.config, wf.reload, wf.remove, lambda: wf.up(timeout=5)):
        with pytest.raises(NotFound, match=name):
            call()


def test_workflow_permission(make_engine: EngineFactory, make_key: object, name: str) -> None:
    from dxflow import Permission, PermissionDenied

    reader = make_engine(make_key(Permission.WORKFLOW | Permission.READ_ONLY).private)  # type: ignore[operator]
    assert reader.workflows.list() == []
    with pytest.raises(PermissionDenied, match="READ_ONLY"):
        reader.workflows.create(name, _app(_free_port()))


def test_timeout_is_honoured_and_names_what_was_not_ready(engine: Engine, name: str) -> None:
    import time

    compose = {"services": {"never": {
        "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "init": True,
        "healthcheck": {"test": ["CMD", "false"], "interval": "1s", "retries": 1000},
    }}}  # fmt: skip
    wf = engine.workflows.create(name, compose)
    started = time.monotonic()
    with pytest.raises(WorkflowFailed, match="did not come up within 2 s; waiting for never"):
        wf.up(timeout=2)
    assert time.monotonic() - started < 3 + 2  # honoured within 1 s (plus rollback)
    assert wf.status().state == "missing"


def test_logs_events_env_and_update(engine: Engine, name: str, core: object) -> None:
    import threading
    import time

    compose = {"services": {
        "talker": {"image": BUSYBOX_IMAGE, "init": True, "environment": {"WHO": "${WHO:-nobody}"},
                   "command": ["sh", "-c", "echo hello $WHO; echo oops >&2; sleep 3600"]},
    }}  # fmt: skip
    wf = engine.workflows.create(name, compose, env={"WHO": "dxflow"})
    explained = wf.explain_env("talker", "WHO")
    assert (explained.value, explained.source) == ("dxflow", "service.environment")

    from datetime import UTC, datetime

    events: list[str] = []
    watcher = wf.events(since=datetime.now(UTC))  # Docker replays from here, however late

    def read() -> None:
        for event in watcher:
            events.append(f"{event.action}:{event.service}")
            if event.action == "done":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    readers = core.workflows._bus._readers  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while not readers.get(name) and time.monotonic() < deadline:  # the watch is live
        time.sleep(0.02)
    first = wf.up(timeout=60)
    reader.join(20)
    watcher.close()  # type: ignore[attr-defined]  # leaving early stops the engine side too
    # the engine's own steps and Docker's container events in one stream, each in order
    # (between the two sources, Docker's lag of a few ms may interleave them)
    pairs = [("creating:talker", "starting:talker"), ("created:talker", "started:talker"),
             ("started:talker", "done:None")]  # fmt: skip
    for before, after in pairs:
        assert events.index(before) < events.index(after), events

    deadline = time.monotonic() + 10
    lines: list[object] = []
    while time.monotonic() < deadline and len(lines) < 2:
        lines = list(wf.logs(timestamps=True))
        time.sleep(0.2)
    by_stream = {line.stream: line for line in lines}  # type: ignore[attr-defined]
    assert by_stream["stdout"].line == "hello dxflow" and by_stream["stdout"].service == "talker"
    assert by_stream["stderr"].line == "oops" and by_stream["stderr"].time is not None
    assert [line.line for line in wf.logs(tail=1, service="talker")]  # type: ignore[attr-defined]

    wf.update(env={"WHO": "world"})  # the config hash changes: up recreates the container
    second = wf.up(timeout=60)
    assert second.services[0].containers[0].id != first.services[0].containers[0].id
    assert wf.explain_env("talker", "WHO").value == "world"
    with pytest.raises(InvalidRequest):
        wf.update(compose="services: {x: {colour: red}}")
    assert wf.config().services["talker"].environment == {"WHO": "world"}


def test_exec_and_stats(engine: Engine, name: str) -> None:
    wf = engine.workflows.create(name, {"services": {"box": {
        "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "init": True,
        "deploy": {"resources": {"limits": {"memory": "64m"}}}}}})  # fmt: skip
    wf.up(timeout=60)
    ok = wf.exec("box", ["sh", "-c", "echo out; exit 3"])
    assert (ok.exit_code, ok.output) == (3, "out\n")
    missing = wf.exec("box", ["no-such-command"])
    assert missing.exit_code in (126, 127)
    with pytest.raises(NotFound, match="nope"):
        wf.exec("nope", ["true"])
    stats = wf.stats()
    assert [s.service for s in stats.containers] == ["box"]
    watched = wf.watch_stats()
    samples = [next(watched), next(watched)]
    watched.close()  # type: ignore[attr-defined]
    assert all(s.containers[0].memory_limit == 64 * 2**20 for s in samples)
    assert stats.containers[0].memory_limit == 64 * 2**20
    assert 0 < stats.containers[0].memory_usage < stats.containers[0].memory_limit


def test_a_shell_in_a_service_container(engine: Engine, name: str) -> None:
    wf = engine.workflows.create(name, {"services": {"box": {
        "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "init": True,
        "hostname": "inside-box"}}})  # fmt: skip
    with pytest.raises(Conflict, match="no running replica"):
        wf.shell("box")
    wf.up(timeout=60)
    shell = wf.shell("box", name=f"{name}-sh")
    try:
        assert (shell.info.workflow, shell.info.service) == (name, "box")
        assert shell.run("hostname").output == "inside-box\n"
        assert shell.run("exit_() { return 4; }; exit_").exit_code == 4
        assert shell.run("cat /proc/1/cmdline | tr '\\0' ' '").output.startswith(
            "/sbin/docker-init"
        )
    finally:
        shell.remove()
    with pytest.raises(InvalidRequest, match="workflow"):
        engine.shells.create(service="box")


def test_engine_restart_finds_workflows_as_they_are(
    tmp_path: object, name: str, docker_client: docker.DockerClient
) -> None:
    from pathlib import Path

    home = Path(str(tmp_path)) / "restart-home"
    with Engine(home=home) as first:
        wf = first.workflows.create(name, {"services": {"box": {
            "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"], "init": True}}})  # fmt: skip
        ids = [c.id for c in wf.up(timeout=60).services[0].containers]
    with Engine(home=home) as second:  # a new engine process on the same home
        again = second.workflows.get(name)
        status = again.status()
        assert status.state == "running"
        assert [c.id for c in status.services[0].containers] == ids
    assert docker_client.containers.get(ids[0]).status == "running"  # never touched


def test_build_from_a_local_context(engine: Engine, name: str, tmp_path: object) -> None:
    import time
    from pathlib import Path

    context = Path(str(tmp_path)) / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f'FROM {BUSYBOX_IMAGE}\nARG WORD=plain\nRUN echo $WORD > /word\nCMD ["cat", "/word"]\n'
    )
    compose = {
        "services": {"built": {"build": {"context": str(context), "args": {"WORD": "built"}}}}
    }
    wf = engine.workflows.create(name, compose)
    events: list[str] = []
    status = wf.up(timeout=120, progress=lambda e: events.append(e.action))
    assert "build" in events and status.services[0].state in ("running", "exited")
    deadline = time.monotonic() + 10
    while wf.status().services[0].state != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert wf.status().services[0].exit_code == 0
    assert [line.line for line in wf.logs()] == ["built"]
    broken = context / "Dockerfile"
    broken.write_text("FROM scratch\nRUN false\n")
    with pytest.raises(WorkflowFailed, match=r"services\.built\.build: Docker build failed"):
        wf.up(timeout=120, build=True)


def test_compose_tools_and_dxflow_see_each_others_projects(
    engine: Engine, name: str, tmp_path: object, docker_client: docker.DockerClient
) -> None:
    import shutil
    import subprocess
    from pathlib import Path

    compose_cli = shutil.which("docker-compose")
    if compose_cli is None:
        pytest.fail(
            "docker-compose is needed to check label compatibility (scripts/setup.sh --dev)"
        )
    folder = Path(str(tmp_path)) / "other"
    folder.mkdir()
    file = folder / "compose.yaml"
    file.write_text(f"services:\n  box:\n    image: {BUSYBOX_IMAGE}\n    command: [sleep, '3600']\n"
                    "    init: true\n")  # fmt: skip
    theirs = f"{name}-theirs"
    try:
        # theirs, made by docker-compose: dxflow lists it, not as its own
        subprocess.run([compose_cli, "-p", theirs, "-f", str(file), "up", "-d"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        mine = engine.workflows.create(name, file)
        mine.up(timeout=60)
        found = {p.name: p for p in engine.workflows.projects()}
        assert found[theirs].managed is False and found[theirs].services == ["box"]
        assert found[theirs].state == "running"
        assert found[name].managed is True and found[name].config_files == [str(file)]
        # ours, seen by docker-compose through the standard labels
        ps = subprocess.run([compose_cli, "-p", name, "-f", str(file), "ps"],
                            check=True, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert f"{name}-box-1" in ps.stdout or f"{name}_box_1" in ps.stdout
    finally:
        subprocess.run([compose_cli, "-p", theirs, "-f", str(file), "down", "-t", "1"],
                       capture_output=True, timeout=120, check=False)  # fmt: skip
