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


# -- a failed up leaves something to debug --------------------------------------------------


def test_failed_up_shows_the_health_check_output_and_can_keep_everything(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    # Lines a moment apart (Docker stamps each as it reads it from the stream's pipe); the
    # health check fails only once they are written.
    talk = ("echo out-1; sleep 0.3; echo err-1 >&2; sleep 0.3; echo out-2; sleep 0.3; "
            "echo err-2 >&2; echo > /said; sleep 3600")  # fmt: skip
    probe = "while [ ! -e /said ]; do sleep 0.1; done; echo db is not ready >&2; exit 3"
    check = {"test": ["CMD", "sh", "-c", probe], "interval": "1s", "timeout": "60s",
             "retries": 1}  # fmt: skip
    wf = engine.workflows.create(name, {"services": {"db": _box(talk, healthcheck=check)}})
    with pytest.raises(WorkflowFailed) as caught:
        wf.up(timeout=120, keep_on_failure=True)
    message = caught.value.message
    assert "service 'db' is unhealthy" in message
    assert "exit 3" in message and "db is not ready" in message  # Docker's State.Health.Log
    written = ["out-1", "err-1", "out-2", "err-2"]
    positions = [message.index(line) for line in written]
    assert positions == sorted(positions), message  # stdout and stderr in the order written
    assert [c.name for c in _labelled(docker_client, name)] == [f"{name}-db-1"]  # kept

    lines = list(wf.logs())
    assert [(line.stream, line.line) for line in lines] == [
        ("stdout", "out-1"), ("stderr", "err-1"), ("stdout", "out-2"), ("stderr", "err-2")
    ]  # fmt: skip
    assert [line.line for line in wf.logs(tail=1)] == ["err-2"]  # the container's last line
    wf.down()


def test_a_failed_up_is_rolled_back_by_default(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    done = {"job": {"condition": "service_completed_successfully"}}
    compose = {"services": {"job": _box("echo broken; exit 2"), "app": _box(depends_on=done)}}
    wf = engine.workflows.create(name, compose)
    with pytest.raises(WorkflowFailed, match="exited with code 2"):
        wf.up(timeout=120)
    assert _labelled(docker_client, name) == []


def test_build_output_is_streamed_and_a_failing_step_shows_its_output(
    engine: Engine, name: str, tmp_path: Any
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nRUN echo first-step-says-hello {name}\n"  # no cache
        "RUN echo about to fail; echo the reason is here >&2; exit 7\n"
    )
    wf = engine.workflows.create(name, {"services": {"built": {"build": str(context)}}})
    events: list[Any] = []
    with pytest.raises(WorkflowFailed) as caught:
        wf.up(timeout=300, build=True, progress=events.append)
    built = [e.detail for e in events if e.action == "build" and e.service == "built"]
    assert f"first-step-says-hello {name}" in built, built
    message = caught.value.message
    assert message.startswith("services.built.build: Docker build failed")
    assert "about to fail" in message and "the reason is here" in message
    assert "first-step-says-hello" not in message  # only the failing step's output


# -- what up and down report ----------------------------------------------------------------


def test_up_reports_each_state_once_and_down_stops_dependents_first(
    engine: Engine, name: str
) -> None:
    check = {"test": ["CMD", "true"], "interval": "1s", "retries": 3}
    healthy = {"condition": "service_healthy"}
    compose = {"services": {
        "db": _box(healthcheck=check),
        "migrate": _box("echo migrated", depends_on={"db": healthy}),
        "api": _box(depends_on={"db": healthy,
                                "migrate": {"condition": "service_completed_successfully"}}),
        "web": _box(depends_on=["api"]),
    }}  # fmt: skip
    wf = engine.workflows.create(name, compose)
    events: list[Any] = []
    status = wf.up(timeout=120, progress=events.append)
    seen = [f"{e.action}:{e.service}" for e in events]
    assert seen.count("healthy:db") == 1, seen
    for service in ("db", "migrate", "api", "web"):
        assert seen.count(f"started:{service}") == 1, seen
    exited = [e for e in events if e.action == "exited"]
    assert [(e.service, e.exit_code) for e in exited] == [("migrate", 0)]
    assert status.state == "running"  # the one-shot exited 0: done, not a partial project
    assert wf.status().state == "running"

    down: list[str] = []
    wf.down(progress=lambda e: down.append(f"{e.action}:{e.service}"))
    assert down.index("removed:web") < down.index("stopping:api")
    assert down.index("removed:api") < down.index("stopping:db")
    assert down.index("removed:migrate") < down.index("stopping:db")


# -- interrupts ------------------------------------------------------------------------------


def _waits_on_db() -> dict[str, Any]:
    """`db` never turns healthy, so `up` waits on it for `app` until interrupted."""
    check = {"test": ["CMD", "false"], "interval": "1s", "retries": 1000}
    return {"services": {
        "db": _box(healthcheck=check),
        "app": _box(depends_on={"db": {"condition": "service_healthy"}}),
    }}  # fmt: skip


def _after_up_ended(engine: Any, name: str) -> None:
    """Wait (bounded) until the engine side of the interrupted `up` has finished: its
    audit record is written when the call ends, rollback included."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(r.target == name for r in engine.audit(operation="workflows.up")):
            return
        time.sleep(0.1)
    raise AssertionError("the interrupted up never ended on the engine side")


def _left_as_it_was(client: docker.DockerClient, name: str) -> None:
    containers = {c.name: c.status for c in _labelled(client, name)}
    assert containers == {f"{name}-db-1": "running"}  # not rolled back, app never created


def test_ctrl_c_during_up_is_a_keyboard_interrupt_and_leaves_the_containers(
    engine: Engine, name: str, docker_client: docker.DockerClient
) -> None:
    import signal
    import threading

    wf = engine.workflows.create(name, _waits_on_db())
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread().ident == main

    def interrupt(event: Any) -> None:  # runs on the engine's loop thread
        if (event.action, event.service) == ("started", "db"):
            signal.pthread_kill(main, signal.SIGINT)  # what Ctrl-C / "interrupt kernel" do

    with pytest.raises(KeyboardInterrupt):
        wf.up(timeout=300, progress=interrupt)
    _after_up_ended(engine, name)
    _left_as_it_was(docker_client, name)
    assert wf.status().state == "partial"
    wf.down()
    assert _labelled(docker_client, name) == []


@pytest.mark.parametrize("sdk", ["async"], indirect=True)
def test_cancelling_an_async_up_leaves_the_containers(
    engine: Any, name: str, docker_client: docker.DockerClient
) -> None:
    import asyncio

    engine.workflows.create(name, _waits_on_db())

    async def scenario(twin: Any) -> str:
        wf = await twin.workflows.get(name)
        started = asyncio.Event()

        def progress(event: Any) -> None:
            if (event.action, event.service) == ("started", "db"):
                started.set()

        task = asyncio.ensure_future(wf.up(timeout=300, progress=progress))
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # it ended by itself: say how
            return f"up ended on its own: {task.result()!r}"
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "up finished despite the cancellation"

    assert engine._runner.run_on_loop(scenario, engine._target) == "cancelled"
    _after_up_ended(engine, name)
    _left_as_it_was(docker_client, name)


def test_followed_logs_bring_both_streams_and_stop_when_closed(engine: Engine, name: str) -> None:
    talk = "echo first; echo second >&2; while true; do echo tick; sleep 1; done"
    wf = engine.workflows.create(name, {"services": {"talker": _box(talk)}})
    wf.up(timeout=60)
    followed = wf.logs(follow=True)
    seen: set[tuple[str, str]] = set()
    for line in followed:
        seen.add((line.stream, line.line))
        if {("stdout", "first"), ("stderr", "second"), ("stdout", "tick")} <= seen:
            break
    followed.close()  # type: ignore[attr-defined]  # ends the engine side's blocked read
    assert wf.status().state == "running"  # the engine still answers


def test_scale_on_one_machine_keeps_the_running_replica_until_the_next_up(
    engine: Engine, name: str
) -> None:
    wf = engine.workflows.create(name, {"services": {"web": _box()}})
    assert wf.info.runtime == "docker"
    wf.up()
    (first,) = wf.status().services[0].containers
    status = wf.scale("web", 3)
    running = [c for c in status.services[0].containers if c.state == "running"]
    assert len(running) == 3 and first.id in {c.id for c in running}
    wf.up()  # as `docker compose up` after `--scale`: the file's count again
    assert [c.id for c in wf.status().services[0].containers] == [first.id]
    with pytest.raises(Conflict, match="runs on the docker runtime, not swarm"):
        engine.workflows.create(name, {"services": {"web": _box()}}, exist_ok=True,
                                runtime="swarm")  # fmt: skip
