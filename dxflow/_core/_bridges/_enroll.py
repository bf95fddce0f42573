"""Joining a master, from the agent's side: before its engine boots, once.

`join` redeems a join token on the master (which registers this engine's key there),
checks that the master is the identity the token names (its fingerprint, and a
signature of a fresh nonce), and writes `<home>/bridge.json` (0600). `attach` is the
same without a token, for a key registered on the master by hand (`--join URL --key`):
the master's identity is then pinned at the first link.
"""

from __future__ import annotations

import secrets

import httpx

from ..._config import Home
from ..._exceptions import EngineUnavailable, PermissionDenied
from ..._keypairs import load_private_key, parse_public_key
from ..._permissions import Permission
from ..._wire import error_from_reply
from ._agent import AgentSettings
from ._join import parse_token

__all__ = ["attach", "join"]


def _allow(allow: str) -> list[str]:
    granted = Permission.parse(allow)  # an unknown name fails here, naming it
    return granted.names


def join(home: Home, token_text: str, name: str, allow: str, verify: bool | str) -> AgentSettings:
    from .._engine import _engine_id, _master_key

    token = parse_token(token_text)
    joined = AgentSettings.load(home)
    if joined is not None and (joined.url, joined.fingerprint, joined.name) == (
        token.url, token.fingerprint, name,
    ):  # fmt: skip
        joined.allow = _allow(allow)  # joined already: a reboot spends no use of the token
        joined.save(home)
        return joined
    home.ensure()
    _master_key(home.master_key)  # made on first boot: this may be before it
    key = load_private_key(home.master_key)
    nonce = secrets.token_urlsafe(24)
    body = {"token_id": token.id, "secret": token.secret, "name": name, "nonce": nonce,
            "public_key": key.public.pem, "engine_id": _engine_id(home.identity_file)}  # fmt: skip
    try:
        reply = httpx.post(f"{token.url}/api/fleet/join", json=body, verify=verify, timeout=30)
    except httpx.HTTPError as exc:
        raise EngineUnavailable(f"cannot reach the master at {token.url}: {exc}") from None
    if not reply.is_success:
        raise error_from_reply(reply.status_code, reply.content, reply.reason_phrase)
    answer = reply.json()
    if parse_public_key(answer["master_public_key"]).fingerprint != token.fingerprint:
        raise PermissionDenied(
            f"the master at {token.url} presents another identity than the token names "
            f"({token.fingerprint}): refusing to join it"
        )
    master = answer["master_public_key"]
    settings = AgentSettings(url=token.url, name=name, allow=_allow(allow),
                             fingerprint=token.fingerprint, master_public_key=master,
                             verify=verify)  # fmt: skip
    settings.check_master(answer["master_public_key"], name, nonce, answer["signature"])
    settings.save(home)
    return settings


def attach(
    home: Home, url: str, key: str, name: str, allow: str, verify: bool | str
) -> AgentSettings:
    load_private_key(key)  # a bad key file fails now, naming the file
    settings = AgentSettings(url=url.rstrip("/"), name=name, allow=_allow(allow), key=key,
                             verify=verify)  # fmt: skip
    settings.save(home)
    return settings
