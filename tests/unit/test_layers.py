"""The layers import only downward: SDK -> transports -> core, never back up.

An arrow upward (the core importing the SDK, the SDK importing the core) is how the
seams leaked before: this test keeps them where docs/architecture.md draws them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# layer -> the layers it must never import (lazily or not)
FORBIDDEN = {
    "sdk": {"core", "server", "cli"},
    "transports": {"sdk", "server", "cli"},
    "core": {"sdk", "transports", "server", "cli"},
    "server": {"sdk", "transports"},
    "shared": {"sdk", "transports", "core", "server", "cli"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "dxflow_server":
        return "server"
    if parts[0] != "dxflow" or len(parts) == 1:
        return ""
    head = parts[1]
    if head in ("_api", "_filesystem", "_filesystem_file") or head.startswith("_filesystem"):
        return "sdk"
    return {"_transports": "transports", "_core": "core", "_cli": "cli"}.get(head, "shared")


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            names = [node.module] if node.module else [a.name for a in node.names]
            found += [(node.lineno, ".".join([*base, name])) for name in names]
    return found


def _modules() -> list[tuple[Path, str]]:
    paths = [*ROOT.glob("dxflow/**/*.py"), *ROOT.glob("dxflow_server/**/*.py")]
    return [
        (p, ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
        for p in sorted(paths)
    ]


# The few shared modules that are allowed to reach down, each for one stated reason.
ALLOWED = {
    ("dxflow.__main__", "cli"),  # `python -m dxflow` is the CLI
    ("dxflow._server_runtime", "server"),  # the CLI's daemon entry, started by boot up
}


@pytest.mark.parametrize(
    ("path", "module"), _modules(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_imports_point_downward(path: Path, module: str) -> None:
    layer = _layer(module)
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target} ({_layer(target)})"
        for line, target in _imports(path, module)
        if _layer(target) in FORBIDDEN.get(layer, set()) and (module, _layer(target)) not in ALLOWED
    ]
    assert not wrong, "an import points up or sideways:\n" + "\n".join(wrong)


def test_operations_are_named_by_their_typed_constants_not_looked_up_by_string() -> None:
    """`ops.uploads.CREATE`, never `OPERATIONS["uploads.create"]`: a renamed or removed
    operation is then an import error mypy sees, not a KeyError at run time."""
    import re

    lookup = re.compile(r"OPERATIONS\[\s*[\"']")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("dxflow", "dxflow_server")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if lookup.search(line)
    ]
    assert not found, found
