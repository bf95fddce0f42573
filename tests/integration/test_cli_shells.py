"""`dxflow shell ...` against a booted engine, as real processes (and real PTYs)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Booted
from .conftest import dxflow as run

# Every command is a fresh process (under a second alone, ten on a loaded machine), each
# bounded by its own 60 s; the per-test guard only catches a hang, so it allows for many.
pytestmark = pytest.mark.timeout(600)

PROMPT = "ready$ "


def sessions(booted: Booted) -> dict[str, dict[str, Any]]:
    listed = json.loads(run("shell", "list", "--json", "--home", booted.home).stdout)
    return {info["name"]: info for info in listed}


def wait_for(booted: Booted, name: str, **expected: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        info = sessions(booted)[name]
        if all(info[key] == value for key, value in expected.items()):
            return info
        assert time.monotonic() < deadline, f"{name}: {info} is not {expected}"
        time.sleep(0.1)


def create_sh(booted: Booted, name: str, *extra: str) -> None:
    """A /bin/sh session with a known prompt."""
    run("shell", "create", name, "-e", f"PS1={PROMPT}", *extra, "--home", booted.home,
        "--", "/bin/sh")  # fmt: skip


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_tty() -> None:  # in the child, after setsid (start_new_session)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The CLI on a real PTY (its controlling terminal): what it prints, what we type."""

    def __init__(self, *args: str | Path, rows: int = 30, cols: int = 100) -> None:
        self.master, self.slave = os.openpty()
        set_size(self.slave, rows, cols)
        self.cooked = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dxflow", *map(str, args)],
            stdin=self.slave, stdout=self.slave, stderr=self.slave,
            start_new_session=True, preexec_fn=_controlling_tty,
        )  # fmt: skip
        self.seen = b""

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.seen += os.read(self.master, 1 << 16)
            except OSError:  # EIO: nobody has the terminal open any more
                time.sleep(timeout)

    def expect(self, text: str | bytes, timeout: float = 20) -> None:
        wanted = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} did not appear; last output: {self.seen[-400:]!r}"
            self._read(min(left, 0.2))

    def type(self, data: str | bytes) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running; output: {self.seen[-400:]!r}"
            self._read(0.05)
        self._read(0.05)
        return self.proc.returncode

    def is_raw(self) -> bool:
        lflag = termios.tcgetattr(self.slave)[3]
        return not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)

    def restored(self) -> bool:
        return termios.tcgetattr(self.slave) == self.cooked

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def connect(opened: list[Terminal], booted: Booted, name: str, *args: str) -> Terminal:
    terminal = Terminal("shell", "connect", name, *args, "--home", booted.home)
    opened.append(terminal)
    terminal.expect(PROMPT)  # the replayed scrollback: connected, in raw mode
    return terminal


def connect_until_exit(booted: Booted, name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`connect` from a pipe that stays open: only the session's exit ends it."""
    home = ["--home", str(booted.home)]
    cmd = [sys.executable, "-m", "dxflow", "shell", "connect", name, *args, *home]
    stdin, keep_open = os.pipe()
    try:
        return subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=60)
    finally:
        os.close(stdin)
        os.close(keep_open)


# -- the commands -------------------------------------------------------------------------


def test_create_list_and_run_exit_codes(booted: Booted) -> None:
    home: list[str | Path] = ["--home", booted.home]
    made = run("shell", "create", "r1", "--rows", "30", "--cols", "90", "--cwd", "/tmp",
               "-e", "GREETING=hello", *home, "--", "/bin/sh").stdout  # fmt: skip
    assert re.search(r"^name\s+r1$", made, re.M) and re.search(r"^state\s+running$", made, re.M)
    assert re.search(r"^command\s+/bin/sh$", made, re.M) and "30x90" in made
    table = run("shell", "list", *home).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "PID", "COMMAND", "CREATED", "CLIENTS", "EXIT",
                                "CODE"]  # fmt: skip
    row = next(line for line in table if line.startswith("r1 "))
    assert row.split()[1:2] == ["running"] and "/bin/sh" in row
    ok = run("shell", "run", "r1", *home, "--", 'echo "$GREETING from $(pwd)"')
    assert ok.stdout == "hello from /tmp\n"
    assert run("shell", "run", "r1", "echo", "two", "words", *home).stdout == "two words\n"
    failed = run("shell", "run", "r1", *home, "--", "false", check=False)
    assert failed.returncode == 1 and failed.stdout == ""
    missing = run("shell", "run", "r1", *home, "--", "no-such-command-xyz", check=False)
    assert missing.returncode == 127 and "not found" in missing.stdout
    coded = run("shell", "run", "r1", "--json", *home, "--", "echo out; (exit 42)", check=False)
    assert coded.returncode == 42
    assert json.loads(coded.stdout) == {"exit_code": 42, "output": "out\n"}
    info = json.loads(run("shell", "create", "r2", "--json", *home, "--", "/bin/sh").stdout)
    assert info["name"] == "r2" and info["state"] == "running" and info["pid"] > 0
    assert info["command"] == ["/bin/sh"] and (info["rows"], info["cols"]) == (24, 80)
    run("shell", "remove", "r1", "r2", *home)


def test_kill_remove_and_prune(booted: Booted) -> None:
    home: list[str | Path] = ["--home", booted.home]
    run("shell", "create", "k1", *home, "--", "sleep", "600")
    run("shell", "create", "k2", *home, "--", "/bin/sh")
    run("shell", "create", "k3", *home, "--", "/bin/sh", "-c", "exit 3")
    run("shell", "create", "k4", *home, "--", "/bin/sh")
    termed = run("shell", "kill", "k1", *home).stdout
    assert termed == "sent SIGTERM to k1: it was killed by SIGTERM\n"
    killed = json.loads(run("shell", "kill", "k2", "--signal", "KILL", "--json", *home).stdout)
    assert (killed["state"], killed["signal"], killed["exit_code"]) == ("exited", 9, None)
    wait_for(booted, "k3", state="exited", exit_code=3)
    row = next(line for line in run("shell", "list", *home).stdout.splitlines() if "k2 " in line)
    assert row.split()[1] == "exited" and row.split()[-1] == "SIGKILL"
    again = run("shell", "kill", "k1", *home, check=False)
    assert again.returncode == 1 and "has exited" in again.stderr
    bad = run("shell", "kill", "k4", "--signal", "SIGNOPE", *home, check=False)
    assert bad.returncode == 1 and "signal" in bad.stderr
    pruned = run("shell", "prune", *home).stdout.splitlines()
    assert sorted(pruned) == ["removed k1 (was killed by SIGTERM)",
                              "removed k2 (was killed by SIGKILL)",
                              "removed k3 (exited with code 3)"]  # fmt: skip
    assert set(sessions(booted)) == {"k4"}
    assert run("shell", "prune", *home).stdout == "no ended sessions\n"
    assert run("shell", "prune", "--json", *home).stdout.strip() == "[]"
    gone = run("shell", "remove", "k4", "ghost", *home, check=False)
    assert gone.returncode == 1 and gone.stdout == "removed k4\n"
    assert gone.stderr == "error: no shell session 'ghost'\n"
    assert sessions(booted) == {}


def test_failed_create_unknown_sessions_and_bad_input(booted: Booted) -> None:
    home: list[str | Path] = ["--home", booted.home]
    failed = run("shell", "create", "bad", *home, "--", "/no/such/cmd", check=False)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "shell 'bad' failed to start" in failed.stderr and "/no/such/cmd" in failed.stderr
    assert sessions(booted)["bad"]["state"] == "failed"
    as_json = run("shell", "create", "bad2", "--json", *home, "--", "/no/such/cmd", check=False)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["state"] == "failed"
    twice = run("shell", "create", "bad", *home, "--", "/bin/sh", check=False)
    assert twice.returncode == 1 and "exists" in twice.stderr
    for command in (["run", "ghost", *home, "--", "true"], ["kill", "ghost", *home],
                    ["remove", "ghost", *home], ["connect", "ghost", *home]):  # fmt: skip
        done = run("shell", *command, check=False)
        assert (done.returncode, done.stderr) == (1, "error: no shell session 'ghost'\n")
    envelope = run("shell", "run", "ghost", "--json", *home, "--", "true", check=False)
    assert json.loads(envelope.stderr)["error"]["code"] == "not_found"
    usage = run("shell", "create", "e1", "-e", "NOEQUALS", *home, check=False)
    assert usage.returncode == 2 and "'NOEQUALS' is not KEY=VALUE" in usage.stderr
    idle = run("shell", "create", "e1", "--idle-timeout", "soon", *home, check=False)
    assert idle.returncode == 2 and "not a duration" in idle.stderr
    connected = connect_until_exit(booted, "bad")
    assert connected.returncode == 127
    assert connected.stderr.endswith(
        b"[bad exited with code 127: command not found: /no/such/cmd]\n"
    )
    assert "bad" in run("shell", "prune", *home).stdout
    assert sessions(booted) == {}


def test_idle_timeout_ends_a_session_without_clients(booted: Booted) -> None:
    run("shell", "create", "idle", "--idle-timeout", "1", "--home", booted.home, "--", "/bin/sh")
    info = wait_for(booted, "idle", state="exited")
    assert "idle timeout" in (info["error"] or "")
    run("shell", "remove", "idle", "--home", booted.home)


# -- connect ------------------------------------------------------------------------------


def test_connect_types_detaches_and_the_session_goes_on(
    booted: Booted, terminals: list[Terminal]
) -> None:
    create_sh(booted, "c1")
    term = connect(terminals, booted, "c1")
    assert term.is_raw()
    term.type("echo hi-$((1+1))\r")
    term.expect("hi-2")
    term.type("stty size\r")
    term.expect("30 100")  # this terminal's size, sent on connect
    term.type("sleep 30\r")
    time.sleep(0.3)
    term.type(b"\x03")  # Ctrl-C goes to the session (raw mode), not to the CLI
    term.type("echo after-$((2+2))\r")
    term.expect("after-4", timeout=10)
    set_size(term.slave, 40, 120)  # SIGWINCH: the session follows
    wait_for(booted, "c1", rows=40, cols=120, clients=1)
    term.type(b"\x1d")
    assert term.wait() == 0
    assert b"detached from c1 (the session keeps running)" in term.seen
    assert term.restored()
    assert wait_for(booted, "c1", clients=0)["state"] == "running"
    assert run("shell", "run", "c1", "--home", booted.home, "--", "stty size").stdout == "40 120\n"
    again = connect(terminals, booted, "c1")
    again.expect("after-4")  # the scrollback is replayed
    again.type("exit 3\r")
    assert again.wait() == 3
    assert b"[c1 exited with code 3]" in again.seen
    assert again.restored()
    run("shell", "remove", "c1", "--home", booted.home)


def test_connect_restores_the_terminal_on_a_signal(
    booted: Booted, terminals: list[Terminal]
) -> None:
    create_sh(booted, "c2")
    term = Terminal("shell", "connect", "c2", "--offset", "999999", "--home", booted.home)
    terminals.append(term)
    term.expect("[error: attach: offset 999999 is beyond the end of the output")  # live from now
    assert term.is_raw()
    term.proc.send_signal(signal.SIGTERM)
    assert term.wait() == 128 + signal.SIGTERM
    assert term.restored()
    assert wait_for(booted, "c2", clients=0)["state"] == "running"
    run("shell", "remove", "c2", "--home", booted.home)


def test_connect_without_a_terminal(booted: Booted, tmp_path: Path) -> None:
    create_sh(booted, "p1")
    marker = tmp_path / "typed"
    cmd = [sys.executable, "-m", "dxflow", "shell", "connect", "p1", "--home", str(booted.home)]
    piped = subprocess.run(cmd, input=f"touch {marker}\n".encode(), capture_output=True,
                           timeout=60)  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert b"detached from p1 (the session keeps running)" in piped.stderr
    assert run("shell", "run", "p1", "--home", booted.home, "--", f"ls {marker}").stdout
    assert marker.exists()
    run("shell", "remove", "p1", "--home", booted.home)


def test_connect_reports_lost_scrollback_and_the_exit(booted: Booted) -> None:
    script = "head -c 3000000 /dev/zero | tr '\\0' x; exit 7"
    run("shell", "create", "m1", "--home", booted.home, "--", "/bin/sh", "-c", script)
    wait_for(booted, "m1", state="exited")
    done = connect_until_exit(booted, "m1", "--offset", "0")
    assert done.returncode == 7, done.stderr
    lost = re.search(rb"\[\.\.\. (\d+) bytes of scrollback were lost \.\.\.\]", done.stderr)
    assert lost and int(lost.group(1)) + len(done.stdout) == 3_000_000
    assert done.stdout == b"x" * len(done.stdout) and len(done.stdout) == 2 << 20
    assert done.stderr.endswith(b"[m1 exited with code 7]\n")
    run("shell", "remove", "m1", "--home", booted.home)


def test_connect_with_a_read_only_key_watches(
    booted: Booted, terminals: list[Terminal], tmp_path: Path
) -> None:
    made = json.loads(run("key", "generate", "viewer", "--dir", tmp_path, "--json").stdout)
    # An auditor: a SHELL,READ_ONLY key sees only its own sessions (it can make none).
    run("key", "register", made["public"], "--identity", "viewer",
        "--permissions", "MASTER,READ_ONLY", "--home", booted.home)  # fmt: skip
    create_sh(booted, "v1")
    term = Terminal("shell", "connect", "v1", "--url", booted.url, "--key", made["private"])
    terminals.append(term)
    term.expect("read-only")
    term.type("touch /tmp/never\r")
    run("shell", "run", "v1", "--home", booted.home, "--", "echo from-$((3*3))")
    term.expect("from-9")  # the viewer sees what others do
    term.type(b"\x1d")
    assert term.wait() == 0 and term.restored()
    assert b"touch /tmp/never" not in term.seen
    run("shell", "remove", "v1", "--home", booted.home)


# -- issue 10: run leaves no machinery, detach keys, exist-ok / replace ------------------


def test_run_leaves_no_machinery_in_bash_history_or_a_connected_terminal(
    booted: Booted, terminals: list[Terminal]
) -> None:
    home: list[str | Path] = ["--home", booted.home]
    run("shell", "create", "hist", "-e", f"PS1={PROMPT}", "-e", "HISTFILE=/dev/null", *home,
        "--", "/bin/bash", "--norc", "--noprofile")  # fmt: skip
    term = connect(terminals, booted, "hist")
    assert b"attached to hist; detach with Ctrl-]" in term.seen
    assert run("shell", "run", "hist", *home, "--", "echo first-$((1+1))").stdout == "first-2\n"
    assert run("shell", "run", "hist", *home, "--", "cd /tmp && echo moved").stdout == "moved\n"
    term.expect(f"moved\r\n\x1b[?2004h{PROMPT}")  # bash's prompt turns bracketed paste on
    # The Up arrow brings back the command as typed, not what carried it.
    term.type(b"\x1b[A")
    term.expect("cd /tmp && echo moved", timeout=10)
    term.type(b"\x15")  # Ctrl-U: clear the line again
    listed = run("shell", "run", "hist", *home, "--", "history").stdout
    entries = [line.split(None, 1)[1] for line in listed.splitlines()]
    assert entries == ["echo first-$((1+1))", "cd /tmp && echo moved", "history"], listed
    term.expect("history\r\n    1  echo first-$((1+1))\r\n")  # shown as if typed here too
    term.type(b"\x1d")
    assert term.wait() == 0
    replay = connect(terminals, booted, "hist")  # what a client connecting later is shown
    replay.expect("history\r\n")
    replay.type(b"\x1d")
    assert replay.wait() == 0
    for seen in (term.seen, replay.seen):
        assert b"__DXF" not in seen and b"\x1b]633" not in seen, seen
        assert b"echo first-$((1+1))\r\nfirst-2\r\n" in seen
    run("shell", "remove", "hist", *home)


def test_connect_detach_keys(booted: Booted, terminals: list[Terminal]) -> None:
    create_sh(booted, "dk")
    term = Terminal("shell", "connect", "dk", "--detach-keys", "ctrl-p,ctrl-q",
                    "--home", booted.home)  # fmt: skip
    terminals.append(term)
    term.expect(PROMPT)
    assert b"detach with Ctrl-P Ctrl-Q" in term.seen
    term.type(b"\x1d")  # Ctrl-] is an ordinary key now; Ctrl-P then x is typed as it is
    term.type(b"\x10x")
    term.type(b"\x15echo still-$((2+3))\r")
    term.expect("still-5")
    term.type(b"\x10\x11")
    assert term.wait() == 0 and term.restored()
    assert b"detached from dk (the session keeps running)" in term.seen
    bad = run("shell", "connect", "dk", "--detach-keys", "ctrl-1", "--home", booted.home,
              check=False)  # fmt: skip
    assert bad.returncode == 2 and "'ctrl-1' is not a detach key" in bad.stderr
    run("shell", "remove", "dk", "--home", booted.home)


def test_create_exist_ok_and_replace(booted: Booted) -> None:
    home: list[str | Path] = ["--home", booted.home]
    first = json.loads(run("shell", "create", "re", "--json", *home, "--", "/bin/sh").stdout)
    again = run("shell", "create", "re", *home, "--", "/bin/sh", check=False)
    assert again.returncode == 1 and "--exist-ok" in again.stderr and "--replace" in again.stderr
    same = json.loads(
        run("shell", "create", "re", "--exist-ok", "--json", *home, "--", "/bin/sh").stdout
    )
    assert same["pid"] == first["pid"]
    fresh = json.loads(
        run("shell", "create", "re", "--replace", "--json", *home, "--", "/bin/sh").stdout
    )
    assert fresh["pid"] != first["pid"] and fresh["state"] == "running"
    assert run("shell", "run", "re", *home, "--", "pwd").stdout == f"{Path.home()}\n"
    run("shell", "remove", "re", *home)


def test_shell_names_complete(booted: Booted) -> None:
    create_sh(booted, "comp-one")
    env = {**os.environ, "DXFLOW_HOME": str(booted.home), "_DXFLOW_COMPLETE": "bash_complete"}
    for words in ("dxflow shell connect comp", "dxflow shell run comp", "dxflow shell remove c"):
        done = subprocess.run(
            [sys.executable, "-m", "dxflow"], capture_output=True, text=True, timeout=60,
            env={**env, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)},
        )  # fmt: skip
        assert "plain,comp-one" in done.stdout.splitlines(), (words, done.stdout, done.stderr)
    run("shell", "remove", "comp-one", "--home", booted.home)
