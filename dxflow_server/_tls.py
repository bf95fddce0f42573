"""TLS material of the engine's listener: the user's certificate, or the self-signed one.

The self-signed certificate is the proxies' (`dxflow._core._proxies._tls`): one made
on first use, made anew at boot when it is near its expiry, and while the engine runs by
the proxies' renewal job, which also reloads the listener's context in place
(`ProxyService.serve_tls`, set by `_boot.serve`).
"""

from __future__ import annotations

from pathlib import Path

from dxflow._config import Config
from dxflow._exceptions import ConfigError

__all__ = ["tls_files"]


def tls_files(config: Config) -> tuple[Path, Path]:
    """(certificate, private key) for `config`, checked before anything is bound."""
    from dxflow._core._proxies._tls import engine_files

    if bool(config.cert) != bool(config.cert_key):
        raise ConfigError("--cert and --cert-key go together")
    for given in (config.cert, config.cert_key):
        if given and not Path(given).expanduser().is_file():
            raise ConfigError(f"TLS file {Path(given).expanduser()} does not exist")
    return engine_files(config)
