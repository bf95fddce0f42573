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
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import psutil
from _common import (
    Report,
    Result,
    boot_daemon,
    bytecode_note,
    fmt_ms,
    human_stream,
    parse_args,
    print_table,
    run_cli,
)
from _file_peers import jupyter_server
from _shell_clients import MB, MIB, SHELL, jupyter_missing, jupyter_request
from _shell_figures import Figures

REPLAY_SOURCE = 3 * MIB  # random bytes behind the replay session's output (4 MiB of text)


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


# -- the benchmark -------------------------------------------------------------------------


class Bench(Figures, Report):
    label = "shells"

    """Sets up the engine, the sessions and Jupyter, runs the sections (`Figures`), sums up."""

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
        status = boot_daemon(home)
        self.url, self.pid = str(status["url"]), int(status["pid"])
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
        name = str(jupyter_request(base, token, "POST", "/api/terminals")["name"])
        self.terminals.append(name)
        return name

    def delete_terminals(self) -> None:
        if self.jupyter is None:
            return
        base, token = self.jupyter
        for name in self.terminals:
            with contextlib.suppress(Exception):
                jupyter_request(base, token, "DELETE", f"/api/terminals/{name}")
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
                run_cli("boot", "down", "--home", str(self.home), timeout=30)
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

    # -- 1. to 3.: the sections over WebSockets (see `Figures`) ------------------------------

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
