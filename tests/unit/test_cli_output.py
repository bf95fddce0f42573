"""How the CLI decides on colours and in-place lines, and what it draws."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from pydantic import BaseModel

from dxflow._cli._compose import without_veth
from dxflow._cli._output import (
    LiveBlock,
    Prefixer,
    colour_of,
    live_output,
    paint,
    use_colour,
)
from dxflow._cli._progress import EventView, event_word
from dxflow._cli._project import (
    Project,
    find_compose_file,
    normalize_name,
    referenced_variables,
)
from dxflow._models import WorkflowEvent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


# -- when colours and redrawing are used ---------------------------------------------------


def test_colours_only_on_a_terminal_without_no_color_or_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert use_colour(Terminal())
    assert not use_colour(io.StringIO())  # a pipe, a file
    assert not use_colour(Terminal(), as_json=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())


def test_lines_are_redrawn_only_on_a_real_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert live_output(Terminal())
    assert not live_output(io.StringIO())
    assert not live_output(Terminal(), as_json=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert live_output(Terminal())  # NO_COLOR is about colours, not about redrawing
    monkeypatch.setenv("TERM", "dumb")
    assert not live_output(Terminal())


def test_a_service_keeps_its_colour_and_services_get_several() -> None:
    names = ["web", "db", "api", "worker", "cache", "queue"]
    assert [colour_of(n) for n in names] == [colour_of(n) for n in names]
    assert len({colour_of(n) for n in names}) > 1
    assert paint("x", 36, True) == "\x1b[36mx\x1b[0m" and paint("x", 36, False) == "x"


def test_log_prefixes_align_like_compose_and_colour_by_service() -> None:
    plain = Prefixer(["web-1", "db-1"])
    assert plain("db-1", "db", "ready") == "db-1  | ready"
    assert plain("web-1", "web", "up") == "web-1 | up"
    assert plain("worker-12", "worker", "x") == "worker-12 | x"  # a longer one widens
    coloured = Prefixer(["web-1"], colour=True)
    assert coloured("web-1", "web", "up") == f"\x1b[{colour_of('web')}mweb-1 |\x1b[0m up"


# -- lines in place -----------------------------------------------------------------------


def test_piped_every_change_is_a_line_of_its_own_and_repeats_are_dropped() -> None:
    out = io.StringIO()
    block = LiveBlock(out, live=False)
    block.set("a", "A Creating")
    block.set("a", "A Creating")
    block.set("a", "A Started")
    block.note("a note")
    assert out.getvalue() == "A Creating\nA Started\na note\n"


def test_on_a_terminal_the_block_is_erased_and_redrawn_below_notes() -> None:
    out = Terminal()
    block = LiveBlock(out, live=True)
    block.set("a", "A Creating")
    block.set("b", "B Creating")
    block.set("a", "A Started")
    block.note("step 1/2")
    text = out.getvalue()
    assert text.startswith("A Creating\n")
    # up one line then clear, up two lines then clear: never a line printed twice in a row
    assert "\x1b[1F\x1b[JA Creating\nB Creating\n" in text
    assert "\x1b[2F\x1b[JA Started\nB Creating\n" in text
    assert text.endswith("\x1b[2F\x1b[Jstep 1/2\nA Started\nB Creating\n")


def test_a_line_wider_than_the_terminal_is_clipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((20, 10)))
    out = Terminal()
    LiveBlock(out, live=True).set("a", "\x1b[32m✔\x1b[0m " + "x" * 40)
    assert out.getvalue() == "✔ " + "x" * 16 + "…\n"  # 19 columns: no wrap


# -- events like `docker compose up` --------------------------------------------------------


def _event(action: str, **fields: Any) -> WorkflowEvent:
    return WorkflowEvent(time=datetime.now(UTC), workflow="demo", action=action, **fields)


def test_events_piped_are_compose_lines() -> None:
    out = io.StringIO()
    view = EventView(stream=out)
    view(_event("network", detail="created demo_default"))
    view(_event("creating", service="db", container="demo-db-1"))
    view(_event("started", service="db", container="demo-db-1"))
    view(_event("healthy", service="db"))  # about the service: its containers' lines
    view(_event("healthy", service="db"))  # the same again adds nothing
    view(_event("exited", service="job", container="demo-job-1", exit_code=3))
    view(_event("done"))
    assert out.getvalue().splitlines() == [  # aligned on the widest name so far
        "Network demo_default  Created",
        "Container demo-db-1   Creating",
        "Container demo-db-1   Started",
        "Container demo-db-1   Healthy",
        "Container demo-job-1  Exited (3)",
    ]


def test_known_containers_name_service_events_and_idle_ones_are_running() -> None:
    from dxflow._models import ContainerState, ServiceStatus, WorkflowStatus

    def container(name: str) -> ContainerState:
        return ContainerState(id="x", name=name, number=1, state="running")

    status = WorkflowStatus(name="demo", state="running", services=[
        ServiceStatus(name="db", state="running", replicas=1, containers=[container("demo-db-1")]),
        ServiceStatus(name="web", state="running", replicas=1,
                      containers=[container("demo-web-1")]),
    ])  # fmt: skip
    out = io.StringIO()
    view = EventView(stream=out)
    view.expect(status)
    view(_event("healthy", service="db"))
    view.finish(status)
    assert out.getvalue().splitlines() == [
        "Container demo-db-1   Healthy",
        "Container demo-web-1  Running",
    ]


def test_build_output_is_prefixed_with_its_service() -> None:
    out = io.StringIO()
    view = EventView(stream=out)
    view(_event("build", service="api", detail="Step 2/2 : RUN make"))
    view(_event("error", detail="build of api failed"))
    assert out.getvalue() == "api | Step 2/2 : RUN make\nerror: build of api failed\n"


def test_on_a_terminal_events_get_marks_and_one_line_per_container() -> None:
    out = Terminal()
    view = EventView(stream=out)
    view(_event("starting", service="db", container="demo-db-1"))
    view(_event("unhealthy", service="db", container="demo-db-1"))
    text = out.getvalue()
    assert "⠿" in text and "✘" in text and "Container demo-db-1  Unhealthy" in text
    assert view.block.rows == {"container:demo-db-1": view.block.rows["container:demo-db-1"]}


def test_with_json_every_event_is_a_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    view = EventView(as_json=True, stream=Terminal())
    view(_event("started", service="db", container="demo-db-1"))
    assert json.loads(capsys.readouterr().out)["action"] == "started"


def test_event_words() -> None:
    assert event_word("exited", 0) == "Exited" and event_word("exited", 2) == "Exited (2)"
    assert event_word("oom") == "Out of memory" and event_word("network") == "Network"


# -- the project of a folder --------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "name"),
    [("My App.v2", "myappv2"), ("_x-Y_", "x-y_"), ("web_2024", "web_2024"), ("Ünï", "n")],
)
def test_project_names_are_normalized_as_compose_does(folder: str, name: str) -> None:
    assert normalize_name(folder) == name


def test_compose_files_are_found_in_compose_order_here_or_in_a_parent(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_compose_file(deep) is None or not str(find_compose_file(deep)).startswith(
        str(tmp_path)
    )
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    assert find_compose_file(deep) == tmp_path / "docker-compose.yml"
    (tmp_path / "a" / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "a" / "docker-compose.yaml").write_text("services: {}\n")
    assert find_compose_file(deep) == tmp_path / "a" / "compose.yaml"


def test_the_name_comes_from_p_then_name_then_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "Shop.App"
    folder.mkdir()
    monkeypatch.chdir(folder)
    (folder / "compose.yaml").write_text("services: {}\n")
    assert Project.resolve(None, None).name == "shopapp"
    (folder / "compose.yaml").write_text("name: Billing\nservices: {}\n")
    assert Project.resolve(None, None).name == "billing"
    assert Project.resolve(None, "given").name == "given"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(click.UsageError, match="-p NAME"):
        Project.resolve(None, None, need_file=True)


def test_the_shell_variables_the_file_uses_travel_with_it(tmp_path: Path) -> None:
    text = "image: ${IMAGE:-x}\ncommand: echo $GREETING $$LITERAL $$${ESCAPED_THEN_REAL}\n"
    assert referenced_variables(text) == {"IMAGE", "GREETING", "ESCAPED_THEN_REAL"}
    (tmp_path / "compose.yaml").write_text(text)
    project = Project("p", tmp_path / "compose.yaml")
    project.environ = {"GREETING": "hi", "LITERAL": "no", "HOME": "/root"}
    assert project.interpolation_env() == {"GREETING": "hi"}


# -- stats --------------------------------------------------------------------------------


class _Interface(BaseModel):
    interface: str


class _Host(BaseModel):
    network: list[_Interface]


def test_veth_interfaces_are_hidden_unless_all_are_asked_for() -> None:
    data = _Host(network=[_Interface(interface=n) for n in ("eth0", "veth1a2b", "docker0")])
    assert [n.interface for n in without_veth(data, False).network] == ["eth0", "docker0"]
    assert without_veth(data, True) is data


# -- commands on a fake engine (what the workflow core will send) --------------------------


class _FakeWorkflow:
    name = "demo"

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.info = SimpleNamespace(services=["app"])
        self.up_options: dict[str, Any] = {}

    def status(self) -> Any:
        from dxflow._models import WorkflowStatus

        return WorkflowStatus(name="demo", state="missing", services=[])

    def config(self) -> str:
        return "the same model"

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def reload(self) -> None:
        pass

    def up(self, services: Any, progress: Any, **options: Any) -> Any:
        from dxflow._exceptions import WorkflowFailed

        self.up_options = options
        progress(_event("build", service="app", detail="Step 2/2 : RUN echo marker && exit 3"))
        progress(_event("build", service="app", detail="marker"))
        raise WorkflowFailed("building app failed: RUN exited with 3")

    def top(self) -> Any:
        from types import SimpleNamespace

        process = SimpleNamespace(container="demo-app-1", service="app", titles=["PID", "CMD"],
                                  processes=[["1", "sleep 3600"], ["7", "sh"]])  # fmt: skip
        return SimpleNamespace(containers=[process])


class _FakeEngine:
    def __init__(self, workflow: _FakeWorkflow) -> None:
        from types import SimpleNamespace

        self.workflows = SimpleNamespace(get=lambda name: workflow)

    def __enter__(self) -> _FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> _FakeWorkflow:
    workflow = _FakeWorkflow()
    monkeypatch.setattr("dxflow._cli._common.Options.engine", lambda self: _FakeEngine(workflow))
    (tmp_path / "compose.yaml").write_text("name: demo\nservices: {app: {build: .}}\n")
    monkeypatch.chdir(tmp_path)
    return workflow


def test_up_build_prints_the_build_lines_then_the_error(fake: _FakeWorkflow) -> None:
    from click.testing import CliRunner

    from dxflow._cli import cli

    done = CliRunner().invoke(cli, ["up", "-d", "--build", "--keep-on-failure"])
    assert done.exit_code == 1
    assert done.stdout.splitlines() == [
        "app | Step 2/2 : RUN echo marker && exit 3",
        "app | marker",
    ]
    assert done.stderr == "error: building app failed: RUN exited with 3\n"
    assert fake.up_options == {"wait": False, "timeout": None, "build": True,
                               "keep_on_failure": True}  # fmt: skip


def test_top_prints_a_table_per_container(fake: _FakeWorkflow) -> None:
    from click.testing import CliRunner

    from dxflow._cli import cli

    done = CliRunner().invoke(cli, ["top"])
    assert done.exit_code == 0
    assert done.stdout == "demo-app-1\nPID  CMD\n1    sleep 3600\n7    sh\n"
