"""Bridges: an agent's API through its master against the same agent reached directly.

Real processes on loopback, each `dxflow boot up --daemon` on a home of its own under one
temporary directory: a master, and agents that join it with a token (`--join`). The
**direct** peer is the agent's own TCP URL (its runtime file) with the agent's master
key; **bridged** is `dxflow.Engine(master_url, key=<master's key>).bridges.get(NAME)
.engine`: the same SDK, the same agent, one hop more.

1. **calls**: `engine.ping()` and `engine.objects.info(path)`, direct and bridged in
   alternating blocks; p50/p95 of each and the p50 the bridge adds.
   Target: added p50 <= 1 ms.
2. **download** of 1 GiB (`--quick` 64 MiB; random MiBs, so nothing on the way can
   compress it) with `engine.objects.get(path, local_file)`, and with a raw streaming
   GET into nothing (the relay alone), direct and bridged alternating after an uncounted
   warm-up; the master's and the agent's CPU (busy/wall), the master's RSS growth.
   Target: bridged/direct `objects.get` throughput >= 0.5.
3. **echo**: one character sent into an attached `/bin/sh` (`shell.attach()`, the SDK's
   Channel) until its echo comes back, direct and bridged alternating in blocks.
   Target: bridged p50 <= 2 ms.
4. **fleet**: a second master with N agents (100, `--quick` 5; `--agents`) booted in
   parallel batches: p95 of `fleet.map(lambda e: e.ping())` over rounds (target <= 1 s),
   against the peer: the same pings on the agents' direct URLs from a thread pool of the
   same size (and the bridged engines of one `bridges.list()` reused: the relay alone);
   and the master's VmRSS with N agents connected minus with none, per agent (target
   <= 1 MiB/agent).
5. **lost**: a third master with `bridge_interval = 0.5`, `bridge_grace = 3`; an agent is
   SIGKILLed and `bridges.get(name)` polled every 20 ms until `lost`: the time from the
   `last_seen` the master reports to `lost`, minus the grace. Target: <= 1 s.

The measured agents have `keep_alive_timeout = 120` (see AGENT_CONFIG); a bridged call
after 6 s without one, to an agent with the default (5 s), is checked as a note, never a
failure.

    python benchmarks/bridges.py [--quick] [--json] [-n SAMPLES] [--agents N] [--parts A,B]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import httpx
from _bridge_tools import (
    FAST,
    MIB,
    boot,
    boot_agents,
    boot_down,
    cpu_seconds,
    drain,
    echoes,
    kill_leftovers,
    make_home,
    pct,
    runtime,
    timings,
    two_relays,
    vm_rss,
    wait_for,
    warm,
)
from _common import Report, Result, bytecode_note, human_stream, median, parse_args, print_table
from _object_tools import RssPeak, write_blob

import dxflow

ADDED_P50_MS = 1.0
DOWNLOAD_RATIO = 0.5
ECHO_P50_MS = 2.0
MAP_P95_S = 1.0
RSS_PER_AGENT_MIB = 1.0
LOST_OVER_GRACE_S = 1.0
GRACE = 3.0
BATCH = 8  # agents booted at once
REUSED = "bridged, engines reused"
RELAYS = "two bare relays"
FLEET_CONFIG = "auth_rate_limit = 1000000\n"
# An agent's server closes an idle connection after keep_alive_timeout (5 s by default);
# the master's forwarder keeps it pooled for 30 s and reuses it: the call fails (see the
# idle check). The measured agents keep theirs longer, so that no figure hits it.
AGENT_CONFIG = "keep_alive_timeout = 120\n"


def stream_get(url: str, token: str, size: int) -> float:
    """Seconds of one raw streaming GET of `size` bytes (checked), read into nothing."""
    start = time.perf_counter()
    got = 0
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(timeout=120, trust_env=False) as client,
        client.stream("GET", url, params={"path": "bench/big.bin"}, headers=headers) as reply,
    ):
        reply.raise_for_status()
        for chunk in reply.iter_raw(1 << 20):
            got += len(chunk)
    if got != size:
        raise RuntimeError(f"streamed {got} bytes of {size}")
    return time.perf_counter() - start


class Bench(Report):
    label = "bridges"

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args, self.out = args, out
        self.result = Result("bridges", args.quick, notes=[bytecode_note()])
        self.summary: list[list[str]] = []
        self.samples = args.runs or (200 if args.quick else 2000)
        self.echo_samples = max(20, self.samples // 4) if args.quick else 400
        self.big = 64 * MIB if args.quick else 1024 * MIB
        self.rounds = 1 if args.quick else 3
        self.agents = args.agents or (5 if args.quick else 100)
        self.map_rounds = 5 if args.quick else 10
        self.tmp = Path(tempfile.mkdtemp(prefix="dxflow-bench-bridges-"))
        self.homes: list[Path] = []
        self.engines: list[dxflow.Engine] = []
        self.direct: dxflow.Engine | None = None
        self.bridged: dxflow.Engine | None = None
        self.master_pid = 0
        self.stale = 0  # bridged warm-up calls that failed on a stale pooled connection

    # -- set-up ---------------------------------------------------------------------------

    def engine(self, url: str, key: Path) -> dxflow.Engine:
        engine = dxflow.Engine(url, key=key)
        self.engines.append(engine)
        return engine

    def start_master(self, name: str, config: str = "") -> tuple[dxflow.Engine, int, Path]:
        home = make_home(self.tmp, name, config)
        self.homes.append(home)
        info = boot(home)
        return self.engine(info["url"], home / "keys" / "master.pem"), int(info["pid"]), home

    def join(
        self, master: dxflow.Engine, names: list[str], config: str = AGENT_CONFIG
    ) -> dict[str, dict[str, Any]]:
        """Boot agents joining `master`, BATCH at a time; wait until all are connected."""
        token = master.bridges.token(expires="1h", uses=len(names)).token
        self.homes += [self.tmp / n for n in names]
        started, errors = boot_agents(self.tmp, token, names, BATCH, config)
        if errors:
            first = next(iter(errors.items()))
            raise RuntimeError(f"{len(errors)} agent(s) failed to boot, e.g. {first}")
        wanted = set(names)

        def connected() -> bool:
            listed = master.bridges.list()
            return wanted <= {b.name for b in listed if b.status == "connected"}

        wait_for(connected, f"{len(names)} agent(s) to connect", timeout=60 + len(names))
        return started

    def start(self) -> None:
        master, self.master_pid, _ = self.start_master("master")
        agent = self.join(master, ["a1"])["a1"]
        self.agent_pid = int(agent["pid"])
        self.direct = self.engine(agent["url"], self.tmp / "a1" / "keys" / "master.pem")
        self.bridged = master.bridges.get("a1").engine
        self.master = master

    # -- 1. calls -------------------------------------------------------------------------

    def calls(self) -> None:
        assert self.direct is not None and self.bridged is not None
        self.direct.objects.pipe("bench/info.txt", b"bridged\n")
        paths = {"direct": self.direct, "bridged": self.bridged}
        calls = {
            "ping": lambda e: e.ping,
            "objects.info": lambda e: lambda: e.objects.info("bench/info.txt"),
        }
        block = 50
        blocks = max(1, self.samples // block)
        self.say(f"calls: {blocks} blocks of {block} per path and call, alternating")
        figures: dict[str, Any] = {}
        for call, make in calls.items():
            samples: dict[str, list[float]] = {p: [] for p in paths}
            for engine in paths.values():
                self.stale += warm(make(engine), 50, dxflow.EngineUnavailable)
            for i in range(blocks):
                for path in list(paths)[:: 1 if i % 2 == 0 else -1]:
                    samples[path] += timings(make(paths[path]), block)
            row = {
                p: {"p50_ms": pct(s, 50) * 1e3, "p95_ms": pct(s, 95) * 1e3}
                for p, s in samples.items()
            }
            row["added_p50_ms"] = row["bridged"]["p50_ms"] - row["direct"]["p50_ms"]
            row["ratio_bridged_over_direct_p50"] = (
                row["bridged"]["p50_ms"] / row["direct"]["p50_ms"]
            )
            figures[call] = row
        rows = [
            [call, path, f"{f[path]['p50_ms']:.3f}", f"{f[path]['p95_ms']:.3f}",
             "-" if path == "direct" else f"{f['added_p50_ms']:+.3f}"]
            for call, f in figures.items() for path in paths
        ]  # fmt: skip
        print_table(rows, ["call", "path", "p50 ms", "p95 ms", "added p50 ms"], self.out)
        for call, f in figures.items():
            met = self.target(f"{call} added p50", f["added_p50_ms"], ADDED_P50_MS, "ms", False)
            self.row(f"{call} p50", f"{f['bridged']['p50_ms']:.3f} ms",
                     f"direct {f['direct']['p50_ms']:.3f} ms",
                     f"{f['ratio_bridged_over_direct_p50']:.2f}x "
                     f"({f['added_p50_ms']:+.3f} ms)", met)  # fmt: skip
        self.result.figures["calls"] = figures

    # -- 2. download ----------------------------------------------------------------------

    def download(self) -> None:
        assert self.direct is not None and self.bridged is not None
        (self.tmp / "a1" / "storage" / "bench").mkdir(parents=True, exist_ok=True)
        write_blob(self.tmp / "a1" / "storage" / "bench" / "big.bin", self.big, seed=7)
        local = self.tmp / "download.bin"
        agent_url, master_url = runtime(self.tmp / "a1")["url"], runtime(self.tmp / "master")["url"]
        with two_relays(agent_url) as relayed_url:
            relayed = self.engine(relayed_url, self.tmp / "a1" / "keys" / "master.pem")
            self._download(local, agent_url, master_url, relayed_url, relayed)

    def _download(self, local: Path, agent_url: str, master_url: str, relayed_url: str,
                  relayed: dxflow.Engine) -> None:  # fmt: skip
        assert self.direct is not None and self.bridged is not None
        paths = {"direct": self.direct, "bridged": self.bridged, RELAYS: relayed}
        seconds: dict[str, list[float]] = {p: [] for p in paths}
        busy: list[float] = []
        growth = 0.0
        self.say(f"download of {self.big // MIB} MiB with objects.get, {self.rounds} round(s)")

        def get(engine: dxflow.Engine) -> float:
            start = time.perf_counter()
            engine.objects.get("bench/big.bin", local)
            took = time.perf_counter() - start
            if local.stat().st_size != self.big:
                raise RuntimeError(f"downloaded {local.stat().st_size} bytes of {self.big}")
            local.unlink()
            return took

        token = self.direct.token().token
        streams = {  # the same bytes with a raw streaming GET into nothing: the relay alone
            "direct": (f"{agent_url}/api/objects/content", token),
            "bridged": (f"{master_url}/api/bridges/a1/api/objects/content",
                        self.master.token().token),
            RELAYS: (f"{relayed_url}/api/objects/content", token),
        }  # fmt: skip
        raw: dict[str, list[float]] = {p: [] for p in paths}
        agent_busy: list[float] = []
        for engine in paths.values():  # warm-up: the page cache, the connections
            self.stale += warm(engine.ping, 1, dxflow.EngineUnavailable)
            get(engine)
        for i in range(self.rounds):
            for path in list(paths)[:: 1 if i % 2 == 0 else -1]:
                if path == "bridged":
                    before = cpu_seconds(self.master_pid), cpu_seconds(self.agent_pid)
                    with RssPeak(self.master_pid) as rss:
                        seconds[path].append(get(paths[path]))
                    busy.append((cpu_seconds(self.master_pid) - before[0]) / seconds[path][-1])
                    agent_busy.append((cpu_seconds(self.agent_pid) - before[1]) / seconds[path][-1])
                    growth = max(growth, rss.growth_mib)
                else:
                    seconds[path].append(get(paths[path]))
                raw[path].append(stream_get(*streams[path], self.big))
        figures: dict[str, Any] = {"bytes": self.big}
        for path in paths:
            figures[path] = {"mb_s": self.big / median(seconds[path]) / 1e6, "s": seconds[path],
                             "raw_mb_s": self.big / median(raw[path]) / 1e6}  # fmt: skip
        figures["ratio_raw_bridged_over_direct"] = (
            figures["bridged"]["raw_mb_s"] / figures["direct"]["raw_mb_s"]
        )
        figures["agent_cpu"] = median(agent_busy)
        ratio = figures["bridged"]["mb_s"] / figures["direct"]["mb_s"]
        limit = figures[RELAYS]["mb_s"] / figures["direct"]["mb_s"]
        figures.update(ratio_bridged_over_direct=ratio, master_cpu=median(busy),
                       master_rss_growth_mib=growth, ratio_relays_over_direct=limit)  # fmt: skip
        direct_mb_s = figures["direct"]["mb_s"]
        rows = [[p, f"{figures[p]['mb_s']:,.0f}", f"{figures[p]['mb_s'] / direct_mb_s:.2f}x",
                 f"{figures[p]['raw_mb_s']:,.0f}"] for p in paths]  # fmt: skip
        print_table(rows, ["path", "objects.get MB/s", "of direct", "raw GET MB/s"], self.out)
        cpu = f"master CPU {median(busy):.0%} of a core, agent CPU {median(agent_busy):.0%}"
        self.say(f"  while relaying (objects.get): {cpu}; master RSS growth {growth:.1f} MiB")
        self.say(f"  raw GET bridged/direct: {figures['ratio_raw_bridged_over_direct']:.2f}x;"
                 f" the limit of two Python hops ({RELAYS}): {limit:.2f}x of direct")  # fmt: skip
        met = self.target("download bridged/direct", ratio, DOWNLOAD_RATIO, "x", True)
        self.row(f"download {self.big // MIB} MiB", f"{figures['bridged']['mb_s']:,.0f} MB/s",
                 f"direct {figures['direct']['mb_s']:,.0f} MB/s", f"{ratio:.2f}x", met)  # fmt: skip
        self.row("  two bare Python relays", f"{figures[RELAYS]['mb_s']:,.0f} MB/s",
                 f"direct {direct_mb_s:,.0f} MB/s", f"{limit:.2f}x", "(limit)")  # fmt: skip
        self.result.figures["download"] = figures

    # -- 3. echo --------------------------------------------------------------------------

    def echo(self) -> None:
        assert self.direct is not None and self.bridged is not None
        paths = {"direct": self.direct, "bridged": self.bridged}
        self.stale += warm(lambda: self.bridged.ping(), 1, dxflow.EngineUnavailable)  # type: ignore[union-attr]
        shells = {p: e.shells.create(f"echo-{p}", command="/bin/sh") for p, e in paths.items()}
        samples: dict[str, list[float]] = {p: [] for p in paths}
        block = 25
        self.say(f"echo: {self.echo_samples} characters per path, alternating blocks of {block}")
        try:
            channels = {p: s.attach() for p, s in shells.items()}
            for channel in channels.values():
                channel.__enter__()
            try:
                for channel in channels.values():
                    drain(channel, 0.2, dxflow.TimedOut)
                    echoes(channel, 10, dxflow.TimedOut)  # uncounted
                for i in range(max(1, self.echo_samples // block)):
                    for path in list(paths)[:: 1 if i % 2 == 0 else -1]:
                        samples[path] += echoes(channels[path], block, dxflow.TimedOut)
                        channels[path].send(b"\x15")
                        drain(channels[path], 0.02, dxflow.TimedOut)
            finally:
                for channel in channels.values():
                    channel.__exit__(None, None, None)
        finally:
            for shell in shells.values():
                shell.remove()
        figures = {
            p: {"p50_ms": pct(s, 50) * 1e3, "p95_ms": pct(s, 95) * 1e3, "n": len(s)}
            for p, s in samples.items()
        }
        bridged, direct = figures["bridged"]["p50_ms"], figures["direct"]["p50_ms"]
        figures["ratio_bridged_over_direct_p50"] = bridged / direct  # type: ignore[assignment]
        rows = [[p, f"{figures[p]['p50_ms']:.3f}", f"{figures[p]['p95_ms']:.3f}"] for p in paths]
        print_table(rows, ["path", "p50 ms", "p95 ms"], self.out)
        met = self.target("echo bridged p50", bridged, ECHO_P50_MS, "ms", False)
        self.row("shell echo p50", f"{bridged:.3f} ms", f"direct {direct:.3f} ms",
                 f"{bridged / direct:.2f}x ({bridged - direct:+.3f} ms)", met)  # fmt: skip
        self.result.figures["echo"] = figures

    # -- idle -----------------------------------------------------------------------------

    def idle(self, agent: dxflow.Engine) -> None:
        """A bridged call after 6 s without one, to an agent with the default config."""
        warm(agent.ping, 3, dxflow.EngineUnavailable)
        time.sleep(6)
        try:
            agent.ping()
            state = "ok"
        except dxflow.EngineUnavailable as exc:
            state = f"failed: {exc}"
        self.result.figures["call_after_6s_idle"] = state
        self.say(f"a bridged call after 6 s idle (agent with the default config): {state}")
        self.note(f"a bridged call after 6 s idle (default keep_alive_timeout): {state}")

    # -- 4. fleet -------------------------------------------------------------------------

    def fleet(self) -> None:
        master, pid, _ = self.start_master("fleet", FLEET_CONFIG)
        self.note(f"the fleet's master has {FLEET_CONFIG.strip()} (the default, 120 a minute "
                  "from one address, is below what the agents' joins and links from 127.0.0.1 "
                  "and fleet.map, one handshake per agent per map, need)")  # fmt: skip
        warm(master.ping, 20, dxflow.EngineUnavailable)
        master.bridges.list()
        time.sleep(1)
        rss0 = vm_rss(pid)
        names = [f"f{i:03d}" for i in range(self.agents)]
        try:
            self.fleet_maps(master, pid, rss0, names)
        finally:
            errors = boot_down([self.tmp / n for n in names if (self.tmp / n).exists()], BATCH)
            if errors:
                self.note(f"boot down of fleet agents: {len(errors)} failed, e.g. {errors[0]}")

    def fleet_maps(self, master: dxflow.Engine, pid: int, rss0: int, names: list[str]) -> None:
        self.say(f"fleet: booting {self.agents} agents, {BATCH} at a time")
        began = time.perf_counter()
        started = self.join(master, names)
        boot_s = time.perf_counter() - began
        self.say(f"  {self.agents} agents connected in {boot_s:.1f} s")
        time.sleep(1)
        rss_idle = vm_rss(pid)
        agent_rss = median([vm_rss(int(i["pid"])) for i in started.values()])
        direct = [self.engine(i["url"], self.tmp / n / "keys" / "master.pem")
                  for n, i in started.items()]  # fmt: skip
        workers = min(64, len(direct))
        pool = ThreadPoolExecutor(workers, "direct-map")

        def direct_map() -> None:
            for future in [pool.submit(e.ping) for e in direct]:
                future.result()

        reused = [b.engine for b in master.bridges.list()]  # authenticated once, below

        def reused_map() -> None:  # the relay alone: no new client, no handshake per agent
            for future in [pool.submit(e.ping) for e in reused]:
                future.result()

        def fleet_map() -> None:
            results = master.fleet.map(lambda e: e.ping())
            if results.errors or len(results.ok) != len(names):
                first = next(iter(results.errors.items()), None)
                raise RuntimeError(f"fleet.map: {len(results.ok)} ok, errors {first}")

        maps: dict[str, list[float]] = {"bridged": [], "direct": [], REUSED: []}
        busy = []
        try:
            direct_map()
            reused_map()
            fleet_map()  # uncounted warm-ups
            for i in range(self.map_rounds):
                order = [("bridged", fleet_map), ("direct", direct_map), (REUSED, reused_map)]
                for path, run in order[:: 1 if i % 2 == 0 else -1]:
                    before = cpu_seconds(pid)
                    maps[path] += timings(run, 1)
                    if path == "bridged":
                        busy.append((cpu_seconds(pid) - before) / maps[path][-1])
        finally:
            pool.shutdown()
        rss_used = vm_rss(pid)
        per_idle = (rss_idle - rss0) / MIB / self.agents
        per_used = (rss_used - rss0) / MIB / self.agents
        figures: dict[str, Any] = {
            "agents": self.agents, "boot_s": boot_s, "rounds": self.map_rounds,
            "bridged_p95_s": pct(maps["bridged"], 95), "bridged_p50_s": pct(maps["bridged"], 50),
            "direct_p95_s": pct(maps["direct"], 95), "direct_p50_s": pct(maps["direct"], 50),
            "master_rss_0_mib": rss0 / MIB, "master_rss_connected_mib": rss_idle / MIB,
            "master_rss_after_maps_mib": rss_used / MIB, "rss_per_agent_idle_mib": per_idle,
            "rss_per_agent_mib": per_used, "agent_rss_mib": agent_rss / MIB,
            "reused_p95_s": pct(maps[REUSED], 95), "reused_p50_s": pct(maps[REUSED], 50),
            "master_cpu_during_map": median(busy),
        }  # fmt: skip
        p95, peer = figures["bridged_p95_s"], figures["direct_p95_s"]
        figures["ratio_bridged_over_direct_p95"] = p95 / peer
        print_table(
            [[p, f"{pct(s, 50) * 1e3:.1f}", f"{pct(s, 95) * 1e3:.1f}"] for p, s in maps.items()],
            ["map of ping", "p50 ms", "p95 ms"],
            self.out,
        )
        self.say(f"  master CPU during fleet.map: {median(busy):.0%} of a core")
        self.say(f"  master VmRSS: {rss0 / MIB:.1f} MiB with no agent, {rss_idle / MIB:.1f} "
                 f"connected, {rss_used / MIB:.1f} after the maps; one agent: "
                 f"{agent_rss / MIB:.1f} MiB")  # fmt: skip
        met = self.target(f"fleet.map p95, {self.agents} agents", p95, MAP_P95_S, "s", False)
        self.row(f"fleet.map(ping) p95, N={self.agents}", f"{p95 * 1e3:.0f} ms",
                 f"direct {peer * 1e3:.0f} ms", f"{p95 / peer:.2f}x", met)  # fmt: skip
        met = self.target("master RSS per agent", per_used, RSS_PER_AGENT_MIB, "MiB", False)
        self.row("master RSS per agent", f"{per_used:.2f} MiB",
                 f"idle {per_idle:.2f} MiB", "-", met)  # fmt: skip
        self.result.figures["fleet"] = figures

    # -- 5. lost --------------------------------------------------------------------------

    def lost(self) -> None:
        master, _, _ = self.start_master("grace", FAST)
        runs = []
        name = "l1"
        for i in range(self.rounds):
            if i == 0:
                info = self.join(master, [name], config="")[name]
                self.section("idle", lambda: self.idle(master.bridges.get(name).engine))
            else:
                info = self.reboot(master, name)
                time.sleep(1)
            os.kill(int(info["pid"]), signal.SIGKILL)
            killed = time.time()
            seen_disconnected = None
            while True:
                bridge = master.bridges.get(name)
                now = time.time()
                if bridge.status == "disconnected" and seen_disconnected is None:
                    seen_disconnected = now
                if bridge.status == "lost":
                    break
                if now - killed > GRACE + 30:
                    raise RuntimeError(f"{name} not lost {now - killed:.0f} s after SIGKILL")
                time.sleep(0.02)
            last_seen = bridge.info.last_seen.timestamp()
            runs.append({
                "over_grace_s": now - last_seen - GRACE, "kill_to_lost_s": now - killed,
                "kill_to_disconnected_s": (seen_disconnected or now) - killed,
                "last_seen_before_kill_s": killed - last_seen,
            })  # fmt: skip
        figures = {k: median([r[k] for r in runs]) for k in runs[0]}
        figures.update(grace_s=GRACE, interval_s=0.5, runs=runs)  # type: ignore[arg-type]
        self.say(f"lost: SIGKILL to disconnected {figures['kill_to_disconnected_s']:.2f} s, "
                 f"to lost {figures['kill_to_lost_s']:.2f} s; last_seen to lost minus the "
                 f"grace ({GRACE:g} s): {figures['over_grace_s']:+.3f} s")  # fmt: skip
        over = abs(figures["over_grace_s"])
        met = self.target("last_seen to lost, minus the grace", over, LOST_OVER_GRACE_S, "s",
                          False)  # fmt: skip
        self.row("heartbeat to lost - grace", f"{figures['over_grace_s']:+.3f} s",
                 f"grace {GRACE:g} s", "-", met)  # fmt: skip
        self.result.figures["lost"] = figures

    def reboot(self, master: dxflow.Engine, name: str) -> dict[str, Any]:
        """Boot a killed agent again (its home still joined); wait until connected."""
        info = boot(self.tmp / name)
        wait_for(lambda: master.bridges.get(name).status == "connected", name, timeout=30)
        return info

    # -- the run --------------------------------------------------------------------------

    def section(self, name: str, run: Any) -> None:
        try:
            run()
        except Exception as exc:
            self.fail(name, exc)

    def run(self) -> int:
        load = os.getloadavg()
        try:
            self.start()
            parts = {"calls": self.calls, "download": self.download, "echo": self.echo,
                     "fleet": self.fleet, "lost": self.lost}  # fmt: skip
            wanted = self.args.parts.split(",") if self.args.parts else list(parts)
            for name in wanted:
                self.section(name, parts[name])
        except Exception as exc:
            self.fail("set-up", exc)
        finally:
            self.close()
        if self.stale:
            self.note(f"{self.stale} bridged warm-up call(s) failed once (retried, not timed)")
        self.note(f"load average (1 min) at the start {load[0]:.2f}, at the end "
                  f"{os.getloadavg()[0]:.2f}, on {os.cpu_count()} cores")  # fmt: skip
        if self.summary:
            self.say("")
            print_table(self.summary, ["figure", "bridged", "peer", "ratio", "target"], self.out)
        return self.result.finish(self.args, self.final_line())

    def close(self) -> None:
        for engine in self.engines:
            try:
                engine.close()
            except Exception as exc:
                self.say(f"closing an engine client: {exc}")
        running = [h for h in self.homes if (h / "run" / "engine.json").exists()]
        errors = boot_down(running, BATCH)
        if errors:
            self.note(f"boot down: {len(errors)} failed, e.g. {errors[0]}")
        killed = kill_leftovers(self.tmp)
        if killed:
            self.note(f"{len(killed)} leftover process(es) killed: {killed[:10]}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def final_line(self) -> str:
        f = self.result.figures
        parts = []
        if calls := f.get("calls"):
            parts += [f"{c} added p50 {v['added_p50_ms']:+.3f} ms" for c, v in calls.items()]
        if download := f.get("download"):
            parts.append(f"download {download['ratio_bridged_over_direct']:.2f}x direct")
        if echo := f.get("echo"):
            parts.append(f"echo p50 {echo['bridged']['p50_ms']:.3f} ms")
        if fleet := f.get("fleet"):
            map_ms, per = fleet["bridged_p95_s"] * 1e3, fleet["rss_per_agent_mib"]
            parts.append(
                f"fleet.map p95 {map_ms:.0f} ms (N={fleet['agents']}), {per:.2f} MiB/agent"
            )
        if lost := f.get("lost"):
            parts.append(f"lost at grace {lost['over_grace_s']:+.2f} s")
        state = "" if self.result.ok else " (FAILED parts: see above)"
        return f"bridges: {'; '.join(parts) or 'no figures'}{state}"


def main() -> int:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--agents", type=int, default=None, help="agents of the fleet map")
        parser.add_argument("--parts", choices=None, default=None,
                            help="only these parts, e.g. download,echo (default: all)")  # fmt: skip

    args = parse_args(__doc__ or "", extra=extra)
    return Bench(args, human_stream(args)).run()


if __name__ == "__main__":
    sys.exit(main())
