"""The examples and notebooks run as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_example(tmp_path: Path) -> None:
    env = {**os.environ, "DXFLOW_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "in-process engine dxf-" in done.stdout
    assert "is refused key management" in done.stdout


@pytest.mark.docker
def test_workflow_example(tmp_path: Path, docker_ready: None) -> None:
    env = {**os.environ, "DXFLOW_HOME": str(tmp_path / "home"), "DEMO_NAME": f"ex{os.getpid()}"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "workflow" / "run.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello from the demo" in done.stdout
    assert "exec in web -> exit 0" in done.stdout
    assert "down and removed" in done.stdout


@pytest.mark.docker
def test_workflows_notebook(
    tmp_path: Path, docker_ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DXFLOW_HOME", str(tmp_path / "home"))
    notebook = nbformat.read(ROOT / "notebooks" / "workflows.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("hello from the demo" in str(o.get("data", {})) for o in outputs)


def test_objects_example(tmp_path: Path) -> None:
    env = {**os.environ, "DXFLOW_HOME": str(tmp_path / "home")}
    env.pop("DXFLOW_URL", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "objects.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sha256 matches: True" in done.stdout
    assert "restored: ['day0.csv', 'day1.csv', 'day2.csv']" in done.stdout
    assert "summary rows: 100 | s99 total: 594" in done.stdout
    assert "fsspec knows dxflow:// True" in done.stdout


def test_objects_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DXFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DXFLOW_URL", raising=False)
    notebook = nbformat.read(ROOT / "notebooks" / "objects.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {})) for o in outputs)
    assert "summary of 5 days written" in text
    assert "entries zipped" in text and "cleaned up" in text


def test_shells_example(tmp_path: Path) -> None:
    env = {**os.environ, "DXFLOW_HOME": str(tmp_path / "home")}
    env.pop("DXFLOW_URL", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "shells.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pwd: /tmp | $GREETING: hello" in done.stdout
    assert "exit codes: [0, 1, 127]" in done.stdout
    assert "missed while away: ['2', '3']" in done.stdout
    assert "exited with code 4" in done.stdout


def test_shells_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DXFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DXFLOW_URL", raising=False)
    notebook = nbformat.read(ROOT / "notebooks" / "shells.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {})) for o in outputs)
    assert "[0, 1, 127]" in text and "you said: forty-two" in text
    assert "text/html" in text and "exit code 3" in text
