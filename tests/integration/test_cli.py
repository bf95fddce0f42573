"""The CLI against a real engine: every command, tables and --json, keys end to end."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Booted
from .conftest import dxflow as run

# Every command is a fresh process (under a second alone, ten on a loaded machine), each
# bounded by its own 60 s; the per-test guard only catches a hang, so it allows for many.
pytestmark = pytest.mark.timeout(600)


def test_ping_info_stats_whoami(booted: Booted) -> None:
    assert "pong from dxf-" in run("ping", "--home", booted.home).stdout
    pong = json.loads(run("ping", "--home", booted.home, "--json").stdout)
    assert pong["identity"] == "master" and pong["round_trip_ms"] > 0
    info = run("info", "--home", booted.home).stdout
    assert "engine" in info and "MOUNT" in info
    data = json.loads(run("info", "--json", "--home", booted.home).stdout)
    assert data["engine_id"] == booted.runtime["engine_id"]
    assert "INTERFACE" in run("stats", "--home", booted.home).stdout
    samples = run(
        "stats", "--watch", "--interval", "0.2", "--count", "2", "--json", "--home", booted.home
    )
    assert samples.stdout.count('"time"') == 2
    assert "MASTER" in run("whoami", "--home", booted.home).stdout


def test_keys_end_to_end_through_the_url_door(booted: Booted, tmp_path: Path) -> None:
    made = json.loads(run("key", "generate", "ops", "--dir", tmp_path, "--json").stdout)
    private = Path(made["private"])
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "BEGIN PUBLIC KEY" in Path(made["public"]).read_text()
    run(
        "key",
        "register",
        made["public"],
        "--identity",
        "ops",
        "--permissions",
        "PLATFORM,READ_ONLY",
        "--home",
        booted.home,
    )
    listed = json.loads(run("key", "list", "--json", "--home", booted.home).stdout)
    assert {k["identity"]: k["permissions"] for k in listed}["ops"] == ["PLATFORM", "READ_ONLY"]
    as_ops = ["--url", booted.url, "--key", private]
    assert "as ops" in run("ping", *as_ops).stdout
    denied = run("key", "list", *as_ops, check=False)
    assert denied.returncode == 1 and "needs" in denied.stderr
    env_ping = run("ping", "--json", "--url", booted.url, "--key", private)
    assert json.loads(env_ping.stdout)["identity"] == "ops"
    rotated = json.loads(run("key", "generate", "ops2", "--dir", tmp_path, "--json").stdout)
    run("key", "rotate", "ops", rotated["public"], "--home", booted.home)
    assert run("ping", *as_ops, check=False).returncode == 1
    assert "as ops" in run("ping", "--url", booted.url, "--key", rotated["private"]).stdout
    run("key", "unregister", "ops", "--home", booted.home)
    failed = run("ping", "--url", booted.url, "--key", rotated["private"], check=False)
    assert failed.returncode == 1 and "authentication failed" in failed.stderr


def test_audit_list_filters(booted: Booted, tmp_path: Path) -> None:
    made = json.loads(run("key", "generate", "aud", "--dir", tmp_path, "--json").stdout)
    run("key", "register", made["public"], "--identity", "aud", "--home", booted.home)
    records = json.loads(
        run(
            "audit",
            "list",
            "--since",
            "10m",
            "--operation",
            "keys.register",
            "--json",
            "--home",
            booted.home,
        ).stdout
    )
    assert any(r["target"] == "aud" and r["outcome"] == "ok" for r in records)
    table = run(
        "audit", "list", "--identity", "master", "--limit", "3", "--home", booted.home
    ).stdout
    assert table.splitlines()[0].split()[:3] == ["TIME", "IDENTITY", "OPERATION"]


def test_bad_cli_input_is_a_clear_error(booted: Booted, tmp_path: Path) -> None:
    bad_lifetime = run("token", "--lifetime", "forever", "--home", booted.home, check=False)
    assert bad_lifetime.returncode == 2 and "not a duration" in bad_lifetime.stderr
    short = run("token", "--lifetime", "10s", "--home", booted.home, check=False)
    assert short.returncode == 1 and "lifetime" in short.stderr
    bad_perm = run(
        "key",
        "register",
        __file__,
        "--identity",
        "x",
        "--permissions",
        "ROOT",
        "--home",
        booted.home,
        check=False,
    )
    assert bad_perm.returncode == 2 and "unknown permission 'ROOT'" in bad_perm.stderr
    missing = run(
        "key",
        "register",
        tmp_path / "nope.pub",
        "--identity",
        "x",
        "--home",
        booted.home,
        check=False,
    )
    assert missing.returncode == 1 and "cannot read the public key file" in missing.stderr
    no_key = run("ping", "--url", booted.url, "--key", tmp_path / "absent.pem", check=False)
    assert no_key.returncode != 0
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    broken = run("ping", "--url", booted.url, "--key", garbage, check=False)
    assert broken.returncode == 1 and "not an unencrypted PEM private key" in broken.stderr
    nowhere = run("ping", "--url", "http://127.0.0.1:9", "--key", booted.master_key, check=False)
    assert nowhere.returncode == 1 and "cannot reach the engine" in nowhere.stderr
    json_error = run("key", "get", "--json", "--home", booted.home, check=False)
    assert json_error.returncode == 2  # no such command: usage error


def _shown(output: str) -> dict[str, str]:
    """A key's info as `dxflow key register/update` print it: one "name  value" a line."""
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in output.splitlines())


def _key(booted: Booted, identity: str) -> dict[str, Any] | None:
    keys = json.loads(run("key", "list", "--json", "--home", booted.home).stdout)
    return next((k for k in keys if k["identity"] == identity), None)


def _one_error_line(done: subprocess.CompletedProcess[str], flag: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert f"'{flag}'" in done.stderr, done.stderr


def test_key_run_as_and_workflow_policy_through_the_cli(booted: Booted, tmp_path: Path) -> None:
    """`key register/update --run-as --workflow-policy` (issue 8): the key's info shows
    them, "" resets them, and a profile that does not exist is one `error:` line naming
    the flag (exit 2) that registers or changes nothing."""
    made = json.loads(run("key", "generate", "ran", "--dir", tmp_path, "--json").stdout)
    home = ["--home", booted.home]
    register = ["key", "register", made["public"], "--identity", "ran"]
    _one_error_line(run(*register, "--workflow-policy", "lenient", *home, check=False),
                    "--workflow-policy")  # fmt: skip
    assert _key(booted, "ran") is None
    shown = _shown(run(*register, "--permissions", "SHELL,WORKFLOW", "--run-as", "nobody",
                       "--workflow-policy", "restricted", *home).stdout)  # fmt: skip
    try:
        assert (shown["run as"], shown["workflow policy"]) == ("nobody", "restricted"), shown
        listed = _key(booted, "ran")
        assert listed is not None
        assert (listed["run_as"], listed["workflow_policy"]) == ("nobody", "restricted")
        assert "as ran" in run("ping", "--url", booted.url, "--key", made["private"]).stdout
        update = ["key", "update", "ran", *home]
        changed = _shown(run(*update, "--run-as", "dxflow", "--workflow-policy", "baseline").stdout)
        assert (changed["run as"], changed["workflow policy"]) == ("dxflow", "baseline")
        assert changed["permissions"] == "SHELL,WORKFLOW"  # left as they were
        _one_error_line(run(*update, "--workflow-policy", "root", check=False),
                        "--workflow-policy")  # fmt: skip
        kept = _key(booted, "ran")
        assert kept is not None and (kept["run_as"], kept["workflow_policy"]) == (
            "dxflow", "baseline")  # fmt: skip
        reset = _shown(run(*update, "--run-as", "", "--workflow-policy", "").stdout)
        assert reset["run as"] == reset["workflow policy"] == "(engine default)", reset
        after = _key(booted, "ran")
        assert after is not None and (after["run_as"], after["workflow_policy"]) == (None, None)
    finally:
        run("key", "unregister", "ran", *home)
