"""The engine reports the real Docker Engine it drives."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import dxflow


def _docker_running() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def test_info_reports_the_docker_version(tmp_path: Path) -> None:
    if not _docker_running():
        if os.environ.get("DXFLOW_REQUIRE_DOCKER") == "1":
            pytest.fail(
                "the test command needs a running Docker Engine (scripts/setup.sh starts one)"
            )
        pytest.skip("no Docker Engine here (the test command requires and starts one)")
    expected = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with dxflow.Engine(home=tmp_path) as engine:
        docker = engine.info().docker
    assert docker.available and docker.version == expected and docker.api_version


def test_unreachable_docker_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DXFLOW_DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with dxflow.Engine(home=tmp_path, profile=None) as engine:
        docker = engine.info().docker
    assert not docker.available
    assert docker.error is not None and "/nonexistent/docker.sock" in docker.error
