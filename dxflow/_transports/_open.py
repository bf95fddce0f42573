"""Opening a transport from what the user gave: nothing (in-process) or a URL."""

from __future__ import annotations

import os

from .._keypairs import load_private_key
from ._base import Transport

__all__ = ["KeyPath", "open_transport"]

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
    """No URL: an engine core in this process (on `home`); else HTTP(S) or a unix socket."""
    private = load_private_key(key) if key is not None else None
    if url is None:
        from .._config import load_config
        from .._core import EngineCore
        from ._local import LocalTransport

        return LocalTransport(EngineCore(load_config(home, profile)), private)
    from ._http import HttpTransport

    return HttpTransport(
        url, private, verify=verify, timeout=timeout, token_lifetime=token_lifetime
    )
