"""Before/after: the benchmark figures of two source trees, measured in one session.

    python benchmarks/compare_trees.py /work/before                 # before vs this tree
    python benchmarks/compare_trees.py /work/before /work/main --quick --rounds 2
    python benchmarks/compare_trees.py A B --only boot,http_ping --all --json out.json

Each benchmark script runs from its own tree (cwd and PYTHONPATH are the tree, the
interpreter is this one), the trees alternating A, B, A, B ... for each script, so that
machine noise hits both alike. The table shows, per figure, the median over the rounds
of each tree, after/before, and the noise band: the spread (largest / smallest) of the
figure over one tree's rounds, the worse of the two trees. An after/before inside the
band is noise. Figures of the peers (uvicorn, nginx, pydantic ...) run the same code in
both trees, so their after/before is noise too: a second yardstick.

Exits 1 when a script failed in either tree (its exit code and the tail of its output
are printed); the table covers what ran.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPTS = ["boot", "inprocess_ping", "http_ping", "objects", "shells", "workflows"]
HERE = Path(__file__).resolve().parent.parent
# The figures shown without --all: medians, throughputs, latencies and ratios.
HEADLINE = re.compile(r"(^|_)(median_s|mb_s|rps_median|p50_ms_1conn|p99_ms)$|^ratio_|^speedup$")
TAIL_LINES = 15


@dataclass
class Outcome:
    """One run of one script in one tree."""

    tree: str
    script: str
    returncode: int | None  # None: killed at the timeout
    seconds: float
    figures: dict[str, float] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.returncode not in (0, 2) or self.error is not None


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a figures document by dotted path (lists, e.g. samples, skipped)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | list):
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)} if math.isfinite(value) else {}
    if isinstance(value, dict):
        leaves: dict[str, float] = {}
        for key, item in value.items():
            leaves.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return leaves
    return {}


def headline(path: str) -> bool:
    return bool(HEADLINE.search(path.rsplit(".", 1)[-1])) and "seconds" not in path


def lower_is_better(path: str) -> bool | None:
    last = path.rsplit(".", 1)[-1]
    if last.endswith(("mb_s", "rps_median", "rps_1conn")) or last == "speedup":
        return False
    if last.endswith(("_s", "_ms", "_us")) or re.search(r"(^|_)p\d+_ms", last):
        return True
    return None  # a ratio of two figures: its meaning depends on its names


def tree_env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXFLOW_")}
    env["PYTHONPATH"] = str(tree)
    return env


def imported_from(python: str, tree: Path) -> str:
    """Where `import dxflow` resolves in a tree's environment (it must be the tree)."""
    done = subprocess.run(
        [python, "-c", "import dxflow; print(dxflow.__file__)"],
        cwd=tree,
        env=tree_env(tree),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def run_script(
    python: str, tree: Path, script: str, quick: bool, timeout: float, label: str
) -> Outcome:
    command = [python, str(tree / "benchmarks" / f"{script}.py"), "--json"]
    command += ["--quick"] if quick else []
    env = tree_env(tree)
    began = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        tail = stderr.splitlines()[-TAIL_LINES:]
        spent = time.perf_counter() - began
        return Outcome(
            label, script, None, spent, tail=tail, error=f"timed out after {timeout:.0f} s"
        )
    outcome = Outcome(label, script, done.returncode, time.perf_counter() - began)
    outcome.tail = done.stderr.splitlines()[-TAIL_LINES:]
    try:
        document = json.loads(done.stdout)
    except ValueError:
        outcome.error = "no JSON document on stdout"
        return outcome
    outcome.figures = flatten(document.get("figures", {}))
    if not document.get("ok", False):
        outcome.error = document.get("error") or "the script reported ok: false"
    return outcome


def spread(values: list[float]) -> float:
    low, high = min(values), max(values)
    return high / low if low > 0 else math.nan


def table(outcomes: list[Outcome], labels: tuple[str, str], show_all: bool) -> list[list[str]]:
    """Rows: figure, before, after, after/before, noise band (worse of the two trees)."""
    values: dict[tuple[str, str], dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    order: dict[tuple[str, str], None] = {}
    for outcome in outcomes:
        if outcome.failed:
            continue
        for path, value in outcome.figures.items():
            if show_all or headline(path):
                values[(outcome.script, path)][outcome.tree].append(value)
                order.setdefault((outcome.script, path), None)
    rows = []
    for key in order:
        script, path = key
        before, after = (values[key].get(label, []) for label in labels)
        better = {True: "lower", False: "higher", None: ""}[lower_is_better(path)]
        if not before or not after:  # a figure only one tree has (added or dropped)
            shown = [fmt(statistics.median(v)) if v else "-" for v in (before, after)]
            rows.append([f"{script}: {path}", *shown, "-", "-", better])
            continue
        b, a = statistics.median(before), statistics.median(after)
        ratio = f"{a / b:.3f}" if b else "-"
        bands = [spread(v) for v in (before, after) if len(v) > 1]
        noise = f"x{max(bands):.2f}" if bands else "-"
        rows.append([f"{script}: {path}", fmt(b), fmt(a), ratio, noise, better])
    return rows


def fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}"


def print_rows(rows: list[list[str]], headers: list[str]) -> None:
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                        enumerate(zip(row, widths, strict=True))))  # fmt: skip
        if n == 0:
            print("  ".join("-" * w for w in widths))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="the tree measured first (e.g. /work/before)")
    parser.add_argument("after", type=Path, nargs="?", default=HERE, help="default: this tree")
    parser.add_argument("--quick", action="store_true", help="the scripts' --quick mode")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each script per tree")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated scripts")
    parser.add_argument("--all", action="store_true", help="every numeric figure")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of both")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    trees = (args.before.resolve(), args.after.resolve())
    labels = ("before", "after")
    scripts = [name.strip() for name in args.only.split(",") if name.strip()]
    timeout = 600.0 if args.quick else 2400.0
    mode = "quick" if args.quick else "full"
    print(
        f"before: {trees[0]}\nafter:  {trees[1]}\n{mode} mode, {args.rounds} rounds, {args.python}"
    )
    for label, tree in zip(labels, trees, strict=True):
        where = imported_from(args.python, tree)
        print(f"{label} imports {where}")
        if not where.startswith(str(tree)):
            print(f"compare_trees: {label} does not import its own tree's dxflow")
            return 1
    outcomes: list[Outcome] = []
    began = time.perf_counter()
    for script in scripts:
        for round_ in range(args.rounds):
            for label, tree in zip(labels, trees, strict=True):
                outcome = run_script(args.python, tree, script, args.quick, timeout, label)
                outcomes.append(outcome)
                state = (
                    f"FAILED ({outcome.error or outcome.returncode})" if outcome.failed else "ok"
                )
                print(f"  {script} round {round_ + 1} {label}: {state} in {outcome.seconds:.0f} s",
                      flush=True)  # fmt: skip
    print()
    print_rows(
        table(outcomes, labels, args.all),
        ["figure", "before", "after", "after/before", "noise band", "better"],
    )
    failed = [outcome for outcome in outcomes if outcome.failed]
    for outcome in failed:
        code = "killed at the timeout" if outcome.returncode is None else outcome.returncode
        print(f"\n{outcome.script} ({outcome.tree}) FAILED, exit {code}: {outcome.error}")
        for line in outcome.tail:
            print(f"  | {line}")
    print(f"\ncompare_trees: {len(outcomes) - len(failed)}/{len(outcomes)} runs ok "
          f"in {time.perf_counter() - began:.0f} s")  # fmt: skip
    if args.json is not None:
        args.json.write_text(
            json.dumps([outcome.__dict__ for outcome in outcomes], indent=1, default=str)
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
