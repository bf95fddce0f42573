"""The core's lifecycle: jobs run while it is started, survive their own failures, and
stop with it; the engine's housekeeping runs there and not on writes."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dxflow._config import load_config
from dxflow._core import EngineCore, _lifecycle
from dxflow._core._lifecycle import Lifecycle
from dxflow._core._objects._paths import STALE_TEMP
from dxflow._transports._local import LocalTransport
from dxflow.models import UploadCreate

WAIT = 30.0  # generous: the machine may be busy


@pytest.fixture(autouse=True)
def no_start_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first runs wait a second after the start (for a server's boot): not here."""
    monkeypatch.setattr(_lifecycle, "START_DELAY", 0.0)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g} s: {what}")
        await asyncio.sleep(0.01)


def _job_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("dxflow job", "dxflow-"))]


def test_a_periodic_job_runs_at_start_and_again_when_triggered() -> None:
    lifecycle, runs = Lifecycle(), []
    job = lifecycle.every("count", 3600, lambda: runs.append(threading.get_ident()))

    async def main() -> None:
        async with lifecycle.running():
            await until(lambda: job.runs == 1, "the first run")
            lifecycle.trigger("count")
            await until(lambda: job.runs == 2, "the triggered run")
        assert not lifecycle.active and _job_tasks() == []

    asyncio.run(main())
    # A blocking function runs in a worker thread, never on the loop.
    assert len(runs) == 2 and threading.get_ident() not in runs


def test_a_failing_job_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle, calls = Lifecycle(), []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk on fire")

    async def steady() -> None:
        pass

    job = lifecycle.every("flaky", 3600, flaky)
    other = lifecycle.every("steady", 3600, steady)

    async def main() -> None:
        async with lifecycle.running():
            await until(lambda: job.failures == 1 and other.runs == 1, "the failure")
            assert lifecycle.active  # the engine goes on
            lifecycle.trigger("flaky")
            await until(lambda: job.runs == 1, "the run after the failure")

    with caplog.at_level(logging.ERROR, logger="dxflow.engine"):
        asyncio.run(main())
    failed = [r for r in caplog.records if "background job flaky failed" in r.getMessage()]
    assert len(failed) == 1 and "disk on fire" in (failed[0].exc_text or "")


def test_a_failing_task_starts_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_lifecycle, "RESTART_DELAY", 0.01)
    lifecycle, starts = Lifecycle(), []

    async def listener() -> None:
        starts.append(1)
        if len(starts) < 3:
            raise ConnectionError("port taken")
        await asyncio.Event().wait()  # serves until cancelled

    job = lifecycle.task("listener", listener)

    async def main() -> None:
        async with lifecycle.running():
            await until(lambda: len(starts) == 3, "the third start")
            assert job.failures == 2
        assert _job_tasks() == []

    with caplog.at_level(logging.ERROR, logger="dxflow.engine"):
        asyncio.run(main())
    assert sum("background task listener failed" in r.getMessage() for r in caplog.records) == 2


def test_jobs_added_while_running_start_once_and_discarded_ones_stop() -> None:
    lifecycle = Lifecycle()
    stopped = []

    async def serve() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(1)

    async def main() -> None:
        lifecycle.start()
        job = lifecycle.task("proxy", serve)  # one call, on a started core
        await until(lambda: any("proxy" in t.get_name() for t in _job_tasks()), "the task")
        assert sum("proxy" in t.get_name() for t in _job_tasks()) == 1
        lifecycle.discard("proxy")
        await until(lambda: stopped == [1], "the discarded task's end")
        assert "proxy" not in lifecycle.jobs and job.runs == 0 and lifecycle.active
        await lifecycle.stop()

    asyncio.run(main())


def test_stopping_twice_or_before_starting_is_fine_and_it_starts_again() -> None:
    lifecycle = Lifecycle()
    job = lifecycle.every("count", 3600, lambda: None)

    async def main() -> None:
        await lifecycle.stop()  # never started
        for expected in (1, 2):
            lifecycle.start()
            lifecycle.start()  # already running: nothing more
            await until(lambda n=expected: job.runs == n, f"run {expected}")  # type: ignore[misc]
            await lifecycle.stop()
            await lifecycle.stop()
            assert not lifecycle.active and _job_tasks() == []

    asyncio.run(main())


def test_it_stops_from_another_loop() -> None:
    """An engine closed from another thread than the loop its work runs on."""
    lifecycle = Lifecycle()
    job = lifecycle.every("count", 3600, lambda: None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def start() -> None:
            lifecycle.start()
            await until(lambda: job.runs == 1, "the first run")

        asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT)
        asyncio.run(lifecycle.stop())
        assert not lifecycle.active
        assert asyncio.run_coroutine_threadsafe(_alive(), loop).result(WAIT) == []
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()


async def _alive() -> list[asyncio.Task[object]]:
    return _job_tasks()


# -- the engine's housekeeping ------------------------------------------------------------


@pytest.fixture
def own_core(tmp_path: Path) -> EngineCore:
    return EngineCore(load_config(tmp_path / "home", audit_retention="30d", storage_quota="1G"))


def _audit_operations(core: EngineCore) -> list[str]:
    return [r["operation"] for r in core.state.query("SELECT operation FROM audit ORDER BY id")]


def test_old_audit_records_go_without_any_write(own_core: EngineCore) -> None:
    core = own_core
    core.audit.record(None, "keys.register", "ok")
    core.audit.record(None, "objects.write", "ok")
    long_ago = time.time() - 31 * 86400
    core.state.execute("UPDATE audit SET time = ? WHERE operation = 'keys.register'", (long_ago,))
    core.audit.record(None, "workflows.up", "ok")  # a write no longer prunes
    assert _audit_operations(core) == ["keys.register", "objects.write", "workflows.up"]

    async def main() -> None:
        async with core.lifecycle.running():
            await until(lambda: "keys.register" not in _audit_operations(core), "the pruning")

    asyncio.run(main())
    assert _audit_operations(core) == ["objects.write", "workflows.up"]
    core.close()


def test_expired_uploads_and_stale_partial_files_are_swept(own_core: EngineCore) -> None:
    core, ctx = own_core, own_core.local_context()
    uploads = core.objects.storage.private / "uploads"
    kept = core.uploads.create(ctx, UploadCreate(path="kept.bin", length=10))
    gone = core.uploads.create(ctx, UploadCreate(path="gone.bin", length=10))
    for upload in (kept, gone):
        (uploads / upload.id).write_bytes(b"12345")
    core.state.execute("UPDATE uploads SET expires_at = 0 WHERE id = ?", (gone.id,))
    (uploads / "orphan-fresh").write_bytes(b"x")  # an upload being created right now
    (uploads / "orphan-stale").write_bytes(b"x")  # an engine died before recording it
    old = time.time() - STALE_TEMP - 60
    os.utime(uploads / "orphan-stale", (old, old))

    async def main() -> None:
        async with core.lifecycle.running():
            await until(lambda: core.lifecycle.jobs["uploads.sweep"].runs == 1, "the sweep")

    asyncio.run(main())
    assert sorted(p.name for p in uploads.iterdir()) == sorted([kept.id, "orphan-fresh"])
    ids = [row["id"] for row in core.state.query("SELECT id FROM uploads")]
    assert ids == [kept.id]
    core.close()


def test_stale_temp_files_are_swept_and_their_bytes_freed(own_core: EngineCore) -> None:
    core = own_core
    tmp = core.objects.storage.private / "tmp"
    used = core.objects.quota.used  # counted now: the sweep must give bytes back
    (tmp / "part-stale").write_bytes(b"x" * 1000)
    (tmp / "part-live").write_bytes(b"y" * 10)
    core.objects.quota.changed(1010)  # as the writers counted them
    old = time.time() - STALE_TEMP - 60
    os.utime(tmp / "part-stale", (old, old))

    async def main() -> None:
        async with core.lifecycle.running():
            await until(lambda: not (tmp / "part-stale").exists(), "the sweep")

    asyncio.run(main())
    assert [p.name for p in tmp.iterdir()] == ["part-live"]
    assert core.objects.quota.used == used + 10
    core.close()


def test_the_housekeeping_jobs_are_registered(own_core: EngineCore) -> None:
    assert set(own_core.lifecycle.jobs) == {
        "audit.prune", "shells.reap", "uploads.sweep", "objects.temp_sweep", "proxies.sync",
        "proxies.tls_renew",
    }  # fmt: skip
    own_core.close()


# -- the in-process transport -------------------------------------------------------------


def test_the_owning_transport_runs_the_work_and_others_leave_it_alone(tmp_path: Path) -> None:
    from dxflow._operations import OPERATIONS

    core = EngineCore(load_config(tmp_path / "home"))
    owner = LocalTransport(core)
    guest = LocalTransport(core, owns_core=False)
    ping = OPERATIONS["engine.ping"]
    if owner.can_inline(ping):  # inline calls need no loop and start nothing
        owner.call_inline(ping, {})
        assert not core.lifecycle.active

    async def main() -> None:
        await guest.call(ping, {})
        assert not core.lifecycle.active  # a guest never starts it...
        await owner.call(ping, {})
        assert core.lifecycle.active
        await until(lambda: core.lifecycle.jobs["audit.prune"].runs == 1, "the first run")
        await guest.aclose()
        assert core.lifecycle.active  # ...nor stops it for the others
        await owner.aclose()
        assert not core.lifecycle.active and _job_tasks() == []

    asyncio.run(main())
