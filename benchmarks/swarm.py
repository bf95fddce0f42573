"""Swarm: `up`, `scale`, `status()` and `down` of a replicated service on a real Swarm.

The script starts its own three-node Swarm (tests/testbed/swarm.py: one `dockerd` per
network namespace, node1 the manager), loads the locally built `dxflow-test/busybox:1`
onto every node, and measures, tools interleaved (the order rotates every round), with
the swarm cleaned (no service, task, container or network left) before every run:

1. **up**: one service `s`, `sleep 3600` under `init: true`, `deploy.replicas` N (10 and
   30), `endpoint_mode: dnsrr` (no IPVS here), from the call until N tasks run:
   * **dxflow**: `engine.workflows.create(name, FILE, runtime="swarm")` + `wf.up()` on an
     in-process `dxflow.Engine` whose Docker host is the manager (`up` waits for N running);
   * **stack deploy**: `docker -H MANAGER stack deploy --resolve-image never -d -c FILE`
     of the same file, then the API polled every 50 ms until N tasks run;
   * **raw SDK**: docker-py `APIClient.create_network` (overlay) + `create_service` with a
     fully specified TaskTemplate, then the same polling.
   Targets: dxflow <= 1.1x stack deploy and <= 1.1x raw SDK (ratios of the medians).
2. **scale** 10 -> 30: `wf.scale("s", 30)` against a raw `update_service` of the fully
   specified service with only `Replicas` changed (+ polling until 30 run). The tasks
   that ran before must all still run after: **0 replaced** for both. Target <= 1.2x raw.
3. **status()** of a 100-replica service: median of N `wf.status()` calls, interleaved
   with the peer `docker -H MANAGER service ps NAME` (a CLI process) and the floor, one
   raw `tasks(filters=service)` call. Target <= 100 ms.
4. **down** until the overlay network is gone on the manager: `wf.down()` (it waits for
   that itself) against `docker stack rm NAME` + polling (the network's removal is
   retried as dxflow does, should `stack rm` have failed to remove it); raw SDK
   (`remove_service`, then `remove_network` until it is gone) for context. Target <= 1.1x.

Full mode: an uncounted warm-up of each tool (3 replicas), sizes 10 and 30, 3 rounds,
scale 10 -> 30 3 rounds, status of 100 replicas, 30 calls. `--quick` (the CI smoke,
about 50 s): no warm-up, size 10, 1 round, scale 5 -> 10, status of 10 replicas, 5 calls.

    python benchmarks/swarm.py [--quick] [--json] [-n ROUNDS] [--sizes 10,30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from _common import (
    REPO,
    Result,
    Target,
    child_env,
    fmt_ms,
    human_stream,
    median,
    parse_args,
    print_table,
)

DOCKER = shutil.which("docker")
STACK_LABEL = "com.docker.stack.namespace"
UP_TOOLS = ["dxflow", "stack deploy", "raw SDK"]
SCALE_TOOLS = ["dxflow", "raw SDK"]
POLL_S = 0.05  # the peers' polling interval (dxflow polls on its own)
TIMEOUT_S = 240.0
TARGET_UP = 1.1
TARGET_SCALE = 1.2
TARGET_STATUS_S = 0.100
TARGET_DOWN = 1.1
NS = 1_000_000_000  # the API's durations are nanoseconds
T = TypeVar("T")


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", default=None, help="replica counts of `up`, comma-separated (default 10,30)"
    )
    parser.add_argument(
        "--status-replicas", type=int, default=None, help="replicas of the status figure (100)"
    )


def compose_document(image: str, replicas: int) -> dict[str, Any]:
    service = {
        "image": image,
        "command": ["sleep", "3600"],
        "init": True,  # SIGTERM stops it at once (the same for every tool)
        "deploy": {"replicas": replicas, "endpoint_mode": "dnsrr"},
    }
    return {"services": {"s": service}}


def missing_prerequisites() -> str | None:
    """Why the Swarm test bed cannot start here (None: it can)."""
    if os.geteuid() != 0:
        return "the Swarm test bed needs root (network namespaces, dockerd)"
    tools = ("dockerd", "docker", "nsenter", "unshare", "ip", "iptables")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"the Swarm test bed needs {', '.join(missing)} (apt-get install docker.io)"
    return None


class Bench:
    """The bed, the engine, the three tools, and the projects they made."""

    def __init__(self, bed: Any, scratch: Path, image: str) -> None:
        import docker

        self.bed, self.scratch, self.image = bed, scratch, image
        self.url: str = bed.manager.url
        self.api: Any = bed.client(bed.manager)
        self.api.timeout = 120
        self.docker_errors = docker.errors
        self.prefix = f"sb{os.getpid() % 100000}"
        self.projects: list[str] = []
        self.files: dict[int, Path] = {}
        self.engine: Any = None
        self._serial = 0

    # -- setup and cleanup ----------------------------------------------------------------

    def open_engine(self) -> None:
        import dxflow

        os.environ["DXFLOW_DOCKER_HOST"] = self.url  # as tests/swarm/test_runtime.py does
        self.engine = dxflow.Engine(home=self.scratch / "home")

    def compose_file(self, replicas: int) -> Path:
        if replicas not in self.files:
            path = self.scratch / f"compose-{replicas}.yaml"
            # JSON is YAML: both tools read the very same file.
            path.write_text(json.dumps(compose_document(self.image, replicas), indent=1))
            self.files[replicas] = path
        return self.files[replicas]

    def project(self, tool: str, replicas: int) -> str:
        self._serial += 1
        tag = {"dxflow": "dx", "stack deploy": "st", "raw SDK": "raw"}[tool]
        name = f"{self.prefix}-{tag}{replicas}-{self._serial}"
        self.projects.append(name)
        return name

    def clean(self) -> None:
        """Every service, task, container and non-default network gone (the tests' own
        clean-up between tests), and dxflow's stored workflows removed."""
        from tests.swarm.conftest import make_clean

        if self.engine is not None:
            for name in self.projects:
                if name.startswith(f"{self.prefix}-dx"):
                    with contextlib.suppress(Exception):  # removed already
                        self.engine.workflows.get(name).remove()
        make_clean(self.bed, timeout=60)

    def close(self) -> None:
        if self.engine is not None:
            try:
                self.clean()
            except Exception as exc:
                print(f"  clean-up failed: {exc}", file=sys.stderr)
            try:
                self.engine.close()
            except Exception as exc:
                print(f"  engine close failed: {exc}", file=sys.stderr)

    # -- reading the swarm ----------------------------------------------------------------

    def running_ids(self, service: str) -> set[str]:
        rows = self.api.tasks(filters={"service": service, "desired-state": "running"})
        return {t["ID"] for t in rows if t["Status"]["State"] == "running"}

    def wait_running(self, service: str, replicas: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while len(self.running_ids(service)) < replicas:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service}: not {replicas} running within {TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)

    def network_exists(self, name: str) -> bool:
        return any(n["Name"] == name for n in self.api.networks(names=[name]))

    def wait_network_gone(self, name: str, retry_removal: bool) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while self.network_exists(name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"network {name} still there after {TIMEOUT_S:.0f} s")
            if retry_removal:
                with contextlib.suppress(self.docker_errors.APIError):  # in use: again
                    self.api.remove_network(name)
            time.sleep(POLL_S)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert DOCKER is not None
        argv = [DOCKER, "-H", self.url, *args]
        done = subprocess.run(
            argv, cwd=self.scratch, env=child_env(), capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            tail = "\n    ".join((done.stderr or done.stdout).splitlines()[-8:])
            raise RuntimeError(f"docker {' '.join(args)} exited {done.returncode}:\n    {tail}")
        return done

    # -- the raw SDK's service --------------------------------------------------------------

    def raw_spec(self, project: str, replicas: int) -> dict[str, Any]:
        """A ServiceSpec with every default spelled out, as a careful SDK user writes it."""
        labels = {STACK_LABEL: project}
        update = {"Parallelism": 1, "Delay": 0, "FailureAction": "pause",
                  "Monitor": 5 * NS, "MaxFailureRatio": 0, "Order": "stop-first"}  # fmt: skip
        return {
            "name": f"{project}_s",
            "labels": labels,
            "task_template": {
                "ContainerSpec": {
                    "Image": self.image,
                    "Args": ["sleep", "3600"],
                    "Labels": labels,
                    "Init": True,
                    "StopGracePeriod": 10 * NS,
                    "Isolation": "default",
                },
                "Resources": {"Limits": {}, "Reservations": {}},
                "RestartPolicy": {"Condition": "any", "Delay": 5 * NS, "MaxAttempts": 0},
                "Placement": {},
                "Networks": [{"Target": f"{project}_default", "Aliases": ["s"]}],
                "ForceUpdate": 0,
                "Runtime": "container",
            },
            "mode": {"Replicated": {"Replicas": replicas}},
            "update_config": update,
            "rollback_config": update,
            "endpoint_spec": {"Mode": "dnsrr"},
        }

    def raw_up(self, project: str, replicas: int) -> None:
        self.api.create_network(
            f"{project}_default", driver="overlay", labels={STACK_LABEL: project}
        )
        self.api.create_service(**self.raw_spec(project, replicas))
        self.wait_running(f"{project}_s", replicas)

    # -- the figures' operations ----------------------------------------------------------

    def up(self, tool: str, project: str, replicas: int) -> float:
        """Bring `project` up with `tool`: the seconds until `replicas` run. Checked after."""
        file = self.compose_file(replicas)
        began = time.perf_counter()
        if tool == "dxflow":
            wf = self.engine.workflows.create(project, file, runtime="swarm")
            status = wf.up(timeout=TIMEOUT_S)
            took = time.perf_counter() - began
            shown = status.services[0].running if status.services else 0
            if status.state != "running" or shown != replicas:
                raise RuntimeError(f"dxflow up: {status.state}, {shown}/{replicas} running")
        elif tool == "stack deploy":
            self.cli("stack", "deploy", "--resolve-image", "never", "-d", "-c", str(file), project)
            self.wait_running(f"{project}_s", replicas)
            took = time.perf_counter() - began
        else:
            self.raw_up(project, replicas)
            took = time.perf_counter() - began
        running = len(self.running_ids(f"{project}_s"))
        if running != replicas:
            raise RuntimeError(f"{tool} up: {running}/{replicas} tasks running")
        return took

    def down(self, tool: str, project: str) -> float:
        """Take `project` down with `tool`: the seconds until its network is gone."""
        network = f"{project}_default"
        if not self.network_exists(network):
            raise RuntimeError(f"{tool}: no network {network} before down")
        began = time.perf_counter()
        if tool == "dxflow":
            self.engine.workflows.get(project).down()
            took = time.perf_counter() - began
            if self.network_exists(network):
                raise RuntimeError(f"dxflow down returned with {network} still there")
        elif tool == "stack deploy":
            self.cli("stack", "rm", project)
            self.wait_network_gone(network, retry_removal=True)
            took = time.perf_counter() - began
        else:
            self.api.remove_service(f"{project}_s")
            self.wait_network_gone(network, retry_removal=True)
            took = time.perf_counter() - began
        if self.api.services(filters={"label": f"{STACK_LABEL}={project}"}):
            raise RuntimeError(f"{tool} down left services of {project} behind")
        return took

    def scale(self, tool: str, project: str, start: int, to: int) -> tuple[float, int]:
        """Up with `start` replicas (not timed), then scale to `to`: (seconds, replaced)."""
        service = f"{project}_s"
        self.up(tool, project, start)
        before = self.running_ids(service)
        began = time.perf_counter()
        if tool == "dxflow":
            status = self.engine.workflows.get(project).scale("s", to)
            took = time.perf_counter() - began
            if status.services[0].running != to:
                raise RuntimeError(f"dxflow scale: {status.services[0].running}/{to} running")
        else:
            spec = self.raw_spec(project, to)
            version = self.api.inspect_service(service)["Version"]["Index"]
            self.api.update_service(service, version, **spec)
            self.wait_running(service, to)
            took = time.perf_counter() - began
        after = self.running_ids(service)
        if len(after) != to:
            raise RuntimeError(f"{tool} scale: {len(after)}/{to} tasks running")
        return took, len(before - after)


# -- the figures ----------------------------------------------------------------------------


def _rotated(items: list[T], r: int) -> list[T]:
    return items[r % len(items) :] + items[: r % len(items)]


def run_up_down(
    bench: Bench, tools: list[str], sizes: list[int], rounds: int, out: Any
) -> dict[tuple[str, int, str], list[float]]:
    """(figure, size, tool) -> samples; a clean swarm before every run."""
    samples: dict[tuple[str, int, str], list[float]] = {}
    for size in sizes:
        for r in range(rounds):
            line = []
            for tool in _rotated(tools, r):
                bench.clean()
                project = bench.project(tool, size)
                up = bench.up(tool, project, size)
                down = bench.down(tool, project)
                samples.setdefault(("up", size, tool), []).append(up)
                samples.setdefault(("down", size, tool), []).append(down)
                line.append(f"{tool} up {fmt_ms(up)} down {fmt_ms(down)}")
            print(f"  {size} replicas, round {r + 1}/{rounds}: {'; '.join(line)}", file=out)
    bench.clean()
    return samples


def run_scale(
    bench: Bench, start: int, to: int, rounds: int, out: Any
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    times: dict[str, list[float]] = {}
    replaced: dict[str, list[int]] = {}
    for r in range(rounds):
        line = []
        for tool in _rotated(SCALE_TOOLS, r):
            bench.clean()
            took, lost = bench.scale(tool, bench.project(tool, start), start, to)
            times.setdefault(tool, []).append(took)
            replaced.setdefault(tool, []).append(lost)
            line.append(f"{tool} {fmt_ms(took)} ({lost} replaced)")
        print(f"  scale {start} -> {to}, round {r + 1}/{rounds}: {'; '.join(line)}", file=out)
    bench.clean()
    return times, replaced


def _mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_status(
    bench: Bench, replicas: int, calls: int, out: Any
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Median call time of `wf.status()`, `docker service ps` and one raw tasks() call."""
    bench.clean()
    free_before = _mem_available_mib()
    project = bench.project("dxflow", replicas)
    service = f"{project}_s"
    up = bench.up("dxflow", project, replicas)
    free_after = _mem_available_mib()
    info = {"replicas": replicas, "up_s": up, "mem_available_before_mib": free_before,
            "mem_available_after_mib": free_after}  # fmt: skip
    wf = bench.engine.workflows.get(project)
    counts: list[int] = []

    def dxflow_status() -> None:
        counts.append(wf.status().services[0].running)

    def service_ps() -> None:
        bench.cli("service", "ps", service)

    def raw_tasks() -> None:
        bench.api.tasks(filters={"service": service})

    calls_of: list[tuple[str, Callable[[], None]]] = [
        ("dxflow wf.status()", dxflow_status),
        ("docker service ps", service_ps),
        ("raw tasks(service)", raw_tasks),
    ]
    for _, call in calls_of:  # warm-up, not counted
        call()
    timings: dict[str, list[float]] = {}
    for i in range(calls):
        for name, call in _rotated(calls_of, i):
            began = time.perf_counter()
            call()
            timings.setdefault(name, []).append(time.perf_counter() - began)
    if any(c != replicas for c in counts):
        raise RuntimeError(f"wf.status() saw {sorted(set(counts))} running, not {replicas}")
    print(
        f"  status of {replicas} tasks (up in {fmt_ms(up)}; MemAvailable {free_before:,.0f} -> "
        f"{free_after:,.0f} MiB), {calls} calls each: "
        + ", ".join(f"{n} {fmt_ms(median(v))}" for n, v in timings.items()),
        file=out,
    )
    bench.down("dxflow", project)
    bench.clean()
    return timings, info


# -- main -----------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _fmt(samples: dict[str, list[float]], tool: str) -> str:
    return fmt_ms(median(samples[tool])) if samples.get(tool) else "-"


def main() -> int:
    args = parse_args(__doc__ or "", extra=_extra)
    out = human_stream(args)
    rounds = args.runs or (1 if args.quick else 3)
    sizes = [int(s) for s in (args.sizes or ("10" if args.quick else "10,30")).split(",")]
    scale_from, scale_to = (5, 10) if args.quick else (10, 30)
    status_replicas = args.status_replicas or (10 if args.quick else 100)
    status_calls = 5 if args.quick else 30
    result = Result("swarm", args.quick)
    samples: dict[tuple[str, int, str], list[float]] = {}
    scale_times: dict[str, list[float]] = {}
    replaced: dict[str, list[int]] = {}
    status: dict[str, list[float]] = {}
    status_info: dict[str, Any] = {}
    why_not = missing_prerequisites() or (None if DOCKER else "the docker CLI is missing")
    if why_not is not None:
        result.figures["skipped"] = why_not
        result.notes.append(f"skipped: {why_not}")
        return result.finish(args, f"swarm: skipped ({why_not})")
    scratch = Path(tempfile.mkdtemp(prefix="dxflow-bench-swarm-"))
    bed: Any = None
    bench: Bench | None = None
    began = time.perf_counter()
    try:
        sys.path.insert(0, str(REPO))
        from tests.docker.images import ensure_busybox_image
        from tests.testbed.swarm import SwarmBed

        image = ensure_busybox_image()
        bed = SwarmBed()
        bed.start(3)
        bed.load_image(image)
        result.figures["bed_start_s"] = time.perf_counter() - began
        bench = Bench(bed, scratch, image)
        bench.open_engine()
        version = bench.api.version()
        result.figures["docker_server_version"] = version.get("Version")
        result.figures["nodes"] = len(bed.nodes)
        print(
            f"swarm: a {len(bed.nodes)}-node bed (Docker {version.get('Version')}) up in "
            f"{result.figures['bed_start_s']:.1f} s; up sizes {sizes}, {rounds} round(s), "
            f"tools {UP_TOOLS} interleaved",
            file=out,
        )
        # Warm-up, not counted (full mode): imports, the first service, image caches.
        for tool in [] if args.quick else UP_TOOLS:
            bench.clean()
            project = bench.project(tool, 3)
            bench.up(tool, project, 3)
            bench.down(tool, project)
        samples = run_up_down(bench, UP_TOOLS, sizes, rounds, out)
        scale_times, replaced = run_scale(bench, scale_from, scale_to, rounds, out)
        status, status_info = run_status(bench, status_replicas, status_calls, out)
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
        print(f"swarm benchmark failed: {result.error}", file=sys.stderr)
    finally:
        if bench is not None:
            bench.close()
        if bed is not None:
            bed.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    result.figures["seconds"] = time.perf_counter() - began

    # -- report ---------------------------------------------------------------------------
    rows: list[list[Any]] = []
    final: list[str] = []
    for figure, peer_target in (("up", TARGET_UP), ("down", TARGET_DOWN)):
        for size in sizes:
            got = {t: samples[(figure, size, t)] for t in UP_TOOLS if (figure, size, t) in samples}
            if not got:
                continue
            med = {t: median(v) for t, v in got.items()}
            over_peer = _ratio(med.get("dxflow"), med.get("stack deploy"))
            over_raw = _ratio(med.get("dxflow"), med.get("raw SDK"))
            key = f"{figure}_{size}"
            result.figures[key] = {t: {"median_s": med[t], "samples_s": got[t]} for t in got}
            result.figures[key]["ratio_dxflow_over_stack"] = over_peer
            result.figures[key]["ratio_dxflow_over_raw"] = over_raw
            peer = "stack deploy" if figure == "up" else "stack rm"
            rows.append([f"{figure} {size}", _fmt(got, "dxflow"),
                         f"{peer} {_fmt(got, 'stack deploy')}", _fmt(got, "raw SDK"),
                         _fmt_ratio(over_peer), _fmt_ratio(over_raw)])  # fmt: skip
            if over_peer is not None:
                name = f"{figure} {size}: dxflow/{peer}"
                result.targets.append(Target(name, over_peer, peer_target, "x"))
            if over_raw is not None and figure == "up":
                name = f"up {size}: dxflow/raw SDK"
                result.targets.append(Target(name, over_raw, TARGET_UP, "x"))
            if "dxflow" in med:
                final.append(f"{figure} {size} {fmt_ms(med['dxflow'])} (/{peer} "
                             f"{_fmt_ratio(over_peer)}, /raw {_fmt_ratio(over_raw)})")  # fmt: skip
    if scale_times:
        over_raw = _ratio(median(scale_times.get("dxflow", [])) if scale_times.get("dxflow")
                          else None, median(scale_times.get("raw SDK", []))
                          if scale_times.get("raw SDK") else None)  # fmt: skip
        key = f"scale_{scale_from}_{scale_to}"
        result.figures[key] = {
            t: {"median_s": median(v), "samples_s": v, "replaced": replaced.get(t, [])}
            for t, v in scale_times.items()
        }
        result.figures[key]["ratio_dxflow_over_raw"] = over_raw
        rows.append([f"scale {scale_from}->{scale_to}", _fmt(scale_times, "dxflow"), "-",
                     _fmt(scale_times, "raw SDK"), "-", _fmt_ratio(over_raw)])  # fmt: skip
        if over_raw is not None:
            name = f"scale {scale_from}->{scale_to}: dxflow/raw SDK"
            result.targets.append(Target(name, over_raw, TARGET_SCALE, "x"))
        for tool, lost in replaced.items():
            name = f"scale {scale_from}->{scale_to}: {tool} tasks replaced (max)"
            result.targets.append(Target(name, max(lost), 0, "tasks"))
        if scale_times.get("dxflow"):
            final.append(f"scale {scale_from}->{scale_to} {_fmt(scale_times, 'dxflow')} "
                         f"(/raw {_fmt_ratio(over_raw)}, replaced "
                         f"{max(replaced.get('dxflow', [0]))})")  # fmt: skip
    if status:
        size = status_info["replicas"]
        dx, ps = status.get("dxflow wf.status()"), status.get("docker service ps")
        ps_ratio = _ratio(median(dx) if dx else None, median(ps) if ps else None)
        result.figures[f"status_{size}"] = {
            **{n: {"median_s": median(v), "samples_s": v} for n, v in status.items()},
            **status_info,
            "ratio_dxflow_over_service_ps": ps_ratio,
        }
        rows.append([f"status() of {size} tasks", _fmt(status, "dxflow wf.status()"),
                     f"service ps {_fmt(status, 'docker service ps')}",
                     f"tasks() {_fmt(status, 'raw tasks(service)')}", _fmt_ratio(ps_ratio),
                     "-"])  # fmt: skip
        if dx:
            name = f"wf.status() of {size} tasks"
            result.targets.append(Target(name, median(dx), TARGET_STATUS_S, "s"))
            final.append(f"status {size} {fmt_ms(median(dx))}")
        result.notes.append(
            f"{size} replicas: MemAvailable {status_info['mem_available_before_mib']:,.0f} -> "
            f"{status_info['mem_available_after_mib']:,.0f} MiB; up took "
            f"{fmt_ms(status_info['up_s'])}"
        )
    headers = ["figure", "dxflow", "peer", "raw SDK", "dxflow/peer", "dxflow/raw"]
    print_table(rows, headers, out)
    result.notes.append(
        "peers poll the manager's API every 50 ms; stack deploy runs with --resolve-image never "
        "(no registry here) and -d; each run starts on a clean swarm (tests/swarm/conftest.py "
        "make_clean)"
    )
    text = "swarm: " + ("; ".join(final) if final else "FAILED")
    return result.finish(args, text)


if __name__ == "__main__":
    sys.exit(main())
