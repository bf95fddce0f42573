"""`dxflow proxy ...` without an engine: every mistake the command line can see itself is
one `error: ...` line naming the flag to fix (exit 2), before any engine is opened; the
engine's own refusals are translated back into flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dxflow._cli import main
from dxflow._cli.proxies import _flag_message, _watch
from dxflow._exceptions import Conflict, InvalidRequest


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(autouse=True)
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home with no engine: a command that got as far as opening one would fail
    differently (exit 1, "not running"), so these prove the check comes first."""
    monkeypatch.setenv("DXFLOW_HOME", str(tmp_path / "home"))
    for name in ("DXFLOW_URL", "DXFLOW_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["create", "web"], ["TARGET", "--workflow W --service S --service-port P"]),
        (["create", "web", "a:1", "--workflow", "etl"], ["TARGET and --workflow"]),
        (["create", "web", "--workflow", "etl"], ["--workflow needs --service, --service-port"]),
        (["create", "web", "--service-port", "80"], ["--service-port needs --workflow"]),
        (["create", "web", "a:1", "--service-port", "0"], ["--service-port"]),
        (["create", "web", "a:1", "--allow", "10.0.0.300/8"], ["--allow", "not an address"]),
        (["create", "web", "a:1", "--deny", "nowhere"], ["--deny", "CIDR"]),
        (["create", "web", "a:1", "--timeout", "forever"], ["--timeout", "not a duration"]),
        (["create", "web", "a:1", "--connect-timeout", "0"], ["--connect-timeout", "more than 0"]),
        (["create", "web", "a:1", "--health-interval", "x"], ["--health-interval"]),
        (["create", "web", "a:1", "--health-timeout", "0"], ["--health-timeout", "more than 0"]),
        (["update", "web", "--health-unhealthy", "0"], ["--health-unhealthy"]),
        (["update", "web", "--health-healthy", "x"], ["--health-healthy"]),
        (["create", "web", "a:1", "--balance", "random"], ["--balance", "round_robin"]),
        (["create", "web", "a:1", "--auth", "password"], ["--auth"]),
        (["create", "web", "a:1", "--rate-key", "user"], ["--rate-key"]),
        (["create", "web", "a:1", "--burst", "0"], ["--burst"]),
        (["create", "web", "a:1", "--retries", "11"], ["--retries"]),
        (["create", "web", "a:1", "--port", "70000"], ["--port"]),
        (["create", "db", "a:1", "--tcp"], ["--tcp needs --port"]),
        (["create", "web", "a:1", "--tls"], ["--tls needs --port"]),
        (["create", "web", "a:1", "--port", "0", "--tls-cert", "c.pem"], ["--tls-key"]),
        (["update", "web"], ["nothing to update"]),
        (["update", "web", "--max-connections", "-1"], ["--max-connections"]),
        (["link", "web", "--expires", "never"], ["--expires", "not a duration"]),
        (["stats", "web", "--interval", "0"], ["--interval", "more than 0"]),
        (["unlink", "web"], ["ID"]),
        (["rm"], ["NAME"]),
    ],
)
def test_a_bad_command_line_names_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], needles: list[str]
) -> None:
    line = one_error(capsys, ["proxy", *argv])
    for needle in needles:
        assert needle in line, (needle, line)


def test_without_an_engine_the_error_says_how_to_start_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = one_error(capsys, ["proxy", "list"], code=1)
    assert "boot up" in line


@pytest.mark.parametrize(
    ("errors", "says"),
    [
        ([{"field": "rate", "message": "'fast' is not a rate"}], "--rate: 'fast' is not a rate"),
        ([{"field": "allow.0", "message": "bad CIDR"}], "--allow: bad CIDR"),
        ([{"field": "targets.1", "message": "public address"}], "TARGET: public address"),
        ([{"field": "service_port", "message": "too big"}], "--service-port: too big"),
        ([{"field": "health.interval", "message": "too short"}], "--health-interval: too short"),
        ([{"field": "health.timeout", "message": "x"}], "--health-timeout: x"),
        ([{"field": "health.unhealthy", "message": "x"}], "--health-unhealthy: x"),
        ([{"field": "health.healthy", "message": "x"}], "--health-healthy: x"),
        ([{"field": "health", "message": "x"}], "--health-*: x"),
        ([{"field": "verify", "message": "x"}], "--no-verify: x"),
        ([{"field": "protocol", "message": "x"}], "--tcp: x"),
    ],
)
def test_the_engine_s_field_names_become_flags(errors: list[dict[str, str]], says: str) -> None:
    assert _flag_message(InvalidRequest("invalid request: ...", errors=errors)) == says


def test_a_refusal_without_fields_keeps_its_message() -> None:
    assert _flag_message(InvalidRequest("port 80 is in use")) == "port 80 is in use"
    named = InvalidRequest("'x' is not a CIDR", field="deny")
    assert _flag_message(named) == "--deny: 'x' is not a CIDR"
    taken = Conflict("port: 127.0.0.1:80 is in use; give port=0", field="port")
    assert _flag_message(taken) == "--port: 127.0.0.1:80 is in use; give port=0"
    assert _flag_message(Conflict("name: taken", field="name")) == "NAME: taken"


def test_a_piped_watch_prints_one_sample_after_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from .test_proxy_sdk import stats

    _watch(iter([stats(), stats()]), as_json=False)
    out = capsys.readouterr().out
    assert out.count("proxy a") == 2 and "\x1b[" not in out
    _watch(iter([stats(), stats()]), as_json=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("{") for line in lines)


def test_the_proxy_commands_load_no_heavy_module() -> None:
    script = (
        "import sys\nimport dxflow._cli.proxies\n"
        "print(sorted(m for m in ('pydantic', 'httpx', 'cryptography', 'anyio', 'docker')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_watch_on_a_terminal_redraws_in_place(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dxflow._cli import proxies

    from .test_proxy_sdk import stats

    monkeypatch.setattr(proxies, "is_terminal", lambda: True)
    _watch(iter([stats(), stats()]), as_json=False)
    out = capsys.readouterr().out
    assert out.count("\x1b[H\x1b[2J") == 2 and out.count("proxy a") == 2
