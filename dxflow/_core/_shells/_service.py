"""The shell service: sessions are holder processes, found again by their state files.

The engine keeps no session state of its own: each session is a holder process with a
unix socket and a state file in `<home>/run/shells/`. So sessions outlive the engine
(even `kill -9`), and an engine that starts again lists and attaches to them as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import signal as signals
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from ..._exceptions import (
    Conflict,
    EngineUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TimedOut,
)
from ..._models import (
    ShellCreate,
    ShellInfo,
    ShellInput,
    ShellKill,
    ShellList,
    ShellOutput,
    ShellRead,
    ShellRef,
    ShellResize,
    ShellResult,
    ShellRun,
)
from ..._permissions import Permission
from .._context import Context, Identity
from .._handlers import handles
from .._objects import Storage
from . import _wire as wire
from ._link import HolderLink
from ._runas import ENV_FILE_FD, container_env_file, resolve_run_as
from ._script import RunScript

__all__ = ["ShellService"]

log = logging.getLogger("dxflow.engine")


def _login_shell() -> str:
    try:
        shell = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        shell = ""
    return shell if shell and os.access(shell, os.X_OK) else "/bin/sh"


def _home() -> str | None:
    home = os.environ.get("HOME") or ""
    if not os.path.isdir(home):
        with contextlib.suppress(KeyError):
            home = pwd.getpwuid(os.getuid()).pw_dir
    return home if os.path.isdir(home) else None


def _is_master(ctx: Context) -> bool:
    return ctx.identity is not None and ctx.identity.is_master


def _signal_number(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return int(signals.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise InvalidRequest(f"unknown signal {name!r}") from None


class ShellService:
    def __init__(
        self, folder: Path, storage: Storage, scrollback: int, workflows: Any = None,
        run_as: str = "dxflow",
    ) -> None:  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.chmod(0o700)  # sockets and specs: the engine's alone
        self._dir = folder
        self._run_as = run_as
        try:  # said at start-up, not only at the first refusal
            resolve_run_as(Identity("NAME", Permission(0)), run_as)
        except EngineUnavailable as exc:
            log.warning("host shells of keys without MASTER will be refused: %s", exc)
        self._storage = storage
        self._scrollback = scrollback
        self._workflows = workflows
        self._holders: dict[str, wire.HolderProcess] = {}

    # -- files ----------------------------------------------------------------------------

    def _path(self, name: str, suffix: str) -> Path:
        return self._dir / f"{name}{suffix}"

    def _state(self, name: str) -> dict[str, Any]:
        try:
            state = json.loads(self._path(name, ".json").read_bytes())
        except (FileNotFoundError, ValueError):
            raise NotFound(f"no shell session {name!r}", name=name) from None
        with contextlib.suppress(FileNotFoundError, ValueError):
            state.update(json.loads(self._path(name, ".meta.json").read_bytes()))
        if not _alive(state.get("holder_pid")):
            # Its holder is gone (the machine rebooted): the session cannot come back.
            state.update(state="exited" if state["state"] == "running" else state["state"])
            state.setdefault("error", "the session's holder process is gone")
        return state  # type: ignore[no-any-return]

    def _owned(self, ctx: Context, name: str) -> dict[str, Any]:
        """The session's state, if the caller may see it: its owner's, or MASTER's.

        Another identity's session is answered exactly like a missing one.
        """
        state = self._state(name)
        if not _is_master(ctx) and state.get("owner") != _owner(ctx):
            raise NotFound(f"no shell session {name!r}", name=name)
        return state

    def _info(self, state: dict[str, Any]) -> ShellInfo:
        def when(stamp: float | None) -> datetime | None:
            return None if stamp is None else datetime.fromtimestamp(stamp, UTC)

        return ShellInfo(
            name=state["name"], command=state["command"], pid=state.get("pid"),
            state=state["state"], exit_code=state.get("exit_code"), signal=state.get("signal"),
            error=state.get("error"), created=when(state["created"]),
            exited=when(state.get("exited_at")), clients=state.get("clients", 0),
            rows=state["rows"], cols=state["cols"], workflow=state.get("workflow"),
            service=state.get("service"), owner=state.get("owner"), user=state.get("user"),
        )  # fmt: skip

    def _names(self) -> list[str]:
        return sorted(p.stem for p in self._dir.glob("*.json") if "." not in p.stem)

    # -- lifecycle ------------------------------------------------------------------------

    @handles("shells.create")
    async def create(self, ctx: Context, request: ShellCreate) -> ShellInfo:
        name = request.name or self._free_name()
        if self._path(name, ".json").exists() or self._path(name, ".sock").exists():
            existing = await self._existing(ctx, request, name)
            if existing is not None:
                return existing
        spec: dict[str, Any] = {
            "name": name, "dir": str(self._dir), "cwd": request.cwd,
            "rows": request.rows, "cols": request.cols,
            "scrollback": request.scrollback or self._scrollback,
            "idle_timeout": request.idle_timeout, "term": "xterm-256color",
        }  # fmt: skip
        if request.workflow is not None:
            spec.update(await self._container(ctx, request))
        else:
            spec.update(self._host(ctx, request))
        # Only once the session can start: a refusal leaves no folder behind.
        record_fd = self._open_record(request.record) if request.record else None
        spec["record"], spec["record_fd"] = request.record, record_fd
        meta = {
            "workflow": request.workflow, "service": request.service, "owner": _owner(ctx),
            "user": (spec.get("user") or {}).get("name"),
        }  # fmt: skip
        self._path(name, ".meta.json").write_text(json.dumps(meta))
        try:
            inherited = (record_fd,) if record_fd is not None else ()
            proc = wire.spawn(sys.executable, spec, self._path(name, ".spec.json"),
                              self._path(name, ".log"), inherited)  # fmt: skip
        except (ValueError, OSError) as exc:  # e.g. a NUL byte in an argument or variable
            raise InvalidRequest(f"shell {name!r} cannot start: {exc}") from None
        finally:
            if record_fd is not None:
                os.close(record_fd)  # the holder has its own copy
        self._holders[name] = proc
        try:
            state = await anyio.to_thread.run_sync(wire.wait_ready, self._path(name, ".json"), proc)
        except RuntimeError as exc:
            raise InvalidRequest(f"shell {name!r} did not start: {exc}") from None
        return self._info({**state, **meta})

    async def _existing(self, ctx: Context, request: ShellCreate, name: str) -> ShellInfo | None:
        """A create of a name in use: the running session (`exist_ok`), or None once the
        old one is removed (`replace`, or `exist_ok` when it has ended); else Conflict."""
        if request.exist_ok or request.replace:
            try:
                state = self._owned(ctx, name)
            except NotFound:  # another identity's: never touched, never shown
                raise Conflict(f"a shell session named {name!r} exists (another key's); pick "
                               "another name",
                               name=name) from None  # fmt: skip
            if request.exist_ok and not request.replace and state["state"] == "running":
                return self._info(state)
            await self.remove(ctx, ShellRef(name=name))
            return None
        raise Conflict(
            f"a shell session named {name!r} exists: pass exist_ok=True to use it, "
            f"replace=True to start it anew (CLI: --exist-ok, --replace), or remove it "
            f"(dxflow shell remove {name})",
            name=name,
        )

    def _free_name(self) -> str:
        taken = set(self._names())
        return next(f"sh-{n}" for n in range(1, len(taken) + 2) if f"sh-{n}" not in taken)

    def _open_record(self, path: str) -> int:
        """The recording opened for appending through the object store's walker (folders
        made as needed, no link followed on the way): the holder gets the descriptor."""
        parts = self._storage.parts(path)
        if not parts:
            raise InvalidRequest("record: name a file in the object store, not its root")
        with self._storage.walker.parent(parts, path, create=True) as (folder, name):
            try:
                return self._storage.create_file(folder, name, append=True)
            except OSError as exc:  # ELOOP: a link planted where the recording goes
                raise InvalidRequest(f"record: cannot write {path!r}: {exc.strerror}") from None

    def _host(self, ctx: Context, request: ShellCreate) -> dict[str, Any]:
        """A host session: MASTER's as the engine user, anyone else's as their run-as user."""
        if request.service is not None:
            raise InvalidRequest("service: give workflow too (the service's workflow)")
        if _is_master(ctx):
            env = {**os.environ, "TERM": "xterm-256color", **request.env}
            spec: dict[str, Any] = {
                "command": [request.command or _login_shell(), *request.args], "env": env,
            }  # fmt: skip
            if request.cwd is None and ctx.client != "local":
                # Through the server: in the engine user's home, as a login would be, not
                # in the folder the engine happened to be started from.
                spec["cwd"] = _home()
            return spec
        if ctx.identity is None:  # the dispatcher never lets one through: fail closed
            raise PermissionDenied("a host shell needs an identity")
        user = resolve_run_as(ctx.identity, self._run_as)
        return {
            "command": [request.command or user.shell, *request.args],
            "env": user.environment(request.env), "user": user.spec(),
        }  # fmt: skip

    async def _container(self, ctx: Context, request: ShellCreate) -> dict[str, Any]:
        """`docker exec` on the host, at the daemon the workflows use (the engine's
        `docker_host`); the variables' values travel in a pipe, not argv.

        The caller's workflow policy decides whether it may enter the workflow at all (a
        baseline key never gets a shell in the privileged container a MASTER started).
        """
        if request.service is None:
            raise InvalidRequest("workflow: give service too (which container to open)")
        assert request.workflow is not None
        env_file = container_env_file(request.env)
        exec_command = await self._workflows.shell_command(
            ctx, request.workflow, request.service, [request.command or "sh", *request.args],
            env={"TERM": "xterm-256color"},
            env_file=f"/dev/fd/{ENV_FILE_FD}" if env_file else None, workdir=request.cwd,
        )  # fmt: skip
        return {
            "command": exec_command.argv,
            "env": {**exec_command.env, "TERM": "xterm-256color"}, "cwd": None,
            "env_file": env_file or None,
        }  # fmt: skip

    @handles("shells.list")
    def list(self, ctx: Context, request: None) -> ShellList:
        """The caller's sessions (MASTER: every session)."""
        infos = []
        for name in self._names():
            with contextlib.suppress(NotFound):
                infos.append(self._info(self._owned(ctx, name)))
        return ShellList(shells=infos)

    @handles("shells.get")
    def get(self, ctx: Context, request: ShellRef) -> ShellInfo:
        return self._info(self._owned(ctx, request.name))

    @handles("shells.remove")
    async def remove(self, ctx: Context, request: ShellRef) -> ShellInfo:
        info = self._info(self._owned(ctx, request.name))
        with contextlib.suppress(OSError, EOFError):
            async with self.link(ctx, request.name, None, quiet=True) as link:
                await link.send(wire.QUIT, b"")
                with anyio.move_on_after(5):
                    await link.wait_closed()
        proc = self._holders.pop(request.name, None)
        if proc is not None:
            await anyio.to_thread.run_sync(proc.wait)
        for suffix in (".json", ".sock", ".spec.json", ".meta.json", ".log"):
            self._path(request.name, suffix).unlink(missing_ok=True)
        return info

    @handles("shells.prune")
    async def prune(self, ctx: Context, request: None) -> ShellList:
        gone = []
        for info in self.list(ctx, None).shells:
            if info.state != "running":
                gone.append(await self.remove(ctx, ShellRef(name=info.name)))
        return ShellList(shells=gone)

    # -- talking to a session -------------------------------------------------------------

    def link(
        self, ctx: Context, name: str, offset: int | None, mode: str = "rw", quiet: bool = False
    ) -> contextlib.AbstractAsyncContextManager[HolderLink]:
        """Connect to a session's holder (an async context manager giving a HolderLink)."""
        self._owned(ctx, name)  # NotFound first, also for another identity's session
        return HolderLink.open(self._path(name, ".sock"), offset, mode, quiet)

    @handles("shells.send")
    async def send(self, ctx: Context, request: ShellInput) -> ShellInfo:
        async with self.link(ctx, request.name, None, quiet=True) as link:
            await link.require_running(request.name)
            await link.send(wire.INPUT, request.data)
            await link.ping()  # the input is written once the holder has answered
        return self._info(self._owned(ctx, request.name))

    @handles("shells.read")
    async def read(self, ctx: Context, request: ShellRead) -> ShellOutput:
        async with self.link(ctx, request.name, request.offset) as link:
            return await link.collect(request.offset, request.timeout, request.limit)

    @handles("shells.resize")
    async def resize(self, ctx: Context, request: ShellResize) -> ShellInfo:
        async with self.link(ctx, request.name, None, quiet=True) as link:
            await link.send_json(wire.RESIZE, {"rows": request.rows, "cols": request.cols})
            await link.ping()
        return self._info(self._owned(ctx, request.name))

    @handles("shells.kill")
    async def kill(self, ctx: Context, request: ShellKill) -> ShellInfo:
        number = _signal_number(request.signal)
        async with self.link(ctx, request.name, None, quiet=True) as link:
            await link.require_running(request.name)
            await link.send_json(wire.KILL, {"signal": number})
            await link.ping()
        with anyio.move_on_after(2):  # most signals end the process: report it ended
            # The holder, another process, writes the state: there is no event to wait on.
            while self._owned(ctx, request.name)["state"] == "running":  # noqa: ASYNC110
                await anyio.sleep(0.02)
        return self._info(self._owned(ctx, request.name))

    @handles("shells.run")
    async def run(self, ctx: Context, request: ShellRun) -> ShellResult:
        script = RunScript(request.cmd)
        async with self.link(ctx, request.name, None, quiet=True) as link:
            await link.require_running(request.name)
            try:
                with anyio.fail_after(request.timeout):
                    if link.hello.get("runs"):
                        ran = await link.run(script.request())
                        if ran is not None:
                            output = ran[1].replace(b"\r\n", b"\n").decode(errors="replace")
                            return ShellResult(exit_code=ran[0], output=output)
                    else:  # a holder of an older dxflow: the marks stay in its scrollback
                        await link.send(wire.INPUT, script.lines())
                        async for result in link.scan(script.result):
                            return ShellResult(exit_code=result[0], output=result[1])
            except TimeoutError:
                raise TimedOut(
                    f"{request.cmd[:60]!r} did not finish within {request.timeout:g} s in "
                    f"shell {request.name!r} (it goes on running)"
                ) from None
        raise Conflict(
            f"shell {request.name!r} exited before {request.cmd[:60]!r} finished; its exit "
            "code is in its info: create it again (replace=True) to go on"
        )

    @handles("shells.attach")
    def attach(
        self, ctx: Context, request: ShellRead, writable: bool
    ) -> contextlib.AbstractAsyncContextManager[HolderLink]:
        """A channel: the holder's frames, both ways (see HolderLink)."""
        return self.link(ctx, request.name, request.offset, "rw" if writable else "ro")

    # -- housekeeping ---------------------------------------------------------------------

    def reap(self) -> int:
        """Collect holders this engine started that have exited; return how many.

        A holder quits on its own (its socket removed, SIGTERM, a crash) or through another
        engine process on the same home: until its parent waits for it, it stays a zombie.
        The core's background work runs this every SHELL_REAP_EVERY seconds. Sessions are
        not removed: an exited one stays listed until `remove` or `prune`.
        """
        reaped = 0
        for name, proc in list(self._holders.items()):
            if proc.poll() is not None:
                self._holders.pop(name, None)  # `remove` may have taken it meanwhile
                reaped += 1
        return reaped


def _owner(ctx: Context) -> str | None:
    return None if ctx.identity is None else ctx.identity.name


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is not alive
        status = Path(f"/proc/{pid}/stat").read_text()
        return re.search(r"\) Z ", status) is None
    return True
