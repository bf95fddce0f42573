"""Shared helpers of the benchmark scripts: arguments, statistics, tables, processes.

Every benchmark measures dxflow AND a peer in the same run and reports ratios; absolute
times are printed too but mean little on a noisy machine. Human output goes to stderr
when `--json` is given, so stdout then holds exactly one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "BENCH_DIR",
    "PYTHON",
    "REPO",
    "Result",
    "Target",
    "bytecode_note",
    "child_env",
    "dxflow_cli",
    "dxflow_version",
    "fmt_ms",
    "fmt_us",
    "free_port",
    "median",
    "parse_args",
    "peer_command",
    "print_table",
    "stop_process",
    "wait_unix_health",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))  # the work tree's dxflow, as in the children (cwd=REPO)


@dataclass
class Target:
    """One figure compared with its target; `met` is informative, never a CI assertion."""

    name: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = False

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        state = "met" if self.met else "MISSED"
        return f"{self.name} {self.value:.3g} {self.unit} (target {op} {self.limit:g}): {state}"


@dataclass
class Result:
    """What a benchmark prints with `--json` (and what run_all.py collects)."""

    benchmark: str
    quick: bool
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [{**asdict(t), "met": t.met} for t in self.targets]
        return data

    def finish(self, args: argparse.Namespace, final_line: str) -> int:
        """Print targets, the final line (or the JSON document) and return the exit code."""
        out = human_stream(args)
        for target in self.targets:
            print(f"  target: {target.describe()}", file=out)
        for note in self.notes:
            print(f"  note: {note}", file=out)
        print(final_line, file=out)
        if args.json:
            print(json.dumps(self.to_json(), indent=2))
        if not self.ok:
            return 1
        if args.strict and not args.quick and not all(t.met for t in self.targets):
            return 2
        return 0


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke mode: a few iterations, < 20 s"
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 when a target is missed (full mode only; never in --quick)",
    )
    parser.add_argument("-n", "--runs", type=int, default=None, help="override the run count")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def human_stream(args: argparse.Namespace) -> TextIO:
    return sys.stderr if args.json else sys.stdout


def seconds_per_call(call: Callable[[], Any], n: int) -> float:
    """Seconds per call of `call`, over `n` calls in a row."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    print(line(cells[0]), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells[1:]:
        print(line(row), file=out)


PYCACHE = Path(tempfile.gettempdir()) / f"dxflow-bench-pycache-{os.getuid()}"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of child processes: no DXFLOW_* leaking in from the caller.

    Children run with cwd=REPO, so `python -c`/`-m` import the work tree's dxflow. They
    cache bytecode under PYCACHE (never in the work tree), as an installed package has
    its .pyc files: with PYTHONDONTWRITEBYTECODE set, every dxflow module (and no peer
    module, those come with .pyc from site-packages) would compile from source each start.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXFLOW_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


def bytecode_note() -> str:
    note = f"child processes cache bytecode under {PYCACHE} (PYTHONPYCACHEPREFIX)"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        note += "; the caller's PYTHONDONTWRITEBYTECODE is dropped for them"
    return note


def dxflow_cli() -> list[str]:
    """The `dxflow` command of this interpreter's environment."""
    script = Path(PYTHON).parent / "dxflow"
    return [str(script)] if script.exists() else [PYTHON, "-m", "dxflow"]


PEER_UVICORN = [
    "--app-dir",
    str(BENCH_DIR),
    "--lifespan",
    "off",
    "--no-access-log",
    "--no-server-header",
    "--no-proxy-headers",
    "--log-level",
    "warning",
    "--timeout-graceful-shutdown",
    "10",
]


def peer_command(*bind: str) -> list[str]:
    """`python -m uvicorn` serving peer_app with dxflow's uvicorn settings.

    dxflow serves with uvicorn's defaults for `loop` and `http` ("auto": uvloop and
    httptools when installed), no lifespan, no access log, no server header and no
    proxy headers; so does the peer.
    """
    return [PYTHON, "-m", "uvicorn", "peer_app:app", *PEER_UVICORN, *bind]


def dxflow_version() -> str:
    from dxflow._version import __version__

    return __version__


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_HEALTH = b"GET /api/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def unix_health(path: str) -> bool:
    """One raw GET /api/health over a unix socket: True on a 200."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.sendall(_HEALTH)
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_unix_health(
    path: Path,
    process: subprocess.Popen[bytes],
    timeout: float,
    interval: float = 0.002,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Poll until /api/health answers 200 on `path`; return the clock at that moment."""
    deadline = clock() + timeout
    target = str(path)
    while clock() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before healthy")
        if os.path.exists(target) and unix_health(target):
            return clock()
        time.sleep(interval)
    raise RuntimeError(f"{process.args!r} not healthy on {path} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> float:
    """SIGTERM, wait (then SIGKILL); return the seconds it took to exit."""
    if process.poll() is not None:
        return 0.0
    start = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    return time.perf_counter() - start


def run_cli(*args: str, timeout: float = 60.0) -> str:
    """Run this checkout's `dxflow` CLI and return its output; a failure raises."""
    done = subprocess.run(
        [*dxflow_cli(), *args],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dxflow {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def boot_daemon(home: str) -> dict[str, Any]:
    """`dxflow boot up --daemon` on loopback, any free port: its status (url, pid, ...)."""
    run_cli("boot", "up", "--home", home, "--host", "127.0.0.1", "--port", "0", "--daemon")
    status: dict[str, Any] = json.loads(run_cli("boot", "status", "--home", home, "--json"))
    if not str(status["url"]).startswith("http://127.0.0.1:"):
        raise RuntimeError(f"dxflow listens on {status['url']}, not http://127.0.0.1")
    return status


class Report:
    """What a benchmark script's runner shares: its messages, failures, targets and rows.

    A subclass sets `label`, `out` (a text stream), `result` (a Result) and `summary`.
    """

    label = "benchmark"
    out: TextIO
    result: Any
    summary: list[list[str]]

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def fail(self, section: str, exc: BaseException) -> None:
        message = f"{section}: {type(exc).__name__}: {exc}"
        self.result.ok = False
        self.result.error = message if self.result.error is None else self.result.error
        self.result.notes.append(f"FAILED {message}")
        print(f"{self.label} benchmark, {message}", file=sys.stderr, flush=True)

    def target(self, name: str, value: float, limit: float, unit: str, higher: bool) -> str:
        target = Target(name, value, limit, unit, higher_is_better=higher)
        self.result.targets.append(target)
        op = ">=" if higher else "<="
        return f"{op} {limit:g} {unit}: {'met' if target.met else 'MISSED'}"

    def row(self, figure: str, dxflow: str, peer: str, ratio: str, target: str = "-") -> None:
        self.summary.append([figure, dxflow, peer, ratio, target])
