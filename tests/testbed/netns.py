"""Hosts of our own: one network namespace per host, all on one bridge.

Layout (measured facts in /work/shared/TESTBEDS.md)::

    namespace dxtb<pid>-<n>-sw           namespace dxtb<pid>-<n>-<host>
    br0 ── p1 ═══════ veth ═══════════ eth0 {subnet}.1/24   (hosts[0])
       ├── p2 ═══════ veth ═══════════ eth0 {subnet}.2/24   (hosts[1])
       └── ...

- The bridge lives in a "switch" namespace of its own: a bridge in the machine's own
  namespace drops the traffic, because Docker sets the FORWARD policy there to DROP and
  bridged frames pass through it.
- Interface names are per namespace, so they stay short (`p1`, `eth0`: the kernel allows
  15 characters). Namespace names carry `dxtb<pid>-`, so runs and pytest workers never
  collide, and `sweep_stale()` (called when a fabric starts) deletes the namespaces of
  runs whose process is gone (a killed pytest).
- Processes run in a namespace through `nsenter --net=/run/netns/NAME`, not `ip netns
  exec`: the latter remounts /sys, hiding the cgroup mounts, while nsenter keeps every
  mount of the machine. All namespaces share one filesystem (and one hostname).
- The machine's own namespace does not reach the hosts' addresses, and needs not: the
  tests run their clients inside a namespace (`host.run(sys.executable, "-c", ...)`) or,
  the main way to drive an engine, talk to its unix socket: a socket in the engine's home
  is a file on the shared filesystem, reachable from the test process directly.
- Faults: `partition()` takes the switch side of the host's veth down (silent: packets
  vanish both ways; `heal()` brings it back, ~0.5 s until frames flow again);
  `drop_from(other)` drops, in this host's INPUT chain, what comes from `other` (one way);
  `loss(p)` drops incoming packets at random with probability `p` (iptables `statistic`:
  there is no netem). `clear_faults()` undoes all three. Delays: `delay.DelayProxy`.
- Cleanup runs even when the set-up or the test fails: the processes started through
  `Host.popen` (their process groups) are killed, then any process still inside a
  namespace, then the namespaces are deleted (which deletes their veths and the bridge).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["CommandFailed", "Fabric", "Host", "netns_names", "netns_pids", "sweep_stale"]

PREFIX = "dxtb"
_STALE = re.compile(rf"^{PREFIX}(\d+)-")
_counter = itertools.count(1)


class CommandFailed(subprocess.CalledProcessError):
    """A command failed: its message carries what it printed, unlike CalledProcessError's."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}"


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command of the machine (not in a namespace); raise CommandFailed on failure."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        raise CommandFailed(done.returncode, argv, done.stdout, done.stderr)
    return done


def netns_names() -> list[str]:
    """The network namespaces `ip netns` knows ("NAME (id: N)" lines: the first word)."""
    out = sh("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(name: str) -> list[int]:
    """The processes inside namespace `name` (none if it is gone)."""
    done = sh("ip", "netns", "pids", name, check=False)
    return [int(word) for word in done.stdout.split() if word.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_netns(name: str) -> None:
    """Kill what still runs inside `name`, then delete it (its veths go with it)."""
    for pid in netns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    sh("ip", "netns", "del", name, check=False)


def sweep_stale() -> list[str]:
    """Delete the namespaces `dxtb<pid>-*` whose pid no longer runs; return their names."""
    stale = []
    for name in netns_names():
        match = _STALE.match(name)
        if match and not _alive(int(match.group(1))):
            _delete_netns(name)
            stale.append(name)
    return stale


class Host:
    """One host of a fabric: a namespace with `eth0` at `address` on the fabric's bridge."""

    def __init__(self, fabric: Fabric, name: str, index: int, address: str) -> None:
        self.fabric = fabric
        self.name = name
        self.index = index
        self.address = address
        self.netns = f"{fabric.prefix}{name}"
        self.port = f"p{index}"
        """The switch side of this host's veth pair (in the switch namespace)."""
        self._loss: list[str] | None = None

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.address}, netns={self.netns!r})"

    @property
    def nsenter(self) -> list[str]:
        """The prefix that runs a command in this host's namespace."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"]

    def run(
        self, *argv: str | os.PathLike[str], check: bool = True, timeout: float = 30, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in this namespace to its end; its output captured as text."""
        command = [*self.nsenter, *map(str, argv)]
        kw.setdefault("stdin", subprocess.DEVNULL)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kw)
        if check and done.returncode != 0:
            raise CommandFailed(done.returncode, command, done.stdout, done.stderr)
        return done

    def popen(
        self, *argv: str | os.PathLike[str], env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[Any]:
        """Start a command in this namespace (in a session of its own); the fabric kills
        its process group at cleanup. nsenter execs the command: the pid is the command's."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        process = subprocess.Popen([*self.nsenter, *map(str, argv)], env=env, **kw)
        self.fabric._processes.append(process)
        return process

    def pids(self) -> list[int]:
        """Every process now inside this host's namespace."""
        return netns_pids(self.netns)

    # -- faults --------------------------------------------------------------------------

    def partition(self) -> None:
        """Cut this host off the bridge, silently: its packets vanish, both ways."""
        sh("ip", "-n", self.fabric.switch, "link", "set", self.port, "down")

    def heal(self) -> None:
        """Undo `partition()` (frames flow again after about half a second)."""
        sh("ip", "-n", self.fabric.switch, "link", "set", self.port, "up")

    def _iptables(self, *args: str) -> None:
        self.run("iptables", "-w", "5", *args)

    def drop_from(self, other: Host) -> None:
        """Drop, here, the packets that come from `other` (one way: ours still reach it)."""
        self._iptables("-A", "INPUT", "-i", "eth0", "-s", other.address, "-j", "DROP")

    def loss(self, probability: float) -> None:
        """Drop each packet that comes in on eth0 with `probability` (replaces an earlier
        loss; 0 removes it)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"a probability is within [0, 1], not {probability}")
        if self._loss is not None:
            self._iptables("-D", *self._loss)
            self._loss = None
        if probability > 0:
            rule = ["INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random"]
            rule += ["--probability", f"{probability:.6f}", "-j", "DROP"]
            self._iptables("-A", *rule)
            self._loss = rule

    def clear_faults(self) -> None:
        """Remove every drop and loss rule of this host and heal a partition."""
        self._iptables("-F", "INPUT")
        self._loss = None
        self.heal()


class Fabric:
    """Hosts on one bridge, as a context manager (`start()`/`close()` without one).

    `Fabric(["master", "a1"])`: host i (from 0) has the address `{subnet}.{i + 1}`.
    """

    def __init__(self, hosts: Sequence[str], subnet: str = "10.213.4") -> None:
        if not hosts or len(set(hosts)) != len(hosts):
            raise ValueError(f"a fabric needs distinct host names, not {hosts!r}")
        if len(hosts) > 250:
            raise ValueError("at most 250 hosts on one /24")
        self.prefix = f"{PREFIX}{os.getpid()}-{next(_counter)}-"
        self.switch = f"{self.prefix}sw"
        self.subnet = subnet
        self.hosts = [Host(self, name, i + 1, f"{subnet}.{i + 1}") for i, name in enumerate(hosts)]
        self._by_name = {host.name: host for host in self.hosts}
        self._processes: list[subprocess.Popen[Any]] = []
        self._closers: list[Callable[[], object]] = []
        self._created: list[str] = []
        self.started = False

    def host(self, name: str) -> Host:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no host {name!r} in this fabric: {list(self._by_name)}") from None

    def __getitem__(self, name: str) -> Host:
        return self.host(name)

    def namespaces(self) -> list[str]:
        """The names of this fabric's namespaces (switch first)."""
        return [self.switch, *(host.netns for host in self.hosts)]

    def start(self) -> Fabric:
        sweep_stale()
        try:
            self._add_netns(self.switch)
            ip_sw = ["ip", "-n", self.switch]
            sh(*ip_sw, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
            sh(*ip_sw, "link", "set", "br0", "up")
            for host in self.hosts:
                self._add_netns(host.netns)
                sh(*ip_sw, "link", "add", host.port, "type", "veth",
                   "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
                sh(*ip_sw, "link", "set", host.port, "master", "br0", "up")
                ip_h = ["ip", "-n", host.netns]
                sh(*ip_h, "addr", "add", f"{host.address}/24", "dev", "eth0")
                sh(*ip_h, "link", "set", "eth0", "up")
                sh(*ip_h, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        self.started = True
        return self

    def _add_netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self._created.append(name)

    def on_close(self, callback: Callable[[], object]) -> None:
        """Call `callback` first thing at `close()` (last registered, first called)."""
        self._closers.append(callback)

    def close(self) -> None:
        """Call the `on_close` callbacks, kill the processes started through the hosts,
        then delete the namespaces. Never raises (what fails is left to `sweep_stale()`
        of a later run)."""
        while self._closers:
            with contextlib.suppress(Exception):
                self._closers.pop()()
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self._processes.clear()
        for name in reversed(self._created):
            with contextlib.suppress(Exception):
                _delete_netns(name)
        self._created.clear()
        self.started = False

    def __enter__(self) -> Fabric:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def wait_until(predicate: Any, timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll `predicate()` until it returns something truthy (returned) or `timeout` passes
    (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what or predicate}")
        time.sleep(interval)


REPO = Path(__file__).resolve().parents[2]
"""The checkout's root: subprocesses import this checkout's `dxflow` and `tests` from it."""
