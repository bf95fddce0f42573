"""`dxflow proxy ...` end to end: the real CLI in fresh processes against a booted engine,
tables and --json, the engine's refusals as one line naming the flag, and proxies that
come back when the engine restarts."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..integration.conftest import Booted, boot, stop_holders
from ..integration.conftest import dxflow as run

pytestmark = pytest.mark.timeout(900)

TARGET = "127.0.0.1:9"


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    engine = boot(tmp_path_factory.mktemp("proxies") / "home")
    yield engine
    run("boot", "down", "--home", engine.home, check=False)
    stop_holders(engine.home)


def proxy(booted: Booted, *args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("proxy", *args, "--home", booted.home, check=check)


def as_json(booted: Booted, *args: Any) -> Any:
    return json.loads(proxy(booted, *args, "--json").stdout)


def one_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_create_list_show_update_stats_rm(booted: Booted) -> None:
    made = as_json(booted, "create", "web", TARGET, "--rate", "100/min", "--allow", "127.0.0.1")
    assert made["name"] == "web" and made["targets"] == [TARGET] and made["rate"] == "100/min"
    assert made["url"] == f"{booted.url}/p/web/"
    line = proxy(booted, "create", "site", TARGET, "127.0.0.1:10", "--auth", "none").stdout
    assert line.startswith(f"proxy site: {booted.url}/p/site/ -> {TARGET}, 127.0.0.1:10")
    assert "nothing (public)" in line
    table = proxy(booted, "list").stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "PROTOCOL", "URL", "TARGETS"]
    assert [row.split()[0] for row in table[1:]] == ["site", "web"]
    assert [p["name"] for p in as_json(booted, "list")] == ["site", "web"]
    shown = proxy(booted, "show", "web").stdout
    assert "proxy web" in shown and "100/min per client address" in shown
    assert as_json(booted, "show", "web")["allow"] == ["127.0.0.1"]
    updated = as_json(booted, "update", "web", "--rate", "5/s", "--burst", "10",
                      "--balance", "least_conn", "--timeout", "2m")  # fmt: skip
    assert (updated["rate"], updated["burst"], updated["balance"]) == ("5/s", 10, "least_conn")
    assert updated["timeout"] == 120 and updated["targets"] == [TARGET]
    assert as_json(booted, "update", "web", "--allow", "")["allow"] == []
    stats = as_json(booted, "stats", "web")
    assert stats["name"] == "web" and stats["requests"] == 0
    assert "requests" in proxy(booted, "stats", "web").stdout
    watched = proxy(booted, "stats", "web", "--watch", "--interval", "0.2", "--count", "2",
                    "--json").stdout.strip().splitlines()  # fmt: skip
    assert len(watched) == 2 and all(json.loads(s)["name"] == "web" for s in watched)
    assert proxy(booted, "rm", "web", "site").stdout.splitlines() == ["removed web", "removed site"]
    assert "no proxies" in proxy(booted, "list").stdout
    one_error(proxy(booted, "show", "web", check=False), 1, "web")


def test_tcp_and_a_workflow_service(booted: Booted) -> None:
    db = as_json(booted, "create", "db", TARGET, "--tcp", "--port", "0")
    assert db["protocol"] == "tcp" and db["auth"] == "none" and db["port"] > 0
    assert db["url"] == f"tcp://127.0.0.1:{db['port']}"
    one_error(proxy(booted, "create", "app", "--workflow", "nope", "--service", "web",
                    "--service-port", "80", check=False), 1, "nope")  # fmt: skip
    proxy(booted, "rm", "db")


def test_access_links(booted: Booted) -> None:
    proxy(booted, "create", "app", TARGET, "--auth", "link")
    made = as_json(booted, "link", "app", "--expires", "30m")
    assert made["url"].startswith(f"{booted.url}/p/app/") and "dxflow_link=" in made["url"]
    shown = proxy(booted, "link", "app").stdout
    assert "dxflow_link=" in shown and "expires" in shown
    listed = proxy(booted, "links", "app").stdout
    assert made["id"] in listed and "dxflow_link" not in listed  # the table keeps secrets
    assert proxy(booted, "unlink", "app", made["id"]).stdout.strip() == (
        f"revoked link {made['id']} of proxy app"
    )
    one_error(proxy(booted, "unlink", "app", "nosuchlink", check=False), 1, "nosuchlink")
    proxy(booted, "rm", "app")


def test_the_engine_s_refusals_name_the_flag_and_change_nothing(booted: Booted) -> None:
    proxy(booted, "create", "kept", TARGET)
    before = as_json(booted, "list")
    one_error(proxy(booted, "create", "kept", TARGET, check=False), 1, "exists already",
              "--exist-ok")  # fmt: skip
    one_error(proxy(booted, "create", "bad", TARGET, "--rate", "fast", check=False), 1,
              "--rate:", "COUNT/UNIT")  # fmt: skip
    one_error(proxy(booted, "create", "bad", "nowhere", check=False), 1, "TARGET:")
    one_error(proxy(booted, "create", "bad", TARGET, "--burst", "5", check=False), 1,
              "--burst:")  # fmt: skip
    one_error(proxy(booted, "create", "Bad_Name", TARGET, check=False), 1, "NAME:")
    one_error(proxy(booted, "update", "kept", "--rate", "1/fortnight", check=False), 1,
              "--rate:")  # fmt: skip
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        one_error(proxy(booted, "create", "bad", TARGET, "--port", port, check=False), 1,
                  "--port:", "in use")  # fmt: skip
    one_error(proxy(booted, "create", "bad", TARGET, "--allow", "10.0.0.300/8", check=False),
              2, "--allow")  # fmt: skip
    assert as_json(booted, "list") == before
    again = as_json(booted, "create", "kept", "127.0.0.1:10", "--exist-ok")
    assert again["targets"] == ["127.0.0.1:10"]
    proxy(booted, "rm", "kept")


def test_health_checks_with_their_thresholds(booted: Booted) -> None:
    made = as_json(booted, "create", "checked", TARGET, "--health-path", "/health",
                   "--health-interval", "10", "--health-timeout", "1.5",
                   "--health-unhealthy", "4", "--health-healthy", "3")  # fmt: skip
    assert made["health"] == {"path": "/health", "interval": 10, "timeout": 1.5,
                              "healthy": 3, "unhealthy": 4}  # fmt: skip
    # An update changes the flags given; the check's other settings stay.
    updated = as_json(booted, "update", "checked", "--health-timeout", "3")
    assert updated["health"] == {**made["health"], "timeout": 3}
    tcp = as_json(booted, "update", "checked", "--health-path", "", "--health-healthy", "1")
    assert tcp["health"] == {**made["health"], "timeout": 3, "path": None, "healthy": 1}
    # A threshold alone: a TCP connect check with the engine's defaults for the rest.
    plain = as_json(booted, "create", "plain", TARGET, "--health-unhealthy", "5")
    assert plain["health"] == {"path": None, "interval": 5, "timeout": 2, "healthy": 2,
                               "unhealthy": 5}  # fmt: skip

    before = as_json(booted, "list")
    for flag, value, code in [
        ("--health-timeout", "0", 2),  # the command line's own checks: exit 2
        ("--health-timeout", "soon", 2),
        ("--health-unhealthy", "0", 2),
        ("--health-healthy", "many", 2),
        ("--health-healthy", "101", 2),
        ("--health-timeout", "2m", 1),  # the engine's limits (at most 60 s): exit 1
        ("--health-interval", "0.1", 1),
    ]:
        one_error(proxy(booted, "create", "bad", TARGET, flag, value, check=False), code, flag)
        one_error(proxy(booted, "update", "checked", flag, value, check=False), code, flag)
    assert as_json(booted, "list") == before
    proxy(booted, "rm", "checked", "plain")


def test_json_errors_are_the_engine_s_envelope(booted: Booted) -> None:
    done = proxy(booted, "create", "bad", TARGET, "--rate", "fast", "--json", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert json.loads(done.stderr)["error"]["code"] == "invalid_request"


def test_proxies_come_back_when_the_engine_restarts(tmp_path: Path) -> None:
    engine = boot(tmp_path / "home")
    try:
        made = as_json(engine, "create", "db", TARGET, "--tcp", "--port", "0")
        as_json(engine, "create", "web", TARGET, "--rate", "10/s")
        run("boot", "down", "--home", engine.home)
        engine = boot(engine.home)
        listed = {p["name"]: p for p in as_json(engine, "list")}
        assert sorted(listed) == ["db", "web"]
        assert listed["db"]["port"] == made["port"] and listed["web"]["rate"] == "10/s"
        assert listed["web"]["url"] == f"{engine.url}/p/web/"
    finally:
        run("boot", "down", "--home", engine.home, check=False)
        stop_holders(engine.home)


def test_proxy_names_complete(booted: Booted) -> None:
    from ..integration.test_cli_complete import complete

    proxy(booted, "create", "alpha", TARGET)
    proxy(booted, "create", "beta", TARGET)
    try:
        assert complete(booted, "dxflow proxy show ") == ["alpha", "beta"]
        assert complete(booted, "dxflow proxy stats al") == ["alpha"]
        assert complete(booted, "dxflow proxy rm alpha b") == ["beta"]
    finally:
        proxy(booted, "rm", "alpha", "beta")


def test_a_stats_watch_ends_quietly_on_ctrl_c(booted: Booted) -> None:
    import signal
    import sys

    proxy(booted, "create", "watched", TARGET)
    try:
        watch = subprocess.Popen(
            [sys.executable, "-m", "dxflow", "proxy", "stats", "watched", "--watch",
             "--interval", "0.2", "--home", str(booted.home)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert watch.stdout is not None
        assert "proxy watched" in watch.stdout.readline()  # a sample is on screen
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=60)
        assert watch.returncode == 130 and "Traceback" not in err and err.strip() == "", err
    finally:
        proxy(booted, "rm", "watched")
