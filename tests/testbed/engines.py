"""Real engines on the test bed's hosts: `dxflow boot up` in the foreground, in a namespace.

`NsEngine(host, home)` starts `python -m dxflow boot up --home HOME --host 0.0.0.0
--port 7419` (no `--daemon`: the process is the engine, so its pid is what `kill9()`
kills) through `host.popen`, in a session of its own. Every namespace has its own ports,
so each host's engine can use the default port 7419.

- The engine's unix socket, `<home>/run/engine.sock`, is a file on the filesystem every
  namespace shares: the test process reaches it directly (`health()` does, over httpx's
  `HTTPTransport(uds=...)`), and that is the main way tests drive an engine. Unix socket
  paths have at most 107 bytes: keep homes short (pytest's `tmp_path` is fine).
- Over TCP the engine answers at `url` (`http://{host.address}:{port}`), from inside
  another host's namespace only (`host.run(sys.executable, "-c", ...)`; `tcp_health(client)`
  does that).
- `client()` is a `dxflow.Engine` (the SDK) on the unix socket, as MASTER.
- The MASTER key is `<home>/keys/master.pem`; the engine's log is `<home>/logs/engine.log`;
  what the process prints goes to `<home>/logs/console.out`. `log()` returns both.
- The process imports this checkout's `dxflow` (PYTHONPATH and cwd are the checkout's
  root); `engine_env()` is the environment, with the caller's `DXFLOW_*` variables removed
  (a developer's DXFLOW_URL or DXFLOW_KEY must not leak in) and the auth rate limit raised
  (tests make many handshakes from one address), as the in-process test engines do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .netns import REPO, Host

if TYPE_CHECKING:
    from dxflow import Engine

__all__ = ["NsEngine", "engine_env"]

DEFAULT_PORT = 7419

_TCP_HEALTH = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as response:
    sys.stdout.write(response.read().decode())
"""


def engine_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an engine process on `home` (`extra`: more DXFLOW_* values)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DXFLOW_")}
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(
        PYTHONPATH=os.pathsep.join(path),
        PYTHONUNBUFFERED="1",
        DXFLOW_HOME=str(home),
        DXFLOW_AUTH_RATE_LIMIT="100000",
    )
    env.update(extra)
    return env


class NsEngine:
    """One engine process in `host`'s namespace, serving `home`."""

    def __init__(
        self,
        host: Host,
        home: Path,
        port: int = DEFAULT_PORT,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.home = Path(home).absolute()
        self.port = port
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[Any] | None = None
        if len(os.fsencode(self.socket)) > 107:
            raise ValueError(
                f"the engine's socket path is too long for a unix socket: {self.socket}"
            )

    def __repr__(self) -> str:
        return f"NsEngine({self.host.name!r}, {self.url}, home={str(self.home)!r})"

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    @property
    def socket(self) -> Path:
        return self.home / "run" / "engine.sock"

    @property
    def master_key(self) -> Path:
        return self.home / "keys" / "master.pem"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "engine.log"

    @property
    def console(self) -> Path:
        return self.home / "logs" / "console.out"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "dxflow", "boot", "up", "--home", str(self.home),
            "--host", "0.0.0.0", "--port", str(self.port), *self.extra_args,
        ]  # fmt: skip

    def start(self) -> NsEngine:
        """Start the process (returns at once: `wait_healthy()` waits for it to answer)."""
        if self.running():
            raise RuntimeError(f"{self!r} is already running")
        self.console.parent.mkdir(parents=True, exist_ok=True)
        with open(self.console, "ab") as out:
            self.process = self.host.popen(
                *self.argv(),
                env=engine_env(self.home, **self.extra_env),
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """GET /api/health over the unix socket: the JSON body on 200, else None."""
        # a plain connect first: httpx (httpcore) leaks the socket of a refused connect
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            try:
                probe.connect(str(self.socket))
            except OSError:
                return None
        transport = httpx.HTTPTransport(uds=str(self.socket))
        try:
            with httpx.Client(transport=transport, base_url="http://engine", timeout=timeout) as c:
                response = c.get("/api/health")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body

    def tcp_health(self, client: Host | None = None, timeout: float = 2.0) -> dict[str, Any] | None:
        """GET /api/health over TCP at `url`, from inside `client`'s namespace (default: the
        engine's own host): the JSON body on 200, else None."""
        done = (client or self.host).run(
            sys.executable, "-c", _TCP_HEALTH, f"{self.url}/api/health", str(timeout),
            check=False, timeout=timeout + 10,
        )  # fmt: skip
        if done.returncode != 0:
            return None
        body: dict[str, Any] = json.loads(done.stdout)
        return body

    def client(self, **kw: Any) -> Engine:
        """A `dxflow.Engine` on this engine's unix socket, as MASTER (close it after use)."""
        from dxflow import Engine

        return Engine.from_home(self.home, **kw)

    def wait_healthy(self, timeout: float = 30) -> dict[str, Any]:
        """Wait until the engine answers on its socket (its health JSON); fail early, with
        its log, when the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None:
                raise RuntimeError(f"{self!r} was not started")
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"{self!r} exited ({code}):\n{self.log()}")
            body = self.health()
            if body is not None:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{self!r} not healthy within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def kill9(self) -> None:
        """SIGKILL the engine and its process group (a crash: no cleanup of its own)."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (a graceful stop), wait `timeout`, then SIGKILL; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=10)
        # what the engine left in its group (a graceful stop leaves sessions by design)
        self._signal_group(signal.SIGKILL)
        return self.process.returncode

    def restart(self, timeout: float = 30) -> dict[str, Any]:
        """Stop the engine if it runs, start it again, wait until it answers."""
        if self.running():
            self.stop()
        return self.start().wait_healthy(timeout)

    def log(self) -> str:
        """The engine's log and what the process printed."""
        parts = []
        for path in (self.log_file, self.console):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)
