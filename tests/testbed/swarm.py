"""A real Docker Swarm of our own: one `dockerd` per network namespace of a `Fabric`.

Layout (measured facts in /work/shared/TESTBEDS.md and below)::

    namespace dxtb<pid>-<n>-<node>     /var/lib/dxsw/dxtb<pid>-<n>/<node>/
    eth0 {subnet}.1  node1 (manager)   docker.sock   the node's API: unix://.../docker.sock
    eth0 {subnet}.2  node2 (worker)    data/         --data-root (images, swarm state, node id)
    eth0 {subnet}.3  node3 (worker)    exec/         --exec-root (containerd, netns mounts)
                                       dockerd.pid, dockerd.log, daemon.json (empty: ours)
                                     /var/lib/dxsw/dxtb<pid>-<n>/registry/   (registry=True)
                                       config.yml, data/ (the blobs), registry.log

- Each node is `dockerd` started through `Host.popen` (`nsenter --net`, so the cgroup
  mounts stay visible) under `unshare --uts`, with its own hostname (the node's name, its
  Description.Hostname: placement constraints on `node.hostname` can use it), data root,
  exec root, pid file, socket, `--cgroup-parent /dxtb<pid>-<n>-<node>` and
  `--config-file` (a daemon.json of the machine must not leak in). It starts its own
  containerd, under its exec root. Its iptables rules are those of its namespace. The
  environment has
  `DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`: there is no registry, and without it every
  task start tries Docker Hub first.
- `SwarmBed(registry=True)`: a registry the nodes pull from, Debian's `docker-registry`
  (`docker-registry serve CONFIG`, /usr/bin/docker-registry), run in node1's namespace
  through `Host.popen`, listening on node1's fabric address, port 5000 (`bed.registry`,
  "ADDR:5000": the machine's own namespace never sees it), its storage under the run's
  directory. Every dockerd then has `--insecure-registry ADDR:5000` (plain HTTP) and NOT
  the offline variable: with it a node never pulls an image it lacks, and Swarm's tasks
  pile onto the node that has it (TESTBEDS.md, "Not both"). Without it every task start
  tries a pull first (a failure is only logged, and a local image then runs); the
  namespaces have no route out, so a pull from Docker Hub fails at once.
- Engine identity: dockerd 20.10 reads its engine ID from /etc/docker/key.json (the trust
  key; `nsenter` does not bind /etc/netns/NAME/ as `ip netns exec` does), so the three
  engines share the machine's engine ID (`docker info` ID). Swarm does not care: node
  IDs come from the swarm's CA and live in each data root (`data/swarm/`); the test
  checks they differ.
- The test process drives each node through its socket, a file on the filesystem all
  namespaces share: `bed.client(node)` is a docker-py `APIClient` on `node.url`. The
  machine's own namespace cannot reach the nodes' addresses, and needs not.
- The swarm: `init` on node1 (manager; listen and advertise on its eth0 address, overlay
  subnets from `ADDR_POOL`, not overlapping the fabric's subnet, dispatcher heartbeat
  `heartbeat` seconds instead of Docker's 5 so a cut-off node is marked down sooner),
  node2 and node3 join as workers; `join_tokens` has both tokens.
- Images: `load_image(tag)` saves the image once from the machine's main Docker Engine
  (`docker.from_env()`, read only) and loads the tar into every node in parallel.
- Faults: `partition(node)` takes the switch side of the node's veth down (the fabric's
  silent partition: its dockerd keeps running, cut off); `heal(node)` brings it back.
- No IPVS here (`has_ipvs()`): virtual-IP service names and the ingress routing mesh do
  not work; `endpoint_mode: dnsrr` and overlay networks (VXLAN, 4789/udp, gossip on
  7946) do.
- `stop()` never raises: workers then the manager leave the swarm, every container is
  removed, dockerd gets SIGTERM (`--shutdown-timeout 1`) then SIGKILL, so does the
  registry (if any), what still runs in the nodes' cgroups or names the run's directory
  (containerd shims, the registry) is killed, the mounts dockerd left under the run's
  directory (overlay, nsfs, the overlay driver's own network namespaces) are unmounted
  lazily, the directory (the registry's storage with it) and the cgroups are deleted,
  then the fabric (namespaces). `sweep_stale()` (run by `start()`) does the
  same for the runs whose pid is gone (a killed pytest), before the fabric sweeps their
  namespaces.

Measured here (2 cores, Docker 20.10.24, cgroup v1, no IPVS), wall clock:
- `start(3)`: fabric, 3 dockerds answering, swarm formed, all 3 Ready: 1.2-1.5 s
  (2.0-2.6 s as the session fixture's set-up, with the image load).
- `load_image` of the busybox test image onto 3 nodes: 0.45-0.85 s (save once from the
  main engine, 3 loads in parallel).
- A replicated dnsrr service, 6 replicas over 3 nodes, all running: ~1.1 s. Across the
  overlay network a task on node2 resolves (embedded DNS, first try), pings and fetches
  from a task on node3 at once: VXLAN and gossip need nothing beyond each namespace's
  own iptables, which dockerd sets up itself.
- A partitioned worker is marked down after 3.7-4.3 s (heartbeat 2 s; with Docker's
  default of 5 s, not measured here, TESTBEDS.md saw ~12 s); Ready again 1.0-1.6 s
  after `heal()`. What happens to the cut-off node's tasks is not measured here.
- The `swarm` fixture's clean-up between tests: 0.5-3 s (the manager drops the tasks of
  removed services from its list only after a few seconds).
- `stop()`: ~2.7 s (workers leaving the swarm 1.8 s, dockerd shut-down 1 s).
- `start(3)` with `registry=True`: 1.7 s on a quiet machine, 2.7 s as the session
  fixture's set-up with the busybox load onto the manager, 3-4.5 s under heavy load
  (another bed's benchmark running, load average 24). Pushing the busybox test image
  to it from the manager: 0.48 s; a worker pulling it: 0.32 s. dxflow's `up(build=True)`
  of a 3-replica service (build, push, create, all 3 tasks running, each worker having
  pulled): 5.0-6.7 s under that load (build 0.8-2 s, push ~0.3 s) (the registry answers on
  /v2/ while the dockerds start).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .netns import PREFIX, Fabric, Host, _alive, wait_until

__all__ = [
    "REGISTRY_BINARY",
    "SWARM_ROOT",
    "SwarmBed",
    "SwarmNode",
    "has_ipvs",
    "has_registry",
    "sweep_stale",
]

SWARM_ROOT = Path("/var/lib/dxsw")
"""Where the nodes' homes go: on the root filesystem (ext4), where overlay2 works."""
ADDR_POOL = "10.91.0.0/16"
"""The overlay networks' subnets (a /24 each): away from the fabric's `10.213.x`."""
CGROUP_ROOT = Path("/sys/fs/cgroup")
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
"""Debian's package `docker-registry` (the CNCF distribution registry, v2 API)."""
REGISTRY_PORT = 5000
_STALE = re.compile(rf"^{PREFIX}(\d+)-")
_MNT_DETACH = 2
T = TypeVar("T")


def has_ipvs() -> bool:
    """Whether the kernel has IPVS: Swarm's virtual IPs and ingress routing mesh need it."""
    return Path("/proc/net/ip_vs").exists()


def has_registry() -> bool:
    """Whether Debian's `docker-registry` is installed (what `registry=True` runs)."""
    return os.access(REGISTRY_BINARY, os.X_OK)


@dataclass
class SwarmNode:
    """One engine of the bed: a `dockerd` in the namespace of `host`."""

    name: str
    host: Host
    home: Path
    cgroup_parent: str
    node_id: str = ""
    """The swarm's id of this node (set once it is in the swarm)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def socket(self) -> Path:
        return self.home / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.home / "data"

    @property
    def exec_root(self) -> Path:
        return self.home / "exec"

    @property
    def pidfile(self) -> Path:
        return self.home / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.home / "dockerd.log"

    def log_tail(self, lines: int = 40) -> str:
        """The end of this dockerd's log, for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class SwarmBed:
    """A Docker Swarm of real dockerd processes, one per network namespace.

    `with SwarmBed() as bed:` starts 3 nodes (`start(n)` without `with`; `stop()` after).
    `bed.nodes[0]` is the manager (`bed.manager`), the others are workers.
    `SwarmBed(registry=True)`: with a registry on node1 that every node pulls from
    (`bed.registry`, "ADDR:5000"), and nodes that pull (no offline variable).
    """

    def __init__(
        self, subnet: str = "10.213.8", heartbeat: float = 2.0, registry: bool = False
    ) -> None:
        self.subnet = subnet
        self.heartbeat = heartbeat
        self.with_registry = registry
        self.registry = ""
        """The registry's address, "ADDR:5000" (node1's), once started; "" without one."""
        self.registry_process: subprocess.Popen[bytes] | None = None
        self.fabric: Fabric | None = None
        self.root: Path | None = None
        self.nodes: list[SwarmNode] = []
        self.join_tokens: dict[str, str] = {}
        """{"Worker": ..., "Manager": ...}: the swarm's join tokens."""
        self._clients: dict[str, Any] = {}
        self._saved: dict[str, bytes] = {}

    # -- access --------------------------------------------------------------------------

    @property
    def manager(self) -> SwarmNode:
        if not self.nodes:
            raise RuntimeError("the swarm bed is not started")
        return self.nodes[0]

    @property
    def workers(self) -> list[SwarmNode]:
        return self.nodes[1:]

    def node(self, which: SwarmNode | str | int) -> SwarmNode:
        """A node by itself, its name ("node2") or its index in `nodes`."""
        if isinstance(which, SwarmNode):
            return which
        if isinstance(which, int):
            return self.nodes[which]
        for node in self.nodes:
            if which in (node.name, node.node_id):
                return node
        raise KeyError(f"no node {which!r} in the bed: {[n.name for n in self.nodes]}")

    def client(self, which: SwarmNode | str | int | None = None) -> Any:
        """A docker-py `APIClient` on a node's socket (default: the manager); one per
        node, closed by `stop()`. Typed Any: the stubs leave its swarm calls untyped."""
        node = self.node(which if which is not None else 0)
        if node.name not in self._clients:
            import docker

            self._clients[node.name] = docker.APIClient(node.url, version="auto", timeout=30)
        return self._clients[node.name]

    # -- start ---------------------------------------------------------------------------

    def start(self, n: int = 3) -> SwarmBed:
        if n < 1:
            raise ValueError(f"a swarm has at least one node, not {n}")
        sweep_stale()
        names = [f"node{i + 1}" for i in range(n)]
        self.fabric = Fabric(names, self.subnet)
        try:
            self.fabric.start()
            self.root = SWARM_ROOT / self.fabric.prefix.rstrip("-")
            self.nodes = [self._make_node(host) for host in self.fabric.hosts]
            if self.with_registry:
                self._start_registry(self.nodes[0].host)
            for node in self.nodes:
                self._start_dockerd(node)
            _parallel(self._wait_dockerd, self.nodes)
            if self.with_registry:
                self._wait_registry()
            self._form_swarm()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_node(self, host: Host) -> SwarmNode:
        assert self.fabric is not None and self.root is not None
        home = self.root / host.name
        node = SwarmNode(host.name, host, home, f"/{self.fabric.prefix}{host.name}")
        for path in (node.data_root, node.exec_root):
            path.mkdir(parents=True)
        (home / "daemon.json").write_text("{}\n")
        return node

    def _start_dockerd(self, node: SwarmNode) -> None:
        argv = [
            "dockerd",
            f"--data-root={node.data_root}",
            f"--exec-root={node.exec_root}",
            f"--pidfile={node.pidfile}",
            f"--host={node.url}",
            f"--config-file={node.home / 'daemon.json'}",
            f"--cgroup-parent={node.cgroup_parent}",
            "--storage-driver=overlay2",
            "--shutdown-timeout=1",
        ]
        env = dict(os.environ)
        if self.registry:
            argv.append(f"--insecure-registry={self.registry}")
            env.pop("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", None)  # "Not both": see above
        else:
            env["DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"] = "1"
        for key in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(key, None)
        # unshare --uts: a hostname of the node's own (the nodes' descriptions, and
        # placement constraints on node.hostname, tell them apart).
        sethost = 'hostname "$0" && exec "$@"'
        with node.log.open("ab") as log:
            node.process = node.host.popen(
                "unshare", "--uts", "--", "sh", "-c", sethost, node.name, *argv,
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def _wait_dockerd(self, node: SwarmNode, timeout: float = 30) -> None:
        import docker

        def answers() -> bool:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(
                    f"dockerd of {node.name} exited ({node.process.returncode}):\n{node.log_tail()}"
                )
            if not node.socket.exists():
                return False
            # The oldest API this code uses: "auto" would ask the engine first.
            with docker.APIClient(node.url, version="1.41", timeout=2) as probe:
                try:
                    return bool(probe.ping())
                except (docker.errors.DockerException, OSError):
                    return False

        try:
            wait_until(answers, timeout, 0.05, f"dockerd of {node.name} answers on {node.url}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{node.log_tail()}") from None

    # -- registry ------------------------------------------------------------------------

    @property
    def registry_home(self) -> Path:
        """The registry's directory: config.yml, data/ (its storage), registry.log."""
        if self.root is None:
            raise RuntimeError("the swarm bed is not started")
        return self.root / "registry"

    def _start_registry(self, host: Host) -> None:
        if not has_registry():
            raise RuntimeError(
                f"SwarmBed(registry=True) needs {REGISTRY_BINARY}: apt-get install "
                "docker-registry (scripts/setup.sh --dev installs it)"
            )
        home = self.registry_home
        (home / "data").mkdir(parents=True)
        self.registry = f"{host.address}:{REGISTRY_PORT}"
        # No auth, no TLS (the nodes trust it through --insecure-registry), deletes allowed.
        config = home / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {home / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.registry}\n"
        )
        with (home / "registry.log").open("ab") as log:
            self.registry_process = host.popen(
                REGISTRY_BINARY, "serve", config, stdout=log, stderr=subprocess.STDOUT
            )

    def registry_log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError, RuntimeError):
            text = (self.registry_home / "registry.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def _wait_registry(self, timeout: float = 20) -> None:
        """Until the registry answers `GET /v2/` with 200, asked from node1's namespace
        (one Python there polls: the machine's namespace cannot reach the address)."""
        process = self.registry_process
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited ({process.returncode}):\n{self.registry_log_tail()}"
            )
        probe = (
            "import sys, time, urllib.request\n"
            "deadline = time.monotonic() + float(sys.argv[2])\n"
            "while True:\n"
            "    try:\n"
            "        with urllib.request.urlopen(sys.argv[1], timeout=1) as r:\n"
            "            sys.exit(0 if r.status == 200 else 2)\n"
            "    except OSError:\n"
            "        if time.monotonic() > deadline:\n"
            "            sys.exit(1)\n"
            "        time.sleep(0.02)\n"
        )
        url = f"http://{self.registry}/v2/"
        done = self.nodes[0].host.run(
            sys.executable, "-c", probe, url, str(timeout), check=False, timeout=timeout + 10
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"the registry did not answer on {url} within {timeout} s "
                f"({done.returncode}: {done.stderr.strip()}):\n{self.registry_log_tail()}"
            )

    def registry_catalog(self) -> dict[str, list[str]]:
        """{repository: [tags]} the registry holds (asked from node1's namespace)."""
        if not self.registry:
            raise RuntimeError("this bed has no registry: SwarmBed(registry=True)")
        script = (
            "import json, sys, urllib.request\n"
            "base = sys.argv[1]\n"
            "def get(path):\n"
            "    with urllib.request.urlopen(base + path, timeout=5) as r:\n"
            "        return json.load(r)\n"
            "repos = get('/v2/_catalog')['repositories'] or []\n"
            "print(json.dumps({r: get(f'/v2/{r}/tags/list')['tags'] or [] for r in repos}))\n"
        )
        done = self.nodes[0].host.run(sys.executable, "-c", script, f"http://{self.registry}")
        found: dict[str, list[str]] = json.loads(done.stdout)
        return found

    def _stop_registry(self) -> None:
        process, self.registry_process = self.registry_process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=5)

    # -- swarm ---------------------------------------------------------------------------

    def _form_swarm(self) -> None:
        manager = self.manager
        api = self.client(manager)
        spec = api.create_swarm_spec(dispatcher_heartbeat_period=int(self.heartbeat * 1e9))
        api.init_swarm(
            advertise_addr=manager.address,
            listen_addr=f"{manager.address}:2377",
            swarm_spec=spec,
            default_addr_pool=[ADDR_POOL],
            subnet_size=24,
        )
        self.join_tokens = dict(api.inspect_swarm()["JoinTokens"])
        manager.node_id = api.info()["Swarm"]["NodeID"]

        def join(node: SwarmNode) -> None:
            worker = self.client(node)
            worker.join_swarm(
                [f"{manager.address}:2377"],
                self.join_tokens["Worker"],
                listen_addr=f"{node.address}:2377",
                advertise_addr=node.address,
            )
            node.node_id = worker.info()["Swarm"]["NodeID"]

        _parallel(join, self.workers)
        self.wait_ready()

    # -- state ---------------------------------------------------------------------------

    def node_states(self) -> dict[str, str]:
        """The manager's view: {node name: "ready" | "down" | "unknown" | ...}."""
        seen = {n["ID"]: n["Status"]["State"] for n in self.client(self.manager).nodes()}
        return {node.name: seen.get(node.node_id, "absent") for node in self.nodes}

    def wait_state(
        self, state: str, nodes: Iterable[SwarmNode | str | int] | None = None, timeout: float = 30
    ) -> float:
        """Wait until the manager sees `nodes` (default: all) in `state`; the seconds taken."""
        names = [self.node(n).name for n in (self.nodes if nodes is None else nodes)]
        began = time.monotonic()

        def reached() -> bool:
            states = self.node_states()
            return all(states[name] == state for name in names)

        try:
            wait_until(reached, timeout, 0.1, f"nodes {names} {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the manager sees {self.node_states()}") from None
        return time.monotonic() - began

    def wait_ready(
        self, nodes: Iterable[SwarmNode | str | int] | None = None, timeout: float = 30
    ) -> float:
        return self.wait_state("ready", nodes, timeout)

    # -- images --------------------------------------------------------------------------

    def load_image(self, tag: str, nodes: Sequence[SwarmNode | str | int] | None = None) -> None:
        """Copy image `tag` from the machine's main Docker Engine onto `nodes` (default:
        all), in parallel. The tar is saved once per bed."""
        if tag not in self._saved:
            import docker

            host = docker.from_env()
            try:
                self._saved[tag] = b"".join(host.api.get_image(tag))
            finally:
                host.close()
        data = self._saved[tag]

        def load(node: SwarmNode) -> None:
            for message in self.client(node).load_image(data):
                if "error" in message:
                    raise RuntimeError(f"loading {tag} onto {node.name}: {message['error']}")

        _parallel(load, [self.node(n) for n in (self.nodes if nodes is None else nodes)])

    # -- faults --------------------------------------------------------------------------

    def partition(self, which: SwarmNode | str | int) -> None:
        """Cut a node off the others (its dockerd keeps running)."""
        self.node(which).host.partition()

    def heal(self, which: SwarmNode | str | int | None = None) -> None:
        """Undo `partition()` of one node (default: of every node)."""
        for node in [self.node(which)] if which is not None else self.nodes:
            node.host.heal()

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Remove everything the bed made (see the module's docstring). Never raises."""
        with contextlib.suppress(Exception):
            self.heal()
        started = [node for node in self.nodes if node.process is not None]
        with contextlib.suppress(Exception):
            _parallel(self._leave, [n for n in started if n is not self.nodes[0]])
        with contextlib.suppress(Exception):
            _parallel(self._leave, [n for n in started if n is self.nodes[0]])
        for api in self._clients.values():
            with contextlib.suppress(Exception):
                api.close()
        self._clients.clear()
        with contextlib.suppress(Exception):
            _parallel(_stop_dockerd, started)
        with contextlib.suppress(Exception):
            self._stop_registry()
        if self.root is not None:
            _remove_run(self.root, [node.cgroup_parent for node in self.nodes])
        if self.fabric is not None:
            self.fabric.close()
        self.nodes, self.fabric, self.root = [], None, None
        self.join_tokens, self.registry = {}, ""

    def _leave(self, node: SwarmNode) -> None:
        """Leave the swarm and remove this node's containers (fast: no stop grace)."""
        api = self.client(node)
        with contextlib.suppress(Exception):
            api.leave_swarm(force=True)
        for container in api.containers(all=True, quiet=True):
            with contextlib.suppress(Exception):
                api.remove_container(container["Id"], force=True, v=True)

    def __enter__(self) -> SwarmBed:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parallel(function: Callable[[T], object], items: Sequence[T]) -> None:
    """`function(item)` for every item, on threads; the first error is raised."""
    if not items:
        return
    with ThreadPoolExecutor(len(items)) as pool:
        for future in [pool.submit(function, item) for item in items]:
            future.result()


def _stop_dockerd(node: SwarmNode) -> None:
    process = node.process
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=5)


# -- removal, also of the runs of dead processes -------------------------------------------


def sweep_stale() -> list[Path]:
    """Remove what runs of dead processes left (a killed pytest): their dockerds,
    containerds, shims and containers, mounts, directories and cgroups. Their namespaces
    are left to the fabric's own sweep (`netns.sweep_stale`). Returns the runs' dirs."""
    stale = []
    runs = list(SWARM_ROOT.iterdir()) if SWARM_ROOT.is_dir() else []
    for run in runs:
        match = _STALE.match(run.name)
        if match and not _alive(int(match.group(1))):
            _remove_run(run, _cgroups_of(run.name))
            stale.append(run)
    for prefix in {m.group(0) for m in map(_STALE.match, _cgroup_names()) if m}:
        if not _alive(int(prefix[len(PREFIX) : -1])):  # cgroups whose run dir is gone
            _remove_cgroups([f"/{name}" for name in _cgroup_names() if name.startswith(prefix)])
    return stale


def _remove_run(root: Path, cgroup_parents: Sequence[str]) -> None:
    """Kill every process of the run at `root`, unmount, delete its dir and cgroups."""
    with contextlib.suppress(Exception):
        _kill_naming(f"{root}/")  # the slash: dxtb1-1 must not match dxtb1-10
    with contextlib.suppress(Exception):
        _remove_cgroups(cgroup_parents)
    with contextlib.suppress(Exception):
        _unmount_under(root)
    with contextlib.suppress(Exception):
        shutil.rmtree(root, ignore_errors=True)
    with contextlib.suppress(Exception):
        _remove_cgroups(cgroup_parents)  # again: dirs busy while a killed process exited


def _kill_naming(text: str) -> None:
    """SIGKILL every process whose command line names `text` (dockerd, containerd and
    the shims: a shim outlives its containerd, reparented to init)."""
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)


def _cgroup_names() -> list[str]:
    """The top-level cgroups (of the pids controller) named like ours."""
    base = _controller_dir()
    if base is None:
        return []
    return [p.name for p in base.iterdir() if p.is_dir() and _STALE.match(p.name)]


def _cgroups_of(run: str) -> list[str]:
    return [f"/{name}" for name in _cgroup_names() if name.startswith(f"{run}-")]


def _controller_dir() -> Path | None:
    """The cgroup v1 hierarchy whose cgroup.procs list every process of a cgroup."""
    for name in ("pids", "memory", "cpu"):
        if (CGROUP_ROOT / name / "cgroup.procs").exists():
            return CGROUP_ROOT / name
    return None


def _remove_cgroups(parents: Sequence[str]) -> None:
    """Kill the processes in the cgroups `parents` (containers: in other namespaces,
    children of shims) and remove those cgroups from every hierarchy."""
    base = _controller_dir()
    for parent in parents:
        if base is not None:
            for procs in (base / parent.lstrip("/")).rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
        for hierarchy in CGROUP_ROOT.iterdir():
            top = hierarchy / parent.lstrip("/")
            if not top.is_dir():
                continue
            # Deepest first: a cgroup with children cannot be removed.
            children = [p for p in top.rglob("*") if p.is_dir()]
            for directory in sorted(children, key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def _mounts_under(root: Path) -> list[str]:
    """The mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # "\040" is a space
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_under(root: Path) -> None:
    """Lazily unmount what dockerd left under `root` (overlay layers, the nsfs bind
    mounts of network namespaces, the overlay driver's sandboxes), deepest first."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(3):  # mounts stacked on one point need a pass each
        points = _mounts_under(root)
        if not points:
            return
        for point in points:
            libc.umount2(point.encode(), _MNT_DETACH)
