"""The engine's request limits, resolved once from its configuration.

Limits come before work: a body is refused (413) from its declared length before a
byte of it is read, and counted as it streams when it declares none. Each limit names
its setting, so a refusal can tell the caller which knob an operator would turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config import Config
from ._durations import parse_size
from ._exceptions import ConfigError, PayloadTooLarge

__all__ = ["PUBLIC_BODY_MAX", "Limits", "human_size", "too_large"]

PUBLIC_BODY_MAX = 64 << 10
"""Bytes of a JSON body sent without credentials (the handshake): not configurable."""
MAX_HEAD = 64 << 10
"""Bytes of a request line plus headers."""


def human_size(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def too_large(what: str, limit: int, setting: str | None) -> PayloadTooLarge:
    """The 413 for `what` past `limit`, naming the engine setting that raises it."""
    where = f"engine setting {setting}" if setting else "fixed"
    return PayloadTooLarge(
        f"{what}: over the limit of {human_size(limit)} ({where})",
        limit=limit,
        setting=setting,
    )


@dataclass(frozen=True)
class Limits:
    json_body: int = 1 << 20
    compose_body: int = 32 << 20
    ranges: int = 8 << 20
    header_timeout: float = 10.0
    keep_alive: float = 5.0
    log_max: int = 10 << 20
    log_backups: int = 5

    @classmethod
    def of(cls, config: Config) -> Limits:
        """The limits of `config`; a bad value is a ConfigError naming its setting."""
        sizes: dict[str, int] = {}
        for field, setting in (
            ("json_body", "json_body_max"),
            ("compose_body", "compose_body_max"),
            ("ranges", "ranges_max_bytes"),
            ("log_max", "log_max_size"),
        ):
            try:
                sizes[field] = parse_size(getattr(config, setting))
            except ValueError as exc:
                raise ConfigError(f"{setting}: {exc}") from None
            if sizes[field] < 1024:
                raise ConfigError(f"{setting}: at least 1K, got {getattr(config, setting)!r}")
        for setting in ("header_timeout", "keep_alive_timeout"):
            if getattr(config, setting) < 1:
                raise ConfigError(f"{setting}: at least 1 second")
        if config.log_backups < 1:  # 0 would make the handler never rotate at all
            raise ConfigError(f"log_backups: at least 1, got {config.log_backups}")
        return cls(
            **sizes,
            header_timeout=float(config.header_timeout),
            keep_alive=float(config.keep_alive_timeout),
            log_backups=config.log_backups,
        )
