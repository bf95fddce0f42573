"""Shell sessions: keystroke echo, output throughput, scrollback replay, idle sessions.

All in one run, on one booted engine (`dxflow boot up --daemon`, TCP on 127.0.0.1) and,
as the peer, Jupyter Server terminals (`jupyter_server_terminals` + terminado) running
the same shell, `/bin/sh`. Both are driven by the same raw client, the `websockets`
package with the options of dxflow's own SDK (`dxflow/_transports/_ws.py`: 16 MiB
messages, websockets' default compression, i.e. permessage-deflate offered, as browsers
do), dxflow and Jupyter alternating:

1. **echo**: one character typed at the prompt, timed until its echo comes back over the
   loopback WebSocket; N samples each after a warm-up. Targets: dxflow p50 <= 2 ms and
   >= 10x lower than Jupyter's p50.
2. **throughput**: the shell `cat`s a file of 50 MB of base64 text (made beforehand, so
   its generator is not measured) then prints a unique end marker; MB/s of terminal bytes
   at the client until the marker. Targets: dxflow >= 150 MB/s and >= 4x Jupyter's.
   Also shown: dxflow with a client that offers no compression, and the floor, a bare
   PTY read by a local Python loop (no server, no network).
3. **replay**: a session that has printed >= 1 MiB; attach with `offset` = end - 1 MiB,
   timed from the connect until the 1 MiB has been received. Target: <= 50 ms (median).
   No peer: Jupyter replays only its last 20 chunks of output.
4. **idle sessions**: 200 sessions at once, created over HTTP; the engine's RSS growth
   (target <= 100 MiB) and every holder process's RSS (target <= 15 MiB, the largest).
   Peer for context: Jupyter's RSS growth with 200 terminals.

1 MB = 10^6 bytes. `--quick` (the CI smoke, < 40 s): 50 echo samples, 5 MB of output,
one round, 5 replays, 20 sessions. Every session and terminal is removed at the end,
the engine is stopped with `dxflow boot down`, Jupyter by its context manager, and
everything lives in one temporary directory, removed at the end, also on failure.

    python benchmarks/shells.py [--quick] [--json] [-n ROUNDS] [--samples N]
                                [--mb MB] [--sessions N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import psutil
from _common import (
    REPO,
    Result,
    Target,
    bytecode_note,
    child_env,
    dxflow_cli,
    fmt_ms,
    human_stream,
    median,
    parse_args,
    print_table,
)
from _file_peers import jupyter_server

MIB = 1 << 20
MB = 1e6

ECHO_P50_TARGET_S = 0.002
ECHO_RATIO_TARGET = 10.0
THROUGHPUT_TARGET_MB_S = 150.0
THROUGHPUT_RATIO_TARGET = 4.0
REPLAY_TARGET_S = 0.050
ENGINE_RSS_TARGET_MIB = 100.0
HOLDER_RSS_TARGET_MIB = 15.0

SHELL = "/bin/sh"
REPLAY_BYTES = MIB
REPLAY_SOURCE = 3 * MIB  # random bytes behind the replay session's output (4 MiB of text)
CLEAR_EVERY = 100  # keystrokes between two (untimed) Ctrl-U, so the line never fills
OFFSET = struct.Struct(">Q")
# As dxflow's SDK connects (dxflow/_transports/_ws.py); compression is left at websockets'
# default (permessage-deflate offered), as a browser does.
WS_OPTIONS: dict[str, Any] = {"max_size": 16 << 20, "open_timeout": 30, "ping_interval": 20}
DEFLATE = "deflate"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Plan:
    samples: int
    warmup: int
    raw_bytes: int  # random bytes; the base64 text is 4/3 of that, plus newlines
    rounds: int
    replays: int
    sessions: int


def plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    mb = args.mb or (5.0 if quick else 50.0)
    return Plan(
        samples=args.samples or (50 if quick else 300),
        warmup=10 if quick else 30,
        raw_bytes=int(mb * MB * 3 / 4),
        rounds=args.runs or (1 if quick else 3),
        replays=5 if quick else 20,
        sessions=args.sessions or (20 if quick else 200),
    )


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=None, help="echo samples per server")
    parser.add_argument("--mb", type=float, default=None, help="MB of base64 text to print")
    parser.add_argument("--sessions", type=int, default=None, help="idle sessions to create")


# -- helpers -------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def mb_s(size: float, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else float("nan")


def write_base64(path: Path, raw: int, seed: int) -> int:
    """`raw` random bytes as base64 text in 76-character lines (as `base64` prints them)."""
    rng = random.Random(seed)
    block = 57 * 1024 * 16  # a multiple of 57: every line is whole
    written = 0
    with open(path, "wb") as out:
        left = raw
        while left:
            size = min(block, left)
            written += out.write(base64.encodebytes(rng.randbytes(size)))
            left -= size
    return written


def marker_command() -> tuple[str, str]:
    """A command printing a unique marker that its own echo does not contain."""
    tag = secrets.token_hex(6)
    return f"printf '%s_%s\\n' DXBENCH {tag}", f"DXBENCH_{tag}"


def cpu_seconds(processes: Sequence[psutil.Process]) -> list[float]:
    values = []
    for process in processes:
        try:
            times = process.cpu_times()
            values.append(times.user + times.system)
        except psutil.Error:
            values.append(float("nan"))
    return values


def pty_floor(path: Path) -> tuple[float, int]:
    """`cat path` into a fresh PTY read by a bare Python loop: (seconds, bytes)."""
    master, slave = os.openpty()
    count = 0
    try:
        start = time.perf_counter()
        with subprocess.Popen(
            ["cat", str(path)], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
        ) as cat:
            os.close(slave)
            slave = -1
            while True:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the writer is gone and everything is read
                    break
                if not chunk:
                    break
                count += len(chunk)
            seconds = time.perf_counter() - start
            cat.wait(timeout=30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return seconds, count


def jupyter_missing() -> str | None:
    import importlib.util

    missing = [
        m
        for m in ("jupyter_server", "jupyter_server_terminals", "terminado")
        if importlib.util.find_spec(m) is None
    ]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not installed (`.venv/bin/pip install jupyter_server "
        "jupyter_server_terminals terminado`): the Jupyter peer is skipped"
    )


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the children started inside (restored after)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cli(*args: str, timeout: float = 60.0) -> str:
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


def _jupyter_request(base: str, token: str, method: str, path: str) -> Any:
    body = b"{}" if method == "POST" else None
    request = urllib.request.Request(  # noqa: S310 - loopback
        base + path,
        data=body,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with NO_PROXY.open(request, timeout=30) as answer:
        data = answer.read()
    return json.loads(data) if data else None


# -- the two clients -----------------------------------------------------------------------


class Terminal:
    """One WebSocket client of a terminal: input as text, output as chunks of bytes/str."""

    label = "?"
    encode: Callable[[str], Any] = staticmethod(lambda text: text)

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.missed = 0

    @property
    def extensions(self) -> str:
        """The negotiated WebSocket extensions, shortly: `deflate` or `none`."""
        header = str(self.ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        return "deflate" if "permessage-deflate" in header else header or "none"

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def output(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)

    async def until(self, needle: str, seconds: float) -> int:
        """Read output until `needle` appears; the number of bytes (characters) read."""
        token = self.encode(needle)
        keep = len(token) - 1
        tail = token[:0]
        count = 0
        async with asyncio.timeout(seconds):
            while True:
                chunk = await self.output()
                count += len(chunk)
                if token in chunk or (keep and token in tail + chunk[:keep]):
                    return count
                if keep:
                    tail = chunk[-keep:] if len(chunk) >= keep else (tail + chunk)[-keep:]

    async def drain(self, quiet: float = 0.1, limit: float = 10.0) -> None:
        """Read until nothing comes for `quiet` seconds (at most `limit` seconds)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.output(), quiet)  # websockets' recv: cancel-safe
            except TimeoutError:
                return

    async def ready(self) -> None:
        """Wait for the shell to answer, then for its prompt to settle."""
        command, marker = marker_command()
        await self.send(command + "\n")
        await self.until(marker, 30)
        await self.drain()


class DxflowTerminal(Terminal):
    """`GET /api/shells/{name}/attach`: binary frames = 8-byte offset + bytes, JSON control."""

    label = "dxflow"
    encode = staticmethod(str.encode)

    def __init__(self, ws: Any, hello: dict[str, Any]) -> None:
        super().__init__(ws)
        self.hello = hello
        self.end = int(hello["end"])

    @classmethod
    async def open(
        cls,
        base: str,
        token: str,
        name: str,
        offset: int | None = None,
        compression: str | None = DEFLATE,
    ) -> DxflowTerminal:
        from websockets.asyncio.client import connect

        query = "" if offset is None else f"?offset={offset}"
        ws = await connect(
            f"{base}/api/shells/{name}/attach{query}",
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=compression,
            **WS_OPTIONS,
        )
        hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if hello.get("type") != "hello":
            await ws.close()
            raise RuntimeError(f"dxflow attach to {name} answered {hello}")
        return cls(ws, hello)

    async def send(self, text: str) -> None:
        await self.ws.send(text.encode())

    async def output(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                (at,) = OFFSET.unpack_from(message)
                data = message[OFFSET.size :]
                self.end = at + len(data)
                return data
            control = json.loads(message)
            kind = control.get("type")
            if kind == "missed":
                self.missed += int(control["to"]) - int(control["from"])
            elif kind in ("exit", "error"):
                raise RuntimeError(f"dxflow session: {control}")


class JupyterTerminal(Terminal):
    """`/terminals/websocket/{name}`: JSON arrays `["stdin", ...]` / `["stdout", ...]`."""

    label = "jupyter"

    @classmethod
    async def open(cls, base: str, token: str, name: str) -> JupyterTerminal:
        from websockets.asyncio.client import connect

        ws = await connect(f"{base}/terminals/websocket/{name}?token={token}", **WS_OPTIONS)
        return cls(ws)

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps(["stdin", text]))

    async def output(self) -> str:
        while True:
            message = json.loads(await self.ws.recv())
            if message[0] == "stdout":
                return str(message[1])
            if message[0] == "disconnect":
                raise RuntimeError("the Jupyter terminal went away")


# -- the benchmark -------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.plan = plan(args)
        self.result = Result("shells", args.quick, notes=[bytecode_note()])
        self.scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-shells-"))
        self.home = self.scratch / "home"
        self.data = self.scratch / "data"
        self.output_file = self.data / "out.b64"
        self.replay_file = self.data / "replay.b64"
        self.output_bytes = 0
        self.url = ""
        self.ws_url = ""
        self.pid = 0
        self.token = ""
        self.engine: Any = None
        self.shells: dict[str, Any] = {}  # name -> Shell (removed at the end)
        self.jupyter: tuple[str, str] | None = None  # (base_url, token)
        self.jupyter_pid = 0
        self.terminals: list[str] = []  # Jupyter terminal names (deleted at the end)
        self.summary: list[list[str]] = []
        self.booted = False

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def fail(self, section: str, exc: BaseException) -> None:
        message = f"{section}: {type(exc).__name__}: {exc}"
        self.result.ok = False
        self.result.error = message if self.result.error is None else self.result.error
        self.result.notes.append(f"FAILED {message}")
        print(f"shells benchmark, {message}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def target(self, name: str, value: float, limit: float, unit: str, higher: bool) -> str:
        target = Target(name, value, limit, unit, higher_is_better=higher)
        self.result.targets.append(target)
        op = ">=" if higher else "<="
        return f"{op} {limit:g} {unit}: {'met' if target.met else 'MISSED'}"

    def row(self, figure: str, dxflow: str, peer: str, ratio: str, target: str = "-") -> None:
        self.summary.append([figure, dxflow, peer, ratio, target])

    # -- setup ------------------------------------------------------------------------------

    def prepare(self) -> None:
        self.data.mkdir(parents=True)
        started = time.perf_counter()
        self.output_bytes = write_base64(self.output_file, self.plan.raw_bytes, seed=1)
        write_base64(self.replay_file, REPLAY_SOURCE, seed=2)
        p = self.plan
        self.say(
            f"shells: {p.samples} echo samples, {self.output_bytes / MB:g} MB of base64 "
            f"output x {p.rounds} round(s), {p.replays} replays of 1 MiB, {p.sessions} "
            f"idle sessions; shell {SHELL}; data made in "
            f"{time.perf_counter() - started:.1f} s under {self.scratch}"
        )

    def boot(self) -> None:
        import dxflow

        home = str(self.home)
        self.booted = True  # `boot down` at the end, whatever happens here
        _cli("boot", "up", "--home", home, "--host", "127.0.0.1", "--port", "0", "--daemon")
        status = json.loads(_cli("boot", "status", "--home", home, "--json"))
        self.url, self.pid = str(status["url"]), int(status["pid"])
        if urlsplit(self.url).hostname != "127.0.0.1" or not self.url.startswith("http://"):
            raise RuntimeError(f"dxflow listens on {self.url}, not http://127.0.0.1")
        self.ws_url = "ws://" + self.url.removeprefix("http://").rstrip("/")
        self.engine = dxflow.Engine(self.url, key=str(self.home / "keys" / "master.pem"))
        self.token = self.engine.token(3600).token
        for name in ("bench-echo", "bench-out", "bench-out-plain", "bench-replay"):
            self.create_shell(name)
        self.say(f"  dxflow engine at {self.url} (pid {self.pid}), 4 sessions of {SHELL}")

    def create_shell(self, name: str) -> Any:
        shell = self.engine.shells.create(name, command=SHELL)
        self.shells[name] = shell
        return shell

    def start_jupyter(self, stack: contextlib.ExitStack) -> None:
        root = self.scratch / "jupyter"
        root.mkdir()
        with environment(SHELL=SHELL):  # jupyter_server_terminals runs $SHELL (with -l)
            base, token = stack.enter_context(jupyter_server(root))
        self.jupyter = (base, token)
        port = urlsplit(base).port
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if f"--ServerApp.port={port}" in child.cmdline():
                    self.jupyter_pid = child.pid
        if not self.jupyter_pid:
            raise RuntimeError("cannot find the Jupyter Server process")
        stack.callback(self.delete_terminals)
        for _ in range(2):
            self.create_terminal()
        self.say(f"  jupyter server at {base} (pid {self.jupyter_pid}), 2 terminals")

    def create_terminal(self) -> str:
        assert self.jupyter is not None
        base, token = self.jupyter
        name = str(_jupyter_request(base, token, "POST", "/api/terminals")["name"])
        self.terminals.append(name)
        return name

    def delete_terminals(self) -> None:
        if self.jupyter is None:
            return
        base, token = self.jupyter
        for name in self.terminals:
            with contextlib.suppress(Exception):
                _jupyter_request(base, token, "DELETE", f"/api/terminals/{name}")
        self.terminals.clear()

    def remove_shells(self) -> None:
        for name, shell in list(self.shells.items()):
            try:
                shell.remove()
            except Exception as exc:
                self.note(f"removing session {name}: {type(exc).__name__}: {exc}")
            self.shells.pop(name, None)

    def close(self) -> None:
        if self.engine is not None:
            self.remove_shells()
            with contextlib.suppress(Exception):
                self.engine.close()
        if self.booted:
            try:
                _cli("boot", "down", "--home", str(self.home), timeout=30)
            except Exception as exc:
                self.fail("boot down", exc)
        self.stop_stray_holders()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def stop_stray_holders(self) -> None:
        """Holders outlive the engine by design: SIGTERM any of ours still running."""
        mine = str(self.home)
        strays = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if any("_holder.py" in part for part in cmdline) and any(mine in p for p in cmdline):
                strays.append(process)
        for process in strays:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(strays, timeout=5)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        if strays:
            self.note(f"{len(strays)} holder process(es) left over and stopped")

    # -- 1. keystroke echo ---------------------------------------------------------------------

    async def echo(self) -> None:
        p = self.plan
        terms: dict[str, Terminal] = {
            "dxflow": await DxflowTerminal.open(self.ws_url, self.token, "bench-echo")
        }
        if self.jupyter is not None:
            base, token = self.jupyter
            jbase = "ws://" + base.removeprefix("http://")
            terms["jupyter"] = await JupyterTerminal.open(jbase, token, self.terminals[0])
        samples: dict[str, list[float]] = {name: [] for name in terms}
        try:
            for term in terms.values():
                await term.ready()
            names = list(terms)
            for i in range(p.warmup + p.samples):
                for name in names if i % 2 == 0 else names[::-1]:
                    term = terms[name]
                    if i and i % CLEAR_EVERY == 0:  # Ctrl-U: empty the line, untimed
                        await term.send("\x15")
                        await term.drain(0.03)
                    start = time.perf_counter()
                    await term.send("x")
                    await term.until("x", 10)
                    if i >= p.warmup:
                        samples[name].append(time.perf_counter() - start)
            for term in terms.values():
                await term.send("\x15")
                await term.drain(0.03)
        finally:
            for term in terms.values():
                await term.close()
        figures: dict[str, Any] = {"samples": p.samples, "warmup": p.warmup}
        rows = []
        for name, values in samples.items():
            figures[name] = {
                "p50_s": percentile(values, 50),
                "p90_s": percentile(values, 90),
                "p99_s": percentile(values, 99),
                "max_s": max(values),
                "compression": terms[name].extensions,
                "samples_s": values,
            }
            rows.append(
                [
                    name,
                    len(values),
                    fmt_ms(percentile(values, 50)),
                    fmt_ms(percentile(values, 90)),
                    fmt_ms(percentile(values, 99)),
                    fmt_ms(max(values)),
                    terms[name].extensions,
                ]
            )
        self.say(
            f"\n1. keystroke echo over a loopback WebSocket ({p.samples} samples each, "
            f"after {p.warmup} warm-up)"
        )
        headers = ["server", "samples", "p50", "p90", "p99", "max", "compression"]
        print_table(rows, headers, self.out)
        dx = figures["dxflow"]["p50_s"]
        state = self.target("echo p50", dx * 1e3, ECHO_P50_TARGET_S * 1e3, "ms", False)
        if "jupyter" in figures:
            jp = figures["jupyter"]["p50_s"]
            ratio = jp / dx
            figures["ratio_jupyter_over_dxflow_p50"] = ratio
            self.target("echo p50 jupyter/dxflow", ratio, ECHO_RATIO_TARGET, "x", True)
            self.say(
                f"  p50 jupyter/dxflow {ratio:.2f}x (p99 "
                f"{figures['jupyter']['p99_s'] / figures['dxflow']['p99_s']:.2f}x)"
            )
            self.row(
                "echo p50",
                fmt_ms(dx),
                f"jupyter {fmt_ms(jp)}",
                f"{ratio:.2f}x lower",
                f"{state}; ratio >= {ECHO_RATIO_TARGET:g}x: "
                f"{'met' if ratio >= ECHO_RATIO_TARGET else 'MISSED'}",
            )
            self.row(
                "echo p99",
                fmt_ms(figures["dxflow"]["p99_s"]),
                f"jupyter {fmt_ms(figures['jupyter']['p99_s'])}",
                f"{figures['jupyter']['p99_s'] / figures['dxflow']['p99_s']:.2f}x lower",
            )
        else:
            figures["ratio_jupyter_over_dxflow_p50"] = None
            self.row("echo p50", fmt_ms(dx), "skipped", "-", state)
        self.result.figures["echo"] = figures

    # -- 2. output throughput ------------------------------------------------------------------

    async def cat(self, term: Terminal, path: Path, procs: list[psutil.Process]) -> dict[str, Any]:
        command, marker = marker_command()
        missed = term.missed
        cpu = cpu_seconds(procs)
        start = time.perf_counter()
        await term.send(f"cat {shlex.quote(str(path))}; {command}\n")
        count = await term.until(marker, 300)
        seconds = time.perf_counter() - start
        cpu = [after - before for before, after in zip(cpu, cpu_seconds(procs), strict=True)]
        await term.drain(0.05)  # the prompt
        return {"seconds": seconds, "bytes": count, "missed": term.missed - missed, "cpu": cpu}

    async def throughput(self) -> None:
        p = self.plan
        me = psutil.Process()
        engine = psutil.Process(self.pid)
        terms: dict[str, tuple[Terminal, list[psutil.Process], list[str]]] = {}
        for name, session, compression in (
            ("dxflow", "bench-out", DEFLATE),
            ("dxflow, no compression", "bench-out-plain", None),
        ):
            term = await DxflowTerminal.open(
                self.ws_url, self.token, session, compression=compression
            )
            holder = psutil.Process(int(term.hello["holder_pid"]))
            terms[name] = (term, [engine, holder, me], ["engine", "holder", "client"])
        if self.jupyter is not None:
            base, token = self.jupyter
            jbase = "ws://" + base.removeprefix("http://")
            term = await JupyterTerminal.open(jbase, token, self.terminals[1])
            procs = [psutil.Process(self.jupyter_pid), me]
            terms["jupyter"] = (term, procs, ["server", "client"])
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*terms, "pty floor"]}
        try:
            for term, _, _ in terms.values():
                await term.ready()
            for term, procs, _ in terms.values():  # warm-up: page cache, first-call costs
                await self.cat(term, self.output_file, procs)
            pty_floor(self.output_file)
            names = list(terms)
            for i in range(p.rounds):
                for name in names if i % 2 else names[::-1]:
                    term, procs, _ = terms[name]
                    runs[name].append(await self.cat(term, self.output_file, procs))
                seconds, count = await asyncio.to_thread(pty_floor, self.output_file)
                runs["pty floor"].append(
                    {"seconds": seconds, "bytes": count, "missed": 0, "cpu": []}
                )
        finally:
            for term, _, _ in terms.values():
                await term.close()
        figures: dict[str, Any] = {"file_bytes": self.output_bytes, "rounds": p.rounds}
        rows = []
        for name, samples in runs.items():
            if not samples:
                continue
            speeds = [mb_s(s["bytes"], s["seconds"]) for s in samples]
            cpu_names = terms[name][2] if name in terms else []
            cpus = [median([s["cpu"][k] for s in samples]) for k in range(len(cpu_names))]
            entry = {
                "mb_s": median(speeds),
                "mb_s_runs": speeds,
                "median_s": median([s["seconds"] for s in samples]),
                "bytes": median([s["bytes"] for s in samples]),
                "missed_bytes": median([s["missed"] for s in samples]),
                "missed_bytes_max": max(s["missed"] for s in samples),
                "cpu_s": dict(zip(cpu_names, cpus, strict=True)),
                "compression": terms[name][0].extensions if name in terms else "-",
            }
            figures[name] = entry
            cpu_text = ", ".join(f"{n} {c:.2f}" for n, c in zip(cpu_names, cpus, strict=True))
            rows.append(
                [
                    name,
                    len(samples),
                    fmt_ms(entry["median_s"]),
                    f"{entry['bytes'] / MB:.1f}",
                    f"{entry['mb_s']:,.1f}",
                    f"{entry['missed_bytes'] / MB:.1f}",
                    cpu_text or "-",
                    entry["compression"],
                ]
            )
        self.say(
            f"\n2. output throughput: `cat` of {self.output_bytes / MB:g} MB of base64 text, "
            "terminal bytes received by the client until the end marker"
        )
        headers = [
            "client of",
            "runs",
            "median",
            "MB recv",
            "MB/s",
            "MB missed",
            "CPU s (median)",
            "compression",
        ]
        print_table(rows, headers, self.out)
        dx = figures["dxflow"]
        plain = figures["dxflow, no compression"]
        if dx["compression"] != figures.get("jupyter", dx)["compression"]:
            self.note(
                f"with the same client, dxflow's server negotiated compression "
                f"{dx['compression']!r} and Jupyter's {figures['jupyter']['compression']!r}"
            )
        if dx["missed_bytes"]:
            self.note(
                f"throughput: the client of dxflow received {dx['bytes'] / MB:.1f} MB and missed "
                f"{dx['missed_bytes'] / MB:.1f} MB (fell out of the session's scrollback while "
                "it was behind)"
            )
        state = self.target("output throughput", dx["mb_s"], THROUGHPUT_TARGET_MB_S, "MB/s", True)
        floor = figures["pty floor"]["mb_s"]
        if "jupyter" in figures:
            jp = figures["jupyter"]["mb_s"]
            ratio, plain_ratio = dx["mb_s"] / jp, plain["mb_s"] / jp
            figures["ratio_dxflow_over_jupyter"] = ratio
            figures["ratio_dxflow_no_compression_over_jupyter"] = plain_ratio
            ratio_state = self.target(
                "output throughput dxflow/jupyter", ratio, THROUGHPUT_RATIO_TARGET, "x", True
            )
            self.say(
                f"  throughput dxflow/jupyter {ratio:.2f}x; without compression "
                f"{plain_ratio:.2f}x; the bare PTY floor {floor:,.0f} MB/s"
            )
            self.row(
                "output MB/s (SDK's client: deflate offered)",
                f"{dx['mb_s']:,.1f}",
                f"jupyter {jp:,.1f}",
                f"{ratio:.2f}x",
                f"{state}; {ratio_state}",
            )
            self.row(
                "  output MB/s, client without compression",
                f"{plain['mb_s']:,.1f}",
                f"jupyter {jp:,.1f}",
                f"{plain_ratio:.2f}x",
            )
        else:
            figures["ratio_dxflow_over_jupyter"] = None
            self.row("output MB/s", f"{dx['mb_s']:,.1f}", "skipped", "-", state)
        self.row(
            "  output MB/s, bare PTY floor (no server)",
            f"{floor:,.1f}",
            "-",
            f"dxflow {dx['mb_s'] / floor:.2f}x of it",
        )
        self.result.figures["throughput"] = figures

    # -- 3. scrollback replay ------------------------------------------------------------------

    async def replay(self) -> None:
        p = self.plan
        producer = await DxflowTerminal.open(self.ws_url, self.token, "bench-replay")
        try:
            await producer.ready()
            await self.cat(producer, self.replay_file, [])
            await producer.drain(0.2)
            end = producer.end
        finally:
            await producer.close()
        if end < REPLAY_BYTES:
            raise RuntimeError(f"the replay session printed only {end} bytes")
        offset = end - REPLAY_BYTES
        variants = {"deflate offered": DEFLATE, "no compression": None}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        extensions: dict[str, str] = {}

        async def attach(compression: str | None) -> tuple[float, float, str]:
            start = time.perf_counter()
            term = await DxflowTerminal.open(
                self.ws_url, self.token, "bench-replay", offset, compression
            )
            hello = time.perf_counter() - start
            try:
                got = 0
                async with asyncio.timeout(30):
                    while got < REPLAY_BYTES:
                        got += len(await term.output())
                total = time.perf_counter() - start
                if got != REPLAY_BYTES or int(term.hello["end"]) != end or term.missed:
                    raise RuntimeError(
                        f"replay: {got} bytes (hello end {term.hello['end']}, "
                        f"expected {end}; missed {term.missed})"
                    )
                return hello, total, term.extensions
            finally:
                await term.close()

        names = list(variants)
        for i in range(p.replays + 1):  # round 0: the warm-up
            for name in names if i % 2 else names[::-1]:
                hello, total, extensions[name] = await attach(variants[name])
                if i:
                    times[name].append((hello, total))
        figures: dict[str, Any] = {"bytes": REPLAY_BYTES, "end": end, "replays": p.replays}
        rows = []
        for name, pairs in times.items():
            totals = [t for _, t in pairs]
            figures[name] = {
                "median_s": median(totals),
                "p90_s": percentile(totals, 90),
                "max_s": max(totals),
                "hello_median_s": median([h for h, _ in pairs]),
                "mb_s": mb_s(REPLAY_BYTES, median(totals)),
                "compression": extensions[name],
                "samples_s": pairs,
            }
            rows.append(
                [
                    name,
                    len(pairs),
                    fmt_ms(median([h for h, _ in pairs])),
                    fmt_ms(median(totals)),
                    fmt_ms(percentile(totals, 90)),
                    fmt_ms(max(totals)),
                    extensions[name],
                ]
            )
        self.say(
            f"\n3. reconnect with offset = end - 1 MiB (the session printed {end / MB:.1f} "
            "MB): connect until the 1 MiB replay is in"
        )
        headers = [
            "dxflow client",
            "attaches",
            "to hello",
            "median",
            "p90",
            "max",
            "compression",
        ]
        print_table(rows, headers, self.out)
        value = figures["deflate offered"]["median_s"]
        state = self.target("replay 1 MiB", value * 1e3, REPLAY_TARGET_S * 1e3, "ms", False)
        self.row(
            "replay 1 MiB on reconnect (SDK's client)",
            fmt_ms(value),
            "none (Jupyter: last 20 chunks)",
            "-",
            state,
        )
        self.row(
            "  replay 1 MiB, client without compression",
            fmt_ms(figures["no compression"]["median_s"]),
            "-",
            "-",
        )
        self.result.figures["replay"] = figures

    async def interactive(self) -> None:
        for name, section in (
            ("echo", self.echo),
            ("throughput", self.throughput),
            ("replay", self.replay),
        ):
            try:
                await section()
            except Exception as exc:
                self.fail(name, exc)

    # -- 4. idle sessions ----------------------------------------------------------------------

    def idle_dxflow(self, count: int) -> dict[str, Any]:
        engine = psutil.Process(self.pid)
        before = engine.memory_info().rss
        names = [f"idle-{i:03d}" for i in range(count)]
        creates: list[float] = []
        shells = []
        try:
            for name in names:
                start = time.perf_counter()
                shells.append(self.create_shell(name))
                creates.append(time.perf_counter() - start)
            time.sleep(1.0)  # let the engine settle (threads, buffers)
            after = engine.memory_info().rss
            holders: list[float] = []
            holders_uss: list[float] = []
            children: list[float] = []
            for shell in shells:
                child = psutil.Process(int(shell.info.pid))
                holder = child.parent()
                if holder is None or not any("_holder.py" in p for p in holder.cmdline()):
                    raise RuntimeError(f"no holder process above session pid {child.pid}")
                full = holder.memory_full_info()
                holders.append(full.rss / MIB)
                holders_uss.append(full.uss / MIB)
                children.append(child.memory_info().rss / MIB)
        finally:
            start = time.perf_counter()
            for name in names:
                if name in self.shells:
                    with contextlib.suppress(Exception):
                        self.shells.pop(name).remove()
            removal = time.perf_counter() - start
        time.sleep(0.5)
        return {
            "sessions": count,
            "rss_before_mib": before / MIB,
            "rss_after_mib": after / MIB,
            "rss_growth_mib": (after - before) / MIB,
            "rss_after_removal_mib": engine.memory_info().rss / MIB,
            "create_median_s": median(creates),
            "create_total_s": sum(creates),
            "remove_total_s": removal,
            "holder_rss_max_mib": max(holders),
            "holder_rss_median_mib": median(holders),
            "holder_uss_median_mib": median(holders_uss),
            "shell_rss_median_mib": median(children),
        }

    def idle_jupyter(self, count: int) -> dict[str, Any]:
        server = psutil.Process(self.jupyter_pid)
        known = {c.pid for c in server.children()}
        before = server.memory_info().rss
        creates: list[float] = []
        made: list[str] = []
        try:
            for _ in range(count):
                start = time.perf_counter()
                made.append(self.create_terminal())
                creates.append(time.perf_counter() - start)
            time.sleep(1.0)
            after = server.memory_info().rss
            children = [c.memory_info().rss / MIB for c in server.children() if c.pid not in known]
        finally:
            assert self.jupyter is not None
            base, token = self.jupyter
            start = time.perf_counter()
            for name in made:
                with contextlib.suppress(Exception):
                    _jupyter_request(base, token, "DELETE", f"/api/terminals/{name}")
                    self.terminals.remove(name)
            removal = time.perf_counter() - start
        return {
            "sessions": count,
            "rss_before_mib": before / MIB,
            "rss_after_mib": after / MIB,
            "rss_growth_mib": (after - before) / MIB,
            "create_median_s": median(creates),
            "create_total_s": sum(creates),
            "remove_total_s": removal,
            "shell_rss_median_mib": median(children) if children else float("nan"),
        }

    def idle(self) -> None:
        count = self.plan.sessions
        figures: dict[str, Any] = {"dxflow": self.idle_dxflow(count)}
        if self.jupyter is not None:
            figures["jupyter"] = self.idle_jupyter(count)
        rows = []
        for name, f in figures.items():
            holder = (
                (
                    f"{f['holder_rss_max_mib']:.1f} / {f['holder_rss_median_mib']:.1f} / "
                    f"{f['holder_uss_median_mib']:.1f}"
                )
                if name == "dxflow"
                else "-"
            )
            rows.append(
                [
                    name,
                    f["sessions"],
                    f"{f['rss_before_mib']:.1f}",
                    f"{f['rss_growth_mib']:+.1f}",
                    holder,
                    f"{f['shell_rss_median_mib']:.1f}",
                    fmt_ms(f["create_median_s"]),
                    f"{f['remove_total_s']:.1f} s",
                ]
            )
        self.say(f"\n4. {count} idle sessions of {SHELL} at once, created over HTTP (MiB)")
        headers = [
            "server",
            "sessions",
            "server RSS",
            "growth",
            "holder RSS max/med, USS med",
            "shell RSS",
            "create (median)",
            "remove all",
        ]
        print_table(rows, headers, self.out)
        dx = figures["dxflow"]
        self.say(f"  dxflow engine RSS after removing them: {dx['rss_after_removal_mib']:.1f} MiB")
        growth = dx["rss_growth_mib"]
        state = self.target(
            f"engine RSS growth, {count} sessions", growth, ENGINE_RSS_TARGET_MIB, "MiB", False
        )
        peer = (
            f"jupyter {figures['jupyter']['rss_growth_mib']:+.1f} MiB"
            if "jupyter" in figures
            else "skipped"
        )
        self.row(
            f"engine RSS growth, {count} idle sessions", f"{growth:+.1f} MiB", peer, "-", state
        )
        holder = dx["holder_rss_max_mib"]
        state = self.target("holder RSS (max)", holder, HOLDER_RSS_TARGET_MIB, "MiB", False)
        self.row(
            "holder RSS, largest",
            f"{holder:.1f} MiB",
            f"(USS median {dx['holder_uss_median_mib']:.1f} MiB)",
            "-",
            state,
        )
        if "jupyter" in figures:
            jp = figures["jupyter"]["create_median_s"]
            self.row(
                "  create a session (median)",
                fmt_ms(dx["create_median_s"]),
                f"jupyter {fmt_ms(jp)}",
                f"{dx['create_median_s'] / jp:.1f}x time",
            )
        self.result.figures["idle"] = figures

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.perf_counter()
        missing = jupyter_missing()
        if missing is not None:
            self.note(missing)
            self.say(f"  note: {missing}")
        try:
            self.prepare()
            with contextlib.ExitStack() as stack:
                self.boot()
                if missing is None:
                    try:
                        self.start_jupyter(stack)
                    except Exception as exc:
                        self.note(f"Jupyter Server did not start, the peer is skipped: {exc}")
                        self.jupyter = None
                asyncio.run(self.interactive())
                try:
                    self.idle()
                except Exception as exc:
                    self.fail("idle sessions", exc)
        except Exception as exc:
            self.fail("setup", exc)
        finally:
            self.close()
        elapsed = time.perf_counter() - started
        self.result.figures["seconds"] = elapsed
        self.say(f"\nsummary ({'quick' if self.args.quick else 'full'} mode, {elapsed:.0f} s):")
        if self.summary:
            print_table(self.summary, ["figure", "dxflow", "peer", "ratio", "target"], self.out)
        return self.result.finish(self.args, self.final_line())

    def final_line(self) -> str:
        f = self.result.figures
        parts = []
        if e := f.get("echo"):
            ratio = e.get("ratio_jupyter_over_dxflow_p50")
            parts.append(
                f"echo p50 {fmt_ms(e['dxflow']['p50_s'])}"
                + (f" ({ratio:.2f}x lower than Jupyter)" if ratio else "")
            )
        if t := f.get("throughput"):
            ratio = t.get("ratio_dxflow_over_jupyter")
            parts.append(
                f"output {t['dxflow']['mb_s']:,.0f} MB/s"
                + (f" ({ratio:.2f}x Jupyter)" if ratio else "")
            )
        if r := f.get("replay"):
            parts.append(f"replay 1 MiB {fmt_ms(r['deflate offered']['median_s'])}")
        if i := f.get("idle"):
            dx = i["dxflow"]
            parts.append(
                f"{dx['sessions']} sessions: engine {dx['rss_growth_mib']:+.0f} MiB, "
                f"holders <= {dx['holder_rss_max_mib']:.1f} MiB"
            )
        if not self.result.ok:
            parts.append("FAILED: " + (self.result.error or "?"))
        return "shells: " + "; ".join(parts)


def main() -> int:
    args = parse_args(__doc__ or "", extra=extra_args)
    return Bench(args, human_stream(args)).run()


if __name__ == "__main__":
    sys.exit(main())
