"""Transports: how the SDK reaches an engine, in-process or over HTTP."""

from ._base import Transport

__all__ = ["Transport"]
