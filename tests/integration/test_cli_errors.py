"""Every bad command line is one `error: ...` line naming the fix, exit 1 or 2, no traceback.

Each case runs the real CLI (`python -m dxflow ...`) in a fresh process against a real
booted engine (or none, where that is the mistake).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Booted, boot, stop_holders
from .conftest import dxflow as run

pytestmark = pytest.mark.timeout(900)


def cli(
    *args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dxflow", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        env={**os.environ, **(env or {})},
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def one_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The single error line of a failed run, after checking the exit code and the text."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "error: error:" not in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    booted = boot(tmp_path_factory.mktemp("errors") / "home")
    yield booted
    run("boot", "down", "--home", booted.home, check=False)
    stop_holders(booted.home)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- keys and URLs: what crashed before ----------------------------------------------------


def test_key_without_url_talks_to_the_local_engine_as_that_key(engine: Booted) -> None:
    home = ["--home", engine.home]
    pong = json.loads(run("ping", "--json", "--key", engine.master_key, *home).stdout)
    assert pong["identity"] == "master"
    token = cli("token", "--key", engine.master_key, *home)
    assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr
    by_env = cli("whoami", "--json", *home, env={"DXFLOW_KEY": str(engine.master_key)})
    assert by_env.returncode == 0 and json.loads(by_env.stdout)["identity"] == "master"


def test_url_without_a_scheme_is_taken_as_http(engine: Booted) -> None:
    bare = engine.url.removeprefix("http://")
    done = cli("ping", "--json", "--url", bare, "--key", engine.master_key)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["identity"] == "master"


@pytest.mark.parametrize(
    ("url", "needle"),
    [("engine.example", "http://HOST:PORT"), ("ftp://host:21", "unknown scheme ftp://")],
)
def test_an_url_that_is_no_engine_url_says_what_to_type(
    engine: Booted, url: str, needle: str
) -> None:
    one_error(cli("ping", "--url", url, "--key", engine.master_key), 2, needle)


def test_url_without_a_key_names_the_key_flag(engine: Booted) -> None:
    done = cli("ping", "--url", engine.url, env={"DXFLOW_KEY": ""})
    one_error(done, 2, "--key", "DXFLOW_KEY")


def test_missing_unreadable_and_malformed_key_files(engine: Booted, tmp_path: Path) -> None:
    home = ["--home", engine.home]
    one_error(cli("ping", "--key", tmp_path / "nope.pem", *home), 1, "cannot read the key file")
    not_pem = tmp_path / "notes.pem"
    not_pem.write_text("hello")
    not_pem.chmod(0o600)
    one_error(cli("ping", "--key", not_pem, *home), 1, "not an unencrypted PEM private key")
    one_error(cli("ping", "--key", tmp_path, *home), 2, "--key", "--help")
    if os.geteuid() != 0:  # root reads any file
        locked = tmp_path / "locked.pem"
        locked.write_text("x")
        locked.chmod(0)
        one_error(cli("ping", "--key", locked, *home), 1, "cannot read the key file")


# -- engines that are not there, or not trusted ---------------------------------------------


def test_no_engine_on_the_home_names_boot_up(tmp_path: Path) -> None:
    one_error(cli("ping", "--home", tmp_path / "nothing"), 1, "no engine is running", "boot up")


def test_connection_refused_names_the_url_and_what_to_check(engine: Booted) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = cli("ping", "--url", url, "--key", engine.master_key)
    one_error(done, 1, "cannot reach the engine at", url, "dxflow boot status")


def test_tls_verify_failure_names_the_ca_cert_flag(tmp_path: Path) -> None:
    tls = boot(tmp_path / "tls", "--tls")
    try:
        env = {"DXFLOW_HOME": str(tls.home)}
        done = cli("ping", "--url", tls.url, "--key", tls.master_key, env=env)
        cert = tls.home / "tls" / "cert.pem"
        one_error(done, 1, f"--ca-cert {cert}", "DXFLOW_CA_CERT", "--insecure")
        trusted = cli("ping", "--url", tls.url, "--key", tls.master_key, "--ca-cert", cert)
        assert trusted.returncode == 0, trusted.stderr
        by_env = cli("ping", "--url", tls.url, "--key", tls.master_key,
                     env={"DXFLOW_CA_CERT": str(cert)})  # fmt: skip
        assert by_env.returncode == 0, by_env.stderr
    finally:
        run("boot", "down", "--home", tls.home, check=False)


# -- usage mistakes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["pong"], "No such command 'pong'"),
        (["ping", "--frobnicate"], "--frobnicate"),
        (["token", "--lifetime", "soon"], "not a duration"),
        (["audit", "list", "--since", "yesterday"], "how long ago"),
        (["key", "register", "x.pub", "--identity", "a", "--permissions", "ROOT"], "ROOT"),
        (["object", "share", "a.txt", "--expires", "1 fortnight"], "--expires"),
        (["ping", "--ca-cert", "/no/such/cert.pem"], "--ca-cert"),
        (["boot", "up", "--port", "99999"], "0<=x<=65535"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(engine: Booted, args: list[str], needle: str) -> None:
    line = one_error(cli(*args, "--home", engine.home), 2, needle)
    assert "--help" in line


# -- the engine's refusals in the command line's words ---------------------------------------


def test_object_errors_name_cli_flags_not_sdk_arguments(engine: Booted, tmp_path: Path) -> None:
    home = ["--home", engine.home]
    local = tmp_path / "a.txt"
    local.write_text("a")
    run("object", "put", local, "errs/a.txt", *home)
    again = one_error(cli("object", "put", local, "errs/a.txt", *home), 1, "--overwrite")
    assert "pass overwrite" not in again
    moved = one_error(cli("object", "cp", "errs/a.txt", "errs/a.txt", *home), 1)
    assert "pass " not in moved
    full = one_error(cli("object", "rm", "errs", *home), 1, "-r")
    assert "pass recursive" not in full


@pytest.mark.parametrize(
    ("args", "flag", "words"),
    [
        (["token", "--lifetime", "0"], "--lifetime 0", "must be greater than or equal to 60"),
        (["audit", "list", "--limit", "-5"], "--limit -5", "must be greater than or equal to 1"),
        (["ps", "-p", "Bad!Name"], "--project-name Bad!Name", "lowercase letters, digits"),
        (["object", "share", "a.txt", "--expires", "0s"], "--expires 0s", "must be greater than 0"),
    ],
)
def test_refused_values_name_the_flag_not_the_request_field(
    engine: Booted, args: list[str], flag: str, words: str
) -> None:
    """What the engine's request validation refuses comes back naming the flag typed and
    its value, in plain words: no `lifetime: Input should be ...`."""
    line = one_error(cli(*args, "--home", engine.home), 1, flag, words, "--help`")
    assert "Input should" not in line and "String should" not in line


def test_a_port_out_of_range_in_the_environment_is_one_line(tmp_path: Path) -> None:
    done = cli("boot", "up", "--daemon", "--home", tmp_path / "h", env={"DXFLOW_PORT": "99999"})
    one_error(done, 1, "port must be 0-65535", "99999")


def test_cat_of_a_folder_points_at_get(engine: Booted, tmp_path: Path) -> None:
    home = ["--home", engine.home]
    local = tmp_path / "b.txt"
    local.write_text("b")
    run("object", "put", local, "catdir/b.txt", *home)
    done = cli("object", "cat", "catdir", *home)
    one_error(done, 1, "is a folder", "dxflow object get catdir")
    assert done.stdout == ""  # no zip bytes on the terminal


def test_missing_things_are_one_line(engine: Booted) -> None:
    home = ["--home", engine.home]
    one_error(cli("workflow", "ps", "no-such-workflow", *home), 1, "no-such-workflow")
    one_error(cli("object", "cat", "no/such/file", *home), 1, "no/such/file")


# -- boot ------------------------------------------------------------------------------------


def test_port_in_use_names_port_0_and_only_this_boots_lines(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "daemon.out").write_text("error: a line of an earlier boot\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        daemon = cli("boot", "up", "--daemon", "--home", home, "--port", port)
        foreground = cli("boot", "up", "--home", home, "--port", port)
    for done in (daemon, foreground):
        line = one_error(done, 1, f"127.0.0.1:{port}", "--port 0", "DXFLOW_PORT")
        assert "earlier boot" not in line


def test_boot_down_and_status_on_an_empty_home(tmp_path: Path) -> None:
    assert "no engine is running" in cli("boot", "down", "--home", tmp_path).stdout
    assert cli("boot", "status", "--home", tmp_path).returncode == 3


# -- the last resort -------------------------------------------------------------------------


def test_an_unexpected_exception_is_one_line_and_a_debug_switch(engine: Booted) -> None:
    # A command that fails in a way nobody planned for: the handler of the entry point.
    script = (
        "import dxflow._cli as c, click\n"
        "@click.command()\n"
        "def boom():\n"
        "    raise RuntimeError('kaput')\n"
        "c.cli.add_command(boom)\n"
        "c.main()\n"
    )
    argv = [sys.executable, "-c", script, "boom"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    one_error(done, 1, "internal error: RuntimeError: kaput", "DXFLOW_DEBUG=1")
    debug = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, "DXFLOW_DEBUG": "1"}
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "kaput" in debug.stderr


def test_a_group_alone_prints_its_help() -> None:
    for args in ([], ["workflow"], ["object"]):
        done = cli(*args)
        assert done.returncode == 0 and done.stdout.startswith("Usage: dxflow"), done.stderr
        assert "error" not in done.stderr
