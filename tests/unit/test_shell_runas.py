"""Which OS user a host session of a key that is not MASTER runs as, and when it cannot.

The engine's own uid is faked here (the suite runs as root); tests/security/test_shells.py
runs real sessions as the run-as user.
"""

from __future__ import annotations

import os
import pwd

import pytest

from dxflow import EngineUnavailable, InvalidRequest, Permission
from dxflow._core import Identity
from dxflow._core._shells import _runas
from dxflow._core._shells._runas import container_env_file, login_shell, resolve_run_as

ALICE = Identity("alice", Permission.SHELL)
NOBODY = pwd.getpwnam("nobody")


def test_the_key_user_else_the_engine_default() -> None:
    assert resolve_run_as(ALICE, "nobody").uid == NOBODY.pw_uid
    mapped = Identity("bob", Permission.SHELL, run_as="nobody")
    assert resolve_run_as(mapped, "no-such-default").name == "nobody"


def test_a_missing_user_names_useradd_and_run_as() -> None:
    with pytest.raises(EngineUnavailable) as missing:
        resolve_run_as(ALICE, "no-such-user-x")
    assert "useradd --system --create-home --shell /bin/bash no-such-user-x" in str(missing.value)
    assert "dxflow key update alice --run-as USER" in str(missing.value)
    assert missing.value.status == 503 and missing.value.details == {"user": "no-such-user-x"}


def test_never_root() -> None:
    with pytest.raises(EngineUnavailable, match="never runs as root"):
        resolve_run_as(ALICE, "root")


def test_an_engine_that_is_not_root_runs_sessions_only_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_runas.os, "geteuid", lambda: NOBODY.pw_uid)
    assert resolve_run_as(ALICE, "nobody").uid == NOBODY.pw_uid  # its own user: allowed
    other = next(p for p in pwd.getpwall() if p.pw_uid not in (0, NOBODY.pw_uid))
    with pytest.raises(EngineUnavailable) as refused:
        resolve_run_as(ALICE, other.pw_name)
    message = str(refused.value)
    assert "run the engine as root" in message and 'run_as = "nobody"' in message
    assert "can read the engine home" in message


def test_a_clean_environment() -> None:
    user = resolve_run_as(ALICE, "nobody")
    env = user.environment({"EDITOR": "vi"})
    assert set(env) == {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "TERM", "LANG", "EDITOR"}
    assert env["HOME"] == NOBODY.pw_dir and env["USER"] == env["LOGNAME"] == "nobody"
    assert not set(env) & {key for key in os.environ if key.startswith("DXFLOW_")}


def test_login_shell_falls_back_to_sh() -> None:
    assert login_shell("/usr/sbin/nologin") == "/bin/sh"
    assert login_shell("/bin/false") == "/bin/sh"
    assert login_shell("/no/such/shell") == "/bin/sh"
    assert login_shell("") == "/bin/sh"
    assert login_shell("/bin/sh") == "/bin/sh"


def test_container_env_file() -> None:
    assert container_env_file({"A": "x y", "B": "=z="}) == "A=x y\nB==z=\n"
    assert container_env_file({}) == ""
    for bad in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(InvalidRequest, match="line break"):
            container_env_file({"K": bad})
    with pytest.raises(InvalidRequest, match="KiB"):
        container_env_file({"K": "x" * (300 << 10)})


def test_variable_names_cannot_smuggle_an_assignment() -> None:
    from pydantic import ValidationError

    from dxflow.models import ShellCreate

    assert ShellCreate(env={"A_b.1": "v"}).env == {"A_b.1": "v"}
    for name in ("A=B", "", "A B", "#A", "A\x00"):
        with pytest.raises(ValidationError):
            ShellCreate(env={name: "v"})
