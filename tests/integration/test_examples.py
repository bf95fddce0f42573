"""The examples and notebooks run as users run them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import dxflow

from .conftest import boot
from .conftest import dxflow as run_cli

ROOT = Path(__file__).resolve().parents[2]


def run_example(script: str, home: Path, timeout: float = 120, **env: str) -> str:
    """Run examples/`script` on an in-process engine in `home`; its output."""
    environment = {**os.environ, "DXFLOW_HOME": str(home), **env}
    environment.pop("DXFLOW_URL", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def read_url(home: Path) -> str:
    """The URL the server booted on `home` bound (its runtime file)."""
    return str(json.loads((home / "run" / "engine.json").read_text())["url"])


def run_notebook(
    name: str, home: Path, monkeypatch: pytest.MonkeyPatch, timeout: int = 120
) -> list[Any]:
    """Execute notebooks/`name` in a real kernel; its outputs (none of them an error)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DXFLOW_HOME", str(home))
    monkeypatch.delenv("DXFLOW_URL", raising=False)
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return outputs


def _text(outputs: list[Any]) -> str:
    # A print() may reach the notebook as several stream outputs (the kernel flushes on a
    # timer: on a busy machine `print("exit code", 3)` came as "exit code" and " 3"), so
    # nothing goes between them: only outputs with data add it.
    return "".join(str(o.get("text", "")) + str(o.get("data") or "") for o in outputs)


def _html(outputs: list[Any]) -> list[str]:
    """The HTML each output shows (after nbclient applied the updates of live displays)."""
    return [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]


def _assert_shows_tables_not_reprs(outputs: list[Any]) -> None:
    """What a person sees: tables, never a pydantic repr or a PEM block."""
    text = _text(outputs)
    assert not re.search(r"\b(Workflow\w*|Service\w*|Object\w*|Shell\w*|Key\w*)\(", text), text
    assert "BEGIN" not in text and "<generator object" not in text


def test_quickstart_example(tmp_path: Path) -> None:
    out = run_example("quickstart.py", tmp_path / "home")
    assert "in-process engine dxf-" in out
    assert "objects: b'hello' read back by range" in out
    assert "output '42', exit code 1" in out
    assert "is refused key management" in out


@pytest.mark.docker
def test_workflow_example(tmp_path: Path, docker_ready: None) -> None:
    out = run_example("workflow/run.py", tmp_path / "home", 300, DEMO_NAME=f"ex{os.getpid()}")
    assert "hello from the demo" in out
    assert "exec in web -> exit 0" in out
    assert "down and removed" in out


@pytest.mark.docker
def test_main_job_workflow(tmp_path: Path, docker_ready: None) -> None:
    """The README's main job (scripts/run.sh): its Python part on a booted engine, twice."""
    home = tmp_path / "home"
    name = f"hello{os.getpid()}"
    boot(home)
    try:
        first = run_example("workflow/hello.py", home, 600, HELLO_NAME=name)
        assert f"workflow {name}: services web, worker" in first
        assert "healthy    web" in first and f"status of {name}: running" in first
        assert "worker | worker: fetch 1 ok" in first
        assert "it serves: report " in first  # the share link was fetched over HTTP
        assert "exit code 0" in first and "report.txt" in first  # the shell's command
        again = run_example("workflow/hello.py", home, 600, HELLO_NAME=name)
        assert f"workflow {name}: services web, worker" in again  # exist_ok: the same one
        assert "it serves: report " in again
        with dxflow.Engine.from_home(home) as engine:
            status = engine.workflows.get(name).status()
            assert status.state == "running"  # left running, as the main job promises
            assert engine.shells.get(f"{name}-shell").info.state == "running"
            links = [s for s in engine.objects.shares() if s.path == f"{name}/report.txt"]
            assert len(links) == 2  # one per run, each naming the server that runs
            assert all(str(s.url).startswith(read_url(home) + "/s/") for s in links)
        _readme_follow_up(home, name)
    finally:
        with dxflow.Engine.from_home(home) as engine:
            with contextlib.suppress(dxflow.NotFound):
                engine.shells.get(f"{name}-shell").remove()
            with contextlib.suppress(dxflow.NotFound):
                wf = engine.workflows.get(name)
                wf.down(volumes=True)
                wf.remove()
        run_cli("boot", "down", "--home", home, check=False)


def _readme_follow_up(home: Path, name: str) -> None:
    """The README's commands after run.sh, as typed there (but `logs` not followed and the
    shell not attached: both wait for a person)."""
    at = ("--home", home)
    ps = run_cli("ps", "-p", name, *at).stdout
    assert re.search(rf"{name}-web-1 +web +running +healthy ", ps), ps
    assert f"{name}-worker-1" in ps
    assert "worker: fetch 1 ok" in run_cli("logs", "-p", name, *at).stdout
    assert "pong" in run_cli("ping", *at).stdout.lower()
    assert "docker" in run_cli("info", *at).stdout.lower()
    assert run_cli("token", *at).stdout.strip().count(".") >= 1  # a bearer token
    run_cli("down", "-p", name, "-v", *at, timeout=180)
    with dxflow.Engine.from_home(home) as engine:
        assert engine.workflows.get(name).status().state == "missing"  # no container left


@pytest.mark.docker
def test_workflows_notebook(
    tmp_path: Path, docker_ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = run_notebook("workflows.ipynb", tmp_path / "home", monkeypatch, 300)
    assert any("hello from the demo" in str(o.get("data", {})) for o in outputs)
    _assert_shows_tables_not_reprs(outputs)
    pages = _html(outputs)
    status = [
        p for p in pages if "workflow notebook-demo: " in p
    ]  # running (partial before wfcore)
    assert status and '<table class="dxflow">' in status[0] and "notebook-demo-web-1" in status[0]
    assert "running (healthy)" in status[0] and "exited (0)" in status[0]
    progress = [p for p in pages if "dxflow-progress" in p]  # the live display, last state
    assert progress and "notebook-demo-worker-1" in progress[0] and "done" in progress[0]
    assert any("<pre" in p and "preparing" in p for p in pages)  # wf.logs(service="init")
    assert any("exit code 0" in p and "hello from the demo" in p for p in pages)  # wf.exec
    assert any("mem usage / limit" in p for p in pages)  # wf.stats()


def test_objects_example(tmp_path: Path) -> None:
    out = run_example("objects.py", tmp_path / "home")
    assert "sha256 matches: True" in out
    assert "restored: ['day0.csv', 'day1.csv', 'day2.csv']" in out
    assert "summary rows: 100 | s99 total: 594" in out
    assert "fsspec knows dxflow:// True" in out


def test_objects_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):  # running it again in the same home works
        outputs = run_notebook("objects.ipynb", tmp_path / "home", monkeypatch)
        text = _text(outputs)
        assert "summary of 5 days written" in text
        assert "entries zipped" in text and "cleaned up" in text
        _assert_shows_tables_not_reprs(outputs)
        pages = _html(outputs)
        listing = [p for p in pages if "day0.csv" in p and "<table" in p]
        assert listing and listing[0].count("<tr>") == 1 + 5 and " B</td>" in listing[0]
        assert any("dxflow-progress" in p and "100%" in p for p in pages)  # put(progress=True)
        # the share link; in-process with no server on the home it has no URL yet
        assert any("<th>url</th>" in p and "nb/dataset.zip" in p for p in pages)


def test_shells_example(tmp_path: Path) -> None:
    out = run_example("shells.py", tmp_path / "home")
    assert "pwd: /tmp | $GREETING: hello" in out
    assert "exit codes: [0, 1, 127]" in out
    assert "missed while away: ['2', '3']" in out
    assert "exited with code 4" in out


def test_shells_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):  # running it again in the same home works
        outputs = run_notebook("shells.ipynb", tmp_path / "home", monkeypatch)
        text = _text(outputs)
        assert "[0, 1, 127]" in text and "you said: forty-two" in text
        assert "text/html" in text and "exit code 3" in text
        _assert_shows_tables_not_reprs(outputs)
        pages = _html(outputs)
        assert any("<th>command</th>" in p and "/bin/sh" in p for p in pages)  # sh.info
        assert any("exit code 2" in p and "<pre" in p for p in pages)  # a failed run
        keys = [p for p in pages if "<th>fingerprint</th>" in p]
        assert keys and "SHA256:" in keys[0] and "master" in keys[0]


def test_security_example(tmp_path: Path) -> None:
    out = run_example("security.py", tmp_path / "home")
    assert "workflow with the host's root: refused" in out
    assert "workflow with the Docker socket: refused" in out
    assert "workflow binding a file of the storage root: accepted" in out
    assert "key management: refused" in out
    assert "audit: 5 refusals recorded" in out
    if os.geteuid() == 0:  # an engine run as root runs the key's shells as `dxflow`
        assert "shell runs as: dxflow" in out
        assert "cat master.pem: exit 1, Permission denied" in out


def test_async_engine_example(tmp_path: Path) -> None:
    out = run_example("async_engine.py", tmp_path / "home")
    assert "async objects: b'hello from async', 16 bytes" in out
    assert "async shell: output '42', exit code 0" in out
    assert "after close: EngineClosed (this AsyncEngine (in-process) was closed" in out
    assert "blocking twin reads: b'hello from async'" in out


def test_proxies_example(tmp_path: Path) -> None:
    out = run_example("proxies.py", tmp_path / "home")
    served = r"proxy example-web -> 127\.0\.0\.1:\d+, serving at http://127\.0\.0\.1:\d+/"
    assert re.search(served, out), out
    assert "auth none: 200 hello from the example app (without an Authorization header)" in out
    assert "auth token: without 401, with 200" in out
    # the token was checked by the proxy and stripped before forwarding
    assert "the app answered: hello from the example app (without an Authorization" in out
    assert re.search(r"target gone: 502 .*127\.0\.0\.1:\d+", out), out
    assert re.search(r"stats: 3 requests, answers \{'2xx': 2, '5xx': 1\}", out), out
    assert "'auth': 1" in out  # the request without a token, refused
    assert "removed; proxies left: []" in out


def test_proxies_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):  # running it again in the same home works
        outputs = run_notebook("proxies.ipynb", tmp_path / "home", monkeypatch)
        text = _text(outputs)
        assert "auth none: 200 hello from the notebook's app, path /docs/" in text
        assert "auth token: without 401, with 200" in text
        assert "proxies left: []" in text and "cleaned up" in text
        _assert_shows_tables_not_reprs(outputs)
        assert not re.search(r"\bProxy\w*\(", text), text
        pages = _html(outputs)
        info = [p for p in pages if "nb-web" in p and "127.0.0.1:" in p]
        assert len(info) >= 2  # web.info and engine.proxies.list()
        assert all('<table class="dxflow">' in page for page in info)
        stats = [p for p in pages if "2xx" in p]  # web.stats(): answers by class, per target
        assert stats and '<table class="dxflow">' in stats[0] and "127.0.0.1:" in stats[0]


def test_bridges_example(tmp_path: Path) -> None:
    out = run_example("bridges.py", tmp_path / "home")
    assert re.search(r"master up at http://127\.0\.0\.1:\d+", out), out
    assert "agent lab-1: connected, labels {'site': 'example'}" in out
    assert "agent's object: written through the master" in out
    assert "master's store: no such object (it is the agent's)" in out
    assert "agent's shell: output '42', exit 0" in out
    assert "workflows on the agent: refused" in out
    assert "fleet.map ping: ok ['lab-1'], errors []" in out
    assert re.search(r"lab-1\s+connected", out), out
    assert out.rstrip().endswith("both engines stopped")


def test_bridges_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):  # running it again works (its engines are on homes of their own)
        outputs = run_notebook("bridges.ipynb", tmp_path / "home", monkeypatch)
        text = _text(outputs)
        assert re.search(r"master at http://127\.0\.0\.1:\d+", text), text
        assert "written through the master" in text
        assert "not in the master's store: it is the agent's" in text
        assert "output '42', exit code 0" in text and "as bridge-master/master" in text
        assert "refused: workflows.list needs WORKFLOW" in text
        assert "ok: ['nb-agent'] errors: {}" in text
        assert "disconnected" in text and "{'nb-agent': 'EngineUnavailable'}" in text
        assert "agents left: []" in text and "cleaned up" in text
        _assert_shows_tables_not_reprs(outputs)
        assert not re.search(r"\bBridge\w*\(", text), text
        pages = _html(outputs)
        info = [p for p in pages if "nb-agent" in p and "connected" in p]
        assert len(info) >= 2  # the bridge and engine.bridges.list()
        assert all('<table class="dxflow">' in page for page in info)
