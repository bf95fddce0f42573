"""benchmarks/run_all.py: a failed benchmark is reported, the summary covers the others."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))  # the scripts import their siblings by name
try:
    import compare_trees
    import run_all
finally:
    sys.path.remove(str(BENCH_DIR))

PING = {
    "dxflow": {"rps_median": 9000.0},
    "peer": {"rps_median": 12000.0},
    "ratio_dxflow_over_peer": 0.75,
    "load_generator": "wrk",
}
TARGET = {
    "name": "ratio",
    "value": 0.75,
    "limit": 0.4,
    "unit": "x",
    "higher_is_better": True,
    "met": True,
}


def ping_run(**changes: Any) -> run_all.Run:
    data = {"ok": True, "figures": PING, "targets": [TARGET]}
    run = run_all.Run("http_ping", 0, data=data, seconds=3.0)
    for key, value in changes.items():
        setattr(run, key, value)
    return run


def test_a_failed_run_without_figures_is_reported_and_the_others_summarised() -> None:
    # The crash this guards against: workflows' headline took max() over no up_ figures.
    broken = run_all.Run(
        "workflows",
        1,
        data={"ok": False, "figures": {"compose_version": "2"}, "error": "up: Conflict"},
        seconds=41.0,
        tail=[f"line {n}" for n in range(5)] + ["Conflict: network has active endpoints"],
    )
    runs = [ping_run(), broken, run_all.Run("shells", None, seconds=90.0, problem="timed out")]
    out = io.StringIO()
    run_all.report(runs, quick=True, elapsed=134.0, out=out)
    text = out.getvalue()

    rows = {row[0]: row for row in run_all.summary_rows(runs)}
    assert rows["http_ping"][1:6] == [
        "ping req/s (wrk)",
        "9,000",
        "starlette 12,000",
        "0.75x",
        "all met",
    ]
    assert rows["workflows"][1] == "FAILED" and rows["shells"][1] == "FAILED"
    assert "workflows FAILED (exit 1, after 41.0 s)" in text
    assert "error: up: Conflict" in text and "| Conflict: network has active endpoints" in text
    assert "shells FAILED (killed at the timeout, after 90.0 s)" in text
    assert "run_all: 1/3 ran; failed: workflows, shells" in text
    assert run_all.exit_code(runs) == 1


def test_the_revocation_headline_names_both_processes() -> None:
    summary = {"p50_ms": 4.1, "max_ms": 17.2, "request_p50_ms": 2.5, "other_process_max_ms": 502.0}
    target = {**TARGET, "name": "closed after a change, max", "value": 0.017, "limit": 1.0,
              "unit": "s", "higher_is_better": False}  # fmt: skip
    data = {"ok": True, "figures": {"summary": summary}, "targets": [target]}
    (row,) = run_all.summary_rows([run_all.Run("revocation", 0, data=data, seconds=5.0)])
    assert row[1:6] == [
        "key change to its streams closed, max",
        "17 ms",
        "the change's request 2.5 ms",
        "another process 502 ms",
        "all met",
    ]
    assert "revocation" in run_all.SCRIPTS


@pytest.mark.parametrize(
    ("returncode", "ok", "code"),
    [(0, True, 0), (2, True, 2), (2, False, 1), (0, False, 1), (-9, True, 1)],
)
def test_exit_code(returncode: int, ok: bool, code: int) -> None:
    run = ping_run(returncode=returncode, data={"ok": ok, "figures": PING})
    assert run_all.exit_code([ping_run(), run]) == code


def test_run_script_keeps_the_tail_of_a_failing_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run_all, "BENCH_DIR", tmp_path)
    (tmp_path / "broken.py").write_text(
        "import sys\n"
        "for n in range(40):\n"
        "    print(f'progress {n}', file=sys.stderr)\n"
        "print('Traceback: boom', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    run = run_all.run_script("broken", ["--quick"], timeout=120)
    assert run.returncode == 3 and run.failed and run.data == {}
    assert run.problem == "no JSON on its stdout"
    assert len(run.tail) == run_all.TAIL_LINES and run.tail[-1] == "Traceback: boom"
    assert "progress 0" in capsys.readouterr().err  # passed on as it ran


def test_run_script_reads_the_json_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_all, "BENCH_DIR", tmp_path)
    (tmp_path / "fine.py").write_text(
        "import json, sys\n"
        "assert sys.argv[1:] == ['--json']\n"
        "print(json.dumps({'ok': True, 'figures': {'x': 1}}))\n"
    )
    run = run_all.run_script("fine", [], timeout=120)
    assert run.returncode == 0 and not run.failed and run.problem is None
    assert run.data == {"ok": True, "figures": {"x": 1}}


def test_run_script_kills_a_script_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_all, "BENCH_DIR", tmp_path)
    (tmp_path / "stuck.py").write_text("import time\ntime.sleep(600)\n")
    run = run_all.run_script("stuck", [], timeout=1)
    assert run.returncode is None and run.failed
    assert run.problem == "timed out after 1 s"


def test_compare_trees_table_pairs_the_medians_and_shows_the_noise_band() -> None:
    figures = {"dxflow": {"median_s": 2.0, "samples_s": [1, 2]}, "load_generator": "wrk"}
    assert compare_trees.flatten(figures) == {"dxflow.median_s": 2.0}
    outcomes = [
        compare_trees.Outcome("before", "boot", 0, 1.0, {"dxflow.median_s": 2.0, "old.mb_s": 5}),
        compare_trees.Outcome("after", "boot", 0, 1.0, {"dxflow.median_s": 3.0, "new.mb_s": 7}),
        compare_trees.Outcome("before", "boot", 0, 1.0, {"dxflow.median_s": 2.2}),
        compare_trees.Outcome("after", "boot", 0, 1.0, {"dxflow.median_s": 3.3}),
        compare_trees.Outcome("after", "boot", 1, 1.0, {"dxflow.median_s": 99.0}, error="boom"),
    ]
    rows = compare_trees.table(outcomes, ("before", "after"), show_all=False)
    assert rows == [
        ["boot: dxflow.median_s", "2.1", "3.15", "1.500", "x1.10", "lower"],
        ["boot: old.mb_s", "5", "-", "-", "-", "higher"],
        ["boot: new.mb_s", "-", "7", "-", "-", "higher"],
    ]
