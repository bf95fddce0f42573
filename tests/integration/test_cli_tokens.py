"""The CLI's token cache against a real engine: one handshake for many commands, a
private file per engine and key, dropped and replaced when the engine refuses it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Booted, boot, stop_holders
from .conftest import dxflow as run

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    booted = boot(tmp_path_factory.mktemp("tokens") / "home")
    yield booted
    run("boot", "down", "--home", booted.home, check=False)
    stop_holders(booted.home)


def cli(cache: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "dxflow", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DXFLOW_CACHE_DIR": str(cache)},
    )
    assert done.returncode == 0, done.stderr
    return done


def verifies(cache: Path, engine: Booted, identity: str = "master") -> int:
    args = ["--operation", "auth.verify", "--identity", identity, "--json", "--home", engine.home]
    return len(json.loads(cli(cache, "audit", "list", *args).stdout))


def test_many_commands_sign_in_once(engine: Booted, tmp_path: Path) -> None:
    home = ["--home", engine.home]
    before = verifies(tmp_path, engine)  # this first command signs in (and caches)
    for args in (["ping"], ["whoami"], ["workflow", "list"], ["key", "list"], ["info"]):
        cli(tmp_path, *args, *home)
    assert verifies(tmp_path, engine) == before  # no handshake, no audit record more
    files = list((tmp_path / "tokens").iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    token = json.loads(files[0].read_text())["token"]
    logs = engine.home / "logs"
    for log in logs.iterdir():
        assert token not in log.read_text(errors="replace"), log


def test_a_refused_token_is_dropped_and_replaced(engine: Booted, tmp_path: Path) -> None:
    home = ["--home", engine.home]
    cli(tmp_path, "ping", *home)
    (cached,) = (tmp_path / "tokens").iterdir()
    forged = {"token": "not.a.token", "expires": time.time() + 3600}
    cached.write_text(json.dumps(forged))  # keeps its 0600 mode
    listed = json.loads(cli(tmp_path, "workflow", "list", "--json", *home).stdout)
    assert isinstance(listed, list)  # the lean path met a 401 and the SDK signed in
    assert json.loads(cached.read_text())["token"] != "not.a.token"
    cached.write_text(json.dumps(forged))
    cli(tmp_path, "key", "list", *home)  # the SDK path: a 401, one handshake, retried
    assert json.loads(cached.read_text())["token"] != "not.a.token"
    logs = "".join(log.read_text(errors="replace") for log in (engine.home / "logs").iterdir())
    assert "not.a.token" not in logs


def test_each_key_and_url_has_its_own_token(engine: Booted, tmp_path: Path) -> None:
    home = ["--home", engine.home]
    made = json.loads(run("key", "generate", "cachy", "--dir", tmp_path / "k", "--json").stdout)
    run("key", "register", made["public"], "--identity", "cachy", "--permissions", "OBJECT", *home)
    cache = tmp_path / "cache"
    cli(cache, "ping", *home)
    as_cachy = cli(cache, "whoami", "--json", "--url", engine.url, "--key", made["private"])
    assert json.loads(as_cachy.stdout)["identity"] == "cachy"
    cli(cache, "whoami", "--url", engine.url, "--key", made["private"])
    assert len(list((cache / "tokens").iterdir())) == 2
    assert verifies(cache, engine, "cachy") == 1


def test_a_read_with_a_cached_token_loads_no_sdk(engine: Booted, tmp_path: Path) -> None:
    """Nor click or YAML: the fast path answers before them (see test_cli_fast.py)."""
    cli(tmp_path, "ping", "--home", engine.home)  # caches the token
    script = (
        "import atexit, sys\n"
        "heavy = ('click', 'pydantic', 'httpx', 'cryptography', 'anyio', 'yaml')\n"
        "atexit.register(lambda: print('heavy:', [m for m in heavy if m in sys.modules],"
        " file=sys.stderr))\n"
        "from dxflow._cli import main\n"
        f"main(['workflow', 'list', '--home', {str(engine.home)!r}])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DXFLOW_CACHE_DIR": str(tmp_path)},
    )
    assert done.returncode == 0 and "NAME" in done.stdout, done.stderr
    assert "heavy: []" in done.stderr
