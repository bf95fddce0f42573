"""`python -c "import dxflow"` wall time, against `pass` (baseline) and `import httpx` (peer).

Each sample is a fresh process; the three commands are interleaved, rotating their order,
and medians are reported. Target: dxflow median wall time <= 150 ms. Also checks that
`import dxflow` leaves pydantic, httpx, starlette, cryptography and docker unimported
(a failure, not a figure: the script exits 1), and lists the slowest imports.

    python benchmarks/import_time.py [--quick] [--json] [-n RUNS]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

from _common import (
    PYTHON,
    REPO,
    Result,
    Target,
    bytecode_note,
    child_env,
    fmt_ms,
    human_stream,
    median,
    parse_args,
    print_table,
)

TARGET_S = 0.150
HEAVY = ("pydantic", "pydantic_core", "httpx", "starlette", "cryptography", "docker")
WATCHED = ("anyio", "psutil", "click", "uvicorn", "sqlite3", "asyncio", "ssl")  # reported only
COMMANDS = {
    "baseline (pass)": "pass",
    "dxflow": "import dxflow",
    "peer (httpx)": "import httpx",
}


def _run(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, "-c", code], cwd=REPO, env=env, check=True, timeout=30)
    return time.perf_counter() - start


def _loaded_modules(env: dict[str, str], code: str) -> set[str]:
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [PYTHON, "-c", script], cwd=REPO, env=env, check=True, capture_output=True, timeout=30
    )
    return set(json.loads(done.stdout))


def _slowest_imports(
    env: dict[str, str], baseline: set[str], count: int = 8
) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) of the slowest imports `import dxflow` adds."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "import dxflow"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and match[4] not in baseline:
            rows.append((match[4], int(match[1]), int(match[2])))
    return sorted(rows, key=lambda r: r[1], reverse=True)[:count]


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    runs = args.runs or (5 if args.quick else 30)
    result = Result("import_time", args.quick, notes=[bytecode_note()])
    env = child_env()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    try:
        print(f"import time: {runs} fresh processes each, interleaved", file=out)
        names = list(COMMANDS)
        for name in names:  # warm-up, not counted (file caches, .pyc files)
            _run(COMMANDS[name], env)
        for i in range(runs):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_run(COMMANDS[name], env))

        baseline = _loaded_modules(env, "pass")
        loaded = _loaded_modules(env, "import dxflow")
        new = loaded - baseline
        heavy = sorted(m for m in new if m.split(".")[0] in HEAVY)
        watched = sorted({m.split(".")[0] for m in new if m.split(".")[0] in WATCHED})
        result.figures["modules_imported"] = len(new)
        result.figures["heavy_modules_imported"] = heavy
        result.figures["watched_modules_imported"] = watched
        print(
            f"sys.modules after `import dxflow`: {len(new)} modules beyond the baseline; "
            f"heavy ({', '.join(HEAVY)}): {heavy or 'none'}; also loaded: {watched or 'none'}",
            file=out,
        )
        if heavy:
            result.ok = False
            result.error = f"import dxflow imports heavy modules: {', '.join(heavy)}"
            print(f"FAIL: {result.error}", file=sys.stderr)
        slowest = _slowest_imports(env, baseline)
        result.figures["slowest_imports_self_us"] = {m: s for m, s, _ in slowest}
        print("slowest imports `import dxflow` adds (self time, one run):", file=out)
        for module, own, cumulative in slowest:
            print(f"  {module:<40} {own / 1e3:6.1f} ms  (cumulative {cumulative / 1e3:.1f} ms)",
                  file=out)  # fmt: skip
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
        print(f"import benchmark failed: {result.error}", file=sys.stderr)

    if not all(samples.values()):
        return result.finish(args, "import_time: FAILED")
    base = median(samples["baseline (pass)"])
    rows: list[list[Any]] = []
    for name, values in samples.items():
        med = median(values)
        net = med - base
        rows.append([name, len(values), fmt_ms(med), fmt_ms(min(values)), fmt_ms(net)])
        result.figures[name] = {"median_s": med, "min_s": min(values), "net_median_s": net}
    print_table(rows, ["command", "runs", "median", "min", "minus baseline"], out)
    dxflow, peer = median(samples["dxflow"]), median(samples["peer (httpx)"])
    wall_ratio = dxflow / peer
    net_ratio = (dxflow - base) / (peer - base) if peer > base else float("nan")
    result.figures["ratio_dxflow_over_httpx_wall"] = wall_ratio
    result.figures["ratio_dxflow_over_httpx_net"] = net_ratio
    result.targets.append(Target("import dxflow median", dxflow, TARGET_S, "s"))
    final = (
        f"import_time: dxflow {fmt_ms(dxflow)} (net {fmt_ms(dxflow - base)}), "
        f"httpx {fmt_ms(peer)} (net {fmt_ms(peer - base)}), python {fmt_ms(base)}; "
        f"ratio dxflow/httpx {wall_ratio:.2f}x wall, {net_ratio:.2f}x net"
    )
    return result.finish(args, final)


if __name__ == "__main__":
    sys.exit(main())
