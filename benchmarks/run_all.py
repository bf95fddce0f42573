"""Run the nine benchmarks (each in its own process) and print a summary table.

    python benchmarks/run_all.py            # full mode, a few minutes
    python benchmarks/run_all.py --quick    # the CI smoke: each script < 20 s (workflows < 60 s)

Exits 1 when any benchmark fails to run (or `import dxflow` loads a heavy module);
speed targets are reported, not asserted, unless `--strict` (full mode only).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from _common import BENCH_DIR, PYTHON, REPO, fmt_ms, fmt_us, human_stream, parse_args, print_table

SCRIPTS = [
    "import_time",
    "inprocess_ping",
    "sdk_overhead",
    "boot",
    "http_ping",
    "workflows",
    "objects",
    "shells",
    "security_probes",
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
            "boot to healthy",
            fmt_ms(figures["dxflow"]["median_s"]),
            f"uvicorn {fmt_ms(figures['peer']['median_s'])}",
            f"{figures['ratio_dxflow_over_peer']:.2f}x",
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
    return (
        f"ping req/s ({figures.get('load_generator', '?')})",
        f"{figures['dxflow']['rps_median']:,.0f}",
        f"starlette {figures['peer']['rps_median']:,.0f}",
        f"{figures['ratio_dxflow_over_peer']:.2f}x",
    )


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    passthrough = [*(["--quick"] if args.quick else []), *(["--strict"] if args.strict else [])]
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    started = time.perf_counter()
    for name in SCRIPTS:
        print(f"\n== {name} {' '.join(passthrough)}".rstrip(), file=out, flush=True)
        began = time.perf_counter()
        try:
            done = subprocess.run(
                [PYTHON, str(BENCH_DIR / f"{name}.py"), "--json", *passthrough],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
                timeout=90 if args.quick else 900,
            )  # the script's table goes to our stderr as it runs
            data = json.loads(done.stdout) if done.stdout.strip() else {}
        except (subprocess.TimeoutExpired, ValueError) as exc:
            done, data = None, {}
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        data["seconds"] = time.perf_counter() - began
        results[name] = data
        if done is None or done.returncode == 1 or not data.get("ok", False):
            failures.append(name)
        elif done.returncode == 2:
            failures.append(f"{name} (target missed, --strict)")

    rows: list[list[str]] = []
    for name, data in results.items():
        try:
            what, dxflow, peer, ratio = _headline(name, data["figures"])
        except (KeyError, TypeError, ZeroDivisionError):
            rows.append([name, "FAILED", "", "", "", "", f"{data['seconds']:.1f} s"])
            continue
        targets = data.get("targets", [])
        met = "all met" if all(t["met"] for t in targets) else "MISSED"
        state = "failed" if name in failures else met
        rows.append([name, what, dxflow, peer, ratio, state, f"{data['seconds']:.1f} s"])
    print(f"\nsummary ({'quick' if args.quick else 'full'} mode):", file=out)
    print_table(rows, ["benchmark", "figure", "dxflow", "peer", "ratio", "targets", "took"], out)
    for name, data in results.items():
        for target in data.get("targets", []):
            op = ">=" if target["higher_is_better"] else "<="
            print(
                f"  {name}: {target['name']} {target['value']:.3g} {target['unit']} "
                f"(target {op} {target['limit']:g}) {'met' if target['met'] else 'MISSED'}",
                file=out,
            )
    elapsed = time.perf_counter() - started
    print(
        f"run_all: {len(SCRIPTS) - len(failures)}/{len(SCRIPTS)} ran"
        f"{'; failed: ' + ', '.join(failures) if failures else ''} in {elapsed:.0f} s",
        file=out,
    )
    if args.json:
        print(json.dumps({"quick": args.quick, "failures": failures, "results": results}, indent=2))
    return 1 if any("--strict" not in f for f in failures) else (2 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
