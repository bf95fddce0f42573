"""In-process ping: microseconds per `Engine(home=tmp).ping()` and `await AsyncEngine.ping()`.

Peers, in the same run and interleaved: a plain Python function returning an equivalent
pydantic model (the floor of any call that hands back a model), and a bare
`asyncio.run_coroutine_threadsafe` round trip to a loop thread (what every blocking call
would pay without the inline path, which is why `Engine` runs non-waiting operations on
the caller's thread). Target: <= 50 µs per ping (median of the repeats).

    python benchmarks/inprocess_ping.py [--quick] [--json] [-n CALLS]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    Result,
    Target,
    fmt_us,
    human_stream,
    median,
    parse_args,
    print_table,
    seconds_per_call,
)

TARGET_S = 50e-6


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    calls = args.runs or (2_000 if args.quick else 20_000)
    repeats = 3 if args.quick else 5
    warmup = 50 if args.quick else 1_000
    result = Result("inprocess_ping", args.quick)
    scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-inproc-"))
    per_call: dict[str, list[float]] = {}
    cleanups: list[Callable[[], None]] = []
    try:
        from pydantic import BaseModel, ConfigDict

        import dxflow

        class PeerPong(BaseModel):
            model_config = ConfigDict(extra="ignore")
            engine_id: str
            identity: str
            time: datetime

        def peer_ping() -> PeerPong:
            return PeerPong(engine_id="dxf-0", identity="master", time=datetime.now(UTC))

        engine = dxflow.Engine(home=scratch / "sync")
        cleanups.append(engine.close)
        runner = asyncio.Runner()
        cleanups.append(runner.close)
        aengine = dxflow.AsyncEngine(home=scratch / "async")
        cleanups.insert(0, lambda: runner.run(aengine.aclose()))

        async def async_loop(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await aengine.ping()
            return (time.perf_counter() - start) / n

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="bench-loop", daemon=True)
        thread.start()

        def stop_loop() -> None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()

        cleanups.append(stop_loop)

        async def nothing() -> None:
            return None

        def hop() -> None:
            asyncio.run_coroutine_threadsafe(nothing(), loop).result()

        contenders: dict[str, Callable[[int], float]] = {
            "Engine.ping() (blocking twin)": lambda n: seconds_per_call(engine.ping, n),
            "await AsyncEngine.ping()": lambda n: runner.run(async_loop(n)),
            "peer: def -> pydantic model": lambda n: seconds_per_call(peer_ping, n),
            "peer: run_coroutine_threadsafe hop": lambda n: seconds_per_call(hop, n),
        }
        pong = engine.ping()
        if pong.identity != "master" or runner.run(aengine.ping()).engine_id is None:
            raise RuntimeError(f"unexpected ping answer: {pong!r}")
        print(f"in-process ping: {repeats} repeats of {calls} calls, interleaved", file=out)
        for fn in contenders.values():
            fn(warmup)
        names = list(contenders)
        per_call = {name: [] for name in names}
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                per_call[name].append(contenders[name](calls))
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
        print(f"in-process benchmark failed: {result.error}", file=sys.stderr)
    finally:
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:
                print(f"cleanup failed: {exc!r}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)

    if not per_call or not all(per_call.values()):
        return result.finish(args, "inprocess_ping: FAILED")
    floor = median(per_call["peer: def -> pydantic model"])
    rows: list[list[Any]] = []
    for name, values in per_call.items():
        med = median(values)
        rows.append([name, fmt_us(min(values)), fmt_us(med), f"{med / floor:.1f}x"])
        result.figures[name] = {"best_s": min(values), "median_s": med, "samples_s": values}
    print_table(rows, ["call", "best-of", "median", "vs pydantic fn"], out)
    sync = median(per_call["Engine.ping() (blocking twin)"])
    asynchronous = median(per_call["await AsyncEngine.ping()"])
    thread_hop = median(per_call["peer: run_coroutine_threadsafe hop"])
    result.figures["ratio_engine_over_pydantic_fn"] = sync / floor
    result.figures["ratio_async_engine_over_pydantic_fn"] = asynchronous / floor
    result.figures["ratio_thread_hop_over_engine"] = thread_hop / sync
    result.targets.append(Target("Engine.ping median", sync * 1e6, TARGET_S * 1e6, "µs"))
    result.targets.append(
        Target("AsyncEngine.ping median", asynchronous * 1e6, TARGET_S * 1e6, "µs")
    )
    final = (
        f"inprocess_ping: Engine.ping {fmt_us(sync)}, AsyncEngine.ping {fmt_us(asynchronous)}, "
        f"pydantic fn {fmt_us(floor)} (ratios {sync / floor:.1f}x, {asynchronous / floor:.1f}x), "
        f"thread hop {fmt_us(thread_hop)} ({thread_hop / sync:.1f}x Engine.ping)"
    )
    return result.finish(args, final)


if __name__ == "__main__":
    sys.exit(main())
