"""Real processes: `dxflow` commands run as subprocesses against real sockets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def dxflow(
    *args: str | Path, check: bool = True, timeout: float = 60, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh process (`prefix`: a command that runs it, such as
    `setpriv ... --`)."""
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "dxflow", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"dxflow {args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


@dataclass
class Booted:
    home: Path
    runtime: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.runtime["url"])

    @property
    def pid(self) -> int:
        return int(self.runtime["pid"])

    @property
    def master_key(self) -> Path:
        return self.home / "keys" / "master.pem"


def boot(home: Path, *flags: str, prefix: Sequence[str] = ()) -> Booted:
    dxflow("boot", "up", "--home", home, "--port", "0", "--daemon", *flags, prefix=prefix)
    status = json.loads(dxflow("boot", "status", "--home", home, "--json").stdout)
    assert status["running"] and status["healthy"], status
    return Booted(home, status)


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    engine = boot(tmp_path_factory.mktemp("booted") / "home")
    yield engine
    dxflow("boot", "down", "--home", engine.home, check=False)
    stop_holders(engine.home)


def stop_holders(home: Path) -> None:
    """SIGTERM (a holder's quit) to the shell holders of `home` still running.

    Sessions outlive the engine by design, so a test stopped midway (a failed assertion,
    the per-test timeout) would leave its holders running for the rest of the suite.
    """
    marker = str(home / "run" / "shells").encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if marker in command and b"_holder" in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGTERM)


def wait_for(
    check: Callable[[], object], what: str, timeout: float = 30, *, why: Callable[[], str] = str
) -> object:
    """`check()`'s first truthy value, polled every 0.1 s; after `timeout` an assertion
    naming `what` (and `why()`: logs, states) fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}\n{why()}")
        time.sleep(0.1)
