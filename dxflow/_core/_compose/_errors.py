"""Errors that name the problem and where it is in the document (``services.web.ports[1]``)."""

from __future__ import annotations

from typing import Any

from ..._exceptions import InvalidRequest

__all__ = ["child", "invalid", "item"]


def invalid(path: str, message: str, **details: Any) -> InvalidRequest:
    """An `InvalidRequest` whose message starts with `path` and whose details carry it."""
    text = f"{path}: {message}" if path else message
    return InvalidRequest(text, path=path, **details)


def child(path: str, key: str) -> str:
    """The path of `key` inside the mapping at `path`."""
    return f"{path}.{key}" if path else key


def item(path: str, index: int) -> str:
    """The path of item `index` of the list at `path`."""
    return f"{path}[{index}]"
