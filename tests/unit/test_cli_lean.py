"""The CLI's lean parts: its command table, its fast path's paths, URLs, the token cache."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import click
import pytest

from dxflow._cli import COMMANDS, cli
from dxflow._cli._boot import HEALTH_PATH
from dxflow._cli._common import normalize_url
from dxflow._cli._lean import LEAN, Record
from dxflow._exceptions import UsageError
from dxflow._operations import OPERATIONS
from dxflow._tokens import RENEW_MARGIN, TokenCache


def test_every_registered_command_loads() -> None:
    ctx = click.Context(cli, info_name="dxflow")
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name, name


def test_the_lean_paths_are_the_tables_and_only_reads() -> None:
    for name, path in LEAN.items():
        op = OPERATIONS[name]
        assert (op.method, op.path) == ("GET", path), name
        assert not op.mutating and op.kind == "call", name
    health = OPERATIONS["engine.health"]
    assert (health.method, health.path) == ("GET", HEALTH_PATH)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:7519", "http://127.0.0.1:7519"),
        ("localhost:7419", "http://localhost:7419"),
        ("[::1]:7419", "http://[::1]:7419"),
        ("https://node:7419", "https://node:7419"),
        ("unix:///tmp/e.sock", "unix:///tmp/e.sock"),
        ("/tmp/h/run/engine.sock", "unix:///tmp/h/run/engine.sock"),
    ],
)
def test_urls_without_a_scheme(given: str, url: str) -> None:
    assert normalize_url(given) == url


@pytest.mark.parametrize("given", ["node", "ftp://node:21", "node:port", "http//x:1"])
def test_urls_that_are_no_urls_say_what_to_type(given: str) -> None:
    with pytest.raises(UsageError, match="http://"):
        normalize_url(given)


def test_the_token_cache_is_private_and_named_by_url_and_key(tmp_path: Path) -> None:
    cache = TokenCache.of("unix:///h/run/engine.sock", b"key one", tmp_path)
    assert cache.load() is None
    cache.store("t.o.k", time.time() + 3600)
    assert cache.load() == ("t.o.k", pytest.approx(time.time() + 3600, abs=5))
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    assert TokenCache.of("unix:///h/run/engine.sock", b"key two", tmp_path).load() is None
    assert TokenCache.of("http://127.0.0.1:7419", b"key one", tmp_path).load() is None
    cache.drop()
    assert cache.load() is None


def test_the_token_cache_ignores_stale_widened_and_foreign_files(tmp_path: Path) -> None:
    cache = TokenCache.of("http://e:1", b"k", tmp_path)
    cache.store("soon", time.time() + RENEW_MARGIN / 2)
    assert cache.load() is None  # expires within the margin: a fresh handshake instead
    cache.store("fine", time.time() + 3600)
    os.chmod(cache.path, 0o644)
    assert cache.load() is None  # readable by others: never trusted
    os.chmod(cache.path, 0o600)
    cache.path.write_text("not json")
    assert cache.load() is None


def test_the_token_cache_prunes_expired_tokens_of_other_engines(tmp_path: Path) -> None:
    old = TokenCache.of("http://gone:1", b"k", tmp_path)
    old.store("old", time.time() + 3600)
    old.path.write_text(json.dumps({"token": "old", "expires": time.time() - 10}))
    TokenCache.of("http://here:1", b"k", tmp_path).store("new", time.time() + 3600)
    assert not old.path.exists()


def test_a_record_reads_like_a_model() -> None:
    record = Record({"name": "a", "created_at": "2026-01-02T03:04:05Z", "items": [{"x": 1}]})
    assert record.name == "a" and record.items[0].x == 1
    assert record.created_at.year == 2026 and record.created_at.tzinfo is not None
    assert record.model_dump(mode="json")["created_at"] == "2026-01-02T03:04:05Z"
    with pytest.raises(AttributeError):
        _ = record.missing


def test_the_command_modules_load_no_heavy_module() -> None:
    import subprocess
    import sys

    modules = ["_boot", "_common", "_complete", "_engine", "_keys", "_lean", "objects"]
    script = (
        "import sys\n"
        + "".join(f"import dxflow._cli.{m}\n" for m in modules)
        + "print(sorted(m for m in ('pydantic', 'httpx', 'cryptography', 'anyio', 'docker')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
