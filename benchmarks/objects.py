"""Object store: downloads, SDK get/put, listing, ranges and fsspec, each against a peer.

All in one run, on one booted engine (`dxflow boot up --daemon`, TCP on 127.0.0.1) and
one in-process engine (`dxflow.Engine(home=...)`), peers interleaved with dxflow:

1. **download**: curl of a 1 GiB file from dxflow (`GET /api/objects/content` with a
   bearer token) against curl of the same file (a hard link: same page cache) from nginx.
   Target: throughput dxflow/nginx >= 0.8 (medians).
2. **SDK get / put** of that file to / from a local file, over HTTP and in-process.
   Targets: get >= 1 GB/s, put >= 0.5 GB/s (medians); the engine process's RSS growth
   during each transfer (psutil, sampled every 20 ms) <= 64 MiB. Peers: curl from nginx
   into a file (for get), curl -T to nginx's WebDAV PUT (for put: a temp file renamed
   into place, as dxflow does), and `cp`.
3. **listing**: the first page (limit 100) of a directory of 10,000 files over HTTP.
   Target: <= 100 ms (median). Peer: `os.scandir` + sort (+ stat of the page's entries).
4. **ranges**: fsspec `cat_ranges` of 1,000 ranges of 100 bytes of a 10 MiB file against
   1,000 `cat_file` calls on the same `dxflow` filesystem over HTTP. Target: >= 5x.
5. **Jupyter**: `pipe_file` + `cat_file` of a 100 MiB file through fsspec's `jupyter`
   filesystem (Jupyter Server's contents API) and through the `dxflow` one. No target.

1 MB = 10^6 bytes. `--quick` (the CI smoke, < 60 s): 64 MiB, 1,000 files, 100 ranges,
8 MiB through Jupyter, one round. A peer whose program is not installed is skipped, and
the output says so. Everything lives in one temporary directory, removed at the end.

    python benchmarks/objects.py [--quick] [--json] [-n ROUNDS]
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import quote

from _common import (
    Report,
    Result,
    boot_daemon,
    bytecode_note,
    fmt_ms,
    human_stream,
    median,
    parse_args,
    print_table,
    run_cli,
)
from _file_peers import curl_download, jupyter_roundtrip, jupyter_server, nginx
from _object_tools import (
    MIB,
    RssPeak,
    copy_with_cp,
    curl_to_file,
    curl_upload,
    dxflow_fs,
    fmt_size,
    jupyter_missing,
    link_or_copy,
    make_tree,
    mb_s,
    nginx_missing,
    scandir_page,
    stats,
    timed,
    write_blob,
)

DOWNLOAD_RATIO_TARGET = 0.8
GET_TARGET_MB_S = 1000.0
PUT_TARGET_MB_S = 500.0
RSS_TARGET_MIB = 64.0
LISTING_TARGET_S = 0.100
RANGES_SPEEDUP_TARGET = 5.0

PAGE = 100
RANGE_BYTES = 100
RANGES_FILE = 10 * MIB


@dataclass(frozen=True)
class Plan:
    blob: int
    files: int
    ranges: int
    jupyter: int
    rounds: int
    listing_calls: int
    jupyter_rounds: int


def plan(quick: bool, runs: int | None) -> Plan:
    if quick:
        rounds = runs or 1
        return Plan(64 * MIB, 1_000, 100, 8 * MIB, rounds, 5 * rounds, rounds)
    rounds = runs or 5
    return Plan(1024 * MIB, 10_000, 1_000, 100 * MIB, rounds, 10 * rounds, min(rounds, 3))


# -- helpers -------------------------------------------------------------------------------


class Bench(Report):
    label = "objects"

    def __init__(self, args: Any, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.plan = plan(args.quick, args.runs)
        self.result = Result("objects", args.quick, notes=[bytecode_note()])
        self.scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-objects-"))
        self.data = self.scratch / "data"
        self.web = self.scratch / "web"
        self.home = self.scratch / "home"
        self.local_home = self.scratch / "local"
        self.outdir = self.scratch / "out"
        self.storage = self.home / "storage"
        self.local_storage = self.local_home / "storage"
        self.url = ""
        self.pid = 0
        self.nginx_url: str | None = None
        self.remote: Any = None
        self.local: Any = None
        self.summary: list[list[str]] = []
        self.booted = False

    # -- setup ------------------------------------------------------------------------------

    def prepare(self) -> None:
        p = self.plan
        for folder in (self.data, self.web / "upload", self.outdir, self.storage,
                       self.local_storage):  # fmt: skip
            folder.mkdir(parents=True)
        started = time.perf_counter()
        blob = self.data / "blob.bin"
        write_blob(blob, p.blob, seed=1)
        (self.data / "ranges.bin").write_bytes(random.Random(2).randbytes(RANGES_FILE))
        link_or_copy(blob, self.web / "blob.bin")
        link_or_copy(blob, self.storage / "bench" / "blob.bin")
        link_or_copy(blob, self.local_storage / "bench" / "blob.bin")
        link_or_copy(self.data / "ranges.bin", self.storage / "bench" / "ranges.bin")
        make_tree(self.storage / "bench" / "many", p.files)
        make_tree(self.local_storage / "bench" / "many", p.files)
        self.say(
            f"objects: {fmt_size(p.blob)} file, {p.files:,} files, {p.ranges:,} ranges, "
            f"{fmt_size(p.jupyter)} through Jupyter, {p.rounds} round(s); data made in "
            f"{time.perf_counter() - started:.1f} s under {self.scratch}"
        )

    def boot(self) -> None:
        import dxflow

        home = str(self.home)
        self.booted = True  # `boot down` at the end, whatever happens here
        status = boot_daemon(home)
        self.url, self.pid = str(status["url"]), int(status["pid"])
        self.remote = dxflow.Engine(self.url, key=str(self.home / "keys" / "master.pem"))
        self.local = dxflow.Engine(home=str(self.local_home))
        self.say(f"  dxflow engine at {self.url} (pid {self.pid}); in-process engine too")

    def close(self) -> None:
        for engine in (self.remote, self.local):
            if engine is not None:
                with contextlib.suppress(Exception):
                    engine.close()
        if self.booted:
            try:
                run_cli("boot", "down", "--home", str(self.home), timeout=30)
            except Exception as exc:
                self.fail("boot down", exc)
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- 1. download with curl ----------------------------------------------------------------

    def download(self) -> None:
        size = self.plan.blob
        token = self.remote.token(3600).token
        url = f"{self.url}/api/objects/content?path={quote('bench/blob.bin')}"
        headers = {"Authorization": f"Bearer {token}"}
        runs: dict[str, list[float]] = {"dxflow": [], "nginx": []}
        rss: list[float] = []

        def from_dxflow() -> float:
            with RssPeak(self.pid) as sampler:
                seconds = curl_download(url, headers)
            rss.append(sampler.growth_mib)
            return seconds

        fetch: dict[str, Callable[[], float]] = {"dxflow": from_dxflow}
        if self.nginx_url is not None:
            nginx_blob = f"{self.nginx_url}/blob.bin"
            fetch["nginx"] = lambda: curl_download(nginx_blob)
        for get in fetch.values():  # warm-up: page cache, connections, first-request costs
            get()
        for i in range(self.plan.rounds):
            names = list(fetch) if i % 2 else list(reversed(fetch))
            for name in names:
                runs[name].append(fetch[name]())
        figures: dict[str, Any] = {"bytes": size}
        rows = []
        for name, samples in runs.items():
            if not samples:
                continue
            figures[name] = {**stats(samples), "mb_s": mb_s(size, median(samples))}
            rows.append([f"{name} + curl", len(samples), fmt_ms(median(samples)),
                         f"{mb_s(size, median(samples)):,.0f}", f"{mb_s(size, max(samples)):,.0f}",
                         f"{mb_s(size, min(samples)):,.0f}",
                         f"{max(rss):.1f}" if name == "dxflow" else "-"])  # fmt: skip
        figures["dxflow"]["engine_rss_growth_mib"] = max(rss)
        self.say(f"\n1. download of {fmt_size(size)} over loopback with curl (into /dev/null)")
        headers = ["server", "runs", "median", "MB/s", "min MB/s", "max MB/s", "engine RSS +"]
        print_table(rows, headers, self.out)
        dx = figures["dxflow"]["mb_s"]
        if runs["nginx"]:
            ratio = median(runs["nginx"]) / median(runs["dxflow"])
            paired = [n / d for d, n in zip(runs["dxflow"], runs["nginx"], strict=True)]
            figures["ratio_dxflow_over_nginx"] = ratio
            figures["ratio_per_round"] = paired
            self.say(f"  throughput dxflow/nginx {ratio:.2f} "
                     f"(rounds {', '.join(f'{r:.2f}' for r in paired)})")  # fmt: skip
            state = self.target("download dxflow/nginx", ratio, DOWNLOAD_RATIO_TARGET, "x", True)
            self.row(f"curl download {fmt_size(size)} (MB/s)", f"{dx:,.0f}",
                     f"nginx {figures['nginx']['mb_s']:,.0f}", f"{ratio:.2f}x", state)  # fmt: skip
        else:
            figures["ratio_dxflow_over_nginx"] = None
            self.row(f"curl download {fmt_size(size)} (MB/s)", f"{dx:,.0f}", "skipped", "-")
        self.result.figures["download"] = figures

    # -- 2. SDK get / put ---------------------------------------------------------------------

    def sdk(self) -> None:
        size = self.plan.blob
        source = self.data / "blob.bin"
        out = self.outdir
        me = os.getpid()

        def check_file(path: Path) -> None:
            if path.stat().st_size != size:
                raise RuntimeError(f"{path.name}: {path.stat().st_size} bytes, not {size}")

        def get(engine: Any, name: str) -> Callable[[], None]:
            def run() -> None:
                engine.objects.get("bench/blob.bin", out / name)

            return run

        def put(engine: Any, name: str) -> Callable[[], None]:
            def run() -> None:
                info = engine.objects.put(source, f"bench/{name}", overwrite=True)
                if info.size != size:
                    raise RuntimeError(f"put {name}: the engine holds {info.size} bytes")

            return run

        # name -> (action, pids whose RSS is sampled: engine first, then the client's)
        actions: dict[str, tuple[Callable[[], object], list[int]]] = {
            "get HTTP": (get(self.remote, "get-http.bin"), [self.pid, me]),
            "get in-process": (get(self.local, "get-local.bin"), [me]),
            "put HTTP": (put(self.remote, "put-http.bin"), [self.pid, me]),
            "put in-process": (put(self.local, "put-local.bin"), [me]),
            "peer cp": (lambda: copy_with_cp(source, out / "cp.bin"), []),
        }
        if self.nginx_url is not None:
            nginx_blob = f"{self.nginx_url}/blob.bin"
            actions["peer curl nginx"] = (lambda: curl_to_file(nginx_blob, out / "curl.bin"), [])
            nginx_put = f"{self.nginx_url}/upload/put.bin"
            actions["peer curl PUT nginx"] = (lambda: curl_upload(source, nginx_put), [])

        def cleanup(name: str) -> None:
            for path in out.iterdir():
                path.unlink()
            (self.web / "upload" / "put.bin").unlink(missing_ok=True)
            if name == "put HTTP":
                self.remote.objects.rm("bench/put-http.bin")
            elif name == "put in-process":
                self.local.objects.rm("bench/put-local.bin")

        times: dict[str, list[float]] = {name: [] for name in actions}
        rss: dict[str, list[float]] = {name: [] for name in actions}  # [0]: the warm-up
        client_rss: dict[str, list[float]] = {name: [] for name in actions}
        for i in range(self.plan.rounds + 1):  # round 0: the warm-up, not timed
            names = list(actions) if i % 2 == 0 else list(reversed(actions))
            for name in names:
                action, pids = actions[name]
                with contextlib.ExitStack() as stack:
                    samplers = [stack.enter_context(RssPeak(pid)) for pid in pids]
                    start = time.perf_counter()
                    answer = action()
                    seconds = time.perf_counter() - start
                if name.startswith("peer curl"):  # curl's own time, without its start
                    seconds = cast(float, answer)
                if name.startswith("get"):
                    target = out / ("get-http.bin" if "HTTP" in name else "get-local.bin")
                    check_file(target)
                    if i == 0 and not filecmp.cmp(source, target, shallow=False):
                        raise RuntimeError(f"{name}: the downloaded file differs from the source")
                cleanup(name)
                if samplers:
                    rss[name].append(samplers[0].growth_mib)
                if len(samplers) > 1:
                    client_rss[name].append(samplers[1].growth_mib)
                if i > 0:
                    times[name].append(seconds)
        figures: dict[str, Any] = {"bytes": size}
        rows = []
        for name, samples in times.items():
            speed = mb_s(size, median(samples))
            entry: dict[str, Any] = {**stats(samples), "mb_s": speed}
            engine_rss = max(rss[name]) if rss[name] else None
            if engine_rss is not None:  # the warm-up counts: a fresh engine's first transfer
                entry["engine_rss_growth_mib"] = engine_rss
                entry["engine_rss_growth_mib_runs"] = rss[name]
            if client_rss[name]:
                entry["client_rss_growth_mib"] = max(client_rss[name])
            figures[name] = entry
            rows.append([
                name, len(samples), fmt_ms(median(samples)), f"{speed:,.0f}",
                "-" if engine_rss is None else f"{engine_rss:.1f}",
                "-" if not rss[name] else f"{rss[name][0]:.1f}",
                f"{max(client_rss[name]):.1f}" if client_rss[name] else "-",
            ])  # fmt: skip
        self.say(f"\n2. SDK transfers of {fmt_size(size)} to/from a local file "
                 "(RSS: engine process, peak over its start, MiB)")  # fmt: skip
        headers = ["transfer", "runs", "median", "MB/s", "engine RSS + max", "warm-up",
                   "client RSS +"]  # fmt: skip
        print_table(rows, headers, self.out)
        self.say("  RSS growth: peak (sampled every 20 ms) minus the value at the start, MiB, "
                 "max over all runs including the uncounted warm-up (also shown alone); "
                 "in-process, the engine process is this one")  # fmt: skip
        cp = figures["peer cp"]["mb_s"]
        curl = figures.get("peer curl nginx", {}).get("mb_s")
        curl_put = figures.get("peer curl PUT nginx", {}).get("mb_s")
        limits = {"get HTTP": GET_TARGET_MB_S, "get in-process": GET_TARGET_MB_S,
                  "put HTTP": PUT_TARGET_MB_S, "put in-process": PUT_TARGET_MB_S}  # fmt: skip
        for name, limit in limits.items():
            speed = figures[name]["mb_s"]
            state = self.target(f"SDK {name}", speed, limit, "MB/s", True)
            if name == "get HTTP" and curl is not None:
                peer, ratio = f"curl nginx {curl:,.0f}", f"{speed / curl:.2f}x"
            elif name == "put HTTP" and curl_put is not None:
                peer, ratio = f"curl PUT nginx {curl_put:,.0f}", f"{speed / curl_put:.2f}x"
            else:
                peer, ratio = f"cp {cp:,.0f}", f"{speed / cp:.2f}x"
            figures[name]["ratio_over_peer"] = float(ratio[:-1])
            self.row(f"SDK {name} (MB/s)", f"{speed:,.0f}", peer, ratio, state)
        for name in ("get HTTP", "get in-process", "put HTTP", "put in-process"):
            growth = figures[name]["engine_rss_growth_mib"]
            state = self.target(f"engine RSS growth, {name}", growth, RSS_TARGET_MIB, "MiB", False)
            self.row(f"  engine RSS growth, {name}", f"{growth:.1f} MiB", "-", "-", state)
        self.result.figures["sdk"] = figures

    # -- 3. listing ---------------------------------------------------------------------------

    def listing(self) -> None:
        files, calls = self.plan.files, self.plan.listing_calls
        folder = self.storage / "bench" / "many"

        def page(engine: Any) -> Callable[[], None]:
            def run() -> None:
                answer = engine.objects.listing("bench/many", limit=PAGE)
                if answer.total != files or len(answer.items) != PAGE:
                    raise RuntimeError(f"listing: {len(answer.items)} items of {answer.total}")
                if answer.items[0].name != "f00000.txt":
                    raise RuntimeError(f"listing starts at {answer.items[0].name}, not f00000")

            return run

        actions: dict[str, Callable[[], object]] = {
            "dxflow HTTP": page(self.remote),
            "dxflow in-process": page(self.local),
            "peer scandir+sort": lambda: scandir_page(folder, PAGE),
        }
        times: dict[str, list[float]] = {name: [] for name in actions}
        for action in actions.values():  # warm-up: the dentry cache, first-call costs
            action()
        for i in range(calls):
            names = list(actions) if i % 2 == 0 else list(reversed(actions))
            for name in names:
                times[name].append(timed(actions[name]))
        figures: dict[str, Any] = {"files": files, "limit": PAGE}
        rows = []
        for name, samples in times.items():
            figures[name] = stats(samples)
            rows.append([name, len(samples), fmt_ms(median(samples)), fmt_ms(min(samples)),
                         fmt_ms(max(samples))])  # fmt: skip
        self.say(f"\n3. first page (limit {PAGE}) of a directory of {files:,} files")
        print_table(rows, ["lister", "calls", "median", "min", "max"], self.out)
        http = median(times["dxflow HTTP"])
        peer = median(times["peer scandir+sort"])
        ratio = http / peer
        figures["ratio_dxflow_http_over_peer_time"] = ratio
        state = self.target("listing page over HTTP", http * 1e3, LISTING_TARGET_S * 1e3, "ms",
                            False)  # fmt: skip
        self.row(f"listing 100 of {files:,} over HTTP", fmt_ms(http), f"scandir+sort "
                 f"{fmt_ms(peer)}", f"{ratio:.1f}x time", state)  # fmt: skip
        self.result.figures["listing"] = figures

    # -- 4. cat_ranges -----------------------------------------------------------------------

    def ranges(self) -> None:
        count, rounds = self.plan.ranges, self.plan.rounds
        rng = random.Random(3)
        starts = [rng.randrange(0, RANGES_FILE - RANGE_BYTES) for _ in range(count)]
        ends = [s + RANGE_BYTES for s in starts]
        local = (self.data / "ranges.bin").read_bytes()
        expected = [local[s:e] for s, e in zip(starts, ends, strict=True)]
        path = "bench/ranges.bin"
        paths = [path] * count
        fs = dxflow_fs(self.url, self.home / "keys" / "master.pem")

        def batch() -> None:
            if list(fs.cat_ranges(paths, starts, ends)) != expected:
                raise RuntimeError("cat_ranges returned other bytes than the file holds")

        def one_by_one() -> None:
            got = [fs.cat_file(path, start=s, end=e) for s, e in zip(starts, ends, strict=True)]
            if got != expected:
                raise RuntimeError("cat_file returned other bytes than the file holds")

        times: dict[str, list[float]] = {"cat_ranges": [], "cat_file loop": []}
        try:
            batch()  # warm-up: the handshake, the connection, first-call costs
            for s, e in zip(starts[:10], ends[:10], strict=True):
                fs.cat_file(path, start=s, end=e)
            for i in range(rounds):
                order = [("cat_ranges", batch), ("cat_file loop", one_by_one)]
                for name, action in order if i % 2 == 0 else reversed(order):
                    times[name].append(timed(action))
        finally:
            fs.close()
        figures: dict[str, Any] = {"ranges": count, "range_bytes": RANGE_BYTES,
                                   "file_bytes": RANGES_FILE}  # fmt: skip
        rows = []
        for name, samples in times.items():
            figures[name] = stats(samples)
            rows.append([name, len(samples), fmt_ms(median(samples)),
                         f"{median(samples) / count * 1e6:,.0f} µs"])  # fmt: skip
        self.say(f"\n4. {count:,} ranges of {RANGE_BYTES} B of a {fmt_size(RANGES_FILE)} file, "
                 "fsspec `dxflow` filesystem over HTTP")  # fmt: skip
        print_table(rows, ["call", "rounds", "median", "per range"], self.out)
        one, many = median(times["cat_ranges"]), median(times["cat_file loop"])
        speedup = many / one
        figures["speedup"] = speedup
        state = self.target("cat_ranges speed-up", speedup, RANGES_SPEEDUP_TARGET, "x", True)
        self.row(f"fsspec cat_ranges x{count:,}", fmt_ms(one), f"cat_file loop {fmt_ms(many)}",
                 f"{speedup:.1f}x faster", state)  # fmt: skip
        self.result.figures["cat_ranges"] = figures

    # -- 5. Jupyter ---------------------------------------------------------------------------

    def jupyter(self, missing: str | None) -> None:
        size, rounds = self.plan.jupyter, self.plan.jupyter_rounds
        data = random.Random(4).randbytes(size)
        fs = dxflow_fs(self.url, self.home / "keys" / "master.pem")
        path = "bench/jupyter.bin"

        def dxflow_roundtrip() -> tuple[float, float]:
            put = timed(lambda: fs.pipe_file(path, data))
            got: list[bytes] = []
            get = timed(lambda: got.append(fs.cat_file(path)))
            if got[0] != data:
                raise RuntimeError(f"dxflow roundtrip: {len(got[0])} bytes came back, not {size}")
            return put, get

        samples: dict[str, list[tuple[float, float]]] = {"dxflow": [], "jupyter": []}
        with contextlib.ExitStack() as stack:
            stack.callback(fs.close)
            tools: dict[str, Callable[[], tuple[float, float]]] = {"dxflow": dxflow_roundtrip}
            if missing is None:
                root = self.scratch / "jupyter"
                root.mkdir()
                base, token = stack.enter_context(jupyter_server(root))
                tools["jupyter"] = lambda: jupyter_roundtrip(base, token, "jupyter.bin", data)
            for run in tools.values():  # warm-up
                run()
            for i in range(rounds):
                names = list(tools) if i % 2 else list(reversed(tools))
                for name in names:
                    samples[name].append(tools[name]())
        figures: dict[str, Any] = {"bytes": size}
        rows = []
        for name, pairs in samples.items():
            if not pairs:
                continue
            put = median([p for p, _ in pairs])
            get = median([g for _, g in pairs])
            both = median([p + g for p, g in pairs])
            figures[name] = {"put_median_s": put, "get_median_s": get, "roundtrip_median_s": both,
                             "put_mb_s": mb_s(size, put), "get_mb_s": mb_s(size, get),
                             "samples_s": pairs}  # fmt: skip
            rows.append([name, len(pairs), fmt_ms(put), f"{mb_s(size, put):,.0f}", fmt_ms(get),
                         f"{mb_s(size, get):,.0f}", fmt_ms(both)])  # fmt: skip
        self.say(f"\n5. pipe_file + cat_file of {fmt_size(size)} through fsspec over HTTP")
        headers = ["filesystem", "rounds", "put", "put MB/s", "get", "get MB/s", "roundtrip"]
        print_table(rows, headers, self.out)
        dx = figures["dxflow"]["roundtrip_median_s"]
        if "jupyter" in figures:
            jp = figures["jupyter"]
            ratios = {
                "put": jp["put_median_s"] / figures["dxflow"]["put_median_s"],
                "get": jp["get_median_s"] / figures["dxflow"]["get_median_s"],
                "roundtrip": jp["roundtrip_median_s"] / dx,
            }
            figures["ratio_dxflow_over_jupyter"] = ratios
            self.say("  throughput dxflow/jupyter: "
                     + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))  # fmt: skip
            self.row(f"fsspec put+get {fmt_size(size)}", fmt_ms(dx),
                     f"jupyter {fmt_ms(jp['roundtrip_median_s'])}",
                     f"{ratios['roundtrip']:.1f}x faster", "none (reported)")  # fmt: skip
        else:
            figures["ratio_dxflow_over_jupyter"] = None
            self.row(f"fsspec put+get {fmt_size(size)}", fmt_ms(dx), "skipped", "-", "none")
        self.result.figures["jupyter"] = figures

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.perf_counter()
        nginx_note, jupyter_note = nginx_missing(), jupyter_missing()
        for note in (nginx_note, jupyter_note):
            if note is not None:
                self.result.notes.append(note)
                self.say(f"  note: {note}")
        try:
            self.prepare()
            self.boot()
            with contextlib.ExitStack() as stack:
                if nginx_note is None:
                    self.nginx_url = stack.enter_context(nginx(self.web))
                for name, section in (("download", self.download), ("sdk", self.sdk)):
                    try:
                        section()
                    except Exception as exc:
                        self.fail(name, exc)
            for name, section in (
                ("listing", self.listing),
                ("cat_ranges", self.ranges),
                ("jupyter", lambda: self.jupyter(jupyter_note)),
            ):
                try:
                    section()
                except Exception as exc:
                    self.fail(name, exc)
        except Exception as exc:
            self.fail("setup", exc)
        finally:
            self.close()
        elapsed = time.perf_counter() - started
        self.result.figures["seconds"] = elapsed
        self.say(f"\nsummary ({'quick' if self.args.quick else 'full'} mode, {elapsed:.0f} s):")
        if self.summary:
            headers = ["figure", "dxflow", "peer", "ratio", "target"]
            print_table(self.summary, headers, self.out)
        return self.result.finish(self.args, self.final_line())

    def final_line(self) -> str:
        f = self.result.figures
        parts = []
        if (d := f.get("download")) and "dxflow" in d:
            ratio = d.get("ratio_dxflow_over_nginx")
            parts.append(f"download {d['dxflow']['mb_s']:,.0f} MB/s"
                         + (f" ({ratio:.2f}x nginx)" if ratio else ""))  # fmt: skip
        if s := f.get("sdk"):
            parts.append(f"get {s['get HTTP']['mb_s']:,.0f} / put {s['put HTTP']['mb_s']:,.0f} "
                         "MB/s over HTTP")  # fmt: skip
        if listing := f.get("listing"):
            parts.append(f"listing {fmt_ms(listing['dxflow HTTP']['median_s'])}")
        if r := f.get("cat_ranges"):
            parts.append(f"cat_ranges {r['speedup']:.1f}x")
        if (j := f.get("jupyter")) and j.get("ratio_dxflow_over_jupyter"):
            parts.append(f"{j['ratio_dxflow_over_jupyter']['roundtrip']:.1f}x Jupyter")
        if not self.result.ok:
            parts.append("FAILED: " + (self.result.error or "?"))
        return "objects: " + "; ".join(parts)


def main() -> int:
    args = parse_args(__doc__ or "")
    return Bench(args, human_stream(args)).run()


if __name__ == "__main__":
    sys.exit(main())
