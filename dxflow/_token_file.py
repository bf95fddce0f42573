"""Where a cached token lives and when its file is trusted, in the standard library alone.

`dxflow._tokens.TokenCache` keeps, renews and drops tokens for the SDK; the CLI's
pre-click fast path (`dxflow._cli._fast`) only reads them. Both name and trust a file
through the functions here, so they cannot disagree. This module is imported before
anything else a fast `dxflow ps` needs, so it loads no pathlib, no typing and no
OpenSSL.
"""

from __future__ import annotations

import json
import os
import time

try:  # the interpreter's own SHA-256: hashlib would load OpenSSL, milliseconds per command
    from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]  # CPython 3.11
except ImportError:  # pragma: no cover - other interpreters and versions
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment,no-redef,unused-ignore]

__all__ = ["RENEW_MARGIN", "cache_folder", "read_token", "token_file"]

RENEW_MARGIN = 60.0
"""A token this close to its expiry is not reused (the transport renews it too)."""


def cache_folder() -> str:
    """The user's dxflow cache folder (it need not exist): ``$DXFLOW_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dxflow``, else ``~/.cache/dxflow``."""
    explicit = os.environ.get("DXFLOW_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dxflow")


def token_file(url: str, key_bytes: bytes, folder: str | None = None) -> str:
    """The file of the token of an engine URL and a key: named by a hash of both, so
    another key, or the same key file rewritten, never finds it."""
    digest = sha256(key_bytes).hexdigest()
    name = sha256(f"{url}\0{digest}".encode()).hexdigest()[:32]
    return os.path.join(folder or cache_folder(), "tokens", name)


def read_token(path: str | os.PathLike[str]) -> tuple[str, float] | None:
    """The token and its expiry (epoch seconds) in `path`, if the file is ours, private
    (not a symlink, no access for others) and the token is fresh."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not ours or readable by others: never trust it
        data = json.loads(os.read(fd, 65536))
        token, expires = str(data["token"]), float(data["expires"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)
    return (token, expires) if expires - time.time() > RENEW_MARGIN else None
