"""The compose corpus: every case loads to its expected model; every bad case fails by path."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dxflow._core._compose import KEYS, LoadedProject, load_project
from dxflow._core._compose._supported import children
from dxflow._core._compose._yaml import parse_yaml
from dxflow._exceptions import InvalidRequest

DATA = Path(__file__).resolve().parents[1] / "compose"
CORPUS = sorted(p for p in (DATA / "corpus").iterdir() if p.is_dir())
BAD_CASES: dict[str, dict[str, Any]] = json.loads((DATA / "bad" / "cases.json").read_text())


def _args(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    env_file = args.get("env_file")
    return {
        "env": args.get("env"),
        "process_env": args.get("process_env", {}),
        "profiles": args.get("profiles"),
        "env_file": [folder / f for f in env_file] if env_file is not None else None,
    }


def load_case(folder: Path) -> LoadedProject:
    args_file = folder / "args.json"
    args = json.loads(args_file.read_text()) if args_file.exists() else {}
    return load_project(folder.name, folder / "compose.yaml", **_args(folder, args))


def expected(folder: Path) -> Any:
    text = (folder / "expected.json").read_text()
    return json.loads(text.replace("{dir}", json.dumps(os.path.abspath(folder))[1:-1]))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 22


@pytest.mark.parametrize("folder", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_case_loads_to_its_expected_model(folder: Path) -> None:
    assert load_case(folder).project.model_dump(mode="json") == expected(folder)


@pytest.mark.parametrize("folder", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_case_is_stable_across_loads(folder: Path) -> None:
    first, second = load_case(folder), load_case(folder)
    for service in first.project.services:
        assert first.config_hash(service) == second.config_hash(service)
    assert first.order() == second.order()


def _walk(value: Any, pattern: str, seen: set[str]) -> None:
    """Record the key patterns of the table that `value` (at `pattern`) uses."""
    known = children(pattern)
    if not isinstance(value, dict) or not known:
        return
    for name, sub in value.items():
        if name.startswith("x-"):
            seen.add("x-*")
            continue
        key = known.get(name) or known.get("*")
        assert key is not None, f"{pattern}.{name} is not in the key table"
        seen.add(key.path)
        if isinstance(sub, dict):
            _walk(sub, key.path, seen)
        elif isinstance(sub, list):
            for entry in sub:
                _walk(entry, f"{key.path}[]", seen)


def test_every_supported_key_appears_in_the_corpus() -> None:
    seen: set[str] = set()
    for folder in CORPUS:
        _walk(parse_yaml((folder / "compose.yaml").read_text()), "", seen)
    missing = [key.path for key in KEYS if key.path not in seen]
    assert not missing, f"keys no corpus file uses: {missing}"


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_case_fails_naming_the_problem_and_its_path(name: str) -> None:
    case = BAD_CASES[name]
    folder = DATA / "bad"
    with pytest.raises(InvalidRequest) as caught:
        load_project(case.get("name", "bad"), folder / name, **_args(folder, case.get("args", {})))
    error = caught.value
    assert case["match"] in error.message
    assert error.details["path"] == case["path"]
    if case["path"]:
        assert error.message.startswith(f"{case['path']}: ")


def test_every_bad_file_has_a_case() -> None:
    files = {p.name for p in (DATA / "bad").glob("*.yaml")}
    assert files == set(BAD_CASES)
