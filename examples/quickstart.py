"""A tour of an engine: in-process first, then the booted server over HTTP.

    python examples/quickstart.py            # uses DXFLOW_HOME (default ~/.dxflow)

In-process, `dxflow.Engine()` runs the engine core inside this Python process as the
engine's MASTER identity. With a URL and a key, the same calls travel over HTTP.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import dxflow


def in_process(home: str | None) -> None:
    with dxflow.Engine(home=home) as engine:
        pong = engine.ping()
        started = time.perf_counter()
        for _ in range(1000):
            engine.ping()
        per_call = (time.perf_counter() - started) / 1000 * 1e6
        print(f"in-process engine {pong.engine_id}: ping {per_call:.1f} us per call")
        files_and_shells(engine)

        info = engine.info()
        docker = (
            info.docker.version if info.docker.available else f"unavailable ({info.docker.error})"
        )
        print(
            f"  host {info.host.hostname}: {info.cpu.count} CPUs, "
            f"{info.memory.total / 2**30:.1f} GiB, Docker {docker}"
        )
        stats = engine.stats()
        print(
            f"  cpu {stats.cpu.percent:.0f}%  memory {stats.memory.percent:.0f}%  "
            f"disks {[d.mount for d in stats.disks]}"
        )

        # A key for a teammate who may look at the platform but change nothing.
        folder = Path(tempfile.mkdtemp())
        pair = engine.keys.generate(folder / "viewer.pem", type="ed25519")
        identity = f"viewer-{pair.fingerprint[7:15].replace('/', '_').replace('+', '-')}"
        engine.keys.register(pair.public, identity, "PLATFORM,READ_ONLY")
        with dxflow.Engine(home=home, key=pair.private) as viewer:
            print(f"  {viewer.whoami().identity} sees {viewer.info().cpu.count} CPUs")
            try:
                viewer.keys.list()
            except dxflow.PermissionDenied as denied:
                print(f"  and is refused key management: {denied.message}")
        engine.keys.unregister(identity)
        for record in engine.audit(since="1m", limit=3):
            print(
                f"  audit: {record.identity} {record.operation} {record.target} -> {record.outcome}"
            )


def over_http(home: str | None) -> None:
    try:
        engine = dxflow.Engine.from_home(home)
    except dxflow.EngineUnavailable as why:
        print(f"no engine server is running ({why.message})")
        return
    with engine:
        started = time.perf_counter()
        pong = engine.ping()
        print(
            f"server engine {pong.engine_id} over its unix socket: "
            f"ping {(time.perf_counter() - started) * 1000:.1f} ms (handshake included)"
        )
        started = time.perf_counter()
        for _ in range(100):
            engine.ping()
        print(f"  then {(time.perf_counter() - started) * 10:.2f} ms per authenticated ping")
        files_and_shells(engine)


def files_and_shells(engine: dxflow.Engine) -> None:
    """The object store and a shell session, on the same engine."""
    engine.objects.pipe("quickstart/hello.txt", b"hello from the object store\n")
    print(f"  objects: {engine.objects.cat('quickstart/hello.txt', 0, 5)!r} read back by range")
    engine.objects.rm("quickstart", recursive=True)
    shell = engine.shells.create(command="/bin/sh")
    result = shell.run("echo $((6 * 7)); false")
    print(f"  shell {shell.name}: output {result.output.strip()!r}, exit code {result.exit_code}")
    shell.remove()


if __name__ == "__main__":
    import os

    home = os.environ.get("DXFLOW_HOME")
    in_process(home)
    over_http(home)
