"""The pre-click fast path against a real engine and a real container: `dxflow ps`,
`workflow list`, `ping` and `whoami` answered without click print what the click path
prints, byte for byte (ping's time aside), and every case it is not sure of runs the
click path, which prints what it printed before.

Each command runs twice in fresh processes: through `dxflow._cli.main` (the console
entry, fast path first) and through `dxflow._cli._main.run` (the click path alone), each
reporting the heavy modules it loaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import remove_project
from ..docker.images import BUSYBOX_IMAGE
from .conftest import Booted, boot, stop_holders
from .conftest import dxflow as run

pytestmark = pytest.mark.timeout(600)

HEAVY = ("click", "pydantic", "httpx", "yaml")
REPORT = (
    "import atexit, sys\n"
    f"atexit.register(lambda: print('loaded:', [m for m in {HEAVY!r} if m in sys.modules],"
    " file=sys.stderr))\n"
)
FAST = REPORT + "from dxflow._cli import main\nmain(sys.argv[1:])\n"
CLICK = REPORT + "from dxflow._cli._main import run\nrun(sys.argv[1:])\n"
COMPOSE = f"""
services:
  app:
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    init: true
  once:
    image: {BUSYBOX_IMAGE}
    command: ["true"]
"""


@dataclass
class Run:
    code: int
    out: str
    err: str
    loaded: list[str]


def _run(script: str, args: tuple[str | Path, ...], cwd: Path, env: dict[str, str]) -> Run:
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = done.stderr.splitlines(keepends=True)
    assert lines and lines[-1].startswith("loaded: "), done.stderr
    loaded = json.loads(lines[-1].removeprefix("loaded: ").replace("'", '"'))
    return Run(done.returncode, done.stdout, "".join(lines[:-1]), loaded)


@dataclass
class Place:
    engine: Booted
    folder: Path
    cache: Path
    name: str

    def env(self, cache: Path | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DXFLOW_", "COMPOSE_")) and k != "NO_COLOR"}  # fmt: skip
        return {**env, "DXFLOW_CACHE_DIR": str(cache or self.cache), **extra}

    def both(self, *args: str | Path, cwd: Path | None = None, **env: str) -> tuple[Run, Run]:
        """The click path's run, then the entry's (the first caches the token)."""
        where, variables = cwd or self.folder, self.env(**env)
        return _run(CLICK, args, where, variables), _run(FAST, args, where, variables)


@pytest.fixture(scope="module")
def place(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, docker_ready: None
) -> Iterator[Place]:
    """An engine, and a folder whose project (named after it) is up with a container."""
    root = tmp_path_factory.mktemp("fast")
    engine = boot(root / "home")
    folder = root / f"Shop_Front.{os.getpid()}"
    folder.mkdir()
    (folder / "compose.yaml").write_text(COMPOSE)
    name = f"shop_front{os.getpid()}"
    place = Place(engine, folder, root / "cache", name)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dxflow", "up", "-d", "--home", engine.home], cwd=folder,
            env=place.env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        yield place
    finally:
        run("workflow", "remove", name, "--home", engine.home, check=False)
        run("boot", "down", "--home", engine.home, check=False)
        stop_holders(engine.home)
        remove_project(docker_client, name)


def _same(click: Run, fast: Run) -> None:
    assert (fast.code, fast.out, fast.err) == (click.code, click.out, click.err)


def _timeless(text: str) -> str:
    """ping's own figures (its round trip, the engine's clock) differ from run to run."""
    text = re.sub(r"in [0-9.]+ ms", "in N ms", text)
    text = re.sub(r'"round_trip_ms": [0-9.]+', '"round_trip_ms": N', text)
    return re.sub(r'"time": "[^"]+"', '"time": T', text)


@pytest.mark.parametrize(
    "args",
    [
        ["ps"],
        ["ps", "--json"],
        ["ps", "--services"],
        ["ps", "-q"],
        ["ps", "--quiet", "--json"],
        ["workflow", "list"],
        ["workflow", "list", "--json"],
        ["whoami"],
        ["whoami", "--json"],
        ["ping"],
        ["ping", "--json"],
    ],
    ids=" ".join,
)
def test_the_fast_path_prints_what_the_click_path_prints(place: Place, args: list[str]) -> None:
    click, fast = place.both(*args, "--home", place.engine.home)
    assert "click" in click.loaded
    assert fast.loaded == [], fast  # answered before click, the SDK or YAML loaded
    if args[0] == "ping":
        click.out, fast.out = _timeless(click.out), _timeless(fast.out)
    _same(click, fast)
    assert fast.code == 0 and fast.out
    if args == ["ps"]:
        assert f"{place.name}-app-1" in fast.out and "running" in fast.out
        assert f"{place.name}-once-1" in fast.out
    entry = subprocess.run(  # the real `python -m dxflow` prints it too
        [sys.executable, "-m", "dxflow", *args, "--home", str(place.engine.home)],
        cwd=place.folder, env=place.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (entry.returncode, _timeless(entry.stdout)) == (0, fast.out)


def test_project_names_engines_and_keys_as_the_click_path_finds_them(
    place: Place, tmp_path: Path
) -> None:
    home, key = place.engine.home, place.engine.home / "keys" / "master.pem"
    elsewhere = tmp_path / "elsewhere"
    deeper = place.folder / "src" / "deeper"
    named = tmp_path / "named"
    for folder in (elsewhere, deeper, named):
        folder.mkdir(parents=True)
    (named / "compose.yaml").write_text(f"name: {place.name}  # the same project\n{COMPOSE}")
    socket, h = home / "run" / "engine.sock", str(home)
    cases: list[tuple[tuple[str | Path, ...], Path, dict[str, str]]] = [
        (("ps", "--home", home), deeper, {}),  # a parent's compose file
        (("ps", "-p", place.name, "--home", home), elsewhere, {}),
        (("ps", "--services"), elsewhere, {"COMPOSE_PROJECT_NAME": place.name, "DXFLOW_HOME": h}),
        (("ps", "-f", place.folder / "compose.yaml", "--home", home), elsewhere, {}),
        (("ps", "--home", home), named, {}),  # the file's plain `name:`
        (("ps", "--url", place.engine.url, "--key", key), place.folder, {}),  # http
        (("whoami",), elsewhere, {"DXFLOW_URL": f"unix://{socket}", "DXFLOW_KEY": str(key)}),
        (("ping", "--url", str(socket), "--key", key), elsewhere, {}),  # a socket path
        (("workflow", "list"), elsewhere, {"DXFLOW_HOME": str(home), "DXFLOW_URL": ""}),
    ]
    for args, cwd, env in cases:
        click, fast = place.both(*args, cwd=cwd, **env)
        assert fast.loaded == [], (args, fast)
        if args[0] == "ping":
            click.out, fast.out = _timeless(click.out), _timeless(fast.out)
        _same(click, fast)
        assert fast.code == 0 and fast.out, (args, fast)


def test_what_the_fast_path_is_not_sure_of_runs_as_before(place: Place, tmp_path: Path) -> None:
    home = place.engine.home
    yaml_named = tmp_path / "yaml"
    yaml_named.mkdir()
    (yaml_named / "compose.yaml").write_text(f"name: '{place.name}'\n{COMPOSE}")
    port = place.engine.url.rsplit(":", 1)[1]
    key = home / "keys" / "master.pem"
    cases: list[tuple[tuple[str | Path, ...], Path, dict[str, str]]] = [
        (("ps", "--nope", "--home", home), place.folder, {}),  # a usage error
        (("ps", "-p", "no-such-project", "--home", home), place.folder, {}),  # a 404
        (("ps", "--home", home), tmp_path, {}),  # no compose file here
        (("ps", "--home", home), yaml_named, {}),  # a quoted name: YAML reads it
        (("ps", "--url", f"https://127.0.0.1:{port}", "--key", key), place.folder, {}),
        (("whoami", "--home", home), place.folder, {"DXFLOW_INSECURE": "1"}),
        (("workflow", "list", "--url", place.engine.url), place.folder, {}),  # no key
    ]
    for args, cwd, env in cases:
        click, fast = place.both(*args, cwd=cwd, **env)
        assert "click" in fast.loaded, (args, fast)
        _same(click, fast)
    click, fast = place.both("ps", "--home", home, cwd=yaml_named)
    assert "yaml" in fast.loaded and fast.code == 0 and f"{place.name}-app-1" in fast.out


def test_without_a_cached_token_or_with_a_refused_one_the_click_path_signs_in(
    place: Place, tmp_path: Path
) -> None:
    home = place.engine.home
    args = ("ps", "--home", str(home))
    runs = [
        _run(script, args, place.folder, place.env(cache=tmp_path / name))
        for script, name in ((CLICK, "click"), (FAST, "fast"))
    ]
    assert "click" in runs[1].loaded  # nothing cached: the handshake is the SDK's
    _same(*runs)
    forged = {"token": "not.a.token", "expires": 4102444800}
    outputs = []
    for script, name in ((CLICK, "click"), (FAST, "fast")):
        (cached,) = (tmp_path / name / "tokens").iterdir()
        cached.write_text(json.dumps(forged))  # keeps its 0600 mode
        outputs.append(_run(script, args, place.folder, place.env(cache=tmp_path / name)))
        assert json.loads(cached.read_text())["token"] != "not.a.token"  # signed in again
    assert "click" in outputs[1].loaded
    _same(*outputs)
