"""examples/swarm.py runs as a user runs it, against the three-node bed's manager."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.swarm import SwarmBed

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_the_swarm_example_runs(swarm: SwarmBed, tmp_path: Path) -> None:
    env = {**os.environ, "DXFLOW_HOME": str(tmp_path / "home"),
           "DXFLOW_DOCKER_HOST": swarm.manager.url}  # fmt: skip
    env.pop("DXFLOW_URL", None)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "swarm.py"), BUSYBOX_IMAGE],
                          capture_output=True, text=True, env=env, timeout=150)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "worker: running, 3/3 running" in out
    assert "the 3 tasks of before still run" in out
    assert "migrate said: schema migrated" in out
    assert not swarm.client().services()
