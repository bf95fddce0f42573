"""Tools of benchmarks/bridges.py (a helper, not a benchmark): homes and engine processes
(a master and its agents, each `dxflow boot up --daemon`), percentiles, memory, echo timing.

Every process is started from a home under one temporary directory, so the clean-up can
find what is left of them by that directory in their command line, and stop them by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO, child_env

MIB = 1 << 20
FAST = "bridge_interval = 0.5\nbridge_grace = 3\nbridge_wait = 2\n"


def run_cli(*args: str, timeout: float = 60.0) -> str:
    """`python -m dxflow ARGS` from the work tree (cwd and PYTHONPATH: the venv's `dxflow`
    script may import another checkout); its output, or RuntimeError."""
    done = subprocess.run(
        [PYTHON, "-m", "dxflow", *args],
        cwd=REPO,
        env=child_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dxflow {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def make_home(root: Path, name: str, config: str = "") -> Path:
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config)
    return home


def runtime(home: Path) -> dict[str, Any]:
    """The engine's runtime file: pid, url (TCP), socket, engine_id."""
    data: dict[str, Any] = json.loads((home / "run" / "engine.json").read_text())
    return data


def boot(home: Path, *flags: str) -> dict[str, Any]:
    """`dxflow boot up --daemon` on 127.0.0.1, any free port; the runtime file."""
    run_cli("boot", "up", "--home", str(home), "--host", "127.0.0.1", "--port", "0",
            "--daemon", *flags, timeout=120)  # fmt: skip
    info = runtime(home)
    if not str(info["url"]).startswith("http://127.0.0.1:"):
        raise RuntimeError(f"{home.name} listens on {info['url']}, not http://127.0.0.1")
    return info


def boot_agents(
    root: Path, token: str, names: Iterable[str], parallel: int, config: str = ""
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Boot agents joining with `token`, `parallel` at a time: (runtimes, errors) by name."""

    def one(name: str) -> tuple[str, dict[str, Any] | None, str | None]:
        try:
            home = make_home(root, name, config)
            return name, boot(home, "--join", token, "--name", name), None
        except Exception as exc:
            return name, None, f"{type(exc).__name__}: {exc}"

    started: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    with ThreadPoolExecutor(max(1, parallel), "boot") as pool:
        for name, info, error in pool.map(one, list(names)):
            if info is not None:
                started[name] = info
            else:
                errors[name] = error or "?"
    return started, errors


def boot_down(homes: Iterable[Path], parallel: int = 8) -> list[str]:
    """`dxflow boot down` of every home, `parallel` at a time; the errors."""

    def one(home: Path) -> str | None:
        try:
            run_cli("boot", "down", "--home", str(home), timeout=60)
            return None
        except Exception as exc:
            return f"{home.name}: {exc}"

    with ThreadPoolExecutor(max(1, parallel), "down") as pool:
        return [e for e in pool.map(one, list(homes)) if e]


def leftovers(root: Path) -> list[int]:
    """Pids of the processes whose command line names a path under `root` (our engines,
    their shell holders), this process excepted."""
    marker = str(root).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in command:
            pids.append(int(entry.name))
    return pids


def kill_leftovers(root: Path) -> list[int]:
    """SIGKILL, by pid, what `leftovers` finds; the pids killed."""
    pids = leftovers(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def vm_rss(pid: int) -> int:
    """VmRSS of a process, in bytes (from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def wait_for(check: Callable[[], Any], what: str, timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def warm(call: Callable[[], Any], calls: int, retry_on: type[BaseException]) -> int:
    """`calls` untimed calls; one that raises `retry_on` is retried once. The number of
    such failures (a bridged call on a pooled connection the agent closed while idle)."""
    failures = 0
    for _ in range(calls):
        try:
            call()
        except retry_on:
            failures += 1
            call()
    return failures


def timings(call: Callable[[], Any], n: int) -> list[float]:
    """Seconds of each of `n` calls in a row."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def drain(channel: Any, quiet: float, timed_out: type[BaseException]) -> None:
    """Read a channel until nothing comes for `quiet` seconds."""
    while True:
        try:
            channel.recv(timeout=quiet)
        except timed_out:
            return


def echoes(channel: Any, n: int, timed_out: type[BaseException]) -> list[float]:
    """Seconds from sending one character until it comes back, `n` times; a Ctrl-U
    (untimed: the line is erased, its echo drained) every 50 characters."""
    out = []
    for i in range(n):
        start = time.perf_counter()
        channel.send(b"x")
        got = b""
        while b"x" not in got:
            message = channel.recv(timeout=10)
            if isinstance(message, bytes):
                got += message
        out.append(time.perf_counter() - start)
        if i % 50 == 49:
            channel.send(b"\x15")
            drain(channel, 0.05, timed_out)
    return out


@contextlib.contextmanager
def two_relays(url: str) -> Iterator[str]:
    """`url` (http://HOST:PORT) behind two bare Python TCP relays in a row (`_relay.py`,
    each a process of its own): the URL of the first. The limit of any relay through a
    master and an agent in Python: two more processes and hops, no framing."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    relays: list[subprocess.Popen[str]] = []
    try:
        for _ in range(2):
            relay = subprocess.Popen(
                [PYTHON, str(REPO / "benchmarks" / "_relay.py"), host, port],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(),
            )  # fmt: skip
            relays.append(relay)
            assert relay.stdout is not None
            host, port = "127.0.0.1", relay.stdout.readline().strip()
            if not port.isdigit():
                raise RuntimeError(f"the relay did not start (it printed {port!r})")
        yield f"http://{host}:{port}"
    finally:
        for relay in relays:
            with contextlib.suppress(Exception):
                assert relay.stdin is not None
                relay.stdin.close()
                relay.wait(10)
            if relay.poll() is None:
                relay.kill()
