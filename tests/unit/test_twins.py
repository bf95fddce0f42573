"""The blocking SDK and the async SDK offer the same calls: every public `Async*` class
under `dxflow._api` has a blocking twin (its name without `Async`) with exactly the same
public methods, each with the same parameters (names, kinds, defaults), and the other
way round."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import dxflow._api

RENAMED = {"aclose": "close"}
"""Async name -> blocking name, where Python's conventions differ."""
BLOCKING_ONLY = {"aengine"}
"""A blocking handle's door to the async SDK (`Bridge.aengine`): nothing to twin."""


def _async_classes() -> list[tuple[str, type, type | None]]:
    found = []
    # Private modules too: `_logs` and `_fleet` hold twins the public ones hand out.
    for module_info in pkgutil.iter_modules(dxflow._api.__path__):
        module = importlib.import_module(f"dxflow._api.{module_info.name}")
        for name, cls in vars(module).items():
            if (
                name.startswith("Async")
                and isinstance(cls, type)
                and cls.__module__ == module.__name__
                and not getattr(cls, "_is_protocol", False)  # a type to check against
            ):
                found.append((module.__name__, cls, getattr(module, name[len("Async") :], None)))
    return found


def _methods(cls: type) -> dict[str, Any]:
    """Public methods (plain, static and class methods) by name, as the user sees them."""
    out = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, staticmethod | classmethod) or inspect.isfunction(raw):
            out[RENAMED.get(name, name)] = getattr(cls, name)
    return out


def _properties(cls: type) -> set[str]:
    return {
        n
        for n in dir(cls)
        if not n.startswith("_") and isinstance(inspect.getattr_static(cls, n), property)
    }


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name not in ("self", "cls")
    ]


TWINS = _async_classes()


def test_the_twins_are_found() -> None:
    names = {cls.__name__ for _, cls, _ in TWINS}
    assert {"AsyncEngine", "AsyncKeys", "AsyncObjectStore", "AsyncShells", "AsyncShell",
            "AsyncChannel", "AsyncWorkflows", "AsyncWorkflow", "AsyncLogs"} <= names  # fmt: skip


@pytest.mark.parametrize(
    ("module", "async_cls", "blocking"), TWINS, ids=[c.__name__ for _, c, _ in TWINS]
)
def test_every_async_class_has_a_blocking_twin_with_the_same_calls(
    module: str, async_cls: type, blocking: type | None
) -> None:
    assert blocking is not None, f"{module}.{async_cls.__name__} has no blocking twin"
    mine, theirs = _methods(async_cls), _methods(blocking)
    assert sorted(mine) == sorted(theirs), (
        f"only in {async_cls.__name__}: {sorted(set(mine) - set(theirs))}; "
        f"only in {blocking.__name__}: {sorted(set(theirs) - set(mine))}"
    )
    for name in mine:
        assert _parameters(mine[name]) == _parameters(theirs[name]), (
            f"{async_cls.__name__}.{name} and {blocking.__name__}.{name} differ in parameters"
        )
    missing = _properties(async_cls) - _properties(blocking)
    assert not missing, f"{blocking.__name__} lacks the properties {sorted(missing)}"
    # The async twin may hold them as plain attributes its __init__ sets (`self.info`).
    attributes = _properties(async_cls) | set(async_cls.__init__.__code__.co_names)
    extra = _properties(blocking) - attributes - BLOCKING_ONLY
    assert not extra, f"{async_cls.__name__} lacks the properties {sorted(extra)}"


def test_every_blocking_class_has_an_async_twin() -> None:
    twins = {blocking for _, _, blocking in TWINS}
    for module_info in pkgutil.iter_modules(dxflow._api.__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"dxflow._api.{module_info.name}")
        for name in getattr(module, "__all__", []):
            cls = getattr(module, name)
            mine = isinstance(cls, type) and cls.__module__ == module.__name__
            if mine and not name.startswith("Async"):
                assert cls in twins, f"{module.__name__}.{name} has no Async twin"
