"""Choosing a transport from what the user gave: nothing, a URL, a home."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._config import Home, load_config
from .._exceptions import EngineUnavailable
from .._keypairs import load_private_key
from .._transports import Transport

__all__ = ["from_env_args", "home_args", "open_transport", "read_public_key"]

KeyPath = str | os.PathLike[str]


def open_transport(
    url: str | None,
    key: KeyPath | None,
    *,
    home: KeyPath | None,
    profile: str | None,
    verify: bool | str,
    timeout: float,
    token_lifetime: int,
) -> Transport:
    private = load_private_key(key) if key is not None else None
    if url is None:
        from .._core import EngineCore
        from .._transports._local import LocalTransport

        return LocalTransport(EngineCore(load_config(home, profile)), private)
    from .._transports._http import HttpTransport

    return HttpTransport(
        url, private, verify=verify, timeout=timeout, token_lifetime=token_lifetime
    )


def from_env_args() -> dict[str, Any]:
    """`DXFLOW_URL` and `DXFLOW_KEY`; with no URL, an in-process engine."""
    return {
        "url": os.environ.get("DXFLOW_URL") or None,
        "key": os.environ.get("DXFLOW_KEY") or None,
    }


def home_args(home: KeyPath | None) -> dict[str, Any]:
    """The engine booted on `home`: its unix socket, as its master key."""
    paths = Home.resolve(home)
    if not paths.socket.exists():
        raise EngineUnavailable(
            f"no engine is running on {paths.root} (no socket at {paths.socket}); "
            "start one with `dxflow boot up`"
        )
    return {"url": f"unix://{paths.socket}", "key": paths.master_key}


def read_public_key(value: str | os.PathLike[str]) -> str:
    """A public key given as PEM/OpenSSH text, or as the path of a file holding one."""
    text = str(value)
    if text.lstrip().startswith(("-----BEGIN", "ssh-")):
        return text
    try:
        return Path(text).expanduser().read_text()
    except OSError as exc:
        from .._exceptions import ConfigError

        raise ConfigError(f"cannot read the public key file {text}: {exc.strerror}") from None
