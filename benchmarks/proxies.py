"""Proxies: dxflow's against nginx's and jupyter-server-proxy's, in front of the same target.

One run, one target: nginx (one worker) serving a small static file and a 1 GiB file
on 127.0.0.1, reached

* **direct**;
* through **nginx** as a reverse proxy (`proxy_pass` to a keep-alive upstream, one worker);
* through **jupyter-server-proxy** (Jupyter Server, token auth, `/proxy/<port>/`);
* through **dxflow** (`dxflow boot up --daemon` on a fresh home, one proxy with
  `auth="none"` to compare like with like), under **`/p/web/`** on the engine's listener
  and on a **port** of its own.

Figures, peers interleaved (rounds rotate the order):

1. **small responses**: requests/s of `wrk -t2 -c16` (5 s per round) and the p50 of one
   keep-alive connection's request latency (a raw socket loop), printed with the p50
   added over a direct connection. Targets: dxflow /p/ >= 0.5x nginx and >= 3x
   jupyter-server-proxy req/s; added p50 <= 0.3 ms.
2. **download** of the 1 GiB file with curl into /dev/null: direct, nginx, dxflow (and the
   engine's RSS growth and CPU, busy/wall, meanwhile); one try through
   jupyter-server-proxy, printed with how it fails when it does (it answers HTTP 599 to a
   1 GiB body). Target: dxflow >= 0.8x nginx throughput.
3. **Redis** (Debian `redis-server` on loopback): `redis-benchmark -t get,set -q -n
   100000` direct and through a dxflow TCP proxy (a port of its own). Target: >= 0.6x
   direct, for each of GET and SET.
4. **WebSocket echo** (a `websockets` echo server): p50 round trip of a 32-byte message,
   direct, through nginx (`/ws/`), jupyter-server-proxy and dxflow's `/p/ws/`. Target:
   added p50 <= 0.3 ms.

`--quick` (the CI smoke, < 30 s): 1 s of wrk, 200 latency samples, a 64 MiB file, 5,000
Redis requests, one round. Every server listens on 127.0.0.1 and is stopped at the end,
also on failure; a section that fails is reported and the others still run.

    python benchmarks/proxies.py [--quick] [--json] [-n ROUNDS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

import psutil
from _common import (
    Report,
    Result,
    boot_daemon,
    bytecode_note,
    human_stream,
    median,
    parse_args,
    print_table,
    run_cli,
)
from _file_peers import curl_download, jupyter_server, nginx
from _object_tools import RssPeak
from _proxy_peers import (
    http_latencies,
    nginx_proxy,
    nginx_stream,
    redis,
    redis_benchmark,
    wrk,
    ws_echo,
    ws_latencies,
)

RPS_VS_NGINX = 0.5
RPS_VS_JUPYTER = 3.0
ADDED_P50_MS = 0.3
DOWNLOAD_VS_NGINX = 0.8
REDIS_VS_DIRECT = 0.6
MIB = 1 << 20
SMALL = b"hello from the proxied target\n"
DXFLOW_P = "dxflow /p/"
DXFLOW_PORT = "dxflow port"
# The same engine process splicing bytes for the same HTTP (a TCP proxy): no parsing, no
# rules; the ceiling of any HTTP proxy this engine's event loop runs, side by side.
DXFLOW_SPLICE = "dxflow tcp splice (limit)"
JUPYTER = "jupyter-server-proxy"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


class Bench(Report):
    label = "proxies"

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args, self.out = args, out
        self.result = Result("proxies", args.quick, notes=[bytecode_note()])
        self.summary: list[list[str]] = []
        self.rounds = args.runs or (1 if args.quick else 3)
        self.seconds = 1 if args.quick else 5
        self.samples = 200 if args.quick else 2000
        self.big = 64 * MIB if args.quick else 1024 * MIB
        self.redis_requests = 5_000 if args.quick else 100_000
        self.tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-proxies-"))
        self.home = self.tmp / "home"
        self.engine: dict[str, Any] | None = None
        self.token = ""
        # name -> (base URL, headers): where the small file and the big one are reached
        self.http: dict[str, tuple[str, dict[str, str]]] = {}
        self.origin_port = 0
        self.ws_port = 0

    # -- set-up -----------------------------------------------------------------------------

    def prepare_root(self) -> Path:
        root = self.tmp / "www"
        root.mkdir()
        (root / "small.txt").write_bytes(SMALL)
        with open(root / "big.bin", "wb") as big:
            big.truncate(self.big)  # sparse: read from the page cache, never the disk
        return root

    def boot(self) -> None:
        self.engine = boot_daemon(str(self.home))
        self.token = run_cli("token", "--home", str(self.home)).strip()

    def create_proxy(self, spec: dict[str, Any]) -> dict[str, Any]:
        """POST /api/proxies with the MASTER token; the ProxyInfo it answers."""
        assert self.engine is not None
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"{self.engine['url']}/api/proxies",
            data=json.dumps(spec).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with NO_PROXY.open(request, timeout=30) as answer:
                info: dict[str, Any] = json.loads(answer.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            raise RuntimeError(f"creating proxy {spec['name']}: HTTP {error.code} {body}") from None
        if info.get("state") != "serving":
            raise RuntimeError(f"proxy {spec['name']} is {info.get('state')}: {info.get('error')}")
        return info

    def engine_cpu(self) -> float:
        """CPU seconds the engine process has used (user + system): busy / wall = cores."""
        if self.engine is None:
            return 0.0
        times = psutil.Process(int(self.engine["pid"])).cpu_times()
        return float(times.user + times.system)

    def try_create(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """create_proxy, a failure reported (the section goes on with its peers alone)."""
        try:
            return self.create_proxy(spec)
        except Exception as exc:
            self.fail(f"proxy {spec['name']}", exc)
            return None

    def proxy_url(self, info: dict[str, Any]) -> str:
        assert self.engine is not None
        url = info.get("url") or f"{self.engine['url']}/p/{info['name']}/"
        return str(url).rstrip("/")

    def start(self, stack: contextlib.ExitStack) -> None:
        origin = stack.enter_context(nginx(self.prepare_root()))
        self.origin_port = int(origin.rsplit(":", 1)[1])
        self.http["direct"] = (origin, {})
        self.ws_port = stack.enter_context(ws_echo())
        self.section("nginx proxy", lambda: self.start_nginx(stack))
        self.section("jupyter-server-proxy", lambda: self.start_jupyter(stack))
        self.section("dxflow", self.start_dxflow)

    def start_nginx(self, stack: contextlib.ExitStack) -> None:
        url = stack.enter_context(nginx_proxy(self.origin_port, self.ws_port))
        self.http["nginx"] = (url, {})

    def start_jupyter(self, stack: contextlib.ExitStack) -> None:
        empty = self.tmp / "jupyter-root"
        empty.mkdir()
        base, token = stack.enter_context(jupyter_server(empty))
        url = f"{base}/proxy/{self.origin_port}"
        headers = {"Authorization": f"token {token}"}
        http_latencies(f"{url}/small.txt", headers, 1)  # the extension is loaded and answers
        self.http[JUPYTER] = (url, headers)

    def start_dxflow(self) -> None:
        self.boot()
        target = f"127.0.0.1:{self.origin_port}"
        under = self.create_proxy({"name": "web", "targets": [target], "auth": "none"})
        own = self.create_proxy({"name": "webport", "targets": [target], "auth": "none", "port": 0})
        self.http[DXFLOW_P] = (self.proxy_url(under), {})
        self.http[DXFLOW_PORT] = (self.proxy_url(own), {})
        splice = self.try_create(
            {"name": "webtcp", "targets": [target], "auth": "none", "protocol": "tcp", "port": 0}
        )
        if splice is not None:
            self.http[DXFLOW_SPLICE] = (f"http://127.0.0.1:{int(splice['port'])}", {})

    def section(self, name: str, run: Any) -> bool:
        """Run one part; a failure is reported and the rest goes on."""
        try:
            run()
            return True
        except Exception as exc:
            self.fail(name, exc)
            return False

    # -- 1. small responses -----------------------------------------------------------------

    def small(self) -> None:
        names = list(self.http)
        rps: dict[str, list[float]] = {name: [] for name in names}
        lat: dict[str, list[float]] = {name: [] for name in names}
        per_round = max(1, self.samples // self.rounds)
        self.say(
            f"small responses ({len(SMALL)} bytes): wrk -t2 -c16 {self.seconds} s and "
            f"{per_round} requests on one connection per round, {self.rounds} round(s)"
        )
        for i in range(self.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                base, headers = self.http[name]
                value, errors = wrk(f"{base}/small.txt", headers, self.seconds)
                if errors:
                    raise RuntimeError(f"{name}: {errors} failed requests under wrk")
                rps[name].append(value)
                lat[name] += http_latencies(f"{base}/small.txt", headers, per_round)
        direct_p50 = median(lat["direct"]) * 1e3
        figures: dict[str, Any] = {}
        for name in names:
            p50 = median(lat[name]) * 1e3
            figures[name] = {
                "rps": median(rps[name]),
                "rps_runs": rps[name],
                "p50_ms": p50,
                "added_p50_ms": p50 - direct_p50,
            }
        self.result.figures["small"] = figures
        if DXFLOW_P in rps and DXFLOW_SPLICE in rps:
            limit = median(rps[DXFLOW_SPLICE])
            self.result.figures["ratio_dxflow_over_splice_rps"] = median(rps[DXFLOW_P]) / limit
            if "nginx" in rps:
                self.result.figures["ratio_splice_over_nginx_rps"] = limit / median(rps["nginx"])
            self.note(
                f"dxflow /p/ reaches {median(rps[DXFLOW_P]) / limit:.2f}x of the same engine "
                "splicing the same requests as bytes (its limit)"
            )
        for peer, key in (("nginx", "nginx"), (JUPYTER, "jupyter")):
            if DXFLOW_P in rps and peer in rps:  # each round's ratio: noise shows as spread
                paired = [d / p for d, p in zip(rps[DXFLOW_P], rps[peer], strict=True)]
                self.result.figures[f"ratio_dxflow_over_{key}_rps_per_round"] = paired
                rounds = ", ".join(f"{r:.2f}" for r in paired)
                self.note(f"dxflow /p/ over {peer} req/s, per round: {rounds}")
        self.small_table(figures)

    def small_table(self, figures: dict[str, Any]) -> None:
        nginx_rps = figures.get("nginx", {}).get("rps")
        jupyter_rps = figures.get(JUPYTER, {}).get("rps")
        rows = []
        for name, f in figures.items():
            rows.append(
                [
                    name,
                    f"{f['rps']:,.0f}",
                    f"{f['rps'] / nginx_rps:.2f}x" if nginx_rps else "-",
                    f"{f['rps'] / jupyter_rps:.2f}x" if jupyter_rps else "-",
                    f"{f['p50_ms']:.3f} ms",
                    "-" if name == "direct" else f"{f['added_p50_ms']:+.3f} ms",
                ]
            )
        print_table(
            rows, ["path", "req/s", "vs nginx", "vs jupyter", "p50 @1 conn", "added p50"], self.out
        )
        if DXFLOW_P not in figures:
            return
        dx = figures[DXFLOW_P]
        ratios = self.result.figures
        if nginx_rps:
            ratios["ratio_dxflow_over_nginx_rps"] = dx["rps"] / nginx_rps
            met = self.target(
                "dxflow /p/ req/s vs nginx", dx["rps"] / nginx_rps, RPS_VS_NGINX, "x", True
            )
            self.row(
                "req/s vs nginx",
                f"{dx['rps']:,.0f}",
                f"nginx {nginx_rps:,.0f}",
                f"{dx['rps'] / nginx_rps:.2f}x",
                met,
            )
        if jupyter_rps:
            ratios["ratio_dxflow_over_jupyter_rps"] = dx["rps"] / jupyter_rps
            met = self.target(
                "dxflow /p/ req/s vs jupyter-server-proxy",
                dx["rps"] / jupyter_rps,
                RPS_VS_JUPYTER,
                "x",
                True,
            )
            self.row(
                "req/s vs jupyter-server-proxy",
                f"{dx['rps']:,.0f}",
                f"jsp {jupyter_rps:,.0f}",
                f"{dx['rps'] / jupyter_rps:.2f}x",
                met,
            )
        for name in (DXFLOW_P, DXFLOW_PORT):
            if name in figures:
                added = figures[name]["added_p50_ms"]
                met = self.target(f"{name} added p50", added, ADDED_P50_MS, "ms", False)
                peer = figures.get("nginx", {}).get("added_p50_ms")
                self.row(
                    f"{name} added p50",
                    f"{added:.3f} ms",
                    f"nginx {peer:.3f} ms" if peer is not None else "-",
                    "-",
                    met,
                )

    # -- 2. download ------------------------------------------------------------------------

    def download(self) -> None:
        names = [n for n in ("direct", "nginx", DXFLOW_P, DXFLOW_PORT) if n in self.http]
        seconds: dict[str, list[float]] = {name: [] for name in names}
        busy: dict[str, list[float]] = {name: [] for name in names}
        growth = 0.0
        self.say(f"download of {self.big // MIB} MiB with curl, {self.rounds} round(s)")
        curl_download(f"{self.http['direct'][0]}/big.bin")  # warm-up: fills the page cache
        jupyter = self.jupyter_download()
        for i in range(self.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                base, headers = self.http[name]
                if name.startswith("dxflow") and self.engine is not None:
                    before = self.engine_cpu()
                    with RssPeak(int(self.engine["pid"])) as rss:
                        seconds[name].append(curl_download(f"{base}/big.bin", headers))
                    busy[name].append((self.engine_cpu() - before) / seconds[name][-1])
                    growth = max(growth, rss.growth_mib)
                else:
                    seconds[name].append(curl_download(f"{base}/big.bin", headers))
        figures: dict[str, Any] = {"bytes": self.big}
        for name in names:
            figures[name] = {"mb_s": self.big / median(seconds[name]) / 1e6, "s": seconds[name]}
            if busy[name]:
                figures[name]["engine_cpu"] = median(busy[name])
        nginx_mb_s = figures.get("nginx", {}).get("mb_s")
        rows = [
            [
                name,
                f"{figures[name]['mb_s']:,.0f}",
                f"{figures[name]['mb_s'] / nginx_mb_s:.2f}x" if nginx_mb_s else "-",
                f"{figures[name]['engine_cpu']:.0%}" if busy[name] else "-",
            ]
            for name in names
        ]
        if jupyter is not None:
            figures[JUPYTER] = jupyter
            rate = jupyter.get("mb_s")
            ratio = f"{rate / nginx_mb_s:.2f}x" if rate and nginx_mb_s else "-"
            rows.append([JUPYTER, f"{rate:,.0f}" if rate else jupyter["error"], ratio, "-"])
        print_table(rows, ["path", "MB/s", "vs nginx", "engine CPU"], self.out)
        if DXFLOW_P in figures:
            figures["engine_rss_growth_mib"] = growth
            self.say(f"  engine RSS growth during the dxflow downloads: {growth:.1f} MiB")
            if nginx_mb_s:
                ratio = figures[DXFLOW_P]["mb_s"] / nginx_mb_s
                figures["ratio_dxflow_over_nginx"] = ratio
                met = self.target(
                    "dxflow /p/ download vs nginx", ratio, DOWNLOAD_VS_NGINX, "x", True
                )
                self.row(
                    f"download {self.big // MIB} MiB",
                    f"{figures[DXFLOW_P]['mb_s']:,.0f} MB/s",
                    f"nginx {nginx_mb_s:,.0f} MB/s",
                    f"{ratio:.2f}x",
                    met,
                )
        self.result.figures["download"] = figures

    def jupyter_download(self) -> dict[str, Any] | None:
        """One download through jupyter-server-proxy: its throughput, or how it failed
        (it answers HTTP 599 on large bodies: a fact to print, not a failure of the run)."""
        if JUPYTER not in self.http:
            return None
        base, headers = self.http[JUPYTER]
        try:
            return {"mb_s": self.big / curl_download(f"{base}/big.bin", headers) / 1e6}
        except RuntimeError as exc:
            status = re.search(r"HTTP \d+", str(exc))
            return {"mb_s": None, "error": f"failed ({status[0] if status else exc})"}

    # -- 3. Redis ---------------------------------------------------------------------------

    def redis(self, stack: contextlib.ExitStack) -> None:
        port = stack.enter_context(redis())
        ports = {"direct": port}
        spec = {
            "name": "redis",
            "targets": [f"127.0.0.1:{port}"],
            "protocol": "tcp",
            "port": 0,
            "auth": "none",
        }
        if self.engine is not None and (info := self.try_create(spec)) is not None:
            ports["dxflow tcp"] = int(info["port"])
        try:  # the limit side by side: a C proxy in the same place
            ports["nginx stream"] = stack.enter_context(nginx_stream(port))
        except Exception as exc:
            self.say(f"  nginx stream (the TCP peer) left out: {exc}")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
        busy: list[float] = []
        rounds = max(1, min(self.rounds, 2))
        self.say(f"redis-benchmark -t get,set -q -n {self.redis_requests}, {rounds} round(s)")
        for i in range(rounds):
            for name in list(ports)[:: 1 if i % 2 == 0 else -1]:
                before, started = self.engine_cpu(), time.perf_counter()
                runs[name].append(redis_benchmark(ports[name], self.redis_requests))
                if name != "direct":
                    busy.append((self.engine_cpu() - before) / (time.perf_counter() - started))
        figures: dict[str, Any] = {"requests": self.redis_requests}
        for name in ports:
            figures[name] = {t: median([r[t] for r in runs[name]]) for t in ("set", "get")}
        direct = figures["direct"]
        rows = []
        for name in ports:
            f = figures[name]
            rows.append(
                [
                    name,
                    f"{f['set']:,.0f}",
                    f"{f['get']:,.0f}",
                    f"{f['set'] / direct['set']:.2f}x",
                    f"{f['get'] / direct['get']:.2f}x",
                ]
            )
        print_table(rows, ["path", "SET/s", "GET/s", "SET vs direct", "GET vs direct"], self.out)
        if busy:
            figures["engine_cpu"] = median(busy)
            self.say(
                f"  engine CPU during redis-benchmark through it: {median(busy):.0%} of a core"
            )
        if "nginx stream" in figures:
            for test in ("set", "get"):
                figures[f"ratio_{test}_nginx_over_direct"] = (
                    figures["nginx stream"][test] / direct[test]
                )
        if "dxflow tcp" in figures:
            for test in ("set", "get"):
                ratio = figures["dxflow tcp"][test] / direct[test]
                figures[f"ratio_{test}_dxflow_over_direct"] = ratio
                met = self.target(
                    f"redis {test.upper()} via dxflow vs direct", ratio, REDIS_VS_DIRECT, "x", True
                )
                self.row(
                    f"redis {test.upper()}/s",
                    f"{figures['dxflow tcp'][test]:,.0f}",
                    f"direct {direct[test]:,.0f}",
                    f"{ratio:.2f}x",
                    met,
                )
        self.result.figures["redis"] = figures

    # -- 4. WebSocket -----------------------------------------------------------------------

    def websocket(self) -> None:
        port = self.ws_port
        urls: dict[str, tuple[str, dict[str, str]]] = {"direct": (f"ws://127.0.0.1:{port}/", {})}
        if "nginx" in self.http:
            urls["nginx"] = (self.http["nginx"][0].replace("http", "ws", 1) + "/ws/", {})
        if JUPYTER in self.http:
            base, headers = self.http[JUPYTER]
            jupyter = base.replace("http", "ws", 1).rsplit("/", 1)[0] + f"/{port}/"
            urls[JUPYTER] = (jupyter, headers)
        spec = {"name": "ws", "targets": [f"127.0.0.1:{port}"], "auth": "none"}
        if self.engine is not None and (info := self.try_create(spec)) is not None:
            urls[DXFLOW_P] = (self.proxy_url(info).replace("http", "ws", 1) + "/", {})
        samples: dict[str, list[float]] = {name: [] for name in urls}
        per_round = max(1, self.samples // self.rounds)
        self.say(f"WebSocket echo of 32 bytes, {per_round} round trips per round")
        for i in range(self.rounds):
            order = list(urls)[i % len(urls) :] + list(urls)[: i % len(urls)]
            for name in order:
                url, headers = urls[name]
                samples[name] += ws_latencies(url, per_round, headers)
        direct = median(samples["direct"]) * 1e3
        figures: dict[str, Any] = {}
        for name in urls:
            p50 = median(samples[name]) * 1e3
            figures[name] = {"p50_ms": p50, "added_p50_ms": p50 - direct}
        rows = [
            [n, f"{f['p50_ms']:.3f} ms", f"{f['added_p50_ms']:+.3f} ms"] for n, f in figures.items()
        ]
        print_table(rows, ["path", "p50 round trip", "added"], self.out)
        if "dxflow /p/" in figures:
            added = figures["dxflow /p/"]["added_p50_ms"]
            met = self.target("WebSocket echo added p50", added, ADDED_P50_MS, "ms", False)
            peer = figures.get("nginx", {}).get("added_p50_ms")
            self.row("WebSocket echo added p50", f"{added:.3f} ms",
                     f"nginx {peer:.3f} ms" if peer is not None else f"direct {direct:.3f} ms",
                     "-", met)  # fmt: skip
        self.result.figures["websocket"] = figures

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            with contextlib.ExitStack() as stack:
                self.start(stack)
                self.section("small responses", self.small)
                self.section("download", self.download)
                self.section("redis", lambda: self.redis(stack))
                self.section("websocket", self.websocket)
        except Exception as exc:
            self.fail("set-up", exc)
        finally:
            self.close()
        if self.summary:
            self.say("")
            print_table(self.summary, ["figure", "dxflow", "peer", "ratio", "target"], self.out)
        return self.result.finish(self.args, self.final_line())

    def close(self) -> None:
        if self.engine is not None:
            try:
                run_cli("boot", "down", "--home", str(self.home), timeout=60)
            except Exception as exc:
                self.fail("boot down", exc)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def final_line(self) -> str:
        figures = self.result.figures
        parts = []
        if "ratio_dxflow_over_nginx_rps" in figures:
            parts.append(f"req/s {figures['ratio_dxflow_over_nginx_rps']:.2f}x nginx")
        if "ratio_dxflow_over_jupyter_rps" in figures:
            parts.append(f"{figures['ratio_dxflow_over_jupyter_rps']:.2f}x jupyter-server-proxy")
        if (added := figures.get("small", {}).get(DXFLOW_P, {}).get("added_p50_ms")) is not None:
            parts.append(f"added p50 {added:.3f} ms")
        if (ratio := figures.get("download", {}).get("ratio_dxflow_over_nginx")) is not None:
            parts.append(f"download {ratio:.2f}x nginx")
        redis_figures = figures.get("redis", {})
        if "ratio_get_dxflow_over_direct" in redis_figures:
            parts.append(
                f"redis SET {redis_figures['ratio_set_dxflow_over_direct']:.2f}x / GET "
                f"{redis_figures['ratio_get_dxflow_over_direct']:.2f}x direct"
            )
        if "ratio_set_nginx_over_direct" in redis_figures:
            parts.append(
                f"(nginx stream SET {redis_figures['ratio_set_nginx_over_direct']:.2f}x / GET "
                f"{redis_figures['ratio_get_nginx_over_direct']:.2f}x)"
            )
        if (ws := figures.get("websocket", {}).get("dxflow /p/")) is not None:
            parts.append(f"WebSocket added p50 {ws['added_p50_ms']:.3f} ms")
        state = "" if self.result.ok else " (FAILED parts: see above)"
        return f"proxies: {'; '.join(parts) or 'no dxflow figures'}{state}"


def main() -> int:
    args = parse_args(__doc__ or "")
    out = human_stream(args)
    return Bench(args, out).run()


if __name__ == "__main__":
    sys.exit(main())
