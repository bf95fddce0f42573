"""The measurements of the shell benchmark (a helper, not a benchmark): see `shells.py`.

`Figures` is a base class of `shells.Bench`: each section runs on the engine, the sessions
and the Jupyter terminals that `Bench` sets up, prints its table, adds its figures and
targets to the result and its lines to the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from _common import fmt_ms, median, print_table
from _shell_clients import (
    DEFLATE,
    MB,
    MIB,
    SHELL,
    DxflowTerminal,
    JupyterTerminal,
    Terminal,
    cpu_seconds,
    jupyter_request,
    marker_command,
    pty_floor,
)

if TYPE_CHECKING:
    from typing import TextIO

    from _common import Result
    from shells import Plan

__all__ = ["Figures"]

ECHO_P50_TARGET_S = 0.002
ECHO_RATIO_TARGET = 10.0
THROUGHPUT_TARGET_MB_S = 150.0
THROUGHPUT_RATIO_TARGET = 4.0
REPLAY_TARGET_S = 0.050
ENGINE_RSS_TARGET_MIB = 100.0
HOLDER_RSS_TARGET_MIB = 15.0

REPLAY_BYTES = MIB
CLEAR_EVERY = 100  # keystrokes between two (untimed) Ctrl-U, so the line never fills


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def mb_s(size: float, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else float("nan")


class Figures:
    """The four sections: echo, throughput, replay, idle sessions (methods of `Bench`)."""

    if TYPE_CHECKING:  # set up by `Bench`
        out: TextIO
        plan: Plan
        result: Result
        output_file: Path
        replay_file: Path
        output_bytes: int
        ws_url: str
        token: str
        pid: int
        jupyter: tuple[str, str] | None
        jupyter_pid: int
        terminals: list[str]
        shells: dict[str, Any]

        def say(self, text: str) -> None: ...
        def note(self, text: str) -> None: ...
        def target(self, name: str, value: float, limit: float, unit: str, higher: bool) -> str: ...
        def row(
            self, figure: str, dxflow: str, peer: str, ratio: str, target: str = "-"
        ) -> None: ...
        def create_shell(self, name: str) -> Any: ...
        def create_terminal(self) -> str: ...

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
                    jupyter_request(base, token, "DELETE", f"/api/terminals/{name}")
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
