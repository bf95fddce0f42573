"""Shell completion through the real CLI, as bash asks for it (click's bash_complete
protocol: COMP_WORDS / COMP_CWORD in the environment), against a booted engine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Booted, boot, stop_holders
from .conftest import dxflow as run

pytestmark = pytest.mark.timeout(600)

COMPOSE = """\
services:
  web:
    image: busybox
    command: sleep 100
  db:
    image: busybox
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    booted = boot(tmp_path_factory.mktemp("complete") / "home")
    folder = tmp_path_factory.mktemp("project")
    (folder / "compose.yaml").write_text(COMPOSE)
    (folder / "a.txt").write_text("a")
    home = ["--home", booted.home]
    run("workflow", "create", "webapp", "-f", folder / "compose.yaml", *home)
    run("workflow", "create", "worker", "-f", folder / "compose.yaml", *home)
    run("shell", "create", "scratch", *home)
    for target in ("data/raw.csv", "data/ref.txt", "data/deep/x.txt", "notes.txt"):
        run("object", "put", folder / "a.txt", target, *home)
    yield booted
    run("boot", "down", "--home", booted.home, check=False)
    stop_holders(booted.home)


def complete(engine: Booted, line: str, cache: Path | None = None) -> list[str]:
    """What bash would offer for the last word of `line` (`dxflow ...`)."""
    words = line.split(" ")
    env = {
        **os.environ,
        "_DXFLOW_COMPLETE": "bash_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
        "DXFLOW_HOME": str(engine.home),
    }
    if cache is not None:
        env["DXFLOW_CACHE_DIR"] = str(cache)
    done = subprocess.run(
        [sys.executable, "-m", "dxflow"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    return [value for kind, _, value in (x.partition(",") for x in lines)]


def test_workflow_names(engine: Booted) -> None:
    assert complete(engine, "dxflow workflow ps ") == ["webapp", "worker"]
    assert complete(engine, "dxflow workflow logs we") == ["webapp"]


def test_service_names_of_the_workflow_typed(engine: Booted) -> None:
    assert complete(engine, "dxflow workflow exec webapp ") == ["db", "web"]


def test_shell_names(engine: Booted) -> None:
    assert complete(engine, "dxflow shell connect ") == ["scratch"]
    assert complete(engine, "dxflow shell kill sc") == ["scratch"]


def test_object_paths_folder_by_folder(engine: Booted) -> None:
    assert complete(engine, "dxflow object ls ") == ["data/", "notes.txt"]
    assert complete(engine, "dxflow object cat data/r") == ["data/raw.csv", "data/ref.txt"]
    assert complete(engine, "dxflow object rm data/") == [
        "data/deep/",
        "data/raw.csv",
        "data/ref.txt",
    ]


def test_key_identities(engine: Booted) -> None:
    assert complete(engine, "dxflow key unregister ") == ["master"]


def test_completion_works_without_a_cached_token_and_after_an_explicit_home(
    engine: Booted, tmp_path: Path
) -> None:
    # A first Tab with no token cached takes the SDK path (and caches one for the next).
    line = f"dxflow object ls --home {engine.home} no"
    assert complete(engine, line, cache=tmp_path / "fresh") == ["notes.txt"]
    assert list((tmp_path / "fresh" / "tokens").iterdir())


def test_completion_says_nothing_when_no_engine_answers(tmp_path: Path) -> None:
    nobody = Booted(tmp_path / "nothing", {})
    assert complete(nobody, "dxflow workflow ps ") == []
