"""Where an engine is, from what the user gave: the environment, a home."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._config import Home
from .._exceptions import EngineUnavailable

__all__ = ["KeyPath", "from_env_args", "home_args", "read_public_key"]

KeyPath = str | os.PathLike[str]


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
