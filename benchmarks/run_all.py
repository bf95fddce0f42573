"""Run the benchmarks (each in its own process) and print a summary table.

    python benchmarks/run_all.py            # full mode, a few minutes
    python benchmarks/run_all.py --quick    # the CI smoke: each < 20 s (some < 60 s)

Exits 1 when any benchmark fails to run (or `import dxflow` loads a heavy module);
speed targets are reported, not asserted, unless `--strict` (full mode only). A failed
benchmark is reported (exit code, error, the tail of its output) and the summary still
covers the others.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

from _common import BENCH_DIR, PYTHON, REPO, fmt_ms, fmt_us, human_stream, parse_args, print_table

SCRIPTS = [
    "import_time",
    "inprocess_ping",
    "sdk_overhead",
    "boot",
    "cli",
    "http_ping",
    "workflows",
    "objects",
    "shells",
    "security_probes",
    "revocation",
    "proxies",
    "bridges",
    "swarm",
]


def _headline(name: str, figures: dict[str, Any]) -> tuple[str, str, str, str]:
    """(what, dxflow, peer, ratio) of one benchmark's result."""
    if name == "import_time":
        return (
            "import wall time",
            fmt_ms(figures["dxflow"]["median_s"]),
            f"httpx {fmt_ms(figures['peer (httpx)']['median_s'])}",
            f"{figures['ratio_dxflow_over_httpx_wall']:.2f}x",
        )
    if name == "inprocess_ping":
        sync = figures["Engine.ping() (blocking twin)"]["median_s"]
        peer = figures["peer: def -> pydantic model"]["median_s"]
        return (
            "Engine.ping() per call",
            fmt_us(sync),
            f"pydantic fn {fmt_us(peer)}",
            f"{figures['ratio_engine_over_pydantic_fn']:.1f}x",
        )
    if name == "sdk_overhead":
        sdk = figures["engine.objects.info()"]["median_s"]
        bare = figures["dispatcher.call_inline()"]["median_s"]
        return (
            "engine.objects.info() in-process",
            fmt_us(sdk),
            f"dispatcher.call_inline {fmt_us(bare)}",
            f"{figures['ratio_blocking_sdk_over_dispatcher']:.2f}x",
        )
    if name == "boot":
        return (
            "boot to healthy (boot up)",
            f"{fmt_ms(figures['dxflow']['median_s'])} ({fmt_ms(figures['boot up']['median_s'])})"
            if "boot up" in figures
            else fmt_ms(figures["dxflow"]["median_s"]),
            f"uvicorn {fmt_ms(figures['peer']['median_s'])}",
            f"{figures['ratio_dxflow_over_peer']:.2f}x",
        )
    if name == "cli":
        docker = figures.get("docker ps")
        ratio = figures.get("ratio_dxflow_over_docker_ps")
        return (
            "CLI round trip (dxflow ps)",
            fmt_ms(figures["dxflow ps"]["median_s"]),
            f"docker ps {fmt_ms(docker['median_s'])}" if docker else "no docker",
            f"{ratio:.1f}x (click floor {figures['ratio_click_floor_over_docker_ps']:.1f}x)"
            if ratio
            else "-",
        )
    if name == "workflows":
        size = max(int(key.split("_")[1]) for key in figures if key.startswith("up_"))
        up = figures[f"up_{size}"]
        ratio = up["ratio_compose_over_dxflow"]
        compose = up.get("docker-compose")  # absent where docker-compose is not installed
        return (
            f"up of {size} services",
            fmt_ms(up["dxflow"]["median_s"]),
            f"docker-compose {fmt_ms(compose['median_s'])}" if compose else "no docker-compose",
            f"compose/dxflow {ratio:.2f}x" if ratio else "-",
        )
    if name == "objects":
        download = figures["download"]
        size = download["bytes"]
        label = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
        ratio = download.get("ratio_dxflow_over_nginx")
        nginx = download.get("nginx")
        return (
            f"curl download of {label}",
            f"{download['dxflow']['mb_s']:,.0f} MB/s",
            f"nginx {nginx['mb_s']:,.0f} MB/s" if nginx else "no nginx",
            f"{ratio:.2f}x" if ratio else "-",
        )
    if name == "shells":
        output = figures["throughput"]
        jupyter = output.get("jupyter")
        ratio = output.get("ratio_dxflow_over_jupyter")
        return (
            f"shell output of {output['file_bytes'] / 1e6:.0f} MB",
            f"{output['dxflow']['mb_s']:,.0f} MB/s",
            f"jupyter {jupyter['mb_s']:,.0f} MB/s" if jupyter else "no jupyter",
            f"{ratio:.2f}x" if ratio else "-",
        )
    if name == "security_probes":
        health = figures["health_during_compose_upload"]
        ratio = health["ratio_p99_over_baseline"]
        return (
            f"health p99, {health['compose_mib']:.0f} MiB Compose upload",
            f"{health['p99_ms']:.1f} ms",
            f"no upload {health['baseline_p99_ms']:.1f} ms",
            f"{health['ratio_p99_over_baseline']:.1f}x"
            if health["ratio_p99_over_baseline"]
            else "-",
        )
    if name == "revocation":
        summary = figures["summary"]
        other = summary["other_process_max_ms"]
        return (
            "key change to its streams closed, max",
            f"{summary['max_ms']:.0f} ms",
            f"the change's request {summary['request_p50_ms']:.1f} ms",
            f"another process {other:.0f} ms" if other is not None else "-",
        )
    if name == "proxies":
        small = figures["small"]
        dx, nginx, jsp = small["dxflow /p/"], small.get("nginx"), small.get("jupyter-server-proxy")
        peers = [
            f"nginx {nginx['rps']:,.0f}" if nginx else "",
            f"jsp {jsp['rps']:,.0f}" if jsp else "",
        ]
        ratios = [
            f"{figures['ratio_dxflow_over_nginx_rps']:.2f}x nginx" if nginx else "",
            f"{figures['ratio_dxflow_over_jupyter_rps']:.1f}x jsp" if jsp else "",
        ]
        return (
            "proxied req/s (wrk -c16)",
            f"{dx['rps']:,.0f}",
            ", ".join(p for p in peers if p) or "no peer",
            ", ".join(r for r in ratios if r) or "-",
        )
    if name == "swarm":
        if "skipped" in figures:
            return (f"skipped: {figures['skipped']}", "-", "-", "-")
        size = max(int(key.split("_")[1]) for key in figures if key.startswith("up_"))
        up = figures[f"up_{size}"]
        stack = up.get("stack deploy")
        ratio = up.get("ratio_dxflow_over_stack")
        return (
            f"swarm up of {size} replicas, 3 nodes",
            fmt_ms(up["dxflow"]["median_s"]),
            f"stack deploy {fmt_ms(stack['median_s'])}" if stack else "-",
            f"{ratio:.2f}x" if ratio else "-",
        )
    if name == "bridges":
        ping = figures["calls"]["ping"]
        return (
            "ping p50 through a bridge",
            f"{ping['bridged']['p50_ms']:.2f} ms",
            f"direct {ping['direct']['p50_ms']:.2f} ms",
            f"{ping['added_p50_ms']:+.2f} ms",
        )
    return (
        f"ping req/s ({figures.get('load_generator', '?')})",
        f"{figures['dxflow']['rps_median']:,.0f}",
        f"starlette {figures['peer']['rps_median']:,.0f}",
        f"{figures['ratio_dxflow_over_peer']:.2f}x",
    )


TAIL_LINES = 20


@dataclass
class Run:
    """One benchmark script's run: its exit code (None: killed at the timeout) and JSON."""

    name: str
    returncode: int | None
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    tail: list[str] = field(default_factory=list)  # the last lines of its human output
    problem: str | None = None  # what went wrong around the script (timeout, bad JSON)

    @property
    def target_missed(self) -> bool:
        return self.returncode == 2 and self.data.get("ok", False) is True

    @property
    def failed(self) -> bool:
        return not self.target_missed and (self.returncode != 0 or self.data.get("ok") is not True)

    def describe_failure(self) -> list[str]:
        """Name, exit code, the script's own error and the tail of its output."""
        code = "killed at the timeout" if self.returncode is None else f"exit {self.returncode}"
        lines = [f"{self.name} FAILED ({code}, after {self.seconds:.1f} s)"]
        if self.problem:
            lines.append(f"  {self.problem}")
        if self.data.get("error"):
            lines.append(f"  error: {self.data['error']}")
        if self.tail:
            lines.append(f"  last {len(self.tail)} lines of its output:")
            lines.extend(f"  | {line}" for line in self.tail)
        return lines


def _pump(stream: IO[str], sink: TextIO | None, keep: collections.deque[str] | list[str]) -> None:
    for line in stream:
        keep.append(line.rstrip("\n"))
        if sink is not None:
            print(line, end="", file=sink, flush=True)


def run_script(name: str, args: list[str], timeout: float) -> Run:
    """Run benchmarks/<name>.py --json: its table goes on to our stderr as it runs."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, str(BENCH_DIR / f"{name}.py"), "--json", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None and process.stderr is not None
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    stdout: list[str] = []
    readers = [
        threading.Thread(target=_pump, args=(process.stderr, sys.stderr, tail), daemon=True),
        threading.Thread(target=_pump, args=(process.stdout, None, stdout), daemon=True),
    ]
    for reader in readers:
        reader.start()
    returncode: int | None
    try:
        returncode = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        returncode = None
    for reader in readers:  # a server the script left behind may hold a pipe open
        reader.join(5)
    run = Run(name, returncode, seconds=time.perf_counter() - began, tail=list(tail))
    text = "\n".join(stdout).strip()
    if returncode is None:
        run.problem = f"timed out after {timeout:.0f} s"
    try:
        data = json.loads(text) if text else {}
    except ValueError as exc:
        data = {}
        run.problem = run.problem or f"its stdout is not one JSON document: {exc}"
    run.data = data if isinstance(data, dict) else {}
    if not text and run.problem is None:
        run.problem = "no JSON on its stdout"
    return run


def summary_rows(runs: list[Run]) -> list[list[str]]:
    """One row per benchmark; a run without usable figures gives a FAILED row, never a crash."""
    rows: list[list[str]] = []
    for run in runs:
        took = f"{run.seconds:.1f} s"
        try:
            what, dxflow, peer, ratio = _headline(run.name, run.data["figures"])
        except Exception:  # missing or partial figures of a failed run: report, go on
            rows.append([run.name, "FAILED", "", "", "", "failed", took])
            continue
        targets = run.data.get("targets", [])
        met = "all met" if all(t.get("met") for t in targets) else "MISSED"
        rows.append([run.name, what, dxflow, peer, ratio, "failed" if run.failed else met, took])
    return rows


def failure_names(runs: list[Run]) -> list[str]:
    names = [run.name for run in runs if run.failed]
    return names + [f"{run.name} (target missed, --strict)" for run in runs if run.target_missed]


def exit_code(runs: list[Run]) -> int:
    if any(run.failed for run in runs):
        return 1
    return 2 if any(run.target_missed for run in runs) else 0


def report(runs: list[Run], quick: bool, elapsed: float, out: TextIO) -> None:
    print(f"\nsummary ({'quick' if quick else 'full'} mode):", file=out)
    headers = ["benchmark", "figure", "dxflow", "peer", "ratio", "targets", "took"]
    print_table(summary_rows(runs), headers, out)
    for run in runs:
        for target in run.data.get("targets", []):
            try:
                op = ">=" if target["higher_is_better"] else "<="
                print(
                    f"  {run.name}: {target['name']} {target['value']:.3g} {target['unit']} "
                    f"(target {op} {target['limit']:g}) {'met' if target['met'] else 'MISSED'}",
                    file=out,
                )
            except (KeyError, TypeError, ValueError):
                print(f"  {run.name}: unreadable target {target!r}", file=out)
    for run in runs:
        if run.failed:
            print("", file=out)
            for line in run.describe_failure():
                print(line, file=out)
    failures = failure_names(runs)
    print(
        f"run_all: {sum(not run.failed for run in runs)}/{len(runs)} ran"
        f"{'; failed: ' + ', '.join(failures) if failures else ''} in {elapsed:.0f} s",
        file=out,
    )


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    passthrough = [*(["--quick"] if args.quick else []), *(["--strict"] if args.strict else [])]
    runs: list[Run] = []
    started = time.perf_counter()
    for name in SCRIPTS:
        print(f"\n== {name} {' '.join(passthrough)}".rstrip(), file=out, flush=True)
        run = run_script(name, passthrough, timeout=90 if args.quick else 900)
        runs.append(run)
        if run.failed:
            print(f"{name}: FAILED ({run.problem or f'exit {run.returncode}'})", file=out)
    report(runs, args.quick, time.perf_counter() - started, out)
    if args.json:
        results = {run.name: {**run.data, "seconds": run.seconds} for run in runs}
        document = {"quick": args.quick, "failures": failure_names(runs), "results": results}
        print(json.dumps(document, indent=2))
    return exit_code(runs)


if __name__ == "__main__":
    sys.exit(main())
