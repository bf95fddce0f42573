"""Boot to healthy: process start until `GET /api/health` answers 200 on the unix socket.

dxflow: `python -m dxflow_server --home H --port 0` (the engine in the foreground) on a
home that already booted once, so the one-time key generation is excluded; first boots
on fresh homes are reported separately. "boot up": boot as a user sees it, `dxflow boot
up --daemon` from its start until it returns (it returns once `/api/health` answers),
then `dxflow boot down` (not timed). Peer: peer_app.py under `python -m uvicorn --uds`,
measured the same way in the same run, interleaved. Target: both dxflow medians <= 0.5 s.

    python benchmarks/boot.py [--quick] [--json] [-n RUNS]
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    PYTHON,
    REPO,
    Result,
    Target,
    bytecode_note,
    child_env,
    dxflow_version,
    fmt_ms,
    human_stream,
    median,
    parse_args,
    peer_command,
    print_table,
    stop_process,
    wait_unix_health,
)

BOOT_TIMEOUT = 30.0
TARGET_S = 0.5


class Sample:
    def __init__(self, ready: float, stop: float) -> None:
        self.ready, self.stop = ready, stop


def _measure(command: list[str], socket_path: Path, log: Path, env: dict[str, str]) -> Sample:
    """Start `command`, time it to healthy, SIGTERM it and time its exit."""
    with open(log, "ab") as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        healthy = wait_unix_health(socket_path, process, BOOT_TIMEOUT)
    except RuntimeError as exc:
        stop_process(process)
        tail = "\n    ".join(log.read_text(errors="replace").splitlines()[-8:])
        raise RuntimeError(f"{exc}\n    {tail}") from None
    except BaseException:
        stop_process(process)
        raise
    stopped = stop_process(process)
    if process.returncode not in (0, -15):
        raise RuntimeError(f"{command[:3]} exited with {process.returncode} after SIGTERM")
    return Sample(healthy - start, stopped)


def _boot_up(home: Path, env: dict[str, str]) -> Sample:
    """`dxflow boot up --daemon` until it returns (healthy), then `boot down`; the work
    tree's (`python -m dxflow` from the repository), not an installed `dxflow`."""
    up = [PYTHON, "-m", "dxflow", "boot", "up", "--daemon", "--home", str(home),
          "--host", "127.0.0.1", "--port", "0"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(up, cwd=REPO, env=env, capture_output=True, timeout=BOOT_TIMEOUT)
    ready = time.perf_counter() - start
    stop = time.perf_counter()
    down = [PYTHON, "-m", "dxflow", "boot", "down", "--home", str(home)]
    subprocess.run(down, cwd=REPO, env=env, capture_output=True, timeout=BOOT_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"dxflow boot up failed: {done.stderr.decode(errors='replace')}")
    return Sample(ready, time.perf_counter() - stop)


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    runs = args.runs or (3 if args.quick else 15)
    first_runs = 1 if args.quick else min(runs, 5)
    result = Result("boot", args.quick, notes=[bytecode_note()])
    scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-boot-"))
    env = child_env(PEER_VERSION=dxflow_version())
    warm_home = scratch / "home"
    peer_sock = scratch / "peer.sock"

    def dxflow_cmd(home: Path) -> list[str]:
        return [
            PYTHON, "-m", "dxflow_server", "--home", str(home),
            "--host", "127.0.0.1", "--port", "0",
        ]  # fmt: skip

    def dxflow_boot(home: Path) -> Sample:
        return _measure(dxflow_cmd(home), home / "run" / "engine.sock", scratch / "dxflow.log", env)

    def peer_boot() -> Sample:
        peer_sock.unlink(missing_ok=True)
        return _measure(peer_command("--uds", str(peer_sock)), peer_sock, scratch / "peer.log", env)

    samples: dict[str, list[Sample]] = {
        "dxflow": [],
        "dxflow-first": [],
        "boot up": [],
        "peer": [],
    }
    try:
        print(f"boot to healthy: {runs} runs each, interleaved (first boots: {first_runs})",
              file=out)  # fmt: skip
        # Warm-ups, not counted: both start from warm file and bytecode caches.
        peer_boot()
        dxflow_boot(scratch / "warm-up")
        # The priming boot of the warm home is itself a first boot on a fresh home.
        samples["dxflow-first"].append(dxflow_boot(warm_home))
        for i in range(runs):
            order: list[tuple[str, Callable[[], Sample]]] = [
                ("peer", peer_boot),
                ("dxflow", lambda: dxflow_boot(warm_home)),
                ("boot up", lambda: _boot_up(warm_home, env)),
            ]
            if i % 2:
                order.reverse()
            if i < first_runs - 1:  # the priming boot was the first of them
                fresh = scratch / f"fresh-{i}"
                order.append(("dxflow-first", functools.partial(dxflow_boot, fresh)))
            for name, run in order:
                samples[name].append(run())
            print(
                f"  run {i + 1}/{runs}: dxflow {fmt_ms(samples['dxflow'][-1].ready)}, "
                f"boot up {fmt_ms(samples['boot up'][-1].ready)}, "
                f"peer {fmt_ms(samples['peer'][-1].ready)}",
                file=out,
            )
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
        print(f"boot benchmark failed: {result.error}", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows: list[list[Any]] = []
    medians: dict[str, float] = {}
    for name, values in samples.items():
        if not values:
            continue
        ready = [s.ready for s in values]
        stop = [s.stop for s in values]
        medians[name] = median(ready)
        rows.append([name, len(values), fmt_ms(median(ready)), fmt_ms(min(ready)),
                     fmt_ms(max(ready)), fmt_ms(median(stop))])  # fmt: skip
        result.figures[name] = {
            "runs": len(values),
            "median_s": median(ready),
            "min_s": min(ready),
            "max_s": max(ready),
            "stop_median_s": median(stop),
            "samples_s": ready,
        }
    print_table(rows, ["server", "runs", "median", "min", "max", "stop (SIGTERM)"], out)
    if "dxflow" in medians and "peer" in medians:
        ratio = medians["dxflow"] / medians["peer"]
        result.figures["ratio_dxflow_over_peer"] = ratio
        result.targets.append(Target("dxflow boot median", medians["dxflow"], TARGET_S, "s"))
        if "boot up" in medians:
            user = Target("dxflow boot up (as a user sees it)", medians["boot up"], TARGET_S, "s")
            result.targets.append(user)
        final = (
            f"boot: dxflow {fmt_ms(medians['dxflow'])} (first boot "
            f"{fmt_ms(medians.get('dxflow-first', float('nan')))}), "
            f"boot up {fmt_ms(medians.get('boot up', float('nan')))}, "
            f"peer {fmt_ms(medians['peer'])}, ratio dxflow/peer {ratio:.2f}x"
        )
    else:
        final = "boot: FAILED"
    return result.finish(args, final)


if __name__ == "__main__":
    sys.exit(main())
