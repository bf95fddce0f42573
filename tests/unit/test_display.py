"""How results look: compact reprs, print() text like the CLI's, HTML tables for Jupyter,
log lines that still iterate, and the ready progress display."""

from __future__ import annotations

import asyncio
import io
import pathlib
import re
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dxflow import Progress, _display, _progress
from dxflow._api._logs import AsyncLogs, LogLines, Logs
from dxflow.models import (
    AuditRecord,
    ComposeProjectSummary,
    ContainerState,
    ContainerStats,
    CpuInfo,
    CpuStats,
    DiskInfo,
    DiskStats,
    DockerInfo,
    EngineInfo,
    EngineStats,
    EnvExplanation,
    ExecResult,
    HostInfo,
    KeyInfo,
    KeyList,
    LogLine,
    MemoryInfo,
    MemoryStats,
    NetworkStats,
    ObjectInfo,
    ObjectListing,
    ObjectProgress,
    ObjectResult,
    Pong,
    ServiceStatus,
    ShareLink,
    ShellInfo,
    ShellResult,
    Token,
    WhoAmI,
    WorkflowEvent,
    WorkflowInfo,
    WorkflowStats,
    WorkflowStatus,
)

NOW = datetime.now(UTC)
EVIL = "<script>alert(1)</script>"
HEX = "f" * 64
PEM = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----\n"


def _container(name: str = "demo-web-1", state: str = "running", **kw: Any) -> ContainerState:
    return ContainerState(id=HEX, name=name, number=1, state=state, **kw)


def _status(services: int = 2) -> WorkflowStatus:
    web_1 = _container(health="healthy", ports=["0.0.0.0:8080->80/tcp"])
    web = ServiceStatus(name=EVIL, state="running", health="healthy", replicas=1,
                        containers=[web_1])  # fmt: skip
    init = ServiceStatus(name="init", state="exited", exit_code=0, replicas=1,
                         containers=[_container("demo-init-1", "exited", exit_code=0)])  # fmt: skip
    extra = [
        ServiceStatus(name=f"svc{i}", state="missing", replicas=1, containers=[])
        for i in range(services - 2)
    ]
    return WorkflowStatus(name="demo", state="running", services=[web, init, *extra])


def _objects(count: int = 2) -> list[ObjectInfo]:
    modified = datetime.now(UTC) - timedelta(minutes=3, seconds=10)  # "3 minutes ago" now
    return [
        ObjectInfo(path=f"data/{EVIL}{i}.csv", name=f"{EVIL}{i}.csv", type="file",
                   size=1536 * (i + 1), modified=modified)
        for i in range(count)
    ]  # fmt: skip


def _engine_info() -> EngineInfo:
    return EngineInfo(
        engine_id="dxf-0123", name=EVIL, version="1.0", started_at=NOW - timedelta(hours=2),
        home="/h", host=HostInfo(hostname="box", os="Linux", kernel="6", arch="x86_64",
                                 python="3.11"),
        cpu=CpuInfo(count=2), memory=MemoryInfo(total=8 << 30, available=4 << 30),
        disks=[DiskInfo(mount="/", device="/dev/vda", fstype="ext4", total=1 << 40,
                        used=1 << 39, free=1 << 39)],
        gpus=[], docker=DockerInfo(available=True, version="27", api_version="1.47"),
    )  # fmt: skip


def _engine_stats() -> EngineStats:
    return EngineStats(
        time=NOW, cpu=CpuStats(percent=12.5, per_core=[10, 15], load_average=(0.1, 0.2, 0.3)),
        memory=MemoryStats(total=8 << 30, used=2 << 30, available=6 << 30, percent=25,
                           swap_total=0, swap_used=0),
        disks=[DiskStats(mount="/", total=1 << 40, used=1 << 39, free=1 << 39, percent=50)],
        network=[NetworkStats(interface="eth0", bytes_sent=1, bytes_recv=2, packets_sent=1,
                              packets_recv=1, errors_in=0, errors_out=0)],
    )  # fmt: skip


def _key() -> KeyInfo:
    return KeyInfo(identity="alice", key_type="rsa", fingerprint="SHA256:" + "A" * 43,
                   permissions=["OBJECT", "SHELL"], created_at=NOW, public_key=PEM)  # fmt: skip


def _share() -> ShareLink:
    return ShareLink(id="abc", path=EVIL, url="http://e/s/abc.SECRET", writable=False,
                     expires_at=NOW + timedelta(hours=1), max_uses=5, uses=1, created_at=NOW,
                     created_by="alice", revoked=False)  # fmt: skip


MODELS: list[Any] = [
    _status(),
    _status().services[0],
    _container(),
    WorkflowInfo(name="demo", created_at=NOW, working_dir=f"/w/{EVIL}", services=["web", EVIL]),
    WorkflowStats(name="demo", containers=[ContainerStats(
        service="web", container=EVIL, cpu_percent=1.5, memory_usage=10 << 20,
        memory_limit=1 << 30, memory_percent=1, network_rx=1, network_tx=2, block_read=3,
        block_write=4, pids=3)]),
    LogLine(service="web", container="demo-web-1", stream="stdout", line=EVIL),
    WorkflowEvent(time=NOW, workflow="demo", action="started", container=EVIL, service="web"),
    ExecResult(exit_code=0, output=EVIL + "\n"),
    ShellResult(exit_code=3, output=EVIL),
    *_objects(1),
    ObjectListing(path="data", items=_objects(3), total=3),
    ObjectProgress(action="zipping", path=EVIL, entries=3, bytes=2048),
    ShellInfo(name="sh-1", command=["/bin/sh", EVIL], pid=12, state="running", created=NOW,
              rows=24, cols=80),
    _key(),
    KeyList(keys=[_key()]),
    Token(token="SECRET-TOKEN", identity="alice", permissions=["OBJECT"],
          expires_at=NOW + timedelta(hours=1)),
    WhoAmI(identity=EVIL, permissions=["OBJECT"], engine_id="dxf-0123"),
    Pong(engine_id="dxf-0123", identity=EVIL, time=NOW),
    _engine_info(),
    _engine_stats(),
    _share(),
    AuditRecord(id=7, time=NOW, identity="alice", operation="objects.read", target=EVIL,
                outcome="ok", client="local"),
    EnvExplanation(variable="PORT", value=EVIL, source="env"),
    ComposeProjectSummary(name="demo", managed=True, state="running", services=[EVIL]),
]  # fmt: skip
IDS = [type(m).__name__ for m in MODELS]


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_a_repr_is_one_short_line_naming_the_class(model: Any) -> None:
    text = repr(model)
    assert text.startswith(f"<{type(model).__name__} ") and text.endswith(">")
    assert "\n" not in text and len(text) <= _display.SUMMARY_WIDTH
    assert HEX not in text  # ids are cut to 12 hex digits, as docker shows them


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_print_shows_readable_text_not_the_pydantic_repr(model: Any) -> None:
    text = str(model)
    assert text and f"{type(model).__name__}(" not in text
    assert "=" not in text.split("\n")[0] or isinstance(model, EnvExplanation | ExecResult)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_the_html_escapes_what_it_shows(model: Any) -> None:
    page = model._repr_html_()
    assert page and page.count("<script>") == 0
    assert "&lt;script&gt;" in page or EVIL not in str(model.model_dump())


@pytest.mark.parametrize("model", [_status(), *MODELS[3:5], MODELS[9], MODELS[10]])
def test_status_stats_and_listings_are_html_tables(model: Any) -> None:
    page = model._repr_html_()
    assert '<table class="dxflow">' in page and "<th>" in page and "<style>" in page


def test_a_status_is_a_table_like_ps_one_row_per_container() -> None:
    lines = str(_status()).split("\n")
    assert lines[0] == "workflow demo: running"
    assert lines[1].split() == ["NAME", "SERVICE", "ID", "STATUS", "PORTS"]
    assert lines[2].split()[:5] == ["demo-web-1", EVIL, "f" * 12, "running", "(healthy)"]
    assert lines[3].split() == ["demo-init-1", "init", "f" * 12, "exited", "(0)"]
    assert (
        repr(_status())
        == f"<WorkflowStatus demo running: {EVIL} running (healthy), init exited (0)>"
    )


def test_a_big_status_keeps_its_repr_short() -> None:
    status = _status(services=200)
    assert len(repr(status)) == _display.SUMMARY_WIDTH and repr(status).endswith("…>")
    assert len(str(status).split("\n")) == 2 + 200  # print() shows every container


def test_a_listing_looks_like_ls_l_with_human_sizes() -> None:
    listing = ObjectListing(path="data", items=_objects(2), total=5)
    text = str(listing).split("\n")
    assert text[0] == "data" and text[1].split() == ["TYPE", "SIZE", "MODIFIED", "PATH"]
    assert text[2].split()[:3] == ["file", "1.5", "KiB"]
    assert text[-1] == "2 of 5 entries"
    assert repr(_objects(1)[0]).endswith("1.5 KiB modified 3 minutes ago>")


def test_keys_never_show_a_pem_block() -> None:
    for shown in (repr(_key()), str(_key()), _key()._repr_html_(), str(KeyList(keys=[_key()]))):
        assert "BEGIN" not in shown and "MIIB" not in shown
    assert "SHA256:AAAAAAAAAAAA…" in repr(_key())
    assert "SHA256:" + "A" * 43 in str(_key())  # print() shows the whole fingerprint


def test_credentials_stay_out_of_reprs() -> None:
    token = MODELS[IDS.index("Token")]
    assert all("SECRET" not in s for s in (repr(token), str(token), token._repr_html_()))
    assert "SECRET" not in repr(_share())
    assert "http://e/s/abc.SECRET" in str(_share())  # asked for: shown by print and Jupyter


def test_a_failed_command_says_its_exit_code() -> None:
    assert str(ExecResult(exit_code=0, output="ok\n")) == "ok"
    assert str(ExecResult(exit_code=2, output="no\n")) == "no\n[exit code 2]"
    assert "exit code 2" in ExecResult(exit_code=2, output="")._repr_html_()


def test_an_event_prints_as_a_line_of_up() -> None:
    event = WorkflowEvent(time=NOW, workflow="demo", action="exited", service="init",
                          container="demo-init-1", exit_code=0)  # fmt: skip
    assert str(event).endswith("  demo-init-1  exited (exit 0)")
    assert re.match(r"^\d\d:\d\d:\d\d  ", str(event))


def test_models_without_a_view_keep_the_pydantic_look() -> None:
    result = ObjectResult(path="a", ok=True)
    assert repr(result) == "ObjectResult(path='a', ok=True, code=None, error=None)"
    assert result._repr_html_() is None  # Jupyter falls back to the repr


# -- values --------------------------------------------------------------------------------


def test_human_values() -> None:
    assert [_display.human_bytes(v) for v in (None, 0, 1023, 1536, 5 << 30)] == [
        "-", "0 B", "1023 B", "1.5 KiB", "5.0 GiB"]  # fmt: skip
    assert _display.short_id(HEX) == "f" * 12
    assert _display.short_id("sha256:" + HEX) == "f" * 12
    assert _display.short_id("demo-web-1") == "demo-web-1"
    assert _display.human_time(NOW - timedelta(minutes=3), NOW) == "3 minutes ago"
    assert _display.human_time(NOW + timedelta(hours=1, seconds=1), NOW) == "in 1 hour"
    assert _display.human_time(NOW, NOW) == "just now"
    assert _display.human_time(NOW - timedelta(days=30), NOW)[:2] == "20"  # a date
    assert _display.human_duration(90061) == "1 day"
    assert _display.clip("a\nb" * 200, 20) == ("a\\nb" * 5)[:19] + "…"


# -- lists -----------------------------------------------------------------------------------


def test_a_listing_is_still_a_list() -> None:
    items = _objects(3)
    shown = _display.Listing(items)
    assert shown == items and isinstance(shown, list) and shown[1:] == items[1:]
    assert repr(shown) == repr(items)  # a list's repr, with each item's short repr
    assert str(shown).split("\n")[0].split() == ["TYPE", "SIZE", "MODIFIED", "PATH"]
    assert shown._repr_html_().count("<tr>") == 3 + 1
    assert _display.Listing([])._repr_html_() == "<i>(empty)</i>"


def test_a_huge_listing_shows_a_bounded_table() -> None:
    shown = _display.Listing(_objects(_display.MAX_ROWS + 7))
    page = shown._repr_html_()
    assert page.count("<tr>") == _display.MAX_ROWS + 1 and "7 more rows not shown" in page
    assert len(str(shown).split("\n")) == _display.MAX_ROWS + 7 + 1


# -- logs ------------------------------------------------------------------------------------


def _lines(count: int) -> list[LogLine]:
    return [
        LogLine(service=s, container=f"demo-{s}-1", stream=st, line=f"{EVIL} {i}")
        for i in range(count)
        for s, st in (("web", "stdout"), ("db", "stderr"))
    ]


def test_logs_iterate_as_before() -> None:
    logs = Logs(iter(_lines(2)), follow=False, label="workflow demo")
    assert next(logs).line == f"{EVIL} 0" and [x.line for x in logs][-1] == f"{EVIL} 1"


def test_showing_logs_reads_them_and_iterating_still_yields_them() -> None:
    logs = Logs(iter(_lines(2)), follow=False, label="workflow demo")
    page = logs._repr_html_()
    assert page.count("\n") == 3 and "&lt;script&gt;" in page and "<script>" not in page
    colours = re.findall(r'<span style="color:(#[0-9a-f]{6})">demo-', page)
    assert len(set(colours)) == 2  # one colour per service
    assert repr(logs).split("\n")[0] == f"demo-web-1 | {EVIL} 0"
    assert str(logs).split("\n")[1] == f"demo-db-1  | {EVIL} 0"
    assert [x.line for x in logs] == [x.line for x in _lines(2)]


def test_showing_a_live_stream_never_waits_for_it() -> None:
    def endless() -> Iterator[LogLine]:
        yield from _lines(1)
        raise AssertionError("a display read past what had arrived")

    logs = Logs(endless(), follow=True, label="workflow demo")
    assert next(logs).service == "web"
    assert "live stream" in logs._repr_html_() and "live stream" in repr(logs)
    assert "live stream" in str(logs)
    assert next(logs).service == "db"


def test_async_logs_iterate_and_await_to_a_list_that_shows() -> None:
    async def source() -> Any:
        for line in _lines(2):
            yield line

    async def main() -> tuple[list[str], LogLines, str]:
        walked = [x.line async for x in AsyncLogs(source(), False, "workflow demo")]
        pending = AsyncLogs(source(), False, "workflow demo")
        shown = repr(pending)  # never reads: a display cannot wait for an async stream
        return walked, await pending, shown

    walked, collected, shown = asyncio.run(main())
    assert walked == [x.line for x in _lines(2)] and "await it" in shown
    assert isinstance(collected, list) and len(collected) == 4
    assert "<pre" in collected._repr_html_() and str(collected).startswith("demo-web-1 |")


# -- progress --------------------------------------------------------------------------------


def test_progress_outside_jupyter_and_a_terminal_prints_plain_lines() -> None:
    out = io.StringIO()
    progress = Progress(file=out)
    assert progress.mode == "lines"
    for done in range(0, 101, 5):
        progress(done, 100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in out.getvalue()  # each tenth, once
    assert lines[-1].startswith("[##############################] 100%  100 B / 100 B")


def test_progress_on_a_terminal_redraws_one_line_with_eta() -> None:
    out = io.StringIO()
    progress = Progress(file=out, mode="terminal", interval=0)
    progress(25 << 20, 100 << 20)
    assert out.getvalue().startswith("\r[#######") and "ETA" in out.getvalue()
    progress(100 << 20, 100 << 20)
    assert out.getvalue().endswith("100.0 MiB / 100.0 MiB  " + out.getvalue().split("  ")[-1])
    assert out.getvalue().endswith("\n") and progress.finished


def _event(action: str, container: str | None = None, service: str | None = None) -> Any:
    return WorkflowEvent(time=NOW, workflow="demo", action=action, container=container,  # type: ignore[arg-type]
                         service=service)  # fmt: skip


def test_progress_of_up_keeps_one_row_per_container() -> None:
    out = io.StringIO()
    progress = Progress(file=out, mode="terminal", interval=0)
    progress(_event("network"))  # the project's own: a line, not a row
    progress(_event("build", service="web"))
    for action, who in (("creating", "db"), ("creating", "web"), ("started", "db"),
                        ("started", "web")):  # fmt: skip
        progress(_event(action, f"demo-{who}-1", who))
    progress(_event("healthy", service="db"))  # Docker's health: the service's containers
    assert progress.rows() == [
        ("demo-db-1", "db", "healthy", ""), ("demo-web-1", "web", "started", "")
    ]  # fmt: skip
    assert "\x1b[2F" in out.getvalue()  # the block (two rows, a message) is redrawn in place
    progress(_event("done"))
    assert progress.finished and out.getvalue().endswith("demo: done\x1b[K\n")


def test_progress_of_up_as_plain_lines_prints_each_event() -> None:
    out = io.StringIO()
    progress = Progress(file=out)
    progress(WorkflowEvent(time=NOW, workflow="demo", action="started", container="demo-db-1"))
    assert out.getvalue().endswith("  demo-db-1  started\n")


def test_progress_in_jupyter_updates_one_display(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[dict[str, str]] = []

    class Handle:
        def update(self, bundle: dict[str, str], raw: bool) -> None:
            shown.append(bundle)

    def display(bundle: dict[str, str], raw: bool, display_id: bool) -> Handle:
        assert raw and display_id
        shown.append(bundle)
        return Handle()

    monkeypatch.setattr(
        _progress, "_ipython_display", lambda: types.SimpleNamespace(display=display)
    )
    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)
    progress = Progress(interval=0)
    assert progress.mode == "notebook" and "waiting" in shown[0]["text/html"]
    progress(50, 100)
    progress(100, 100)
    assert len(shown) == 3 and '<progress value="1.000"' in shown[-1]["text/html"]
    assert shown[-1]["text/plain"].startswith("[##############################] 100%")
    progress(_event("started", EVIL, "web"))
    assert len(shown) == 5  # a second run: a new display, then its update
    page = shown[-1]["text/html"]
    assert "<table" in page and "&lt;script&gt;" in page and "<script>" not in page


def test_progress_true_is_a_ready_display() -> None:
    assert isinstance(_progress.as_progress(True), Progress)
    assert _progress.as_progress(False) is None and _progress.as_progress(print) is print


def test_a_view_follows_the_class_name_so_new_models_need_no_import() -> None:
    """`WorkflowTop` (from the workflow core's branch) looks like `docker compose top`."""
    from dxflow.models import Response

    class ContainerTop(Response):
        container: str
        service: str
        titles: list[str]
        processes: list[list[str]]

    class WorkflowTop(Response):
        containers: list[ContainerTop]

    top = WorkflowTop(containers=[ContainerTop(container="demo-web-1", service="web",
                                               titles=["PID", "CMD"],
                                               processes=[["1", EVIL]])])  # fmt: skip
    assert repr(top) == "<WorkflowTop 1 processes in 1 containers>"
    assert str(top).split("\n") == ["demo-web-1 (web)", "PID  CMD", f"1    {EVIL}"]
    assert "&lt;script&gt;" in top._repr_html_()


def test_bridges_show_as_tables_and_a_join_token_never_shows_its_secret() -> None:
    from dxflow.models import BridgeFacts, BridgeInfo, BridgeList, BridgeToken

    token = BridgeToken(token="dxflow-join:SECRET", id="t1", url="http://m:1", uses=2,
                        fingerprint="SHA256:abc", expires_at=NOW, labels={"g": "1"})  # fmt: skip
    for shown in (repr(token), str(token), token._repr_html_()):
        assert "SECRET" not in shown and "http://m:1" in shown
    assert token.token == "dxflow-join:SECRET"  # asked for by name: there it is
    agent = BridgeInfo(name="gpu-1", status="lost", joined_at=NOW, labels={"gpu": "true"},
                       facts=BridgeFacts(cpus=8, memory=2**34, gpus=1))  # fmt: skip
    assert repr(agent) == "<BridgeInfo gpu-1 lost gpu=true>"
    assert "8 CPUs, 16.0 GiB, 1 GPUs" in str(agent)
    listing = BridgeList(bridges=[agent])._repr_html_()
    assert '<table class="dxflow">' in listing and "gpu-1" in listing and "lost" in listing


def test_lists_of_workflows_shells_shares_and_projects_show_as_tables(
    tmp_path: pathlib.Path,
) -> None:
    """What a notebook user lists shows as a table, and a handle as its info, never a
    plain list of reprs (issue 10)."""
    import dxflow

    web = {"image": "busybox", "command": ["sleep", "1"], "ports": ["8080:80"]}
    job = {"image": "busybox", "depends_on": {"web": {"condition": "service_healthy"}}}
    compose = {"services": {"web": web, "job": job}}
    with dxflow.Engine(home=tmp_path / "home") as engine:
        engine.workflows.create("demo", compose)
        shown = engine.workflows.list()
        assert [w.name for w in shown] == ["demo"]
        page = shown._repr_html_()
        assert page is not None and "<table" in page and "demo" in page
        assert "demo" in str(shown) and "<Workflow" not in str(shown)
        handle = engine.workflows.get("demo")
        assert "<table" in (handle._repr_html_() or "")
        config = handle.config()
        assert len(repr(config)) < 120, repr(config)
        html = config._repr_html_()
        assert "job" in html and "web (healthy)" in html and "8080-&gt;80/tcp" in html
        assert "web (healthy)" in str(config)
        assert engine.shells.list()._repr_html_() == "<i>(empty)</i>"
        assert engine.objects.shares()._repr_html_() == "<i>(empty)</i>"
        assert isinstance(engine.workflows.projects(), list)
        assert hasattr(engine.workflows.projects(), "_repr_html_")
