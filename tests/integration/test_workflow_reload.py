"""A stored workflow loaded again (config, get, list, env, status...) reads its files as
admit does: through the policy, under its author's profile, never through a link planted
in storage since; and the load runs off the event loop (issue 8, audit gaps G1 and G4).

In-process, through the dispatcher, with real files and a real engine core; the link is
planted by the test, as a container binding the folder would (tests/security does it with
a real container over HTTP).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from dxflow import DxflowError, InvalidRequest, NotFound, Permission, PermissionDenied
from dxflow import _operations as ops
from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._core._context import Context, Identity
from dxflow._core._workflows import _loads

SECRET = "hunter2-outside-secret"
WORKFLOW = Context(Identity("w", Permission.WORKFLOW))
READER = Context(Identity("r", Permission.WORKFLOW | Permission.READ_ONLY))


def _environ_values() -> set[str]:
    """Values of the engine's (this process's) environment as /proc/self/environ has it."""
    raw = Path("/proc/self/environ").read_bytes().split(b"\0")
    pairs = [item.decode(errors="replace").partition("=") for item in raw if b"=" in item]
    return {value for _, _, value in pairs if len(value) >= 6}


def _run(function: Callable[[], Any]) -> Any:
    return anyio.run(function)


def _create(core: EngineCore, ctx: Context, env_file: Path, request_level: bool = True) -> None:
    """A workflow whose service reads `env_file`, as the request does (`request_level`)."""
    service = {"image": "busybox", "env_file": str(env_file), "environment": {"X": "${A:-0}"}}
    payload: dict[str, Any] = {"name": "p8", "compose": {"services": {"s": service}}}
    if request_level:
        payload["env_file"] = [str(env_file)]

    async def main() -> None:
        await core.dispatcher.call(ctx, ops.workflows.CREATE, payload)

    _run(main)


def _answers(core: EngineCore, ctx: Context) -> dict[str, Any]:
    """What each reading call gives now: its JSON, or the error it raised."""
    calls = {
        "config": (ops.workflows.CONFIG, {"name": "p8"}),
        "get": (ops.workflows.GET, {"name": "p8"}),
        "list": (ops.workflows.LIST, None),
        "env": (ops.workflows.ENV, {"name": "p8", "service": "s", "variable": "A"}),
        "status": (ops.workflows.STATUS, {"name": "p8"}),
    }
    answers: dict[str, Any] = {}

    async def main() -> None:
        for what, (op, payload) in calls.items():
            try:
                answers[what] = (await core.dispatcher.call(ctx, op, payload)).model_dump_json()
            except DxflowError as exc:  # status of a loaded project needs Docker
                answers[what] = exc

    _run(main)
    return answers


def _folder(core: EngineCore) -> Path:
    folder = core.config.storage_root / "proj"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside.env"
    secret.write_text(f"A={SECRET}\nDB_PASSWORD={SECRET}\n")
    return secret


def _assert_nothing_leaks(answers: dict[str, Any], env_file: Path, leaked: set[str]) -> None:
    for what in ("config", "get", "env", "status"):  # they need the project as written
        error = answers[what]
        assert isinstance(error, PermissionDenied), (what, error)
        message = error.message
        assert "env_file" in message and str(env_file) in message, message
        assert "(policy baseline)" in message, message
        assert not any(value in message for value in leaked), message
    listed = answers["list"]  # the listing goes on: the refused file is never opened
    assert isinstance(listed, str) and '"p8"' in listed, listed
    for what, answer in answers.items():
        text = answer if isinstance(answer, str) else answer.message
        assert not any(value in text for value in leaked), (what, text)


@pytest.mark.parametrize("target", ["outside-file", "proc-self-environ"])
@pytest.mark.parametrize("reader", [WORKFLOW, READER], ids=["workflow", "read-only"])
def test_a_link_planted_in_storage_is_refused_on_reload(
    core: EngineCore, tmp_path: Path, target: str, reader: Context
) -> None:
    folder = _folder(core)
    env_file = folder / "app.env"
    env_file.write_text("A=1\n")
    _create(core, WORKFLOW, env_file)
    before = _answers(core, reader)
    assert '"X":"1"' in before["config"], before["config"]  # loaded and cached

    if target == "outside-file":
        link_to, leaked = _outside(tmp_path), {SECRET}
    else:
        # values the right answers show anyway (the working dir is the engine's cwd) aside
        shown = " ".join(str(answer) for answer in before.values()) + str(env_file)
        link_to = Path("/proc/self/environ")
        leaked = {value for value in _environ_values() if value not in shown}
    env_file.unlink()
    env_file.symlink_to(link_to)  # what a container binding proj/ can do
    _assert_nothing_leaks(_answers(core, reader), env_file, leaked)

    restarted = EngineCore(load_config(core.config.home.root))  # a cold cache, as after a restart
    try:
        _assert_nothing_leaks(_answers(restarted, reader), env_file, leaked)
    finally:
        restarted.close()

    env_file.unlink()  # the file made right again: the workflow reads as before
    env_file.write_text("A=2\n")
    assert '"X":"2"' in _answers(core, reader)["config"]


def test_a_service_env_file_alone_is_watched_and_guarded(core: EngineCore, tmp_path: Path) -> None:
    """No request-level env file: the service's own is what a reload must notice."""
    env_file = _folder(core) / "service.env"
    env_file.write_text("A=1\n")
    _create(core, WORKFLOW, env_file, request_level=False)
    assert '"A":"1"' in _answers(core, READER)["config"]
    env_file.write_text("A=22\n")  # a change is seen at once, not after a restart
    assert '"A":"22"' in _answers(core, READER)["config"]
    env_file.unlink()
    env_file.symlink_to(_outside(tmp_path))
    answers = _answers(core, READER)
    error = answers["config"]
    assert isinstance(error, PermissionDenied) and "services.s.env_file" in error.message
    assert all(SECRET not in (a if isinstance(a, str) else a.message) for a in answers.values())


def test_a_masters_env_file_in_storage_is_never_read_through_a_link(
    core: EngineCore, tmp_path: Path
) -> None:
    """MASTER may name any host file, but storage is written by keys short of MASTER."""
    env_file = _folder(core) / "app.env"
    env_file.write_text("A=1\n")
    _create(core, core.local_context(), env_file)
    env_file.unlink()
    env_file.symlink_to(_outside(tmp_path))
    answers = _answers(core, READER)
    error = answers["config"]
    assert isinstance(error, PermissionDenied), error
    assert "leads out of the storage root through a link" in error.message
    assert "(policy privileged)" in error.message
    assert all(SECRET not in (a if isinstance(a, str) else a.message) for a in answers.values())


def test_a_fifo_or_proc_file_is_never_read_as_an_env_file(core: EngineCore) -> None:
    """A FIFO would block the load; /proc/self/environ is the engine's environment."""
    fifo = _folder(core) / "fifo.env"
    os.mkfifo(fifo)

    def create(path: str) -> dict[str, Any]:
        return {"name": "p8", "compose": {"services": {"s": {"image": "x", "env_file": path}}}}

    async def main() -> None:
        for ctx in (WORKFLOW, core.local_context()):  # baseline, and MASTER (privileged)
            with pytest.raises(PermissionDenied, match="is not a regular file"):
                await core.dispatcher.call(ctx, ops.workflows.CREATE, create(str(fifo)))
        with pytest.raises(InvalidRequest, match="proc file system") as caught:
            await core.dispatcher.call(
                core.local_context(), ops.workflows.CREATE, create("/proc/self/environ")
            )
        assert not any(value in caught.value.message for value in _environ_values())

    _run(main)
    with pytest.raises(NotFound):
        _run(lambda: core.dispatcher.call(WORKFLOW, ops.workflows.GET, {"name": "p8"}))


def test_a_cache_miss_is_parsed_off_the_event_loop(
    core: EngineCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each reading call that misses the cache parses in a worker thread while the loop
    answers /api/health: a parse on the loop would keep the health call from running
    until the parse gave up waiting for it (then `answered_in_time` says so)."""
    env_file = _folder(core) / "app.env"
    env_file.write_text("A=1\n")
    _create(core, WORKFLOW, env_file)
    parsing, answered = threading.Event(), threading.Event()
    threads: list[int] = []
    answered_in_time: list[bool] = []
    real = _loads.load

    def slow_load(spec: Any, master: bool = False) -> Any:
        threads.append(threading.get_ident())
        parsing.set()
        gave_up = False in answered_in_time  # on the loop: one wait shows it, and is enough
        answered_in_time.append(not gave_up and answered.wait(timeout=10))
        return real(spec, master)

    monkeypatch.setattr(_loads, "load", slow_load)
    calls = [
        (ops.workflows.CONFIG, {"name": "p8"}),
        (ops.workflows.GET, {"name": "p8"}),
        (ops.workflows.LIST, None),
        (ops.workflows.ENV, {"name": "p8", "service": "s", "variable": "A"}),
        (ops.workflows.STATUS, {"name": "p8"}),
    ]

    async def main() -> int:
        loop = threading.get_ident()
        for number, (op, payload) in enumerate(calls):
            if number % 2:
                core.workflows._loads.forget("p8")  # a cold cache, as after a restart
            else:  # an env file touched (any OBJECT key can) is a miss too
                os.utime(env_file, ns=(0, (number + 1) * 10**9))
            parsing.clear()
            answered.clear()

            async def health() -> None:
                await anyio.to_thread.run_sync(parsing.wait, 20)
                await core.dispatcher.call(Context(None), ops.engine.HEALTH)
                answered.set()

            async with anyio.create_task_group() as group:
                group.start_soon(health)
                try:
                    await core.dispatcher.call(READER, op, payload)
                except Exception:  # status needs Docker; the load came first all the same
                    if op is not ops.workflows.STATUS:
                        raise
        return loop

    loop = _run(main)
    assert len(threads) == len(calls), threads
    assert loop not in threads
    assert answered_in_time == [True] * len(calls)
