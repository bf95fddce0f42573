"""A master and one agent on this machine: a token, a join, the agent's API through the master.

    python examples/bridges.py

Two engines, each `dxflow boot up --daemon` on a temporary home of its own and a free
loopback port: the master, and an agent that joins it with a token and dials it. Then,
from the master only: the agent's object store and a shell on it (`bridge.engine`), and
`engine.fleet.map` over every agent. Both engines are stopped at the end, whatever
happens. On real machines the agent runs elsewhere: see docs/bridges.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dxflow


def cli(*args: str | Path) -> str:
    """Run `dxflow ARGS...` in a process of its own (as a person in a terminal would)."""
    done = subprocess.run(
        [sys.executable, "-m", "dxflow", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise SystemExit(f"dxflow {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


def wait_connected(master: dxflow.Engine, name: str, timeout: float = 30) -> dxflow.Bridge:
    """The agent `name`, once its link to the master is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            bridge = master.bridges.get(name)
            if bridge.status == "connected":
                return bridge
        except dxflow.NotFound:  # not joined yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the agent {name} did not connect within {timeout:g} s")
        time.sleep(0.2)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dxflow-bridges-") as scratch:
        master_home, agent_home = Path(scratch, "master"), Path(scratch, "agent")
        booted: list[Path] = []
        try:
            # The master: an engine like any other (here on loopback; on a network,
            # `--host 0.0.0.0` or the address agents reach).
            cli("boot", "up", "--daemon", "--home", master_home, "--port", "0")
            booted.append(master_home)
            url = json.loads(cli("boot", "status", "--home", master_home, "--json"))["url"]
            print(f"master up at {url}")

            with dxflow.Engine.from_home(master_home) as master:
                # A join token (MASTER): one agent, for ten minutes, labelled.
                token = master.bridges.token(expires="10m", uses=1, labels={"site": "example"})
                print(f"join token for {token.uses} agent(s), master {token.fingerprint}")

                # The agent joins with it and dials the master; nothing listens for it.
                allow = "OBJECT,SHELL,PLATFORM"  # what the master may do there (no WORKFLOW)
                cli("boot", "up", "--daemon", "--home", agent_home, "--port", "0",
                    "--join", token.token, "--name", "lab-1", "--allow", allow)  # fmt: skip
                booted.append(agent_home)
                bridge = wait_connected(master, "lab-1")
                print(f"agent {bridge.name}: {bridge.status}, labels {bridge.labels}, "
                      f"allows {','.join(bridge.info.allow)}")  # fmt: skip
                print(f"  its host: {bridge.info.facts.cpus} CPUs, {bridge.info.facts.gpus} GPUs")

                # The agent's own API, through the master: its store, not the master's.
                remote = bridge.engine
                remote.objects.pipe("notes/hello.txt", b"written through the master\n")
                print(f"agent's object: {remote.objects.cat('notes/hello.txt').decode().strip()}")
                try:
                    master.objects.cat("notes/hello.txt")
                except dxflow.NotFound:
                    print("master's store: no such object (it is the agent's)")

                # A shell on the agent's host, through the master.
                result = remote.shells.create("example", exist_ok=True).run("echo $((6 * 7))")
                print(f"agent's shell: output {result.output.strip()!r}, exit {result.exit_code}")
                remote.shells.get("example").remove()

                # What the agent does not allow is refused there, whoever asks (MASTER too).
                try:
                    remote.workflows.list()
                except dxflow.PermissionDenied:
                    print(f"workflows on the agent: refused (it allows {allow})")

                # Every agent at once: each one's value or error, none hidden.
                results = master.fleet.map(lambda agent: agent.ping().engine_id)
                print(f"fleet.map ping: ok {sorted(results.ok)}, errors {sorted(results.errors)}")

                print(cli("bridge", "list", "--home", master_home).rstrip())
        finally:
            for home in reversed(booted):  # the agent first, then its master
                subprocess.run([sys.executable, "-m", "dxflow", "boot", "down", "--home", home],
                               capture_output=True, timeout=60, check=False)  # fmt: skip
        print("both engines stopped")


if __name__ == "__main__":
    main()
