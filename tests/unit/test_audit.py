"""Audit retention: old records go, recent ones stay, and a bad setting is refused."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._core._audit import AuditLog
from dxflow._core._state import State
from dxflow._exceptions import ConfigError


def _operations(state: State) -> list[str]:
    return [row["operation"] for row in state.query("SELECT operation FROM audit ORDER BY id")]


def test_records_older_than_the_retention_are_pruned(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    log = AuditLog(state)  # retention 0: for ever
    log.record(None, "keys.register", "ok")
    log.record(None, "objects.write", "ok")
    long_ago = time.time() - 31 * 86400
    state.execute("UPDATE audit SET time = ? WHERE operation = 'keys.register'", (long_ago,))
    assert log.prune() == 0 and _operations(state) == ["keys.register", "objects.write"]

    # The next start-up, with a 30-day retention: the core's background work prunes.
    assert AuditLog(state, retention=30 * 86400).prune() == 1

    assert _operations(state) == ["objects.write"]


def test_a_bad_retention_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = dataclasses.replace(load_config(tmp_path / "home"), audit_retention="soon")
    with pytest.raises(ConfigError, match=r"audit_retention: 'soon' is not a duration"):
        EngineCore(config)
