"""Revocation latency (issue 8, section 4): a key's change closes what it holds open.

A real engine (`dxflow boot up --daemon` on a temporary home, loopback). Each round
registers a fresh non-MASTER key (SHELL,PLATFORM), and with it opens a shell session's
WebSocket (`/api/shells/NAME/attach`, idle: nothing typed) and an NDJSON stream
(`/api/stats/watch` with a 60 s interval: idle after its first sample). MASTER then
changes the key over REST, and the script times, from the moment the request is sent,
until the server has closed the WebSocket (close code 4401 or 4403) and ended the NDJSON
response (its last line the error). The changes, N rounds each (default 10, `--quick` 2):

* **unregister** (`DELETE /api/keys/ID`), **rotate** (`POST /api/keys/ID/rotate`) and
  **update** (`PATCH /api/keys/ID`, the permissions cut to OBJECT), each announced to the
  open calls by the engine's key registry;
* **unregister (another process)**: the key unregistered by another engine process on the
  same home (an `EngineCore` opened in this script), which the serving engine hears of
  only by looking at the keys table (every half second while a call waits).

Target: every close within 1 s (the max of all rounds). There is no peer that revokes;
the change request's own round trip is printed beside it as the floor.

    python benchmarks/revocation.py [--quick] [--json] [-n ROUNDS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from _common import (
    Report,
    Result,
    Target,
    boot_daemon,
    human_stream,
    median,
    parse_args,
    print_table,
    run_cli,
)

TARGET_S = 1.0
WAIT_S = 30.0
"""How long a round waits for a close at most (a miss is reported, not waited on forever)."""
IDLE_INTERVAL = 60
"""Seconds between the stats stream's samples: after the first, it waits, idle."""
OTHER = "unregister (another process)"
CHANGES = ["unregister", "rotate", "update", OTHER]
CLOSE_CODES = {"unregister": 4401, "rotate": 4401, "update": 4403}
ERROR_CODES = {4401: "unauthenticated", 4403: "permission_denied"}


def _ok(response: httpx.Response) -> None:
    if not response.is_success:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text}")  # fmt: skip


class Bench(Report):
    label = "revocation"

    def __init__(self, out: Any, result: Result) -> None:
        self.out, self.result = out, result
        self.summary: list[list[str]] = []


def _run_as() -> str:
    """Who the key's host shells run as: the engine's default user (`dxflow`) when it
    exists, else `nobody`; an engine that is not root can only use its own user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("dxflow").pw_name
    return "nobody"


class Booted:
    """The booted engine, MASTER's REST client, and key pairs made for the rounds."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.home = scratch / "home"
        self.home.mkdir(mode=0o700)
        (self.home / "config.toml").write_text(
            f'host = "127.0.0.1"\nrun_as = "{_run_as()}"\nauth_rate_limit = 100000\n'
        )
        status = boot_daemon(str(self.home))
        self.url = str(status["url"])
        token = run_cli("token", "--home", str(self.home)).strip()
        self.master = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self._other: Any = None

    def pair(self, name: str) -> tuple[Path, str]:
        from dxflow._keypairs import generate_key_pair

        made = generate_key_pair(self.scratch / f"{name}.pem", "ed25519")
        return made.private, made.public.read_text()

    def register(self, identity: str) -> str:
        """A bearer token of a new SHELL,PLATFORM key `identity`."""
        import dxflow

        private, public = self.pair(identity)
        body = {"identity": identity, "public_key": public, "permissions": ["SHELL", "PLATFORM"]}
        _ok(self.master.post("/api/keys", json=body))
        with dxflow.Engine(self.url, key=private) as engine:  # the handshake, as a client
            return engine.token(600).token

    def change(self, kind: str, identity: str) -> Callable[[], None]:
        """The change, ready to send: prepared first so that only the request is timed."""
        if kind == "unregister":
            return lambda: _ok(self.master.delete(f"/api/keys/{identity}"))
        if kind == "rotate":
            _, public = self.pair(f"{identity}-new")
            body = {"public_key": public}  # the identity is the path's
            return lambda: _ok(self.master.post(f"/api/keys/{identity}/rotate", json=body))
        if kind == "update":
            body = {"permissions": ["OBJECT"]}
            return lambda: _ok(self.master.patch(f"/api/keys/{identity}", json=body))
        other = self.other()
        from dxflow._models import KeyRef

        return lambda: other.keys.unregister(other.local_context(), KeyRef(identity=identity))

    def other(self) -> Any:
        """Another engine process on the same home: this script, with a core of its own."""
        if self._other is None:
            from dxflow._config import load_config
            from dxflow._core import EngineCore

            self._other = EngineCore(load_config(self.home))
        return self._other

    def remove_shell(self, name: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.master.delete(f"/api/shells/{name}")

    def close(self) -> None:
        if self._other is not None:
            with contextlib.suppress(Exception):
                self._other.close()
        with contextlib.suppress(Exception):
            for shell in self.master.get("/api/shells").json().get("shells", []):
                self.remove_shell(shell["name"])
        self.master.close()
        run_cli("boot", "down", "--home", str(self.home), timeout=60)


class Watch(threading.Thread):
    """Waits on one open call until the server ends it; `ended` is the clock then."""

    def __init__(self, wait: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.wait = wait
        self.ended: float | None = None
        self.said: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.said = self.wait()
            self.ended = time.perf_counter()
        except BaseException as exc:  # handed to the round
            self.error = exc


def _until_closed(ws: Any) -> int | None:
    """Messages until the server closes the WebSocket; its close code."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            ws.recv(timeout=WAIT_S)
    except ConnectionClosed:
        return ws.close_code  # type: ignore[no-any-return]


def _until_ended(lines: Iterator[str]) -> dict[str, Any]:
    """Lines until the NDJSON response ends; its last line."""
    last: dict[str, Any] = {}
    for line in lines:
        if line:
            last = json.loads(line)
    return last


@contextlib.contextmanager
def _opened(engine: Booted, identity: str, token: str) -> Iterator[tuple[Watch, Watch]]:
    """The key's idle shell WebSocket and idle NDJSON stream, each watched by a thread."""
    from websockets.sync.client import connect

    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=engine.url, headers=auth, timeout=60) as http:
        made = http.post("/api/shells", json={"name": identity, "command": "/bin/sh"})
        if made.status_code != 200:
            raise RuntimeError(f"the key's shell was refused: {made.status_code} {made.text}")
        url = engine.url.replace("http://", "ws://") + f"/api/shells/{identity}/attach"
        params = {"interval": IDLE_INTERVAL}
        try:
            with (
                connect(url, additional_headers=auth, open_timeout=WAIT_S) as ws,
                http.stream("GET", "/api/stats/watch", params=params, timeout=None) as stream,
            ):
                if json.loads(ws.recv(timeout=WAIT_S)).get("type") != "hello":
                    raise RuntimeError("the shell channel did not say hello")
                lines = stream.iter_lines()
                if "cpu" not in json.loads(next(lines)):
                    raise RuntimeError("the stats stream's first line is not a sample")
                channel, ndjson = (
                    Watch(lambda: _until_closed(ws)),
                    Watch(lambda: _until_ended(lines)),
                )
                channel.start()
                ndjson.start()
                yield channel, ndjson
                channel.join(WAIT_S)
                ndjson.join(WAIT_S)
        finally:
            engine.remove_shell(identity)


def one_round(engine: Booted, kind: str, index: int) -> dict[str, float]:
    """Seconds from the change's request to each close, and the request's round trip."""
    identity = f"rv{index}"
    token = engine.register(identity)
    send = engine.change(kind, identity)
    with _opened(engine, identity, token) as (channel, ndjson):
        began = time.perf_counter()
        send()
        acknowledged = time.perf_counter()
    expected = CLOSE_CODES.get(kind, 4401)
    for name, watch in (("shell channel", channel), ("NDJSON stream", ndjson)):
        if watch.error is not None:
            raise RuntimeError(f"{kind}: the {name} failed: {watch.error!r}")
        if watch.ended is None:
            raise RuntimeError(f"{kind}: the {name} was still open {WAIT_S:g} s after the change")
    if channel.said != expected:
        raise RuntimeError(f"{kind}: the shell channel closed with {channel.said}, not {expected}")
    code = (ndjson.said.get("error") or {}).get("code")
    if code != ERROR_CODES[expected]:
        raise RuntimeError(f"{kind}: the NDJSON stream's last line is {ndjson.said!r}")
    if kind not in ("unregister", OTHER):
        with contextlib.suppress(httpx.HTTPError):
            engine.master.delete(f"/api/keys/{identity}")
    assert channel.ended is not None and ndjson.ended is not None
    return {
        "channel_s": channel.ended - began,
        "ndjson_s": ndjson.ended - began,
        "request_s": acknowledged - began,
    }


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    rounds = args.runs or (2 if args.quick else 10)
    result = Result("revocation", args.quick)
    bench = Bench(out, result)
    scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-revocation-"))
    samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in CHANGES}
    engine: Booted | None = None
    try:
        engine = Booted(scratch)
        bench.say(f"revocation: engine {engine.url}, {rounds} rounds of each change, "
                  f"host shells as {_run_as()!r}")  # fmt: skip
        index = 0
        for round_ in range(rounds):
            for kind in CHANGES:
                index += 1
                samples[kind].append(one_round(engine, kind, index))
            last = {k: v[-1] for k, v in samples.items()}
            bench.say(f"  round {round_ + 1}/{rounds}: " + ", ".join(
                f"{k} {v['channel_s'] * 1e3:.0f}/{v['ndjson_s'] * 1e3:.0f} ms"
                for k, v in last.items()))  # fmt: skip
    except Exception as exc:
        bench.fail("rounds", exc)
    finally:
        if engine is not None:
            try:
                engine.close()
            except Exception as exc:
                bench.fail("boot down", exc)
        shutil.rmtree(scratch, ignore_errors=True)

    return report(args, result, samples)


def _figures(taken: list[dict[str, float]]) -> dict[str, Any]:
    """p50, max and every sample (ms) of each measure of one change's rounds."""
    figures: dict[str, Any] = {"rounds": len(taken)}
    for what in ("channel", "ndjson", "request"):
        values = [t[f"{what}_s"] * 1e3 for t in taken]
        figures[what] = {"p50_ms": median(values), "max_ms": max(values), "samples_ms": values}
    return figures


def _closes(taken: list[dict[str, float]]) -> list[float]:
    return [t["channel_s"] for t in taken] + [t["ndjson_s"] for t in taken]


def report(
    args: argparse.Namespace, result: Result, samples: dict[str, list[dict[str, float]]]
) -> int:
    out = human_stream(args)
    rows: list[list[str]] = []
    for kind, taken in samples.items():
        if taken:
            figures = result.figures[kind] = _figures(taken)
            channel, ndjson, request = figures["channel"], figures["ndjson"], figures["request"]
            rows.append([
                kind, f"{channel['p50_ms']:.0f} / {channel['max_ms']:.0f}",
                f"{ndjson['p50_ms']:.0f} / {ndjson['max_ms']:.0f}",
                f"{request['p50_ms']:.1f}", str(len(taken)),
            ])  # fmt: skip
    if rows:
        headers = ["change", "shell WS p50/max ms", "NDJSON p50/max ms", "request p50 ms",
                   "rounds"]  # fmt: skip
        print_table(rows, headers, out)
    same = [s for kind, taken in samples.items() if kind != OTHER for s in _closes(taken)]
    other = _closes(samples[OTHER])
    if not same:
        return result.finish(args, "revocation: FAILED")
    requests = [t["request_s"] for taken in samples.values() for t in taken]
    summary = result.figures["summary"] = {
        "p50_ms": median(same) * 1e3,
        "max_ms": max(same) * 1e3,
        "request_p50_ms": median(requests) * 1e3,
        "other_process_max_ms": max(other) * 1e3 if other else None,
    }
    result.targets.append(Target("closed after a change, max", max(same), TARGET_S, "s"))
    if other:
        name = "closed after a change by another process, max"
        result.targets.append(Target(name, max(other), TARGET_S, "s"))
    another = f"{max(other) * 1e3:.0f} ms" if other else "not measured"
    final = (
        f"revocation: closed p50 {summary['p50_ms']:.0f} ms, max {summary['max_ms']:.0f} ms "
        f"(target {TARGET_S:g} s); by another process max {another}; the change's request "
        f"p50 {summary['request_p50_ms']:.1f} ms"
    )
    return result.finish(args, final)


if __name__ == "__main__":
    sys.exit(main())
