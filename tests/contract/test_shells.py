"""Shell sessions behave the same in-process and over HTTP (WebSocket for attach)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dxflow import Conflict, Engine, InvalidRequest, NotFound, Permission, PermissionDenied, Shell
from dxflow import _operations as ops

from ..conftest import EngineFactory, KeyFactory


@pytest.fixture
def shell(engine: Engine) -> Iterator[Shell]:
    sh = engine.shells.create("t1", command="/bin/sh")
    yield sh
    for leftover in engine.shells.list():
        leftover.remove()


def test_run_returns_exit_codes_and_output(shell: Shell) -> None:
    assert shell.info.state == "running" and shell.info.pid
    ok = shell.run("echo hello; echo world")
    assert (ok.exit_code, ok.output) == (0, "hello\nworld\n")
    assert shell.run("false").exit_code == 1
    missing = shell.run("no-such-command-xyz")
    assert missing.exit_code == 127 and "not found" in missing.output
    assert shell.run("cd /tmp && pwd").output == "/tmp\n"
    assert shell.run("pwd").output == "/tmp\n"  # one session: state carries over


def test_send_expect_read_and_offsets(engine: Engine, shell: Shell) -> None:
    shell.send("echo marker-$((6 * 7))\n")
    match = shell.expect("marker-42")
    assert match.group(0) == b"marker-42"
    everything = engine._call(ops.shells.READ, name="t1")
    assert everything.offset == 0 and b"marker-42" in everything.data
    assert everything.end == len(everything.data)
    later = engine._call(ops.shells.READ, name="t1", offset=everything.end, timeout=0.05)
    assert later.data == b"" and later.offset == everything.end


def test_resize_kill_and_exit_codes(engine: Engine, shell: Shell) -> None:
    shell.resize(40, 120)
    assert shell.run("stty size").output == "40 120\n"
    assert shell.info.rows == 40 and shell.info.cols == 120
    with pytest.raises(InvalidRequest, match="rows"):
        engine._call(ops.shells.RESIZE, name="t1", rows=0, cols=10)
    with pytest.raises(InvalidRequest, match="cols"):
        engine._call(ops.shells.RESIZE, name="t1", rows=10, cols=100_000)
    quits = engine.shells.create("t2", command="/bin/sh", args=["-c", "exit 3"])
    deadline = time.monotonic() + 5
    while quits.reload().state == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (quits.info.state, quits.info.exit_code) == ("exited", 3)
    shell.kill("SIGKILL")
    assert shell.info.state == "exited" and shell.info.signal == 9
    with pytest.raises(Conflict, match="exited"):
        shell.run("echo too late")
    removed = {info.name for info in engine.shells.prune()}
    assert removed == {"t1", "t2"} and engine.shells.list() == []


def test_bad_input(engine: Engine) -> None:
    with pytest.raises(NotFound, match="no shell session 'ghost'"):
        engine.shells.get("ghost")
    failed = engine.shells.create("bad", command="/no/such/program")
    assert failed.info.state == "failed" and "/no/such/program" in (failed.info.error or "")
    assert failed.info.exit_code == 127
    with pytest.raises(Conflict, match="exists"):
        engine.shells.create("bad", command="/bin/sh")
    with pytest.raises(InvalidRequest, match="name"):
        engine._call(ops.shells.CREATE, name="../evil")
    with pytest.raises(InvalidRequest, match="signal"):
        engine._call(ops.shells.KILL, name="bad", signal="SIGNOPE")
    with pytest.raises(InvalidRequest, match="workflow"):
        engine._call(ops.shells.CREATE, workflow="!nope", service="app")
    with pytest.raises(InvalidRequest, match="service"):
        engine._call(ops.shells.CREATE, workflow="nope", service="a\x02b")
    assert [s.name for s in engine.shells.list()] == ["bad"]
    failed.remove()


def test_non_utf8_input_passes_through_as_bytes(shell: Shell) -> None:
    shell.send(b"printf '%s' '\xff\xfe' | od -An -tx1\n")
    assert shell.expect(rb"ff fe").group(0) == b"ff fe"


def test_attach_two_clients_offsets_and_exit(shell: Shell, engine: Engine) -> None:
    with shell.attach() as first, shell.attach() as second:
        assert first.hello["type"] == "hello" and first.hello["mode"] == "rw"
        first.send("echo shared-$((40 + 2))\n")
        for channel in (first, second):
            seen = b""
            while b"shared-42" not in seen:
                message = channel.recv(timeout=5)
                if isinstance(message, bytes):
                    seen += message
        resume_at = first.offset
    shell.run("echo while-away")  # output the client misses
    with shell.attach(offset=resume_at) as back:
        replay = b""
        while b"while-away\r\n" not in replay:
            message = back.recv(timeout=5)
            if isinstance(message, bytes):
                replay += message
        everything = engine._call(ops.shells.READ, name="t1")
        assert replay == everything.data[resume_at : resume_at + len(replay)]
        shell.send("exit 5\n")
        while True:
            message = back.recv(timeout=5)
            if isinstance(message, dict) and message["type"] == "exit":
                assert message["exit_code"] == 5
                break
    with shell.attach() as late:  # an exited session: its scrollback, then the exit
        kinds = []
        while "exit" not in kinds:
            message = late.recv(timeout=5)
            kinds.append("bytes" if isinstance(message, bytes) else message["type"])
        assert kinds[0] == "bytes" and kinds[-1] == "exit"


def test_read_only_keys_watch_but_never_type(
    make_engine: EngineFactory, make_key: KeyFactory, shell: Shell
) -> None:
    # An auditor (MASTER,READ_ONLY) sees every session; a SHELL,READ_ONLY key only its own
    # (see tests/security/test_shells.py for owners).
    viewer = make_engine(make_key(Permission.MASTER | Permission.READ_ONLY).private)
    assert [s.name for s in viewer.shells.list()] == ["t1"]
    stranger = make_engine(make_key(Permission.SHELL | Permission.READ_ONLY).private)
    assert stranger.shells.list() == []
    with pytest.raises(PermissionDenied, match="READ_ONLY"):
        viewer.shells.create("nope", command="/bin/sh")
    with pytest.raises(PermissionDenied, match="READ_ONLY"):
        viewer.shells.get("t1").run("echo hi")
    with viewer.shells.get("t1").attach() as channel:
        assert channel.hello["mode"] == "ro"
        channel.send("touch /tmp/viewer-typed\n")
        channel.resize(10, 10)
        errors = []
        while len(errors) < 2:
            message = channel.recv(timeout=5)
            if isinstance(message, dict) and message["type"] == "error":
                errors.append(message["error"])
        assert all("read-only" in error for error in errors)
    assert not os.path.exists("/tmp/viewer-typed")
    outsider = make_engine(make_key(Permission.OBJECT).private)
    with pytest.raises(PermissionDenied, match="SHELL"):
        outsider.shells.list()


def test_a_client_that_leaves_mid_stream_changes_nothing(shell: Shell) -> None:
    with shell.attach() as channel:
        channel.send("i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done\n")
        got = b""
        while len(got) < 10_000:  # leave while the output is still pouring out
            message = channel.recv(timeout=5)
            got += message if isinstance(message, bytes) else b""
    assert shell.expect("line-19999", timeout=30)
    assert shell.run("echo still-here").output == "still-here\n"
    deadline = time.monotonic() + 5  # the holder counts the client out once it notices
    while shell.reload().clients and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shell.info.clients == 0


def test_a_recv_that_times_out_leaves_the_channel_open(shell: Shell) -> None:
    from dxflow import TimedOut

    with shell.attach() as channel:
        with pytest.raises(TimedOut):
            while True:  # drain the replay, then wait in vain
                channel.recv(timeout=0.3)
        channel.send("echo after-$((2 + 3))\n")
        seen = b""
        while b"after-5" not in seen:
            message = channel.recv(timeout=5)
            seen += message if isinstance(message, bytes) else b""


# -- run leaves the session as if the command had been typed (issue 10) -----------------

MACHINERY = (b"__DXF", b"\x1b]633", b"(exit ")


def test_run_leaves_only_the_command_and_its_output(engine: Engine) -> None:
    sh = engine.shells.create("typed", command="/bin/sh", env={"PS1": "ready$ "})
    sh.expect("ready\\$ ")
    with sh.attach() as watcher:
        assert sh.run("echo one; echo two").output == "one\ntwo\n"
        assert sh.run("false").exit_code == 1
        assert sh.run("echo status $?").output == "status 1\n"  # $? as typed: the last one's
        assert sh.run("printf 'no newline'").output == "no newline"
        long = sh.run("echo " + "x" * 3000 + " | wc -c")  # the machinery spans several lines
        assert long.output.strip() == "3001"
        syntax = sh.run("echo 'unterminated")  # dash alone would abort the whole line
        assert syntax.exit_code != 0 and "unterminated" in syntax.output.lower()
        assert sh.run("echo after").output == "after\n"
        sh.expect("after\r\nready\\$ ")
        seen = b""
        while not seen.endswith(b"after\r\nready$ "):
            message = watcher.recv(timeout=10)
            seen += message if isinstance(message, bytes) else b""
    screen = engine._call(ops.shells.READ, name="typed").data
    assert seen == screen  # the client saw what the scrollback holds
    assert not [m for m in MACHINERY if m in screen], screen
    assert screen.startswith(
        b"ready$ echo one; echo two\r\none\r\ntwo\r\n"
        b"ready$ false\r\n"
        b"ready$ echo status $?\r\nstatus 1\r\n"
        b"ready$ printf 'no newline'\r\nno newlineready$ echo xxx"
    ), screen
    assert screen.endswith(b"ready$ echo after\r\nafter\r\nready$ ")
    assert "__DXF" not in sh.screen()  # what `Shell._repr_html_` shows in a notebook
    sh.remove()


def test_a_run_that_times_out_shows_its_output_and_the_next_run_works(engine: Engine) -> None:
    from dxflow import TimedOut

    sh = engine.shells.create("slow", command="/bin/sh", env={"PS1": "ready$ "})
    sh.expect("ready\\$ ")
    with pytest.raises(TimedOut, match="goes on running"):
        sh.run("sleep 1; echo late-$((40 + 2))", timeout=0.2)
    assert sh.run("echo next").output == "next\n"  # typed once the shell reads again
    screen = engine._call(ops.shells.READ, name="slow").data
    assert b"late-42\r\n" in screen and b"next\r\n" in screen
    assert b"\x1b]633" not in screen  # the late run's marks are stripped too
    sh.remove()


def test_create_exist_ok_and_replace(engine: Engine) -> None:
    first = engine.shells.create("again", command="/bin/sh")
    with pytest.raises(Conflict) as conflict:
        engine.shells.create("again", command="/bin/sh")
    assert "exist_ok=True" in str(conflict.value) and "replace=True" in str(conflict.value)
    assert "dxflow shell remove again" in str(conflict.value)
    same = engine.shells.create("again", command="/bin/sh", exist_ok=True)
    assert same.info.pid == first.info.pid and same.info.state == "running"
    first.run("export MARK=kept")
    assert same.run("echo $MARK").output == "kept\n"
    fresh = engine.shells.create("again", command="/bin/sh", replace=True)
    assert fresh.info.pid != first.info.pid and fresh.run("echo ${MARK:-gone}").output == "gone\n"
    fresh.send("exit 3\n")
    deadline = time.monotonic() + 10
    while fresh.reload().state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    revived = engine.shells.create("again", command="/bin/sh", exist_ok=True)  # it had ended
    assert revived.info.state == "running" and revived.info.pid != fresh.info.pid
    assert [s.name for s in engine.shells.list()] == ["again"]
    revived.remove()


def test_a_session_starts_in_the_home_through_the_server(
    engine: Engine, transport: str, tmp_path: Path
) -> None:
    sh = engine.shells.create("where", command="/bin/sh")
    here = sh.run("pwd").output.strip()
    # In-process the engine is the caller's own process: its folder. Through the server,
    # the engine user's home, never the folder the server was started from.
    assert here == (os.getcwd() if transport == "local" else os.path.expanduser("~"))
    chosen = engine.shells.create("chosen", command="/bin/sh", cwd=str(tmp_path))
    assert chosen.run("pwd").output == f"{tmp_path}\n"  # an explicit cwd wins
    sh.remove()
    chosen.remove()


SHELLS = {
    "bash": ["/bin/bash", "--norc", "--noprofile"],
    "dash": ["/bin/dash"],
    "busybox": ["/bin/busybox", "sh"],
    "zsh": ["/bin/zsh", "-f"],
}


@pytest.mark.parametrize("sdk", ["sync"], indirect=True)
@pytest.mark.parametrize("which", sorted(SHELLS))
def test_run_in_every_shell_leaves_no_machinery(engine: Engine, which: str) -> None:
    argv = SHELLS[which]
    if not os.path.exists(argv[0]):
        pytest.skip(f"{argv[0]} is not installed here")
    sh = engine.shells.create(which, command=argv[0], args=argv[1:],
                              env={"PS1": "ready$ ", "HISTFILE": "/dev/null"})  # fmt: skip
    sh.expect("ready\\$ ")
    assert sh.run("cd /tmp && echo in $(pwd)").output == "in /tmp\n"
    long = sh.run("echo " + "y" * 2000 + " | wc -c")  # several lines, each < 1 KiB
    assert (long.exit_code, long.output.strip()) == (0, "2001")
    assert sh.run("(exit 7)").exit_code == 7
    # Typed while another program runs: its output stays, the typed line does not.
    sh.send("sleep 1; echo busy-$((40+2))\n")
    assert sh.run("echo done").output == "done\n"
    sh.expect("done\r\n")
    screen = engine._call(ops.shells.READ, name=which).data
    assert b"__DXF" not in screen and b"\x1b]633" not in screen, screen
    assert b"echo done\r\ndone\r\n" in screen, screen
    assert b"cd /tmp && echo in $(pwd)\r\nin /tmp\r\n" in screen
    assert b"busy-42\r\n" in screen and screen.index(b"busy-42") < screen.index(b"echo done")
    if which == "bash":  # Up arrow: the commands as typed, nothing that carried them
        listed = sh.run("history").output.splitlines()
        assert [line.split(None, 1)[1] for line in listed][-2:] == ["echo done", "history"]
        assert not [line for line in listed if "__DXF" in line], listed
    sh.remove()
