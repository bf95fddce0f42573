"""Check a document's shape against the key table: unknown keys and wrong types, by path."""

from __future__ import annotations

from typing import Any

from ._errors import child, invalid, item
from ._supported import UNSUPPORTED, Key, children
from ._values import expect

__all__ = ["validate_document"]


def validate_document(document: dict[str, Any]) -> None:
    """Raise InvalidRequest at the first key the table lacks or value of a shape it forbids."""
    _walk_mapping(document, "", "")


def _walk(value: Any, key: Key, path: str) -> None:
    expect(value, path, key.types)
    if isinstance(value, dict) and children(key.path):
        _walk_mapping(value, key.path, path)
    elif isinstance(value, list) and children(f"{key.path}[]"):
        for index, entry in enumerate(value):
            if isinstance(entry, dict):
                _walk_mapping(entry, f"{key.path}[]", item(path, index))


def _walk_mapping(mapping: dict[Any, Any], pattern: str, path: str) -> None:
    known = children(pattern)
    for name, value in mapping.items():
        if not isinstance(name, str):
            raise invalid(path, f"keys must be strings, got {name!r}")
        if name.startswith("x-"):
            continue
        key = known.get(name) if name != "*" else None
        key = key or known.get("*")
        if key is None:
            raise _unknown(pattern, path, name, known)
        _walk(value, key, child(path, name))


def _unknown(pattern: str, path: str, name: str, known: dict[str, Key]) -> Exception:
    where = child(path, name)
    special = UNSUPPORTED.get(f"{pattern}.{name}" if pattern else name)
    if special:
        return invalid(where, special)
    supported = ", ".join(sorted(k for k in known if k != "x-*"))
    return invalid(where, f"unknown key (supported: {supported}, x-*)")
