"""The CLI on runtime swarm: `dxflow up --runtime swarm`, `ps` with the tasks' nodes,
`scale SERVICE=N`, a runtime that cannot change under an existing workflow, `down`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.images import BUSYBOX_IMAGE
from tests.testbed.swarm import SwarmBed

COMPOSE = f"""\
services:
  web:
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    deploy: {{replicas: 2, endpoint_mode: dnsrr}}
"""


def cli(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dxflow", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.timeout(300)
def test_up_ps_scale_down_on_the_swarm(swarm: SwarmBed, tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "compose.yaml").write_text(COMPOSE)
    env = {**os.environ, "DXFLOW_HOME": str(tmp_path / "home"),
           "DXFLOW_DOCKER_HOST": swarm.manager.url, "DXFLOW_PORT": "0"}  # fmt: skip
    env.pop("DXFLOW_URL", None)
    boot = cli(folder, env, "boot", "up", "--daemon")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    try:
        _up_ps_scale_down(swarm, folder, env)
    finally:
        cli(folder, env, "boot", "down")


def _up_ps_scale_down(swarm: SwarmBed, folder: Path, env: dict[str, str]) -> None:
    up = cli(folder, env, "up", "--runtime", "swarm", "-d")
    assert up.returncode == 0, up.stdout + up.stderr
    ps = cli(folder, env, "ps")
    assert ps.returncode == 0, ps.stderr
    header, *rows = ps.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "SERVICE", "STATE", "DESIRED", "NODE"]
    assert len([r for r in rows if " running " in r]) == 2
    assert all(any(n.name in r for n in swarm.nodes) for r in rows)
    scaled = cli(folder, env, "scale", "web=4")
    assert scaled.returncode == 0, scaled.stderr
    assert len([r for r in scaled.stdout.splitlines() if " running " in r]) == 4
    again = cli(folder, env, "up", "--runtime", "docker", "-d")
    assert again.returncode == 1
    assert "runs on runtime swarm, not docker" in again.stderr
    bad = cli(folder, env, "scale", "web=three")
    assert bad.returncode == 2 and "'web=three' is not SERVICE=N" in bad.stderr
    down = cli(folder, env, "down")
    assert down.returncode == 0, down.stderr
    assert not swarm.client().services()
