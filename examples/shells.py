"""Shell sessions that outlive their clients: run commands, watch, detach, come back.

    python examples/shells.py                      # in-process engine on DXFLOW_HOME
    DXFLOW_URL=http://127.0.0.1:7419 DXFLOW_KEY=~/.dxflow/keys/master.pem \\
        python examples/shells.py                  # a booted (or remote) engine
"""

from __future__ import annotations

import time

import dxflow


def main() -> None:
    with dxflow.Engine.from_env() as engine:
        for old in engine.shells.list():  # a previous run's session
            if old.name == "example":
                old.remove()
        sh = engine.shells.create("example", command="/bin/sh", rows=30, cols=100)
        print(f"session {sh.name}: pid {sh.info.pid}, {sh.info.state}")

        # Commands run in one session: state (the directory, variables) carries over.
        print("cd:", sh.run("cd /tmp && export GREETING=hello").exit_code)
        print(
            "pwd:",
            sh.run("pwd").output.strip(),
            "| $GREETING:",
            sh.run("echo $GREETING").output.strip(),
        )
        print("exit codes:", [sh.run(cmd).exit_code for cmd in ("true", "false", "no-such-cmd")])

        # A long job keeps running while nobody watches...
        sh.send("for i in 1 2 3; do echo tick $i; sleep 0.2; done\n")
        with sh.attach() as channel:
            first = b""
            while b"tick 1" not in first:
                message = channel.recv(timeout=10)
                first += message if isinstance(message, bytes) else b""
            resume_at = channel.offset
        print("detached after 'tick 1' at offset", resume_at)

        # ...and a client that comes back with its offset gets exactly what it missed.
        sh.expect("tick 3")
        with sh.attach(offset=resume_at) as channel:
            missed = b""
            while b"tick 3" not in missed:
                message = channel.recv(timeout=10)
                missed += message if isinstance(message, bytes) else b""
        print("missed while away:", [line for line in missed.decode().split() if line.isdigit()])

        sh.send("exit 4\n")
        while sh.reload().state == "running":
            time.sleep(0.05)
        print(f"exited with code {sh.info.exit_code}")
        sh.remove()


if __name__ == "__main__":
    main()
