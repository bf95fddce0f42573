"""The holder's side of `run` (hiding the machinery, stripping marks) and the CLI's
detach keys, on bytes given by hand."""

from __future__ import annotations

import pytest

from dxflow._cli._terminal import _DetachKeys, describe_keys, parse_detach_keys
from dxflow._core._shells._holder_runs import Run, Runs
from dxflow._core._shells._script import RunScript


def _started() -> tuple[Runs, Run, RunScript]:
    script = RunScript("echo hi")
    runs = Runs()
    runs.queue.append(Run.parse("client", script.request()))
    run = runs.next()
    assert run is not None and run.input == script.lines()
    return runs, run, script


def _marks(script: RunScript, code: int) -> tuple[bytes, bytes]:
    tag = script.tag.encode()
    return b"\x1b]633;dxflow;" + tag + b";S\x07", b"\x1b]633;dxflow;" + tag + b";E;%d\x07" % code


def test_an_idle_shell_shows_the_command_as_typed_and_its_output() -> None:
    runs, run, script = _started()
    start, end = _marks(script, 3)
    echo = script.lines().replace(b"\n", b"\r\n")
    shown, done = runs.output(echo[:50], end=100)
    assert (shown, done) == (b"", [])  # the machinery's echo: hidden
    shown, done = runs.output(echo[50:] + start + b"hi\r\n" + end[:7], end=100)
    assert shown == b"echo hi\r\nhi\r\n" and done == []  # a mark cut in two waits
    shown, done = runs.output(end[7:] + b"P$ ", end=100 + len(shown))
    assert shown == b"P$ " and runs.current is None
    assert done == [(run, {"exit_code": 3, "start": 109, "end": 113})]


def test_a_busy_shell_keeps_the_other_programs_output() -> None:
    runs, _, script = _started()
    start, end = _marks(script, 0)
    typed = script.lines().replace(b"\n", b"\r\n")  # the terminal echoes typed-ahead keys
    shown, _ = runs.output(b"make: 1\r\n" + typed + b"make: 2\r\n", end=0)
    assert shown == b"make: 1\r\nmake: 2\r\n"
    wrapped = typed[:40] + b"\r\r\n" + typed[40:]  # the line editor's echo, wrapped
    shown, done = runs.output(b"P$ " + wrapped + start + b"hi\r\n" + end + b"P$ ", end=18)
    assert shown == b"P$ echo hi\r\nhi\r\nP$ " and done[0][1]["exit_code"] == 0


def test_a_prompt_after_typed_ahead_input_keeps_its_last_space() -> None:
    """A loaded machine: the next run's input is echoed by the terminal before the shell
    prints its prompt, and the prompt comes alone. Its trailing space may start a line
    editor's echo (a space and the tag), so it is held; at the start mark it shows."""
    runs, _, script = _started()
    start, end = _marks(script, 0)
    typed = script.lines().replace(b"\n", b"\r\n")
    shown, _ = runs.output(typed, end=0)
    assert shown == b""
    shown, _ = runs.output(b"ready$ ", end=0)
    assert shown == b"ready$"  # the space waits: " __DXF..." may follow
    shown, done = runs.output(start + b"hi\r\n" + end, end=6)
    assert shown == b" echo hi\r\nhi\r\n" and done[0][1]["exit_code"] == 0


def test_marks_of_abandoned_runs_are_stripped_and_the_hidden_output_shown() -> None:
    runs, _, script = _started()
    echo = script.lines()[:30]  # the line editor's echo, held until the start mark
    assert runs.output(echo, end=0) == (b"", [])
    assert runs.abandon("client") == echo  # its client gave up: nothing is lost
    assert runs.current is None
    start, end = _marks(script, 0)
    assert runs.output(start + b"late\r\n" + end + b"P$ ", end=10) == (b"late\r\nP$ ", [])
    plain = b"\x1b]0;a title\x07 and \x1b[1mbold\x1b[0m"
    assert runs.output(plain, end=20) == (plain, [])  # other escape sequences pass


def test_hiding_is_bounded() -> None:
    runs, run, script = _started()
    flood = script.lines()[:20] + b"x" * (run.limit + 1)  # no end to the line editor's echo
    shown, _ = runs.output(flood, end=0)
    assert shown == flood and not run.hiding


def test_continuation_prompts_of_a_long_machinery_are_dropped() -> None:
    script = RunScript("echo " + "z" * 600)
    runs = Runs()
    runs.queue.append(Run.parse("client", script.request()))
    runs.next()
    start, end = _marks(script, 0)
    lines = script.lines().count(b"\n")
    typed = script.lines().replace(b"\n", b"\r\n")
    shown, _ = runs.output(typed + b"> " * (lines - 1) + start + b"ok\r\n" + end, end=0)
    assert shown == script.echo().encode() + b"ok\r\n"


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("ctrl-]", b"\x1d"),
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("q", b"q"),
        ("ctrl-@,ctrl-_", b"\0\x1f"),
    ],
)
def test_detach_keys_are_parsed_as_docker_does(text: str, keys: bytes) -> None:
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-1", "", "ab", "ctrl-", "alt-x", "ctrl-p,,ctrl-q"])
def test_bad_detach_keys_say_what_a_key_is(text: str) -> None:
    with pytest.raises(ValueError, match="is not a detach key"):
        parse_detach_keys(text)


def test_a_detach_sequence_that_breaks_off_is_typed() -> None:
    keys = _DetachKeys(b"\x10\x11")
    assert keys.feed(b"ab\x10") == (b"ab", False)  # held: it may be the start
    assert keys.feed(b"x\x10\x10") == (b"\x10x\x10", False)
    assert keys.feed(b"\x11rest") == (b"", True)
    assert describe_keys("ctrl-p,ctrl-q") == "Ctrl-P Ctrl-Q"


def test_an_older_holder_is_read_through_the_marks() -> None:
    # A holder started by an older dxflow strips nothing: the engine finds the marks.
    script = RunScript("echo hi")
    start, end = _marks(script, 4)
    typed = script.lines().replace(b"\n", b"\r\n")
    assert script.result(typed + start + b"hi\r\n") is None
    assert script.result(typed + start + b"hi\r\n" + end + b"P$ ") == (4, "hi\n")


def test_the_echo_is_the_command_as_a_terminal_shows_it() -> None:
    assert RunScript("a\tb\x03\nc").echo() == "a\tb^C\r\n> c\r\n"
    long = RunScript("x" * 1000).lines()
    assert long.count(b"\n") > 3 and max(map(len, long.split(b"\n"))) < 1000
