"""SDK overhead in-process: `engine.objects.info()` against a bare dispatcher call.

What the facades (the blocking twin's runner, the collection, the engine's primitives)
add on top of the dispatcher, in the same run, interleaved:

- blocking: `engine.objects.info(path)` vs `core.dispatcher.call_inline(ctx, op, params)`
  (the floor: the same operation with no SDK at all); target <= 1.5x.
- async: `await aengine.objects.info(path)` vs `await core.dispatcher.call(ctx, op,
  params)` on the same loop.

    python benchmarks/sdk_overhead.py [--quick] [--json] [-n CALLS]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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

TARGET_RATIO = 1.5


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    calls = args.runs or (2_000 if args.quick else 20_000)
    repeats = 3 if args.quick else 5
    result = Result("sdk_overhead", args.quick)
    scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-sdk-"))
    per_call: dict[str, list[float]] = {}
    cleanups: list[Callable[[], None]] = []
    try:
        import dxflow
        from dxflow._operations import OPERATIONS
        from dxflow._transports._local import LocalTransport

        engine = dxflow.Engine(home=scratch / "home")
        cleanups.append(engine.close)
        engine.objects.pipe("bench/a.txt", b"hello")
        core = engine._transport.core  # type: ignore[attr-defined]  # the floor's dispatcher
        ctx, op, params = core.local_context(), OPERATIONS["objects.info"], {"path": "bench/a.txt"}
        dispatcher = core.dispatcher
        aengine = dxflow.AsyncEngine(transport=LocalTransport(core, owns_core=False))
        runner = asyncio.Runner()
        cleanups.insert(0, runner.close)

        async def sdk_async(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await aengine.objects.info("bench/a.txt")
            return (time.perf_counter() - start) / n

        async def bare_async(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await dispatcher.call(ctx, op, params)
            return (time.perf_counter() - start) / n

        contenders: dict[str, Callable[[int], float]] = {
            "engine.objects.info()": lambda n: seconds_per_call(
                lambda: engine.objects.info("bench/a.txt"), n
            ),
            "dispatcher.call_inline()": lambda n: seconds_per_call(
                lambda: dispatcher.call_inline(ctx, op, params), n
            ),
            "await aengine.objects.info()": lambda n: runner.run(sdk_async(n)),
            "await dispatcher.call()": lambda n: runner.run(bare_async(n)),
        }
        assert engine.objects.info("bench/a.txt").size == 5
        for fn in contenders.values():
            fn(max(calls // 20, 10))  # warm up
        names = list(contenders)
        per_call = {name: [] for name in names}
        print(f"sdk overhead: {repeats} repeats of {calls} calls, interleaved", file=out)
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                per_call[name].append(contenders[name](calls))
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
        print(f"sdk overhead benchmark failed: {result.error}", file=sys.stderr)
    finally:
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:
                print(f"cleanup failed: {exc!r}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)

    if not per_call or not all(per_call.values()):
        return result.finish(args, "sdk_overhead: FAILED")
    for name, values in per_call.items():
        result.figures[name] = {"best_s": min(values), "median_s": median(values)}
    sync = median(per_call["engine.objects.info()"]) / median(per_call["dispatcher.call_inline()"])
    asynchronous = median(per_call["await aengine.objects.info()"]) / median(
        per_call["await dispatcher.call()"]
    )
    rows = [[name, fmt_us(min(v)), fmt_us(median(v))] for name, v in per_call.items()]
    print_table(rows, ["call", "best-of", "median"], out)
    result.figures["ratio_blocking_sdk_over_dispatcher"] = sync
    result.figures["ratio_async_sdk_over_dispatcher"] = asynchronous
    result.targets.append(Target("engine.objects.info / call_inline", sync, TARGET_RATIO, "x"))
    final = (
        f"sdk_overhead: engine.objects.info {sync:.2f}x dispatcher.call_inline, "
        f"await aengine.objects.info {asynchronous:.2f}x await dispatcher.call"
    )
    return result.finish(args, final)


if __name__ == "__main__":
    sys.exit(main())
