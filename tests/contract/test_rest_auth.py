"""The REST door under bad input: the challenge-response handshake, tokens in their
three places, and every malformed request. Nothing changes on any error."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dxflow._config import load_config
from dxflow._core import EngineCore
from dxflow._core._tokens import encode_token
from dxflow._keypairs import PrivateKey, load_private_key

from ..conftest import KeyFactory, RestClient


@pytest.fixture
def master(core: EngineCore) -> PrivateKey:
    return load_private_key(core.config.home.master_key)


def _login(
    rest: RestClient, key: PrivateKey, lifetime: int = 600, **name: str
) -> dict[str, object]:
    challenge = rest.post("/api/auth/challenge", json={}).json()
    response = rest.post(
        "/api/auth/verify",
        json={
            **(name or {"identity": key.public.fingerprint}),
            "nonce": challenge["nonce"],
            "signature": key.sign_b64(challenge["message"]),
            "lifetime": lifetime,
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_handshake_by_fingerprint_and_by_identity(rest: RestClient, master: PrivateKey) -> None:
    for name in ({}, {"identity": "master"}):
        token = _login(rest, master, **name)
        assert token["identity"] == "master" and token["permissions"] == ["MASTER"]
        assert rest.get("/api/ping", headers=_bearer(token["token"])).json()["identity"] == "master"


def test_rsa_signatures_are_pkcs1v15_sha256(rest: RestClient, master: PrivateKey) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    assert isinstance(master.key, rsa.RSAPrivateKey)
    challenge = rest.post("/api/auth/challenge", json={}).json()
    signature = master.key.sign(challenge["message"].encode(), padding.PKCS1v15(), hashes.SHA256())
    response = rest.post(
        "/api/auth/verify",
        json={
            "identity": "master",
            "nonce": challenge["nonce"],
            "signature": base64.b64encode(signature).decode(),
        },
    )
    assert response.status_code == 200
    issued = datetime.fromisoformat(response.json()["expires_at"])
    assert abs((issued - datetime.now(UTC)).total_seconds() - 3600) < 60  # default: one hour


def test_ed25519_keys_authenticate(rest: RestClient, make_key: KeyFactory) -> None:
    key = load_private_key(make_key(identity="edna").private)
    assert _login(rest, key)["identity"] == "edna"


def test_replayed_challenge_is_refused(rest: RestClient, master: PrivateKey) -> None:
    challenge = rest.post("/api/auth/challenge", json={}).json()
    body = {
        "identity": "master",
        "nonce": challenge["nonce"],
        "signature": master.sign_b64(challenge["message"]),
    }
    assert rest.post("/api/auth/verify", json=body).status_code == 200
    replay = rest.post("/api/auth/verify", json=body)
    assert replay.status_code == 401
    assert "challenge is unknown, used or expired" in replay.json()["error"]["message"]


def test_expired_challenge_is_refused(
    rest: RestClient, master: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    challenge = rest.post("/api/auth/challenge", json={}).json()
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 61)
    response = rest.post(
        "/api/auth/verify",
        json={
            "identity": "master",
            "nonce": challenge["nonce"],
            "signature": master.sign_b64(challenge["message"]),
        },
    )
    assert response.status_code == 401


def test_failures_do_not_reveal_whether_an_identity_exists(
    rest: RestClient, make_key: KeyFactory
) -> None:
    stranger = load_private_key(make_key(None).private)  # never registered
    messages = []
    for identity in ("master", "nobody-by-that-name"):
        challenge = rest.post("/api/auth/challenge", json={}).json()
        response = rest.post(
            "/api/auth/verify",
            json={
                "identity": identity,
                "nonce": challenge["nonce"],
                "signature": stranger.sign_b64(challenge["message"]),
            },
        )
        assert response.status_code == 401
        messages.append(response.json()["error"]["message"])
    assert messages[0] == messages[1]


def test_garbage_signature_is_401_not_500(rest: RestClient) -> None:
    challenge = rest.post("/api/auth/challenge", json={}).json()
    response = rest.post(
        "/api/auth/verify",
        json={
            "identity": "master",
            "nonce": challenge["nonce"],
            "signature": "!" * 40,
        },
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYXN0ZXIifQ.", "x" * 5000],
)
def test_garbage_tokens_are_401(rest: RestClient, token: str) -> None:
    response = rest.get("/api/ping", headers=_bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_forged_expired_and_foreign_tokens_are_401(rest: RestClient, core: EngineCore) -> None:
    claims = {
        "iss": core.engine_id,
        "sub": "master",
        "perm": ["MASTER"],
        "kv": core.keys.get("master").version,
    }  # type: ignore[union-attr]
    forged, _ = encode_token(b"not the engine secret" * 2, claims, 600)
    expired, _ = encode_token(core.auth._secret, claims, -5)
    foreign, _ = encode_token(core.auth._secret, {**claims, "iss": "dxf-elsewhere"}, 600)
    for token, reason in ((forged, "signature"), (expired, "expired"), (foreign, "another engine")):
        response = rest.get("/api/ping", headers=_bearer(token))
        assert response.status_code == 401
        assert reason in response.json()["error"]["message"]


def test_token_of_another_engine_home_is_refused(rest: RestClient, tmp_path: Path) -> None:
    other = EngineCore(load_config(tmp_path / "other"))
    try:
        record = other.keys.get("master")
        assert record is not None
        token = other.auth.issue(record, 600).token
    finally:
        other.close()
    assert rest.get("/api/ping", headers=_bearer(token)).status_code == 401


def test_token_is_accepted_as_cookie_but_not_as_query_on_plain_http(
    rest: RestClient, master: PrivateKey
) -> None:
    token = _login(rest, master)["token"]
    rest.cookies.set("dxflow_token", str(token))
    assert rest.get("/api/ping").status_code == 200
    rest.cookies.clear()
    assert rest.get("/api/ping", params={"token": token}).status_code in (401, 422)
    assert rest.get("/api/ping", params={"token": token}).status_code != 200


@pytest.mark.parametrize("lifetime", [59, 86401, "forever"])
def test_lifetime_out_of_range_is_422(
    rest: RestClient, master: PrivateKey, lifetime: object
) -> None:
    challenge = rest.post("/api/auth/challenge", json={}).json()
    response = rest.post(
        "/api/auth/verify",
        json={
            "identity": "master",
            "nonce": challenge["nonce"],
            "signature": master.sign_b64(challenge["message"]),
            "lifetime": lifetime,
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == "lifetime"


def test_malformed_requests(rest: RestClient, master: PrivateKey, core: EngineCore) -> None:
    token = _login(rest, master)["token"]
    auth = _bearer(token)
    before = core.keys.list(None, None).keys  # type: ignore[arg-type]
    cases = [
        (rest.post("/api/keys", content=b"{not json", headers=auth), 422, "not valid JSON"),
        (rest.post("/api/keys", content=b"[1, 2]", headers=auth), 422, "JSON object"),
        (
            rest.post(
                "/api/keys",
                json={"identity": "x", "public_key": "k" * 40, "colour": "red"},
                headers=auth,
            ),
            422,
            "colour: unknown field",
        ),
        (
            rest.post("/api/keys", json={"identity": 5, "public_key": "k" * 40}, headers=auth),
            422,
            "identity",
        ),
        (
            rest.post(
                "/api/keys/master/rotate",
                json={"identity": "master", "public_key": "k" * 40},
                headers=auth,
            ),
            422,
            "both the path and the body",
        ),
        (rest.get("/api/audit", params={"limit": "lots"}, headers=auth), 422, "limit"),
        (rest.get("/api/nothing-here", headers=auth), 404, "no route"),
        (rest.request("PATCH", "/api/keys", headers=auth), 405, "PATCH is not allowed"),
        (rest.request("DELETE", "/api/ping", headers=auth), 405, "allowed: GET"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, (text, response.text)
        error = response.json()["error"]
        assert text in error["message"], error
    assert core.keys.list(None, None).keys == before  # type: ignore[arg-type]


def test_auth_endpoints_are_rate_limited_per_client(rest: RestClient, core: EngineCore) -> None:
    import anyio

    from dxflow._core import Context
    from dxflow._core._auth import RateLimiter
    from dxflow._operations import OPERATIONS

    core.auth._limiter = RateLimiter(5)
    statuses = [rest.post("/api/auth/challenge", json={}).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    limited = rest.post("/api/auth/verify", json={})
    assert limited.status_code in (422, 429)  # validation may answer first; never 200
    limited = rest.post("/api/auth/challenge", json={})
    assert int(limited.headers["retry-after"]) >= 1
    assert "too many authentication requests" in limited.json()["error"]["message"]
    for _ in range(10):  # the 0600 unix socket and in-process callers are the engine's own user
        core.auth._limiter.hit("unix")
        core.auth._limiter.hit("local")
    # another client address is not held back by the noisy one
    other = Context(None, client="198.51.100.2:5000")
    challenge = anyio.run(core.dispatcher.call, other, OPERATIONS["auth.challenge"], {})
    assert challenge.nonce  # type: ignore[attr-defined]


def test_rejected_tokens_are_audited_and_rate_limited(rest: RestClient, core: EngineCore) -> None:
    from dxflow._core._auth import RateLimiter

    core.auth._failures = RateLimiter(3)
    statuses = [rest.get("/api/ping", headers=_bearer("garbage")).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    rows = core.state.query("SELECT outcome, detail FROM audit WHERE operation = 'auth.token'")
    assert [tuple(r) for r in rows] == [("rejected", "malformed token")] * 3
    anonymous = [rest.get("/api/ping").status_code for _ in range(3)]
    assert anonymous == [401] * 3  # no credentials: refused, but not written to the log
    assert len(core.state.query("SELECT id FROM audit")) == 3
