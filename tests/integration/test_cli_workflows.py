"""`dxflow workflow ...` against a booted engine and the real Docker Engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..docker.images import BUSYBOX_IMAGE
from .conftest import Booted
from .conftest import dxflow as run

# Every command is a fresh process (under a second alone, ten on a loaded machine), each
# bounded by its own timeout; the per-test guard only catches a hang, so it allows for many.
pytestmark = pytest.mark.timeout(600)


def test_workflow_commands_end_to_end(booted: Booted, tmp_path: Path, docker_ready: None) -> None:
    name = f"cli{os.getpid()}"
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"""
services:
  job:
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "echo done $$GREETING"]
    environment: {{GREETING: "${{GREETING:-hi}}"}}
  app:
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "echo app up; sleep 3600"]
    init: true
    depends_on:
      job: {{condition: service_completed_successfully}}
""")
    home = ["--home", booted.home]
    try:
        created = run("workflow", "create", name, "-f", compose, "-e", "GREETING=hello", *home)
        assert "services app, job" in created.stdout
        up = run("workflow", "up", name, "--timeout", "60", *home)
        assert f"{name}-job-1" in up.stdout and "started" in up.stdout
        assert "SERVICE  STATE" in up.stdout  # the status table after the progress lines
        ps = json.loads(run("workflow", "ps", name, "--json", *home).stdout)
        assert {s["name"]: s["state"] for s in ps["services"]} == {
            "job": "exited",
            "app": "running",
        }
        code = run("workflow", "exec", name, "app", "sh", "-c", "echo inside; exit 4", *home,
                   check=False)  # fmt: skip
        assert code.returncode == 4 and code.stdout == "inside\n"
        logs = run("workflow", "logs", name, "--service", "job", *home).stdout
        assert "done hello" in logs
        listed = json.loads(run("workflow", "list", "--json", *home).stdout)
        assert [w["name"] for w in listed] == [name]
        config = json.loads(run("workflow", "config", name, *home).stdout)
        assert config["services"]["job"]["environment"] == {"GREETING": "hello"}
        down = run("workflow", "down", name, *home)
        assert "removed" in down.stdout
    finally:
        run("workflow", "remove", name, *home, check=False)
    missing = run("workflow", "ps", name, *home, check=False)
    assert missing.returncode == 1 and f"no workflow named '{name}'" in missing.stderr
