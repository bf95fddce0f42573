"""Authenticated `GET /api/ping` over HTTP: dxflow against a bare Starlette app.

dxflow boots with `dxflow boot up --daemon` on a fresh home, loopback only; the peer is
peer_app.py under `python -m uvicorn` with the same uvicorn settings. Load comes from
`wrk` (1 thread, 16 connections), alternating peer and dxflow runs; a Python asyncio
load generator stands in only when wrk is missing (and the output says so). Targets:
dxflow/peer requests per second >= 0.40; dxflow p50 latency at 1 connection <= 2 ms.

    python benchmarks/http_ping.py [--quick] [--json] [-n ROUNDS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import (
    REPO,
    Result,
    Target,
    boot_daemon,
    bytecode_note,
    child_env,
    dxflow_version,
    free_port,
    human_stream,
    median,
    parse_args,
    peer_command,
    print_table,
    run_cli,
    stop_process,
)

RATIO_TARGET = 0.40
P50_TARGET_MS = 2.0
CONNECTIONS = 16
MAX_REQUESTS = 5_000_000  # the Python load generator's bound, whatever the duration


@dataclass
class Load:
    rps: float
    p50_ms: float | None
    requests: int
    errors: int


# -- load generators -----------------------------------------------------------------------


def _wrk_time_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparsed wrk latency {text!r}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[match[2]]
    return float(match[1]) * scale


def wrk(url: str, token: str, connections: int, seconds: int, latency: bool) -> Load:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
        "-H", f"Authorization: Bearer {token}",
        *(["--latency"] if latency else []), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    text = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise RuntimeError(f"unparsed wrk output:\n{text}")
    errors = 0
    if bad := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        errors += int(bad[1])
    if sock := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        errors += sum(int(sock[i]) for i in range(1, 5))
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.MULTILINE)
    return Load(float(rps[1]), _wrk_time_ms(p50[1]) if p50 else None, int(total[1]), errors)


async def _py_connection(
    host: str, port: int, request: bytes, deadline: float, latencies: list[float], count: list[int]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < deadline and count[0] < MAX_REQUESTS:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
            latencies.append(time.perf_counter() - start)
            count[0] += 1
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
    finally:
        writer.close()
    return errors


def python_load(url: str, token: str, connections: int, seconds: int, latency: bool) -> Load:
    """The fallback when wrk is missing: asyncio keep-alive clients, bounded in time and count."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()

    async def run() -> Load:
        latencies: list[float] = []
        count = [0]
        start = time.perf_counter()
        deadline = start + seconds
        errors = await asyncio.gather(
            *(
                _py_connection(host, port, request, deadline, latencies, count)
                for _ in range(connections)
            )
        )
        elapsed = time.perf_counter() - start
        p50 = median(latencies) * 1e3 if latency and latencies else None
        return Load(count[0] / elapsed, p50, count[0], sum(errors))

    return asyncio.run(run())


# -- servers -------------------------------------------------------------------------------


def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)  # noqa: S310 - http://127.0.0.1 only
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the peer exited with {process.returncode} before answering")
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"the peer did not answer {url} within {timeout:.0f} s")


def _check_same_answer(dxflow_url: str, peer_url: str, token: str) -> None:
    """Both answer the same JSON shape with the token, and 401 without it."""
    answers = {}
    for name, url in (("dxflow", dxflow_url), ("peer", peer_url)):
        status, body = _get(url, token)
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"{name} ping answered {status}: {body!r}")
        answers[name] = body
        if (status := _get(url)[0]) != 401:
            raise RuntimeError(f"{name} ping without a token answered {status}, not 401")
    if set(answers["dxflow"]) != set(answers["peer"]) or any(
        answers["dxflow"][k] != answers["peer"][k] for k in ("engine_id", "identity")
    ):
        raise RuntimeError(f"the peer's answer differs: {answers}")


# -- the benchmark -------------------------------------------------------------------------


def main() -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--load",
            choices=["auto", "wrk", "python"],
            default="auto",
            help="load generator: wrk when installed (auto), or the Python asyncio fallback",
        )

    args = parse_args(__doc__ or "", extra=options)
    out = human_stream(args)
    rounds = args.runs or (2 if args.quick else 3)  # quick: 2 s per run, < 20 s in all
    seconds = 2 if args.quick else 10
    latency_seconds = 1 if args.quick else 5
    result = Result("http_ping", args.quick, notes=[bytecode_note()])
    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    generator = "wrk" if use_wrk else "python-asyncio"
    load = wrk if use_wrk else python_load
    if not use_wrk:
        why = "by request (--load python)" if args.load == "python" else "wrk is not installed"
        result.notes.append(
            f"load came from the Python asyncio fallback ({why}): it costs more CPU per "
            "request than wrk on the same 2 cores, so absolute req/s are lower than with wrk"
        )
    result.figures["load_generator"] = generator
    home = Path(tempfile.mkdtemp(prefix="dxflow-bench-http-"))
    peer: subprocess.Popen[bytes] | None = None
    runs: dict[str, list[Load]] = {"dxflow": [], "peer": []}
    latency: dict[str, Load] = {}
    try:
        status = boot_daemon(str(home))
        base = str(status["url"])
        token = run_cli("token", "--home", str(home)).strip()
        port = free_port()
        peer_log = home / "peer.log"
        with open(peer_log, "ab") as log:
            peer = subprocess.Popen(
                peer_command("--host", "127.0.0.1", "--port", str(port)),
                cwd=REPO,
                env=child_env(
                    PEER_TOKEN=token,
                    PEER_ENGINE_ID=str(status["engine_id"]),
                    PEER_VERSION=dxflow_version(),
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        peer_base = f"http://127.0.0.1:{port}"
        _wait_http(f"{peer_base}/api/health", peer)
        urls = {"dxflow": f"{base}/api/ping", "peer": f"{peer_base}/api/ping"}
        _check_same_answer(urls["dxflow"], urls["peer"], token)
        print(
            f"http ping: {generator}{', 1 thread' if use_wrk else ''}, {CONNECTIONS} "
            f"connections, {seconds} s per run, "
            f"{rounds} rounds alternating peer/dxflow (dxflow {base}, peer {peer_base})",
            file=out,
        )
        if not args.quick:
            load(urls["peer"], token, CONNECTIONS, 1, False)  # warm-up, not counted
            load(urls["dxflow"], token, CONNECTIONS, 1, False)
        for i in range(rounds):
            order = ["peer", "dxflow"] if i % 2 == 0 else ["dxflow", "peer"]
            for name in order:
                sample = load(urls[name], token, CONNECTIONS, seconds, False)
                if sample.errors:
                    raise RuntimeError(f"{name}: {sample.errors} failed requests under load")
                runs[name].append(sample)
            print(
                f"  round {i + 1}/{rounds}: dxflow {runs['dxflow'][-1].rps:,.0f} req/s, "
                f"peer {runs['peer'][-1].rps:,.0f} req/s",
                file=out,
            )
        for name in ("dxflow", "peer"):
            sample = load(urls[name], token, 1, latency_seconds, True)
            if sample.errors:
                raise RuntimeError(f"{name}: {sample.errors} failed requests at 1 connection")
            latency[name] = sample
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
        print(f"http benchmark failed: {result.error}", file=sys.stderr)
    finally:
        try:
            run_cli("boot", "down", "--home", str(home), timeout=30)
        except Exception as exc:
            result.ok, result.error = False, result.error or f"boot down failed: {exc}"
            print(f"dxflow boot down failed: {exc}", file=sys.stderr)
        if peer is not None:
            stop_process(peer)
        shutil.rmtree(home, ignore_errors=True)

    if not runs["dxflow"] or not runs["peer"] or len(latency) < 2:
        return result.finish(args, "http_ping: FAILED")
    rows: list[list[Any]] = []
    for name in ("dxflow", "peer"):
        rps = [s.rps for s in runs[name]]
        p50 = latency[name].p50_ms
        rows.append([name, f"{median(rps):,.0f}", f"{min(rps):,.0f}", f"{max(rps):,.0f}",
                     f"{p50:.2f} ms" if p50 is not None else "n/a"])  # fmt: skip
        result.figures[name] = {
            "rps_median": median(rps),
            "rps_runs": rps,
            "p50_ms_1conn": p50,
            "rps_1conn": latency[name].rps,
        }
    print_table(rows, ["server", "req/s median", "min", "max", "p50 @1 conn"], out)
    ratio = result.figures["dxflow"]["rps_median"] / result.figures["peer"]["rps_median"]
    paired = [d.rps / p.rps for d, p in zip(runs["dxflow"], runs["peer"], strict=True)]
    result.figures["ratio_dxflow_over_peer"] = ratio
    result.figures["ratio_per_round"] = paired
    result.targets.append(
        Target("dxflow/peer req/s", ratio, RATIO_TARGET, "x", higher_is_better=True)
    )
    p50 = latency["dxflow"].p50_ms
    if p50 is not None:
        result.targets.append(Target("dxflow p50 @1 connection", p50, P50_TARGET_MS, "ms"))
    final = (
        f"http_ping ({generator}): dxflow {result.figures['dxflow']['rps_median']:,.0f} req/s, "
        f"peer {result.figures['peer']['rps_median']:,.0f} req/s, ratio dxflow/peer {ratio:.2f} "
        f"(rounds {', '.join(f'{r:.2f}' for r in paired)}); dxflow p50 "
        f"{'n/a' if p50 is None else f'{p50:.2f}'} ms @1 connection"
    )
    return result.finish(args, final)


if __name__ == "__main__":
    sys.exit(main())
