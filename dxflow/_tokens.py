"""A bearer token kept on disk between command-line runs, and a key loaded on first use.

Every `dxflow` command is a new process: without a cache each one would sign a
challenge (two round trips, an RSA signature, the `cryptography` import) and write an
`auth.verify` audit record. The token of an engine URL and a key is kept in a file of
its own under the user's cache directory (``$DXFLOW_CACHE_DIR``, else
``$XDG_CACHE_HOME/dxflow``, else ``~/.cache/dxflow``), in a 0700 folder, mode 0600,
named by a hash of the URL and the key's bytes (so another key, or the same key file
rewritten, never finds it; `_token_file` names and trusts it, for the CLI's fast path
too). It is reused until a minute before it expires and dropped when the engine answers
401. Nothing here ever logs or prints a token.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import ConfigError
from ._token_file import RENEW_MARGIN, cache_folder, read_token, token_file

if TYPE_CHECKING:
    from ._keypairs import PrivateKey, PublicKey

__all__ = ["RENEW_MARGIN", "DeferredKey", "TokenCache", "cache_dir"]


def cache_dir() -> Path:
    """The user's dxflow cache folder (it need not exist)."""
    return Path(cache_folder())


def read_key_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a private key file, or the ConfigError naming what to fix."""
    path = Path(path).expanduser()
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"the key {path} is a folder; pass the private key file (.pem)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror}") from None


class DeferredKey:
    """A private key file parsed on first use: with a cached token no command signs
    anything, so `cryptography` is never imported."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._loaded: PrivateKey | None = None

    def load(self) -> PrivateKey:
        if self._loaded is None:
            from ._keypairs import load_private_key

            self._loaded = load_private_key(self.path)
        return self._loaded

    @property
    def public(self) -> PublicKey:
        return self.load().public

    def sign_b64(self, message: str) -> str:
        return self.load().sign_b64(message)


class TokenCache:
    """The cached token of one engine URL and one key (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, url: str, key_bytes: bytes, folder: Path | None = None) -> TokenCache:
        return cls(Path(token_file(url, key_bytes, str(folder) if folder else None)))

    def load(self) -> tuple[str, float] | None:
        """The token and its expiry (epoch seconds), if one is cached and fresh."""
        return read_token(self.path)

    def store(self, token: str, expires: float) -> None:
        """Keep the token (mode 0600); a cache that cannot be written is no error."""
        with contextlib.suppress(OSError):
            folder = self.path.parent
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if folder.stat().st_mode & 0o077:
                return  # a folder others can list: keep nothing there
            temp = folder / f".{self.path.name}.{os.getpid()}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, json.dumps({"token": token, "expires": expires}).encode())
            finally:
                os.close(fd)
            os.replace(temp, self.path)
            self._prune(folder)

    def drop(self) -> None:
        """Forget the token (the engine refused it)."""
        with contextlib.suppress(OSError):
            self.path.unlink()

    @staticmethod
    def _prune(folder: Path) -> None:
        """Remove expired tokens of other engines (homes of finished test runs...)."""
        now = time.time()
        for entry in folder.iterdir():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if entry.name.startswith("."):
                    if now - entry.stat().st_mtime > 3600:
                        entry.unlink()
                    continue
                if float(json.loads(entry.read_bytes())["expires"]) < now:
                    entry.unlink()
