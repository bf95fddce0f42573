"""The documentation's examples run against real engines, and the site builds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)  # every page boots an engine: minutes on a loaded machine
def test_every_documented_example_runs() -> None:
    missing = [tool for tool in ("jq", "openssl", "curl") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the documentation's shell examples need {missing} (scripts/setup.sh --dev)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "hooks" / "check_examples.py")],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   authentication.md bash" in done.stdout
