"""The async SDK and its blocking twin: the same methods, typed handles, a clear end.

    python examples/async_engine.py      # an in-process engine on DXFLOW_HOME

`AsyncEngine` is the native SDK (asyncio, anyio); `Engine` is its blocking twin with the
same methods. Both hand out typed handles (`dxflow.AsyncShell`, `dxflow.ObjectStore`, ...)
that can be named in annotations, and both refuse calls after `close()`.
"""

from __future__ import annotations

import asyncio

import dxflow


async def shell_and_files(engine: dxflow.AsyncEngine) -> None:
    await engine.objects.pipe("async/hello.txt", b"hello from async")
    data, info = await asyncio.gather(  # two calls at once on one engine
        engine.objects.cat("async/hello.txt"), engine.objects.info("async/hello.txt")
    )
    print(f"async objects: {data!r}, {info.size} bytes")
    shell: dxflow.AsyncShell = await engine.shells.create("async-demo", command="/bin/sh")
    result = await shell.run("echo $((6 * 7))")
    print(f"async shell: output {result.output.strip()!r}, exit code {result.exit_code}")
    await shell.remove()


def blocking_twin(objects: dxflow.ObjectStore) -> None:
    print(f"blocking twin reads: {objects.cat('async/hello.txt')!r}")


async def main() -> None:
    async with dxflow.AsyncEngine() as engine:
        await shell_and_files(engine)
    try:
        await engine.ping()
    except dxflow.EngineClosed as exc:
        print(f"after close: EngineClosed ({exc.message.split(';')[0]})")
    with dxflow.Engine() as twin:
        blocking_twin(twin.objects)


if __name__ == "__main__":
    asyncio.run(main())
