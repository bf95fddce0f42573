"""A CLI round trip: `dxflow ps` against `docker ps`, with the Python floor.

Every sample is a fresh process, as a user types it. Measured in the same run,
interleaved with a rotating order, medians reported:

* `docker ps` (the peer: a Go binary asking the Docker Engine over its unix socket);
* `dxflow ps` in a folder with a compose file (the project's workflow created for the run),
  `dxflow workflow list` and `dxflow ping` against an engine booted for the run, through
  its unix socket as MASTER, with the token cached by an earlier command (what every
  command but the first of an hour costs): these are answered by the CLI's pre-click
  fast path;
* `python -m dxflow ps`: the same through the module entry;
* `dxflow workflow list`, cold: an empty token cache each time (a handshake per command,
  what every command cost before the cache);
* the floor of any Python CLI: `python -c pass` and `python -c "import click"`.

`dxflow` is the console script of this interpreter's environment (`bin/dxflow`, what users
type; `python -m dxflow` where there is none), run with PYTHONPATH = the work tree, so it
imports the work tree's dxflow, not an installed one; the run checks that it does.

Target: dxflow ps <= 3x docker ps. The floors' ratios are printed next to it.

    python benchmarks/cli.py [--quick] [--json] [-n RUNS]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    PYTHON,
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

TARGET_RATIO = 3.0
DXFLOW = dxflow_cli()
MODULE = [PYTHON, "-m", "dxflow"]


def _time(command: list[str], env: dict[str, str], cwd: Path = REPO) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def _check_source(command: list[str], env: dict[str, str], cwd: Path) -> None:
    """Fail unless `command` imports the work tree's dxflow (PYTHONVERBOSE names each file)."""
    done = subprocess.run([*command, "--version"], cwd=cwd, env={**env, "PYTHONVERBOSE": "1"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if str(REPO / "dxflow" / "_cli" / "__init__.py") not in done.stderr:
        raise RuntimeError(f"{command} does not run the work tree's dxflow ({REPO})")


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    runs = args.runs or (5 if args.quick else 30)
    entry = "console script " + DXFLOW[0] if len(DXFLOW) == 1 else "python -m dxflow"
    result = Result("cli", args.quick, notes=[bytecode_note(), f"`dxflow` is the {entry}"])
    scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-cli-"))
    home = scratch / "home"
    env = child_env(DXFLOW_CACHE_DIR=str(scratch / "cache"))
    cold = [0]

    def cold_env() -> dict[str, str]:
        cold[0] += 1
        return {**env, "DXFLOW_CACHE_DIR": str(scratch / f"cold-{cold[0]}")}

    at_home = ["--home", str(home)]
    project = scratch / "benchps"
    project.mkdir()
    (project / "compose.yaml").write_text(
        "services:\n  app:\n    image: dxflow-bench/absent:1\n    command: [sleep, '1']\n"
    )
    env["PYTHONPATH"] = str(REPO)  # `dxflow ps` runs in the project's folder
    commands: dict[str, tuple[list[str], Any]] = {
        "docker ps": (["docker", "ps"], lambda: env),
        "dxflow ps": ([*DXFLOW, "ps", *at_home], lambda: env),
        "dxflow workflow list": ([*DXFLOW, "workflow", "list", *at_home], lambda: env),
        "dxflow ping": ([*DXFLOW, "ping", *at_home], lambda: env),
        "python -m dxflow ps": ([*MODULE, "ps", *at_home], lambda: env),
        "dxflow workflow list (cold)": ([*DXFLOW, "workflow", "list", *at_home], cold_env),
        "python -c pass": ([PYTHON, "-c", "pass"], lambda: env),
        "python -c 'import click'": ([PYTHON, "-c", "import click"], lambda: env),
    }
    if shutil.which("docker") is None:
        del commands["docker ps"]
        result.notes.append("no docker binary: no peer, no ratio")
    samples: dict[str, list[float]] = {name: [] for name in commands}
    try:
        _check_source(DXFLOW, env, project)
        _check_source(MODULE, env, project)
        subprocess.run([*DXFLOW, "boot", "up", "--daemon", "--port", "0", *at_home],
                       cwd=REPO, env=env, check=True, capture_output=True, timeout=60)  # fmt: skip
        create = [*DXFLOW, "workflow", "create", "benchps", "-f", "compose.yaml", *at_home]
        subprocess.run(create, cwd=project, env=env, check=True, capture_output=True, timeout=60)
        print(f"CLI round trip: {runs} fresh processes each, interleaved", file=out)
        names = list(commands)
        for name in names:  # warm-up, not counted: caches, .pyc files, the token
            command, make_env = commands[name]
            _time(command, make_env(), project)
        for i in range(runs):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                command, make_env = commands[name]
                samples[name].append(_time(command, make_env(), project))
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
        print(f"cli benchmark failed: {result.error}", file=sys.stderr)
    finally:
        subprocess.run([*DXFLOW, "boot", "down", *at_home], cwd=REPO, env=env,
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)

    if not result.ok or not all(samples.values()):
        return result.finish(args, "cli: FAILED")
    peer = median(samples["docker ps"]) if "docker ps" in samples else None
    rows: list[list[Any]] = []
    for name, values in samples.items():
        med = median(values)
        ratio = f"{med / peer:.1f}x" if peer else "-"
        rows.append([name, len(values), fmt_ms(med), fmt_ms(min(values)), ratio])
        result.figures[name] = {"median_s": med, "min_s": min(values), "samples_s": values}
    print_table(rows, ["command", "runs", "median", "min", "/ docker ps"], out)
    dxflow = median(samples["dxflow ps"])
    click_floor = median(samples["python -c 'import click'"])
    result.figures["dxflow_over_click_floor"] = dxflow / click_floor
    if peer:
        ratio = dxflow / peer
        result.figures["ratio_dxflow_over_docker_ps"] = ratio
        result.figures["ratio_click_floor_over_docker_ps"] = click_floor / peer
        result.figures["ratio_python_floor_over_docker_ps"] = (
            median(samples["python -c pass"]) / peer
        )
        result.targets.append(Target("dxflow ps / docker ps", ratio, TARGET_RATIO, "x"))
        final = (
            f"cli: dxflow ps {fmt_ms(dxflow)}, docker ps {fmt_ms(peer)}, "
            f"ratio {ratio:.2f}x (floor: python+click {click_floor / peer:.2f}x, "
            f"python {result.figures['ratio_python_floor_over_docker_ps']:.2f}x)"
        )
    else:
        final = f"cli: dxflow ps {fmt_ms(dxflow)} (no docker ps to compare)"
    return result.finish(args, final)


if __name__ == "__main__":
    sys.exit(main())
