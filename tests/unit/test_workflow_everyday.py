"""The pure parts of issue 10's workflow behaviour: events reported once, the order of
`down`, the project state, command strings, and reading Docker's build, log, health and
top answers (small fakes in place of Docker's responses)."""

from __future__ import annotations

import io
import struct

import pytest

from dxflow import InvalidRequest
from dxflow._core._compose import load_project
from dxflow._core._docker import Container, HealthProbe, LogSource, Processes
from dxflow._core._docker._adapter import _BuildLines
from dxflow._core._docker._logs import LogFrames
from dxflow._core._workflows._diagnose import Diagnosis, _probe
from dxflow._core._workflows._runtime import Plan
from dxflow._core._workflows._status import overall_state
from dxflow._core._workflows._teardown import stop_waves
from dxflow.models import ContainerState, ServiceStatus, WorkflowEvent, WorkflowExec


def _plan(events: list[WorkflowEvent]) -> Plan:
    project = load_project("shop", {"services": {"db": {"image": "x"}}}).project
    return Plan(project, {}, [], events.append)


def test_states_are_reported_once_per_up_other_events_every_time() -> None:
    events: list[WorkflowEvent] = []
    plan = _plan(events)
    for _ in range(3):  # every wait on db polls its health again
        plan.event("healthy", "db")
        plan.event("started", "db", container="shop-db-1")
        plan.event("exited", "job", container="shop-job-1", exit_code=0)
    plan.event("started", "db", container="shop-db-2")  # another replica: its own start
    plan.event("build", "web", detail="Step 1/2 : FROM x")
    plan.event("build", "web", detail="Step 1/2 : FROM x")  # output lines may repeat
    seen = [(e.action, e.service, e.container) for e in events]
    assert seen == [
        ("healthy", "db", None), ("started", "db", "shop-db-1"), ("exited", "job", "shop-job-1"),
        ("started", "db", "shop-db-2"), ("build", "web", None), ("build", "web", None),
    ]  # fmt: skip
    assert events[2].exit_code == 0


def _container(service: str, number: int = 1) -> Container:
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.service": service}
    return Container(f"id-{service}-{number}", f"shop-{service}-{number}", labels, "running", "Up")


def test_down_stops_dependents_first_and_orphans_before_everything() -> None:
    project = load_project("shop", {"services": {
        "db": {"image": "x"},
        "cache": {"image": "x"},
        "api": {"image": "x", "depends_on": ["db", "cache"]},
        "web": {"image": "x", "depends_on": ["api"]},
        "worker": {"image": "x", "depends_on": ["db"]},
    }}).project  # fmt: skip
    found = [_container(s) for s in ("db", "web", "api", "cache", "worker", "gone")]
    found.append(_container("api", 2))
    waves = [[c.name for c in wave] for wave in stop_waves(project, found)]
    assert waves == [
        ["shop-gone-1"],
        ["shop-web-1"],
        ["shop-api-1", "shop-worker-1", "shop-api-2"],
        ["shop-db-1", "shop-cache-1"],
    ]


def _service(name: str, state: str, *codes: int | None) -> ServiceStatus:
    containers = [
        ContainerState(id=f"{name}{i}", name=f"{name}-{i}", number=i, state=state, exit_code=code)
        for i, code in enumerate(codes or (None,), start=1)
    ]
    return ServiceStatus(name=name, state=state, replicas=len(containers), containers=containers)


@pytest.mark.parametrize(
    ("services", "state"),
    [
        ([_service("db", "running"), _service("migrate", "exited", 0)], "running"),
        ([_service("db", "running"), _service("migrate", "exited", 1)], "partial"),
        ([_service("db", "running"), _service("migrate", "exited", 0, 3)], "partial"),
        ([_service("db", "running"), _service("web", "missing")], "partial"),
        ([_service("db", "exited", 0), _service("migrate", "exited", 0)], "stopped"),
        ([_service("db", "paused"), _service("migrate", "exited", 0)], "paused"),
        ([_service("db", "missing")], "missing"),
        ([_service("db", "running"), _service("web", "running")], "running"),
    ],
)
def test_the_project_state_counts_a_finished_one_shot_as_done(
    services: list[ServiceStatus], state: str
) -> None:
    assert overall_state(services) == state


def test_an_exec_command_string_is_split_as_a_shell_would() -> None:
    request = WorkflowExec(name="w", service="s", cmd="sh -c 'echo \"a b\"; exit 3'")
    assert request.cmd == ["sh", "-c", 'echo "a b"; exit 3']
    assert WorkflowExec(name="w", service="s", cmd=["echo", "a b"]).cmd == ["echo", "a b"]
    with pytest.raises(ValueError, match="quotation"):
        WorkflowExec(name="w", service="s", cmd="echo 'unclosed")
    with pytest.raises(ValueError, match="cmd"):
        WorkflowExec(name="w", service="s", cmd="")


def test_build_progress_becomes_lines_and_its_error_an_invalid_request() -> None:
    chunks = [
        {"stream": "Step 1/2 : FROM x\n"},
        {"stream": " ---> abc\nStep 2/2 : RUN false\n"},
        {"stream": "\n"},
        {"aux": {"ID": "sha256:1"}},
        {"stream": "it failed here\n"},
        {"stream": "\x1b[91mon stderr\n"},
        {"stream": "\x1b[0m"},
        {"errorDetail": {"code": 1, "message": "The command returned a non-zero code: 1"},
         "error": "The command returned a non-zero code: 1"},
    ]  # fmt: skip
    lines: list[str] = []
    with pytest.raises(InvalidRequest, match="Docker build failed: The command returned"):
        for line in _BuildLines(iter(chunks)):
            lines.append(line)
    assert lines == [
        "Step 1/2 : FROM x", " ---> abc", "Step 2/2 : RUN false", "it failed here", "on stderr"
    ]  # fmt: skip


class _Response:
    """A streamed HTTP response: the raw body, read as docker-py's helper reads it."""

    def __init__(self, body: bytes) -> None:
        self.raw = io.BytesIO(body)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_log_frames_keep_each_line_with_its_stream_in_the_order_sent() -> None:
    body = b"".join([
        _frame(1, b"T1 out-1\n"), _frame(2, b"T2 err-1\n"), _frame(1, b"T3 out-"),
        _frame(1, b"2\nT4 out-3\n"), _frame(2, b"T5 no newline"),
    ])  # fmt: skip
    response = _Response(body)
    frames = LogFrames(response, LogSource("c1", ("web", "shop-web-1")), tty=False)
    got = [(chunk.stream, chunk.line) for chunk in frames]
    assert got == [
        ("stdout", b"T1 out-1"), ("stderr", b"T2 err-1"), ("stdout", b"T3 out-2"),
        ("stdout", b"T4 out-3"), ("stderr", b"T5 no newline"),
    ]  # fmt: skip
    frames.close()
    assert response.closed


def test_docker_answers_become_typed_records() -> None:
    top = Processes.from_top({"Titles": ["UID", "PID", "CMD"],
                              "Processes": [["root", 42, "sleep 3600"]]})  # fmt: skip
    assert top == Processes(("UID", "PID", "CMD"), (("root", "42", "sleep 3600"),))
    assert Processes.from_top(None) == Processes((), ())
    probe = HealthProbe.from_log({"ExitCode": 3, "Output": "not ready\n", "Start": "..."})
    assert probe == HealthProbe(exit_code=3, output="not ready")


def test_a_diagnosis_says_what_the_health_check_and_the_logs_said() -> None:
    text = Diagnosis(health="  exit 3: not ready", logs="out\nerr").text()
    assert text == (
        "its health check said (last runs, oldest first):\n  exit 3: not ready\n"
        "last log lines:\n  out\n  err"
    )
    assert Diagnosis(health="", logs="").text() == "last log lines:\n  (none)"
    one, many = HealthProbe(1, "refused"), HealthProbe(2, "first\nsecond")
    assert _probe(one) == "  exit 1: refused"
    assert _probe(many) == "  exit 2:\n    first\n    second"
