"""Permissions, durations, tokens, errors and the lean import."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import dxflow
from dxflow import Permission
from dxflow._core._tokens import TokenError, decode_token, encode_token
from dxflow._durations import parse_duration, since_datetime
from dxflow._exceptions import ApiError, error_from_code
from dxflow._permissions import check_permission


def test_permissions_parse_and_print() -> None:
    assert Permission.parse("shell, object") == Permission.SHELL | Permission.OBJECT
    assert Permission.parse(["read-only", "PLATFORM"]) == Permission.READ_ONLY | Permission.PLATFORM
    assert Permission.parse(str(Permission(0))) == Permission(0)
    assert str(Permission.SHELL | Permission.MASTER) == "SHELL,MASTER"
    with pytest.raises(ValueError, match="unknown permission 'ROOT'"):
        Permission.parse("ROOT")


def test_check_permission_rules() -> None:
    shell = Permission.SHELL
    assert check_permission(shell, Permission.SHELL, mutating=True) is None
    assert check_permission(shell, Permission.OBJECT, mutating=False) == "OBJECT"
    assert check_permission(shell | Permission.READ_ONLY, Permission.SHELL, mutating=False) is None
    assert "READ_ONLY" in str(
        check_permission(shell | Permission.READ_ONLY, Permission.SHELL, True)
    )
    assert check_permission(Permission.MASTER, Permission.SHELL, mutating=True) is None
    assert check_permission(Permission(0), None, mutating=False) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("2d", 172800),
        ("1h30m", 5400),
        (timedelta(minutes=2), 120),
        (1.5, 1.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "soon", "1x", "h1", "-1h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_since() -> None:
    assert since_datetime(None) is None
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert since_datetime(moment) == moment
    assert since_datetime("2026-01-01T00:00:00+00:00") == moment
    ago = since_datetime("1h")
    assert ago is not None and abs((datetime.now(UTC) - ago).total_seconds() - 3600) < 5


def test_tokens_round_trip_and_reject_tampering() -> None:
    secret = b"s" * 32
    token, expires = encode_token(secret, {"iss": "e", "sub": "alice"}, 60)
    claims = decode_token(secret, token, "e")
    assert claims["sub"] == "alice" and claims["exp"] == expires
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload[:-2]}AA.{signature}"
    for bad, why in ((tampered, "signature"), (token, "another engine")):
        with pytest.raises(TokenError, match=why):
            decode_token(secret, bad, "e" if bad is tampered else "f")
    none_alg = "eyJhbGciOiJub25lIn0." + payload + "."
    with pytest.raises(TokenError, match="malformed"):
        decode_token(secret, none_alg, "e")


def test_errors_rebuild_from_code_and_pickle() -> None:
    error = error_from_code("permission_denied", "no", {"permission": "SHELL"})
    assert isinstance(error, dxflow.PermissionDenied) and error.status == 403
    assert error.details == {"permission": "SHELL"}
    assert isinstance(error_from_code("workflow_failed", "x"), dxflow.Conflict)
    assert type(error_from_code("from-the-future", "x")) is ApiError
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert isinstance(clone, dxflow.PermissionDenied) and clone.details == error.details


def test_import_dxflow_stays_lean() -> None:
    heavy = [
        "pydantic",
        "httpx",
        "starlette",
        "cryptography",
        "docker",
        "uvicorn",
        "psutil",
        "anyio",
    ]
    code = f"import dxflow, sys; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_public_namespace() -> None:
    for name in dxflow.__all__:
        assert getattr(dxflow, name) is not None
    assert dxflow.Engine.__module__ == "dxflow._api.engine"
    with pytest.raises(AttributeError):
        dxflow.Nope  # type: ignore[attr-defined]  # noqa: B018
